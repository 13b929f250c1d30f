"""Pure-NumPy reference kernels: the algorithms of "Deep Learning from Scratch".

These are the baselines that ``bench_kernels.py`` times against cconv, and the
oracle of its built-in sanity check.  They follow the book's code
(``common/util.py`` im2col/col2im and ``common/layers.py`` Pooling) step by
step -- ``np.pad`` + a 6-D ``np.zeros`` + one strided-slice assignment per
filter offset + ``transpose``/``reshape`` -- with two deliberate differences:

* the dtype of the input is kept (the book always allocates float64), so that
  the float32 rows compare like with like;
* stride and pad may be ``(h, w)`` pairs (the benchmark only uses ints).

Layouts are those of the book, which cconv's API matches:

* ``im2col`` -> ``col`` of shape ``(N*out_h*out_w, C*filter_h*filter_w)``,
  rows ordered ``(n, oy, ox)``, columns ``(c, ky, kx)``;
* ``col2im`` is its adjoint and returns a view into a padded image, as the book;
* the max-pooling argmax is the book's: a flat int64 array ordered
  ``(n, oy, ox, c)`` whose values are ``ky*pool_w + kx``.  cconv returns the same
  values in an ``(N, C, out_h, out_w)`` array; ``argmax_to_book`` and
  ``argmax_from_book`` convert between the two.

Nothing here depends on cconv.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "out_size",
    "im2col",
    "col2im",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "argmax_to_book",
    "argmax_from_book",
]


def _pair(v):
    if isinstance(v, tuple):
        return v
    return (v, v)


def out_size(size, k, stride, pad):
    """Output length of a window of ``k`` sliding over ``size`` (floor mode)."""
    return (size + 2 * pad - k) // stride + 1


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """The book's im2col: (N, C, H, W) -> (N*out_h*out_w, C*filter_h*filter_w)."""
    sh, sw = _pair(stride)
    ph, pw = _pair(pad)
    N, C, H, W = input_data.shape
    out_h = out_size(H, filter_h, sh, ph)
    out_w = out_size(W, filter_w, sw, pw)

    img = np.pad(input_data, [(0, 0), (0, 0), (ph, ph), (pw, pw)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w), dtype=input_data.dtype)

    for y in range(filter_h):
        y_max = y + sh * out_h
        for x in range(filter_w):
            x_max = x + sw * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:sh, x:x_max:sw]

    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The book's col2im (adjoint of im2col); returns a view of a padded image."""
    sh, sw = _pair(stride)
    ph, pw = _pair(pad)
    N, C, H, W = input_shape
    out_h = out_size(H, filter_h, sh, ph)
    out_w = out_size(W, filter_w, sw, pw)
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)

    img = np.zeros((N, C, H + 2 * ph + sh - 1, W + 2 * pw + sw - 1), dtype=col.dtype)
    for y in range(filter_h):
        y_max = y + sh * out_h
        for x in range(filter_w):
            x_max = x + sw * out_w
            img[:, :, y:y_max:sh, x:x_max:sw] += col[:, :, y, x, :, :]

    return img[:, :, ph:H + ph, pw:W + pw]


def max_pool2d(x, pool_h, pool_w, stride=1, pad=0):
    """The book's Pooling.forward.  Returns ``(out, argmax)``; argmax in book order.

    Note: like the book, padding is zero (not -inf); the benchmark uses pad=0.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(pad)
    N, C, H, W = x.shape
    out_h = out_size(H, pool_h, sh, ph)
    out_w = out_size(W, pool_w, sw, pw)

    col = im2col(x, pool_h, pool_w, stride, pad)
    col = col.reshape(-1, pool_h * pool_w)

    arg_max = np.argmax(col, axis=1)
    out = np.max(col, axis=1)
    out = out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)
    return out, arg_max


def max_pool2d_backward(dout, arg_max, input_shape, pool_h, pool_w, stride=1, pad=0):
    """The book's Pooling.backward: scatter dout into a dense dmax, then col2im."""
    dout = dout.transpose(0, 2, 3, 1)
    pool_size = pool_h * pool_w
    dmax = np.zeros((dout.size, pool_size), dtype=dout.dtype)
    dmax[np.arange(arg_max.size), arg_max.flatten()] = dout.flatten()
    dmax = dmax.reshape(dout.shape + (pool_size,))

    dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
    return col2im(dcol, input_shape, pool_h, pool_w, stride, pad)


def avg_pool2d(x, pool_h, pool_w, stride=1, pad=0):
    """Average pooling the book's way (im2col + mean), count_include_pad=True."""
    sh, sw = _pair(stride)
    ph, pw = _pair(pad)
    N, C, H, W = x.shape
    out_h = out_size(H, pool_h, sh, ph)
    out_w = out_size(W, pool_w, sw, pw)

    col = im2col(x, pool_h, pool_w, stride, pad)
    col = col.reshape(-1, pool_h * pool_w)
    out = np.mean(col, axis=1)
    return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)


def avg_pool2d_backward(dout, input_shape, pool_h, pool_w, stride=1, pad=0):
    """Backward of ``avg_pool2d``: spread dout/divisor over each window, col2im."""
    dout = dout.transpose(0, 2, 3, 1)
    pool_size = pool_h * pool_w
    dmean = np.empty((dout.size, pool_size), dtype=dout.dtype)
    dmean[...] = (dout.reshape(-1) / dout.dtype.type(pool_size))[:, None]
    dmean = dmean.reshape(dout.shape + (pool_size,))

    dcol = dmean.reshape(dmean.shape[0] * dmean.shape[1] * dmean.shape[2], -1)
    return col2im(dcol, input_shape, pool_h, pool_w, stride, pad)


def argmax_to_book(argmax_nchw):
    """cconv/NCHW argmax (N, C, oh, ow) -> the book's flat (n, oy, ox, c) order."""
    return np.ascontiguousarray(argmax_nchw.transpose(0, 2, 3, 1)).reshape(-1)


def argmax_from_book(arg_max, out_shape):
    """The book's flat argmax -> an (N, C, oh, ow) C-contiguous int64 array."""
    N, C, oh, ow = out_shape
    a = np.asarray(arg_max, dtype=np.int64).reshape(N, oh, ow, C)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

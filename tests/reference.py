"""Plain-NumPy references for the cconv kernels, importable by every test module.

Two independent families, so that a test failure can be pinned on the kernel
and not on the reference (``test_pooling.py`` checks that they agree):

* the book's vectorised algorithms (``im2col``, ``col2im``, and pooling built on
  the same padded windows), generalised to rectangular ``stride``/``pad``
  pairs and to any dtype the caller passes;
* ``*_loops`` brute-force versions with one explicit Python loop per index, for
  tiny cases only.

Layouts (as in the API contract):

* ``col`` has shape ``(N*out_h*out_w, C*filter_h*filter_w)``, rows ordered
  ``(n, oy, ox)`` and columns ``(c, ky, kx)``;
* ``argmax`` holds the row-major position ``ky*pool_w + kx`` inside the window;
* max pooling pads with ``-inf`` and never selects a padding position; NaN
  propagates and its argmax is the first NaN; ties go to the first position;
* average pooling pads with zeros and divides by ``pool_h*pool_w``
  (``count_include_pad=True``) or by the number of real elements.

The pooling references compute in float64: callers compare with the kernels
using the tolerance of the kernel's output dtype.
"""

import itertools
import math

import numpy as np

__all__ = [
    "as_pair",
    "output_size",
    "im2col",
    "col2im",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool2d_divisor",
    "im2col_loops",
    "col2im_loops",
    "max_pool2d_loops",
    "max_pool2d_backward_loops",
    "avg_pool2d_loops",
    "avg_pool2d_backward_loops",
]


def as_pair(value):
    """Return an int or an ``(h, w)`` pair as a tuple of two ints."""
    if np.ndim(value) == 0:
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def output_size(size, filter_size, stride, pad):
    """Output length along one axis: ``(size + 2*pad - filter) // stride + 1``."""
    return (size + 2 * pad - filter_size) // stride + 1


def _geometry(input_shape, filter_h, filter_w, stride, pad):
    """Return ``(N, C, H, W), (stride_h, stride_w), (pad_h, pad_w), (out_h, out_w)``."""
    n, c, h, w = (int(s) for s in input_shape)
    (sh, sw), (ph, pw) = as_pair(stride), as_pair(pad)
    out_hw = (output_size(h, filter_h, sh, ph), output_size(w, filter_w, sw, pw))
    return (n, c, h, w), (sh, sw), (ph, pw), out_hw


# --------------------------------------------------------------------------
# The book's algorithms (common/util.py), vectorised
# --------------------------------------------------------------------------


def _windows(x, filter_h, filter_w, stride, pad, pad_value):
    """Padded windows of ``x`` as a 6-D array ``(N, C, filter_h, filter_w, out_h, out_w)``.

    This is the body of the book's ``im2col``: ``np.pad`` then one strided
    slice per kernel offset.
    """
    x = np.asarray(x)
    _, (sh, sw), (ph, pw), (oh, ow) = _geometry(x.shape, filter_h, filter_w, stride, pad)
    img = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], constant_values=pad_value)
    col = np.empty(x.shape[:2] + (filter_h, filter_w, oh, ow), dtype=img.dtype)
    for ky in range(filter_h):
        for kx in range(filter_w):
            col[:, :, ky, kx] = img[:, :, ky : ky + sh * oh : sh, kx : kx + sw * ow : sw]
    return col


def im2col(x, filter_h, filter_w, stride=1, pad=0, pad_value=0):
    """The book's ``im2col``: ``(N, C, H, W)`` -> ``(N*out_h*out_w, C*filter_h*filter_w)``.

    Keeps the dtype of ``x`` (the book always returns float64).
    """
    n, c = np.shape(x)[:2]
    col = _windows(x, filter_h, filter_w, stride, pad, pad_value)
    oh, ow = col.shape[4:]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * filter_h * filter_w)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """The book's ``col2im``: the adjoint of ``im2col`` (overlapping windows sum).

    Keeps the dtype of ``col``.
    """
    col = np.asarray(col)
    (n, c, h, w), (sh, sw), (ph, pw), (oh, ow) = _geometry(
        input_shape, filter_h, filter_w, stride, pad
    )
    col = col.reshape(n, oh, ow, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * ph + sh - 1, w + 2 * pw + sw - 1), dtype=col.dtype)
    for ky in range(filter_h):
        for kx in range(filter_w):
            img[:, :, ky : ky + sh * oh : sh, kx : kx + sw * ow : sw] += col[:, :, ky, kx]
    return np.ascontiguousarray(img[:, :, ph : h + ph, pw : w + pw])


# --------------------------------------------------------------------------
# Pooling on the same windows
# --------------------------------------------------------------------------


def _pool_windows(x, pool_h, pool_w, stride, pad, pad_value):
    """Windows as ``(N, C, out_h, out_w, pool_h*pool_w)``, last axis in (ky, kx) order."""
    col = _windows(x, pool_h, pool_w, stride, pad, pad_value)
    n, c, _, _, oh, ow = col.shape
    return col.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, oh, ow, pool_h * pool_w)


def _is_real(input_hw, pool_h, pool_w, stride, pad):
    """Boolean ``(out_h, out_w, pool_h*pool_w)``: True where the window sees a real element."""
    real = np.ones((1, 1) + tuple(input_hw), dtype=bool)
    return _pool_windows(real, pool_h, pool_w, stride, pad, False)[0, 0]


def max_pool2d(x, pool_h, pool_w, stride=1, pad=0):
    """Max pooling with ``-inf`` padding; returns ``(out, argmax)`` in float64 / int64.

    Padding positions are masked out of the argmax, so a window whose real
    elements are all ``-inf`` selects its first real element; NaN wins and
    the first NaN is selected; ties go to the first position.
    """
    x = np.asarray(x, dtype=np.float64)
    vals = _pool_windows(x, pool_h, pool_w, stride, pad, -np.inf)
    real = _is_real(x.shape[2:], pool_h, pool_w, stride, pad)
    out = np.where(real, vals, -np.inf).max(axis=-1)
    target = out[..., np.newaxis]
    is_best = real & np.where(np.isnan(target), np.isnan(vals), vals == target)
    return out, is_best.argmax(axis=-1).astype(np.int64)


def avg_pool2d_divisor(input_hw, pool_h, pool_w, stride=1, pad=0, count_include_pad=True):
    """Divisor of every output position, shape ``(out_h, out_w)``, float64."""
    real = _is_real(input_hw, pool_h, pool_w, stride, pad)
    if count_include_pad:
        return np.full(real.shape[:2], float(pool_h * pool_w))
    return real.sum(axis=-1).astype(np.float64)


def avg_pool2d(x, pool_h, pool_w, stride=1, pad=0, count_include_pad=True):
    """Average pooling with zero padding, float64."""
    x = np.asarray(x, dtype=np.float64)
    sums = _pool_windows(x, pool_h, pool_w, stride, pad, 0.0).sum(axis=-1)
    return sums / avg_pool2d_divisor(x.shape[2:], pool_h, pool_w, stride, pad, count_include_pad)


def _pool_grad_to_image(dwin, input_shape, pool_h, pool_w, stride, pad):
    """Scatter window gradients ``(N, C, out_h, out_w, pool_h*pool_w)`` back with ``col2im``."""
    n, c, oh, ow, _ = dwin.shape
    dcol = dwin.transpose(0, 2, 3, 1, 4).reshape(n * oh * ow, c * pool_h * pool_w)
    return col2im(dcol, input_shape, pool_h, pool_w, stride, pad)


def max_pool2d_backward(dout, argmax, input_shape, pool_h, pool_w, stride=1, pad=0):
    """The book's ``Pooling.backward``: ``dout`` goes to the argmax position, float64.

    An argmax pointing into padding contributes nothing (``col2im`` crops it).
    """
    dout = np.asarray(dout, dtype=np.float64)
    dwin = np.zeros(dout.shape + (pool_h * pool_w,))
    np.put_along_axis(dwin, np.asarray(argmax)[..., np.newaxis], dout[..., np.newaxis], axis=-1)
    return _pool_grad_to_image(dwin, input_shape, pool_h, pool_w, stride, pad)


def avg_pool2d_backward(dout, input_shape, pool_h, pool_w, stride=1, pad=0, count_include_pad=True):
    """Average pooling backward: ``dout / divisor`` spread over each window, float64."""
    dout = np.asarray(dout, dtype=np.float64)
    divisor = avg_pool2d_divisor(input_shape[2:], pool_h, pool_w, stride, pad, count_include_pad)
    share = (dout / divisor)[..., np.newaxis]
    dwin = np.broadcast_to(share, dout.shape + (pool_h * pool_w,))
    return _pool_grad_to_image(dwin, input_shape, pool_h, pool_w, stride, pad)


# --------------------------------------------------------------------------
# Brute force: one loop per index (tiny inputs only)
# --------------------------------------------------------------------------


def _window_positions(input_shape, filter_h, filter_w, stride, pad):
    """Yield ``(n, c, oy, ox, ky, kx, iy, ix, inside)`` for every window element."""
    (n, c, h, w), (sh, sw), (ph, pw), (oh, ow) = _geometry(
        input_shape, filter_h, filter_w, stride, pad
    )
    for b, ch, oy, ox, ky, kx in itertools.product(
        range(n), range(c), range(oh), range(ow), range(filter_h), range(filter_w)
    ):
        iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
        yield b, ch, oy, ox, ky, kx, iy, ix, (0 <= iy < h and 0 <= ix < w)


def _pooled_shape(input_shape, pool_h, pool_w, stride, pad):
    (n, c, _, _), _, _, (oh, ow) = _geometry(input_shape, pool_h, pool_w, stride, pad)
    return n, c, oh, ow


def im2col_loops(x, filter_h, filter_w, stride=1, pad=0):
    """``im2col`` by explicit loops, in float64."""
    x = np.asarray(x, dtype=np.float64)
    n, c, oh, ow = _pooled_shape(x.shape, filter_h, filter_w, stride, pad)
    col = np.zeros((n, oh, ow, c, filter_h, filter_w))
    for b, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        x.shape, filter_h, filter_w, stride, pad
    ):
        if inside:
            col[b, oy, ox, ch, ky, kx] = x[b, ch, iy, ix]
    return col.reshape(n * oh * ow, c * filter_h * filter_w)


def col2im_loops(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """``col2im`` by explicit loops (scatter-add), in float64."""
    n, c, oh, ow = _pooled_shape(input_shape, filter_h, filter_w, stride, pad)
    col = np.asarray(col, dtype=np.float64).reshape(n, oh, ow, c, filter_h, filter_w)
    img = np.zeros(tuple(input_shape))
    for b, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        input_shape, filter_h, filter_w, stride, pad
    ):
        if inside:
            img[b, ch, iy, ix] += col[b, oy, ox, ch, ky, kx]
    return img


def max_pool2d_loops(x, pool_h, pool_w, stride=1, pad=0):
    """Max pooling by explicit loops, with the contract's NaN / tie / padding rules."""
    x = np.asarray(x, dtype=np.float64)
    shape = _pooled_shape(x.shape, pool_h, pool_w, stride, pad)
    out = np.full(shape, np.nan)
    argmax = np.full(shape, -1, dtype=np.int64)
    for b, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        x.shape, pool_h, pool_w, stride, pad
    ):
        if not inside:
            continue
        value, best = x[b, ch, iy, ix], out[b, ch, oy, ox]
        first = argmax[b, ch, oy, ox] < 0
        if first or (not math.isnan(best) and (math.isnan(value) or value > best)):
            out[b, ch, oy, ox] = value
            argmax[b, ch, oy, ox] = ky * pool_w + kx
    return out, argmax


def max_pool2d_backward_loops(dout, argmax, input_shape, pool_h, pool_w, stride=1, pad=0):
    """Max pooling backward by explicit loops, in float64."""
    dx = np.zeros(tuple(input_shape))
    for b, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        input_shape, pool_h, pool_w, stride, pad
    ):
        if inside and argmax[b, ch, oy, ox] == ky * pool_w + kx:
            dx[b, ch, iy, ix] += dout[b, ch, oy, ox]
    return dx


def _loop_divisors(input_shape, pool_h, pool_w, stride, pad, count_include_pad):
    """Divisor per output position ``(out_h, out_w)`` counted by loops."""
    _, _, oh, ow = _pooled_shape(input_shape, pool_h, pool_w, stride, pad)
    if count_include_pad:
        return np.full((oh, ow), float(pool_h * pool_w))
    counts = np.zeros((oh, ow))
    one_image = (1, 1) + tuple(input_shape[2:])
    for _, _, oy, ox, _, _, _, _, inside in _window_positions(
        one_image, pool_h, pool_w, stride, pad
    ):
        counts[oy, ox] += inside
    return counts


def avg_pool2d_loops(x, pool_h, pool_w, stride=1, pad=0, count_include_pad=True):
    """Average pooling by explicit loops, in float64."""
    x = np.asarray(x, dtype=np.float64)
    sums = np.zeros(_pooled_shape(x.shape, pool_h, pool_w, stride, pad))
    for b, ch, oy, ox, _, _, iy, ix, inside in _window_positions(
        x.shape, pool_h, pool_w, stride, pad
    ):
        if inside:
            sums[b, ch, oy, ox] += x[b, ch, iy, ix]
    return sums / _loop_divisors(x.shape, pool_h, pool_w, stride, pad, count_include_pad)


def avg_pool2d_backward_loops(
    dout, input_shape, pool_h, pool_w, stride=1, pad=0, count_include_pad=True
):
    """Average pooling backward by explicit loops, in float64."""
    share = np.asarray(dout, dtype=np.float64) / _loop_divisors(
        input_shape, pool_h, pool_w, stride, pad, count_include_pad
    )
    dx = np.zeros(tuple(input_shape))
    for b, ch, oy, ox, _, _, iy, ix, inside in _window_positions(
        input_shape, pool_h, pool_w, stride, pad
    ):
        if inside:
            dx[b, ch, iy, ix] += share[b, ch, oy, ox]
    return dx

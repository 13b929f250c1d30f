"""Plain-NumPy references of the book's algorithms, for the tests and the benchmarks.

The NumPy reference of cconv's kernels and of the book's layers that are
built on them, shared by the tests and the benchmarks. Nothing here depends on cconv, and it is not installed with
it: it lives with the tests, which import it from this folder (``conftest.py``
puts the folder on ``sys.path``, also where a copy of ``tests/`` runs against
an installed wheel); the benchmarks import it from the checkout's ``tests/``
(``benchmarks/_reference.py``).

Three families:

* the book's vectorised algorithms (``im2col``, ``col2im``, pooling built on
  the same padded windows, and the convolution ``conv2d`` /
  ``conv2d_backward`` of the book's ``Convolution`` layer built on them),
  generalised to rectangular ``stride``/``pad`` pairs, to ``dilation`` (the
  convolution kernels only) and to any dtype the caller passes;
* ``book_*``: the book's ``Convolution`` and ``Pooling`` layers as the book
  computes them (``common/layers.py``, step by step), in the dtype they are
  given: max pooling pads with ``pad_value`` (the book's 0) and returns the
  book's argmax (see :func:`argmax_from_book`). The references of
  ``cconv.layers`` and the baselines the benchmarks time;
* ``*_loops`` brute-force versions with one explicit Python loop per index, for
  tiny cases only, so that a test failure can be pinned on the kernel and not
  on the reference (``test_pooling.py`` checks that the families agree).

Layouts (as in the API contract):

* ``col`` has shape ``(N*out_h*out_w, C*filter_h*filter_w)``, rows ordered
  ``(n, oy, ox)`` and columns ``(c, ky, kx)``; tap ``(ky, kx)`` of the window
  at ``(oy, ox)`` reads pixel ``(oy*stride_h - pad_h + ky*dilation_h,
  ox*stride_w - pad_w + kx*dilation_w)`` (zero outside the image);
* ``conv2d`` is a cross-correlation (``torch.nn.functional.conv2d``): ``W`` is
  ``(FN, C, FH, FW)``, the result ``(N, FN, out_h, out_w)``;
* ``argmax`` holds the row-major position ``ky*pool_w + kx`` inside the window,
  in an ``(N, C, out_h, out_w)`` array (the book's: the same values, flat, in
  ``(n, oy, ox, c)`` order);
* max pooling pads with ``-inf`` and never selects a padding position; NaN
  propagates and its argmax is the first NaN; ties go to the first position;
* average pooling pads with zeros and divides by ``pool_h*pool_w``
  (``count_include_pad=True``) or by the number of real elements.

The pooling and convolution references other than ``book_*`` compute in
float64: callers compare with the kernels using the tolerance of the kernel's
output dtype.
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
    "conv2d",
    "conv2d_backward",
    "book_conv2d",
    "book_conv2d_backward",
    "book_max_pool2d",
    "book_max_pool2d_backward",
    "book_avg_pool2d",
    "book_avg_pool2d_backward",
    "argmax_to_book",
    "argmax_from_book",
    "im2col_loops",
    "col2im_loops",
    "conv2d_loops",
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


def output_size(size, filter_size, stride, pad, dilation=1):
    """Output length along one axis: ``(size + 2*pad - dilation*(filter - 1) - 1) // stride + 1``.

    With ``dilation`` 1, the book's ``(size + 2*pad - filter) // stride + 1``.
    """
    return (size + 2 * pad - dilation * (filter_size - 1) - 1) // stride + 1


def _geometry(input_shape, filter_h, filter_w, stride, pad, dilation=1):
    """Return ``(N, C, H, W), (stride_h, stride_w), (pad_h, pad_w), (out_h, out_w)``."""
    n, c, h, w = (int(s) for s in input_shape)
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(pad), as_pair(dilation)
    out_hw = (output_size(h, filter_h, sh, ph, dh), output_size(w, filter_w, sw, pw, dw))
    return (n, c, h, w), (sh, sw), (ph, pw), out_hw


# --------------------------------------------------------------------------
# The book's algorithms (common/util.py), vectorised
# --------------------------------------------------------------------------


def _windows(x, filter_h, filter_w, stride, pad, pad_value, dilation=1):
    """Padded windows of ``x`` as a 6-D array ``(N, C, filter_h, filter_w, out_h, out_w)``.

    This is the body of the book's ``im2col``: ``np.pad``, a 6-D ``np.zeros``
    (as the book's, which the benchmarks time), then one strided slice per
    kernel offset (offset ``ky*dilation_h``, ``kx*dilation_w``).
    """
    x = np.asarray(x)
    _, (sh, sw), (ph, pw), (oh, ow) = _geometry(x.shape, filter_h, filter_w, stride, pad, dilation)
    dh, dw = as_pair(dilation)
    img = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], constant_values=pad_value)
    col = np.zeros(x.shape[:2] + (filter_h, filter_w, oh, ow), dtype=img.dtype)
    for ky in range(filter_h):
        for kx in range(filter_w):
            y0, x0 = ky * dh, kx * dw
            col[:, :, ky, kx] = img[:, :, y0 : y0 + sh * oh : sh, x0 : x0 + sw * ow : sw]
    return col


def im2col(x, filter_h, filter_w, stride=1, pad=0, pad_value=0, *, dilation=1):
    """The book's ``im2col``: ``(N, C, H, W)`` -> ``(N*out_h*out_w, C*filter_h*filter_w)``.

    Keeps the dtype of ``x`` (the book always returns float64). ``dilation``
    (keyword only: the sixth positional argument is ``pad_value``) spaces the
    filter taps as ``cconv.im2col``'s does.
    """
    n, c = np.shape(x)[:2]
    col = _windows(x, filter_h, filter_w, stride, pad, pad_value, dilation)
    oh, ow = col.shape[4:]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * filter_h * filter_w)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0, dilation=1, *, copy=True):
    """The book's ``col2im``: the adjoint of ``im2col`` (overlapping windows sum).

    Keeps the dtype of ``col``. Returns a C-contiguous ``(N, C, H, W)`` array,
    or with ``copy=False`` the view into the padded image that the book's
    ``col2im`` returns (what the ``book_*`` backward passes return).
    """
    col = np.asarray(col)
    (n, c, h, w), (sh, sw), (ph, pw), (oh, ow) = _geometry(
        input_shape, filter_h, filter_w, stride, pad, dilation
    )
    dh, dw = as_pair(dilation)
    col = col.reshape(n, oh, ow, c, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    # The book allocates stride - 1 more rows and columns; they are not needed
    # (the last tap read is at most h + 2*ph - 1, so each slice still has out_h
    # entries) and would make a huge stride allocate a huge image.
    img = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for ky in range(filter_h):
        for kx in range(filter_w):
            y0, x0 = ky * dh, kx * dw
            img[:, :, y0 : y0 + sh * oh : sh, x0 : x0 + sw * ow : sw] += col[:, :, ky, kx]
    img = img[:, :, ph : h + ph, pw : w + pw]
    return np.ascontiguousarray(img) if copy else img


# --------------------------------------------------------------------------
# Convolution: the book's Convolution layer on the im2col above
# --------------------------------------------------------------------------


def _conv_shapes(x_shape, w_shape, stride, pad, dilation):
    """``(N, C, H, W), (FN, FH, FW), (out_h, out_w)``; W's channels must be x's."""
    FN, C, FH, FW = (int(s) for s in w_shape)
    if int(x_shape[1]) != C:
        raise ValueError(f"W has {C} channels, x has {x_shape[1]}")
    image, _, _, out_hw = _geometry(x_shape, FH, FW, stride, pad, dilation)
    return image, (FN, FH, FW), out_hw


def conv2d(x, W, b=None, stride=1, pad=0, dilation=1):
    """The book's ``Convolution.forward`` (im2col, then a matrix product), in float64.

    ``out[n, f, oy, ox] = b[f] + sum over c, ky, kx of W[f, c, ky, kx] *
    x[n, c, oy*stride_h - pad_h + ky*dilation_h, ox*stride_w - pad_w + kx*dilation_w]``.
    Returns ``(N, FN, out_h, out_w)``.
    """
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    (n, _, _, _), (FN, FH, FW), (oh, ow) = _conv_shapes(x.shape, W.shape, stride, pad, dilation)
    col = im2col(x, FH, FW, stride, pad, dilation=dilation)
    out = col @ W.reshape(FN, col.shape[1]).T
    if b is not None:
        out = out + np.asarray(b, dtype=np.float64)
    return np.ascontiguousarray(out.reshape(n, oh, ow, FN).transpose(0, 3, 1, 2))


def conv2d_backward(dout, x, W, stride=1, pad=0, dilation=1):
    """The book's ``Convolution.backward``: ``(dx, dW, db)`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    _, (FN, FH, FW), _ = _conv_shapes(x.shape, W.shape, stride, pad, dilation)
    col = im2col(x, FH, FW, stride, pad, dilation=dilation)
    dout = np.asarray(dout, dtype=np.float64).transpose(0, 2, 3, 1).reshape(col.shape[0], FN)
    db = dout.sum(axis=0)
    dW = (col.T @ dout).T.reshape(W.shape)
    dcol = dout @ W.reshape(FN, col.shape[1])
    dx = col2im(dcol, x.shape, FH, FW, stride, pad, dilation)
    return dx, np.ascontiguousarray(dW), db


# --------------------------------------------------------------------------
# The book's Convolution and Pooling layers, in the dtype given
# --------------------------------------------------------------------------


def book_conv2d(x, W, b, stride=1, pad=0):
    """The book's ``Convolution.forward``: ``(N, FN, out_h, out_w)``, a transposed view.

    ``np.dot`` of the im2col matrix and ``W`` as a ``(C*FH*FW, FN)`` matrix,
    plus ``b``, in the dtype NumPy gives those.
    """
    FN, _, FH, FW = W.shape
    _, _, _, (out_h, out_w) = _geometry(x.shape, FH, FW, stride, pad)
    col = im2col(x, FH, FW, stride, pad)
    col_W = W.reshape(FN, -1).T
    out = np.dot(col, col_W) + b
    return out.reshape(x.shape[0], out_h, out_w, -1).transpose(0, 3, 1, 2)


def book_conv2d_backward(dout, x, W, stride=1, pad=0):
    """The book's ``Convolution.backward``: ``(dx, dW, db)``, dx C-contiguous."""
    FN, C, FH, FW = W.shape
    col = im2col(x, FH, FW, stride, pad)
    col_W = W.reshape(FN, -1).T
    dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
    db = np.sum(dout, axis=0)
    dW = np.dot(col.T, dout).transpose(1, 0).reshape(FN, C, FH, FW)
    dcol = np.dot(dout, col_W.T)
    return col2im(dcol, x.shape, FH, FW, stride, pad), dW, db


def book_max_pool2d(x, pool_h, pool_w, stride=1, pad=0, pad_value=0):
    """The book's ``Pooling.forward``: ``(out, arg_max)``, ``out`` a transposed view.

    ``out`` has the dtype of ``x``; ``arg_max`` is flat, in ``(n, oy, ox, c)``
    order (:func:`argmax_from_book` gives cconv's layout). The book pads with
    ``pad_value=0``, so a window over negative values and padding gives 0;
    cconv's documented padding is ``-inf``.
    """
    n, c = x.shape[:2]
    _, _, _, (out_h, out_w) = _geometry(x.shape, pool_h, pool_w, stride, pad)
    col = im2col(x, pool_h, pool_w, stride, pad, pad_value=pad_value)
    col = col.reshape(-1, pool_h * pool_w)
    arg_max = np.argmax(col, axis=1)
    out = np.max(col, axis=1)
    return out.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2), arg_max


def book_max_pool2d_backward(dout, arg_max, input_shape, pool_h, pool_w, stride=1, pad=0):
    """The book's ``Pooling.backward``: ``dout`` into a dense ``dmax`` (dtype of ``dout``), then col2im.

    ``arg_max`` is the book's (flat, ``(n, oy, ox, c)`` order). Returns the
    view into the padded image that the book's ``col2im`` returns.
    """
    dout = dout.transpose(0, 2, 3, 1)
    pool_size = pool_h * pool_w
    dmax = np.zeros((dout.size, pool_size), dtype=dout.dtype)
    dmax[np.arange(arg_max.size), arg_max.flatten()] = dout.flatten()
    dmax = dmax.reshape(dout.shape + (pool_size,))
    dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
    return col2im(dcol, input_shape, pool_h, pool_w, stride, pad, copy=False)


def book_avg_pool2d(x, pool_h, pool_w, stride=1, pad=0):
    """Average pooling in the book's style: im2col, the mean of each window (padding zeros count).

    In the dtype of ``x``; a transposed view.
    """
    n, c = x.shape[:2]
    _, _, _, (out_h, out_w) = _geometry(x.shape, pool_h, pool_w, stride, pad)
    col = im2col(x, pool_h, pool_w, stride, pad).reshape(-1, pool_h * pool_w)
    out = np.mean(col, axis=1)
    return out.reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)


def book_avg_pool2d_backward(dout, input_shape, pool_h, pool_w, stride=1, pad=0):
    """Backward of :func:`book_avg_pool2d`: ``dout / (pool_h*pool_w)`` over each window, col2im.

    In the dtype of ``dout``; returns the view into the padded image that the
    book's ``col2im`` returns.
    """
    dout = dout.transpose(0, 2, 3, 1)
    pool_size = pool_h * pool_w
    dmean = np.empty((dout.size, pool_size), dtype=dout.dtype)
    dmean[...] = (dout.reshape(-1) / dout.dtype.type(pool_size))[:, None]
    dmean = dmean.reshape(dout.shape + (pool_size,))
    dcol = dmean.reshape(dmean.shape[0] * dmean.shape[1] * dmean.shape[2], -1)
    return col2im(dcol, input_shape, pool_h, pool_w, stride, pad, copy=False)


def argmax_to_book(argmax):
    """cconv's argmax ``(N, C, out_h, out_w)`` -> the book's: flat, in ``(n, oy, ox, c)`` order."""
    return np.ascontiguousarray(argmax.transpose(0, 2, 3, 1)).reshape(-1)


def argmax_from_book(arg_max, out_shape):
    """The book's flat argmax -> cconv's layout: a C-contiguous int64 ``out_shape`` ``(N, C, out_h, out_w)``."""
    n, c, oh, ow = out_shape
    a = np.asarray(arg_max, dtype=np.int64).reshape(n, oh, ow, c)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


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


def _window_positions(input_shape, filter_h, filter_w, stride, pad, dilation=1):
    """Yield ``(n, c, oy, ox, ky, kx, iy, ix, inside)`` for every window element."""
    (n, c, h, w), (sh, sw), (ph, pw), (oh, ow) = _geometry(
        input_shape, filter_h, filter_w, stride, pad, dilation
    )
    dh, dw = as_pair(dilation)
    for b, ch, oy, ox, ky, kx in itertools.product(
        range(n), range(c), range(oh), range(ow), range(filter_h), range(filter_w)
    ):
        iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
        yield b, ch, oy, ox, ky, kx, iy, ix, (0 <= iy < h and 0 <= ix < w)


def _pooled_shape(input_shape, pool_h, pool_w, stride, pad, dilation=1):
    (n, c, _, _), _, _, (oh, ow) = _geometry(input_shape, pool_h, pool_w, stride, pad, dilation)
    return n, c, oh, ow


def im2col_loops(x, filter_h, filter_w, stride=1, pad=0, dilation=1):
    """``im2col`` by explicit loops, in float64."""
    x = np.asarray(x, dtype=np.float64)
    n, c, oh, ow = _pooled_shape(x.shape, filter_h, filter_w, stride, pad, dilation)
    col = np.zeros((n, oh, ow, c, filter_h, filter_w))
    for b, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        x.shape, filter_h, filter_w, stride, pad, dilation
    ):
        if inside:
            col[b, oy, ox, ch, ky, kx] = x[b, ch, iy, ix]
    return col.reshape(n * oh * ow, c * filter_h * filter_w)


def col2im_loops(col, input_shape, filter_h, filter_w, stride=1, pad=0, dilation=1):
    """``col2im`` by explicit loops (scatter-add), in float64."""
    n, c, oh, ow = _pooled_shape(input_shape, filter_h, filter_w, stride, pad, dilation)
    col = np.asarray(col, dtype=np.float64).reshape(n, oh, ow, c, filter_h, filter_w)
    img = np.zeros(tuple(input_shape))
    for b, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        input_shape, filter_h, filter_w, stride, pad, dilation
    ):
        if inside:
            img[b, ch, iy, ix] += col[b, oy, ox, ch, ky, kx]
    return img


def conv2d_loops(x, W, b=None, stride=1, pad=0, dilation=1):
    """``conv2d`` by explicit loops (one multiply-add per window element), in float64."""
    x = np.asarray(x, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    (n, _, _, _), (FN, FH, FW), (oh, ow) = _conv_shapes(x.shape, W.shape, stride, pad, dilation)
    out = np.zeros((n, FN, oh, ow))
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape(FN, 1, 1)
    for bn, ch, oy, ox, ky, kx, iy, ix, inside in _window_positions(
        x.shape, FH, FW, stride, pad, dilation
    ):
        if inside:
            out[bn, :, oy, ox] += W[:, ch, ky, kx] * x[bn, ch, iy, ix]
    return out


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

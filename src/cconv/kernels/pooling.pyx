"""Max and average pooling over (N, C, H, W) batches, forward and backward.

Every core works plane by plane: one (n, c) plane is one task of a static
``prange``, so no element is written by two threads and the results do not
depend on the thread count. Windows are clipped to the image, which gives the
padding semantics without reading outside it: max pooling pads with -inf (a
padded position is never chosen), average pooling pads with 0.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset

from cconv.kernels._common cimport clamp_threads, clip_high, clip_low, output_size, valid_range
from cconv.kernels._openmp cimport effective_num_threads

import numpy as np

from cconv._validation import (
    as_float_array, as_pair, check_argmax, check_argmax_values, check_bool, check_out,
    check_pool_padding, check_shape, conv_output_size, input_shape_tuple, window_sizes,
)


cdef struct Geometry:
    # Sizes of one plane and of the pooling window, all in elements.
    Py_ssize_t H, W, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w


cdef struct Window:
    # Top-left input position of a window (may be negative, in the padding)
    # and the in-image offsets ky0 <= ky < ky1, kx0 <= kx < kx1.
    Py_ssize_t iy0, ix0, ky0, ky1, kx0, kx1


cdef inline Geometry _geometry(Py_ssize_t H, Py_ssize_t W, Py_ssize_t pool_h, Py_ssize_t pool_w,
                               Py_ssize_t stride_h, Py_ssize_t stride_w,
                               Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    cdef Geometry g
    g.H, g.W = H, W
    g.pool_h, g.pool_w = pool_h, pool_w
    g.stride_h, g.stride_w = stride_h, stride_w
    g.pad_h, g.pad_w = pad_h, pad_w
    g.out_h = output_size(H, pool_h, stride_h, pad_h, 1)
    g.out_w = output_size(W, pool_w, stride_w, pad_w, 1)
    return g


cdef inline Window _window(const Geometry* g, Py_ssize_t oy, Py_ssize_t ox) noexcept nogil:
    cdef Window w
    w.iy0 = oy * g.stride_h - g.pad_h
    w.ix0 = ox * g.stride_w - g.pad_w
    w.ky0 = clip_low(w.iy0)
    w.ky1 = clip_high(w.iy0, g.pool_h, g.H)
    w.kx0 = clip_low(w.ix0)
    w.kx1 = clip_high(w.ix0, g.pool_w, g.W)
    return w


cdef inline double _divisor(const Geometry* g, const Window* w, bint count_include_pad) noexcept nogil:
    if count_include_pad:
        return <double>g.pool_h * g.pool_w
    return <double>(w.ky1 - w.ky0) * (w.kx1 - w.kx0)


cdef inline void _offsets_reaching_image(const Geometry* g, Py_ssize_t* kx_lo,
                                         Py_ssize_t* kx_hi) noexcept nogil:
    """Window columns kx in [kx_lo, kx_hi) that fall inside the image for some window.

    Loops over window offsets stay bounded by the image, however wide the
    window and its padding.
    """
    kx_lo[0] = max(0, g.pad_w - (g.out_w - 1) * g.stride_w)
    kx_hi[0] = min(g.pool_w, g.W + g.pad_w)


# ---------------------------------------------------------------- plane workers
# ``src`` planes are read through byte strides (s_h, s_w); ``dst`` planes are
# contiguous (H, W) or (out_h, out_w) blocks.

cdef inline void _max_plane(const Geometry* g, const char* src, Py_ssize_t s_h, Py_ssize_t s_w,
                            floating* out, int64_t* argmax) noexcept nogil:
    """Max pooling of one plane.

    Each window is scanned in row-major order over its in-image pixels only
    (padding is -inf and never chosen). A pixel replaces the running maximum
    when it is greater, or when it is NaN and the maximum is not: the first
    maximum and the first NaN win. The updates are selects without branches
    (max and conditional moves), so random data costs no mispredictions.
    """
    cdef Py_ssize_t oy, ox, ky, kx, pool_w = g.pool_w
    cdef Window w
    cdef floating v, best
    cdef int64_t k, best_k, nan_k
    cdef const char* row
    for oy in range(g.out_h):
        for ox in range(g.out_w):
            w = _window(g, oy, ox)
            row = src + (w.iy0 + w.ky0) * s_h + (w.ix0 + w.kx0) * s_w
            best = (<const floating*>row)[0]
            best_k = w.ky0 * pool_w + w.kx0
            nan_k = best_k if best != best else -1
            for ky in range(w.ky0, w.ky1):
                for kx in range(w.kx0, w.kx1):
                    v = (<const floating*>(row + (ky - w.ky0) * s_h + (kx - w.kx0) * s_w))[0]
                    k = ky * pool_w + kx
                    # Selects the compiler turns into max/cmov instructions.
                    best_k = k if v > best else best_k
                    best = v if v > best else best
                    nan_k = k if (v != v) & (nan_k < 0) else nan_k
            if nan_k >= 0:
                best_k = nan_k
                best = (<const floating*>(src + (w.iy0 + nan_k // pool_w) * s_h
                                          + (w.ix0 + nan_k % pool_w) * s_w))[0]
            out[oy * g.out_w + ox] = best
            argmax[oy * g.out_w + ox] = best_k


cdef inline bint _outside_window(int64_t k, int64_t window) noexcept nogil:
    """True when ``k`` is not a window position, in [0, window) (one unsigned compare)."""
    return <uint64_t>k >= <uint64_t>window


cdef inline Py_ssize_t _max_backward_plane(const Geometry* g, const char* dout, Py_ssize_t s_h,
                                           Py_ssize_t s_w, const char* argmax, Py_ssize_t a_h,
                                           Py_ssize_t a_w, floating* dx) noexcept nogil:
    """Add each dout value of one plane to the pixel its argmax names; return the argmax
    entries that are not window positions.

    Those entries route nothing, nor do positions that fall in the padding.
    """
    cdef Py_ssize_t oy, ox, iy, ix, ky, kx
    cdef Py_ssize_t H = g.H, W = g.W, pool_w = g.pool_w
    cdef Py_ssize_t stride_h = g.stride_h, stride_w = g.stride_w, pad_h = g.pad_h, pad_w = g.pad_w
    cdef int64_t k, window = g.pool_h * g.pool_w
    cdef Py_ssize_t outside = 0
    # Window position -> (ky, kx) by table for the usual small windows, so
    # the loop has no division.
    cdef Py_ssize_t ky_of[64]
    cdef Py_ssize_t kx_of[64]
    cdef bint small = window <= 64
    if small:
        for k in range(window):
            ky_of[k] = k // pool_w
            kx_of[k] = k - ky_of[k] * pool_w
    memset(dx, 0, H * W * sizeof(floating))
    for oy in range(g.out_h):
        for ox in range(g.out_w):
            k = (<const int64_t*>(argmax + oy * a_h + ox * a_w))[0]
            if _outside_window(k, window):
                outside += 1
                continue
            if small:
                ky = ky_of[k]
                kx = kx_of[k]
            else:
                ky = k // pool_w
                kx = k - ky * pool_w
            iy = oy * stride_h - pad_h + ky
            ix = ox * stride_w - pad_w + kx
            if <size_t>iy < <size_t>H and <size_t>ix < <size_t>W:
                dx[iy * W + ix] += (<const floating*>(dout + oy * s_h + ox * s_w))[0]
    return outside


cdef inline void _avg_plane(const Geometry* g, const char* src, Py_ssize_t s_h, Py_ssize_t s_w,
                            bint count_include_pad, floating* out) noexcept nogil:
    """Average pooling of one plane, a whole output row at a time.

    Window sums are accumulated in the output row, offset by offset in
    row-major order, then divided by each window's divisor.
    """
    cdef Py_ssize_t oy, ox, ky, kx, iy, iy0, lo, hi
    cdef Py_ssize_t step = g.stride_w * s_w
    cdef Py_ssize_t kx_lo, kx_hi
    _offsets_reaching_image(g, &kx_lo, &kx_hi)
    cdef Window w
    cdef floating* out_row
    cdef const char* p
    for oy in range(g.out_h):
        out_row = out + oy * g.out_w
        for ox in range(g.out_w):
            out_row[ox] = 0
        iy0 = oy * g.stride_h - g.pad_h
        for ky in range(clip_low(iy0), clip_high(iy0, g.pool_h, g.H)):
            iy = iy0 + ky
            for kx in range(kx_lo, kx_hi):
                valid_range(kx - g.pad_w, g.stride_w, g.W, g.out_w, &lo, &hi)
                p = src + iy * s_h + (lo * g.stride_w + kx - g.pad_w) * s_w
                for ox in range(lo, hi):
                    out_row[ox] += (<const floating*>p)[0]
                    p += step
        for ox in range(g.out_w):
            w = _window(g, oy, ox)
            out_row[ox] = <floating>(out_row[ox] / _divisor(g, &w, count_include_pad))


cdef enum:
    # Output positions whose gradient shares are computed at a time (on the stack).
    SHARE_CHUNK = 256


cdef inline void _avg_backward_plane(const Geometry* g, const char* dout, Py_ssize_t s_h,
                                     Py_ssize_t s_w, bint count_include_pad,
                                     floating* dx) noexcept nogil:
    """Spread the dout values of one plane over their windows.

    For a stretch of an output row, the shares (dout / divisor) are computed
    once; then, for each window offset (ky, kx), one pass adds them to the
    pixels under that offset.
    """
    cdef floating share[SHARE_CHUNK]
    cdef Py_ssize_t oy, ox, ox0, ox1, ky, kx, iy, iy0, lo, hi
    cdef Py_ssize_t W = g.W, stride_w = g.stride_w, pad_w = g.pad_w
    cdef Py_ssize_t kx_lo, kx_hi
    _offsets_reaching_image(g, &kx_lo, &kx_hi)
    cdef Window w
    cdef floating* d
    memset(dx, 0, g.H * W * sizeof(floating))
    for oy in range(g.out_h):
        ox0 = 0
        while ox0 < g.out_w:
            ox1 = min(ox0 + SHARE_CHUNK, g.out_w)
            for ox in range(ox0, ox1):
                w = _window(g, oy, ox)
                share[ox - ox0] = <floating>((<const floating*>(dout + oy * s_h + ox * s_w))[0]
                                             / _divisor(g, &w, count_include_pad))
            iy0 = oy * g.stride_h - g.pad_h
            for ky in range(clip_low(iy0), clip_high(iy0, g.pool_h, g.H)):
                iy = iy0 + ky
                for kx in range(kx_lo, kx_hi):
                    valid_range(kx - pad_w, stride_w, W, g.out_w, &lo, &hi)
                    lo = min(max(lo, ox0), ox1)
                    hi = max(min(hi, ox1), lo)
                    d = dx + iy * W + lo * stride_w + kx - pad_w
                    for ox in range(lo, hi):
                        d[0] += share[ox - ox0]
                        d += stride_w
            ox0 = ox1


# ---------------------------------------------------------------- cores

cdef void max_pool2d_core(const floating[:, :, :, :] x, Py_ssize_t pool_h, Py_ssize_t pool_w,
                          Py_ssize_t stride_h, Py_ssize_t stride_w,
                          Py_ssize_t pad_h, Py_ssize_t pad_w,
                          floating[:, :, :, ::1] out, int64_t[:, :, :, ::1] argmax,
                          int num_threads) noexcept nogil:
    """Max pooling of ``x`` (N, C, H, W) into ``out`` and ``argmax`` (N, C, out_h, out_w).

    ``argmax`` gets the window-local row-major position (ky*pool_w + kx) of
    the first maximum (the first NaN, if any). The caller guarantees
    pad <= pool // 2 and H, W >= 1, so every window holds a pixel.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Geometry g = _geometry(x.shape[2], x.shape[3], pool_h, pool_w,
                                stride_h, stride_w, pad_h, pad_w)
    cdef Py_ssize_t plane = g.out_h * g.out_w, task, n, c
    if N == 0 or C == 0:
        return
    cdef const char* base = <const char*>&x[0, 0, 0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    cdef floating* out_data = &out[0, 0, 0, 0]
    cdef int64_t* arg_data = &argmax[0, 0, 0, 0]
    for task in prange(N * C, schedule="static",
                       num_threads=clamp_threads(num_threads, N * C, N * C * g.H * g.W)):
        n = task // C
        c = task - n * C
        _max_plane(&g, base + n * s_n + c * s_c, s_h, s_w,
                   out_data + task * plane, arg_data + task * plane)


cdef Py_ssize_t max_pool2d_backward_core(const floating[:, :, :, :] dout,
                                         const int64_t[:, :, :, :] argmax,
                                         Py_ssize_t pool_h, Py_ssize_t pool_w,
                                         Py_ssize_t stride_h, Py_ssize_t stride_w,
                                         Py_ssize_t pad_h, Py_ssize_t pad_w,
                                         floating[:, :, :, ::1] dx, int num_threads) noexcept nogil:
    """Route each ``dout`` value to the pixel its ``argmax`` names, summing.

    ``dx`` (N, C, H, W) is overwritten. The caller guarantees ``argmax`` has
    ``dout``'s shape. Entries of ``argmax`` outside [0, pool_h*pool_w) route
    nothing; the return value is their number (0 for a valid ``argmax``),
    counted in the same pass (per-thread counts reduced by the prange).
    """
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1]
    cdef Geometry g = _geometry(dx.shape[2], dx.shape[3], pool_h, pool_w,
                                stride_h, stride_w, pad_h, pad_w)
    cdef Py_ssize_t task, n, c, outside = 0
    if N == 0 or C == 0:
        return 0
    cdef const char* d_base = <const char*>&dout[0, 0, 0, 0]
    cdef const char* a_base = <const char*>&argmax[0, 0, 0, 0]
    cdef Py_ssize_t d_n = dout.strides[0], d_c = dout.strides[1]
    cdef Py_ssize_t d_h = dout.strides[2], d_w = dout.strides[3]
    cdef Py_ssize_t a_n = argmax.strides[0], a_c = argmax.strides[1]
    cdef Py_ssize_t a_h = argmax.strides[2], a_w = argmax.strides[3]
    cdef floating* dx_data = &dx[0, 0, 0, 0]
    for task in prange(N * C, schedule="static",
                       num_threads=clamp_threads(num_threads, N * C, N * C * g.H * g.W)):
        n = task // C
        c = task - n * C
        outside += _max_backward_plane(&g, d_base + n * d_n + c * d_c, d_h, d_w,
                                       a_base + n * a_n + c * a_c, a_h, a_w,
                                       dx_data + task * g.H * g.W)
    return outside


cdef void avg_pool2d_core(const floating[:, :, :, :] x, Py_ssize_t pool_h, Py_ssize_t pool_w,
                          Py_ssize_t stride_h, Py_ssize_t stride_w,
                          Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad,
                          floating[:, :, :, ::1] out, int num_threads) noexcept nogil:
    """Average pooling of ``x`` (N, C, H, W) into ``out`` (N, C, out_h, out_w).

    Padding counts as zeros; the divisor is pool_h*pool_w, or with
    ``count_include_pad`` false the number of pixels in the window. Same
    caller guarantees as max_pool2d_core.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1]
    cdef Geometry g = _geometry(x.shape[2], x.shape[3], pool_h, pool_w,
                                stride_h, stride_w, pad_h, pad_w)
    cdef Py_ssize_t plane = g.out_h * g.out_w, task, n, c
    if N == 0 or C == 0:
        return
    cdef const char* base = <const char*>&x[0, 0, 0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    cdef floating* out_data = &out[0, 0, 0, 0]
    for task in prange(N * C, schedule="static",
                       num_threads=clamp_threads(num_threads, N * C, N * C * g.H * g.W)):
        n = task // C
        c = task - n * C
        _avg_plane(&g, base + n * s_n + c * s_c, s_h, s_w, count_include_pad,
                   out_data + task * plane)


cdef void avg_pool2d_backward_core(const floating[:, :, :, :] dout,
                                   Py_ssize_t pool_h, Py_ssize_t pool_w,
                                   Py_ssize_t stride_h, Py_ssize_t stride_w,
                                   Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad,
                                   floating[:, :, :, ::1] dx, int num_threads) noexcept nogil:
    """Spread each ``dout`` value evenly (value / divisor) over its window's pixels.

    ``dx`` (N, C, H, W) is overwritten; ``dout`` is (N, C, out_h, out_w).
    """
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1]
    cdef Geometry g = _geometry(dx.shape[2], dx.shape[3], pool_h, pool_w,
                                stride_h, stride_w, pad_h, pad_w)
    cdef Py_ssize_t task, n, c
    if N == 0 or C == 0:
        return
    cdef const char* base = <const char*>&dout[0, 0, 0, 0]
    cdef Py_ssize_t s_n = dout.strides[0], s_c = dout.strides[1]
    cdef Py_ssize_t s_h = dout.strides[2], s_w = dout.strides[3]
    cdef floating* dx_data = &dx[0, 0, 0, 0]
    for task in prange(N * C, schedule="static",
                       num_threads=clamp_threads(num_threads, N * C, N * C * g.H * g.W)):
        n = task // C
        c = task - n * C
        _avg_backward_plane(&g, base + n * s_n + c * s_c, s_h, s_w, count_include_pad,
                            dx_data + task * g.H * g.W)


# ---------------------------------------------------------------- Python API

# Each of these holds the GIL to read its tuples, then releases it around the core.

cdef void _max_pool2d_with_gil_released(const floating[:, :, :, :] x, tuple pool, tuple stride,
                                        tuple pad, floating[:, :, :, ::1] out,
                                        int64_t[:, :, :, ::1] argmax):
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t stride_h = stride[0], stride_w = stride[1], pad_h = pad[0], pad_w = pad[1]
    cdef Py_ssize_t pool_h = pool[0], pool_w = pool[1]
    with nogil:
        max_pool2d_core(x, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                        out, argmax, num_threads)


cdef Py_ssize_t _max_pool2d_backward_with_gil_released(
        const floating[:, :, :, :] dout, const int64_t[:, :, :, :] argmax,
        tuple pool, tuple stride, tuple pad, floating[:, :, :, ::1] dx):
    """Run max_pool2d_backward_core; return its count of argmax entries outside the window."""
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t stride_h = stride[0], stride_w = stride[1], pad_h = pad[0], pad_w = pad[1]
    cdef Py_ssize_t pool_h = pool[0], pool_w = pool[1], outside
    with nogil:
        outside = max_pool2d_backward_core(dout, argmax, pool_h, pool_w, stride_h, stride_w,
                                           pad_h, pad_w, dx, num_threads)
    return outside


cdef void _avg_pool2d_with_gil_released(const floating[:, :, :, :] x, tuple pool, tuple stride,
                                        tuple pad, bint count_include_pad,
                                        floating[:, :, :, ::1] out):
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t stride_h = stride[0], stride_w = stride[1], pad_h = pad[0], pad_w = pad[1]
    cdef Py_ssize_t pool_h = pool[0], pool_w = pool[1]
    with nogil:
        avg_pool2d_core(x, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                        count_include_pad, out, num_threads)


cdef void _avg_pool2d_backward_with_gil_released(const floating[:, :, :, :] dout, tuple pool,
                                                 tuple stride, tuple pad, bint count_include_pad,
                                                 floating[:, :, :, ::1] dx):
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t stride_h = stride[0], stride_w = stride[1], pad_h = pad[0], pad_w = pad[1]
    cdef Py_ssize_t pool_h = pool[0], pool_w = pool[1]
    with nogil:
        avg_pool2d_backward_core(dout, pool_h, pool_w, stride_h, stride_w, pad_h, pad_w,
                                 count_include_pad, dx, num_threads)


cdef Py_ssize_t _count_outside_window(const int64_t[:, :, :, :] argmax, int64_t window,
                                      int num_threads) noexcept nogil:
    """Entries of ``argmax`` outside [0, window): the scan before a caller's ``out=`` is written."""
    cdef Py_ssize_t N = argmax.shape[0], C = argmax.shape[1], task, n, c, i, j, outside = 0
    cdef Py_ssize_t plane = argmax.shape[2] * argmax.shape[3]
    for task in prange(N * C, schedule="static",
                       num_threads=clamp_threads(num_threads, N * C, N * C * plane)):
        n = task // C
        c = task - n * C
        for i in range(argmax.shape[2]):
            for j in range(argmax.shape[3]):
                outside += _outside_window(argmax[n, c, i, j], window)
    return outside


def _pool_geometry(shape, pool_h, pool_w, stride, pad, name):
    """Check the pooling arguments for an input of ``shape``; return them normalised."""
    pool = window_sizes(pool_h, pool_w, ("pool_h", "pool_w"))
    stride = as_pair(stride, "stride", 1)
    pad = as_pair(pad, "pad", 0)
    check_pool_padding(pool, pad, shape[2:], name)
    out_hw = conv_output_size(shape[2:], pool, stride, pad, name)
    return pool, stride, pad, (shape[0], shape[1]) + out_hw


def _dout_array(dout, out_shape):
    dout = as_float_array(dout, "dout", 4)
    check_shape(dout, out_shape, "dout", "the pooling output's ")
    return dout


def max_pool2d(x, pool_h, pool_w, stride=1, pad=0, *, out=None, argmax_out=None):
    """Max pooling with the position of each maximum, for the backward pass.

    Padding is -inf: a padded position is never chosen over a pixel. Ties go
    to the first position in the window (row-major), and NaN propagates: a
    window holding NaN yields NaN (its first NaN is the argmax), as in PyTorch.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        float32 or float64 (kept); float16 becomes float32, integers and
        bools become float64. Any strides.
    pool_h, pool_w : int
        Window height and width, >= 1.
    stride : int or (int, int), default 1
        Step between windows, >= 1 (the book's default of 1).
    pad : int or (int, int), default 0
        Padding on each side, at most half the window (pad <= pool // 2).
    out, argmax_out : ndarray, optional
        C-contiguous (N, C, out_h, out_w) arrays (x's dtype, int64) to write into.

    Returns
    -------
    out : ndarray, shape (N, C, out_h, out_w), dtype of x
    argmax : ndarray of int64, shape (N, C, out_h, out_w)
        Position ky*pool_w + kx of the maximum inside its window.

    Examples
    --------
    >>> import numpy as np
    >>> from cconv import max_pool2d
    >>> out, argmax = max_pool2d(np.array([[[[1., 3.], [4., 2.]]]]), 2, 2)
    >>> out.ravel(), argmax.ravel()
    (array([4.]), array([2]))
    """
    x = as_float_array(x, "x", 4)
    pool, stride, pad, out_shape = _pool_geometry(x.shape, pool_h, pool_w, stride, pad, "x")
    result = check_out(out, out_shape, x.dtype, (x,))
    argmax = check_out(argmax_out, out_shape, np.int64, (x, result), name="argmax_out")
    if result.size == 0:
        return result, argmax
    if x.dtype == np.float32:
        _max_pool2d_with_gil_released[float](x, pool, stride, pad, result, argmax)
    else:
        _max_pool2d_with_gil_released[double](x, pool, stride, pad, result, argmax)
    return result, argmax


def max_pool2d_backward(dout, argmax, input_shape, pool_h, pool_w, stride=1, pad=0, *, out=None):
    """Gradient of :func:`max_pool2d`: each ``dout`` value goes to its maximum.

    Parameters
    ----------
    dout : array_like, shape (N, C, out_h, out_w)
        Gradient of the pooling output (same dtype policy as the forward).
    argmax : ndarray of integers, shape (N, C, out_h, out_w)
        The window positions :func:`max_pool2d` returned, in [0, pool_h*pool_w).
    input_shape : sequence of 4 ints
        (N, C, H, W) of the forward input.
    pool_h, pool_w, stride, pad
        As given to the forward pass.
    out : ndarray, optional
        C-contiguous (N, C, H, W) array of dout's dtype to write into.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of dout
        Where windows overlap, the gradients reaching a pixel sum.

    Raises
    ------
    ValueError
        Also for ``argmax`` entries outside [0, pool_h*pool_w), found in the
        same pass that routes the gradients (the new ``dx`` is dropped). A
        given ``out`` is scanned first instead, and left untouched.
    """
    shape = input_shape_tuple(input_shape)
    pool, stride, pad, out_shape = _pool_geometry(shape, pool_h, pool_w, stride, pad, "input_shape")
    dout = _dout_array(dout, out_shape)
    given = argmax
    argmax = check_argmax(argmax, out_shape)
    window = pool[0] * pool[1]
    dx = check_out(out, shape, dout.dtype, (dout, argmax))
    cdef const int64_t[:, :, :, :] positions
    cdef int64_t window_size = window
    cdef int num_threads
    cdef Py_ssize_t outside
    if out is not None:  # the caller's array is never written for a bad argmax
        positions, num_threads = argmax, effective_num_threads()
        with nogil:
            outside = _count_outside_window(positions, window_size, num_threads)
        check_argmax_values(outside, given, window)
    if dx.size == 0:
        return dx
    if dout.dtype == np.float32:
        outside = _max_pool2d_backward_with_gil_released[float](dout, argmax, pool, stride, pad, dx)
    else:
        outside = _max_pool2d_backward_with_gil_released[double](dout, argmax, pool, stride, pad, dx)
    check_argmax_values(outside, given, window)
    return dx


def avg_pool2d(x, pool_h, pool_w, stride=1, pad=0, count_include_pad=True, *, out=None):
    """Average pooling.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        Same dtype policy as :func:`max_pool2d`. Any strides.
    pool_h, pool_w, stride, pad
        As for :func:`max_pool2d` (pad <= pool // 2); padding counts as zeros.
    count_include_pad : bool, default True
        Divide by pool_h*pool_w (True) or by the number of pixels of the
        window that lie inside the image (False), as PyTorch's avg_pool2d.
    out : ndarray, optional
        C-contiguous (N, C, out_h, out_w) array of x's dtype to write into.

    Returns
    -------
    out : ndarray, shape (N, C, out_h, out_w), dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from cconv import avg_pool2d
    >>> avg_pool2d(np.ones((1, 1, 2, 2)), 2, 2, stride=2, pad=1)[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    x = as_float_array(x, "x", 4)
    pool, stride, pad, out_shape = _pool_geometry(x.shape, pool_h, pool_w, stride, pad, "x")
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    result = check_out(out, out_shape, x.dtype, (x,))
    if result.size == 0:
        return result
    if x.dtype == np.float32:
        _avg_pool2d_with_gil_released[float](x, pool, stride, pad, count_include_pad, result)
    else:
        _avg_pool2d_with_gil_released[double](x, pool, stride, pad, count_include_pad, result)
    return result


def avg_pool2d_backward(dout, input_shape, pool_h, pool_w, stride=1, pad=0,
                        count_include_pad=True, *, out=None):
    """Gradient of :func:`avg_pool2d`: each ``dout`` value spread over its window.

    Parameters
    ----------
    dout : array_like, shape (N, C, out_h, out_w)
        Gradient of the pooling output.
    input_shape : sequence of 4 ints
        (N, C, H, W) of the forward input.
    pool_h, pool_w, stride, pad, count_include_pad
        As given to the forward pass.
    out : ndarray, optional
        C-contiguous (N, C, H, W) array of dout's dtype to write into.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), dtype of dout
    """
    shape = input_shape_tuple(input_shape)
    pool, stride, pad, out_shape = _pool_geometry(shape, pool_h, pool_w, stride, pad, "input_shape")
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    dout = _dout_array(dout, out_shape)
    dx = check_out(out, shape, dout.dtype, (dout,))
    if dx.size == 0:
        return dx
    if dout.dtype == np.float32:
        _avg_pool2d_backward_with_gil_released[float](dout, pool, stride, pad, count_include_pad, dx)
    else:
        _avg_pool2d_backward_with_gil_released[double](dout, pool, stride, pad, count_include_pad, dx)
    return dx

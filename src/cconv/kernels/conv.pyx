"""conv2d: 2-D convolution (cross-correlation) of (N, C, H, W) batches, forward and backward.

Each thread takes whole tiles of output positions (forward) or fixed chunks
of images (backward): it unfolds the tile's windows into a buffer of its own
that stays in cache, in the transposed (C*FH*FW, positions) layout, and
multiplies it with one single-threaded GEMM (``scipy.linalg.cython_blas``,
callable without the GIL). No batch-sized ``col`` is ever made, and the whole
pass runs on the one OpenMP thread pool.

float32 with stride 1 goes to :mod:`cconv.kernels.direct` instead where the
CPU has AVX2 and FMA (no unfolding at all); the backward pass too, unless
its input gradient cannot be written as a padded convolution (pad >
dilation*(F-1)) or the filters hold inf/NaN.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

from cconv.kernels._common cimport (
    BACKWARD_CHUNKS, Tile, Tiling, Window, add_chunks_in_order, clamp_threads, make_tiling,
    make_window, sum_in_order, tile_at, window_size,
)
from cconv.kernels.direct cimport (
    direct_applies, direct_applies_to_input_grad, direct_conv2d, direct_conv2d_backward,
)
from cconv.kernels._openmp cimport effective_num_threads
from cconv.kernels.col2im cimport col2im_tile
from cconv.kernels.im2col cimport im2col_tile

import numpy as np

from cconv._blas import single_threaded_blas
from cconv._validation import (
    as_float_array, as_pair, check_bias, check_bool, check_gemm_sizes, check_out, check_shape,
    check_weight, conv_output_size, converted,
)


cdef enum:
    # A tile of unfolded windows (C*FH*FW x positions) takes about this many
    # bytes, so that it and the GEMM's packed panels stay in a core's L2.
    TILE_BYTES = 256 * 1024


cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       const floating* a, int lda, const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """Column-major C = op(A) @ op(B) + beta*C (BLAS sgemm/dgemm with alpha 1)."""
    cdef floating one = 1
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &one, <float*>a, &lda, <float*>b, &ldb,
              &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &one, <double*>a, &lda, <double*>b, &ldb,
              &beta, c, &ldc)


cdef int conv2d_core(const floating[:, :, :, :] x, const floating[:, :, :, ::1] weight,
                     const floating[::1] bias,
                     Py_ssize_t stride_h, Py_ssize_t stride_w,
                     Py_ssize_t pad_h, Py_ssize_t pad_w,
                     Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     floating[:, :, :, ::1] out, int num_threads) noexcept nogil:
    """``out`` (N, FN, out_h, out_w) = the cross-correlation of ``x`` with ``weight``, plus ``bias``.

    ``x`` (N, C, H, W) may have any strides; ``weight`` is (FN, C, FH, FW)
    and ``bias`` (FN,), or empty for no bias. The caller guarantees that
    every size is >= 1, that the shapes agree, and that FN, C*FH*FW and
    out_h*out_w fit a C int (BLAS takes 32-bit sizes). Each thread calls
    BLAS: hold BLAS to one thread around the call, or its threads compete
    with these (the results are the same). Returns 0, or -1 when the
    threads' buffers could not be allocated (``out`` is then left unwritten).
    """
    if floating is float:
        if direct_applies(stride_h, stride_w):
            return direct_conv2d(x, weight, bias, pad_h, pad_w, dilation_h, dilation_w, out,
                                 num_threads)
    cdef Py_ssize_t N = x.shape[0], FN = weight.shape[0]
    cdef Window g = make_window(x.shape[1], x.shape[2], x.shape[3], weight.shape[2],
                                weight.shape[3], stride_h, stride_w, pad_h, pad_w,
                                dilation_h, dilation_w)
    cdef Py_ssize_t K = window_size(&g), P = g.out_h * g.out_w
    # A position takes K entries of the windows and FN of the products.
    cdef Tiling t = make_tiling(&g, (K + FN) * sizeof(floating), TILE_BYTES)
    cdef Py_ssize_t tiles_per_image = t.tiles_h * t.tiles_w, n_tasks = N * tiles_per_image
    cdef Py_ssize_t tile_positions = t.tile_h * t.tile_w
    # Per thread: the tile's windows (K x positions), then its products (positions x FN).
    cdef Py_ssize_t thread_size = tile_positions * (K + FN)
    num_threads = clamp_threads(num_threads, n_tasks, N * P * K)
    cdef floating* work = <floating*>malloc(num_threads * thread_size * sizeof(floating))
    if work == NULL:
        return -1
    cdef const char* x_data = <const char*>&x[0, 0, 0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    cdef const floating* w_data = &weight[0, 0, 0, 0]
    cdef bint has_bias = bias.shape[0] > 0
    cdef floating* out_data = &out[0, 0, 0, 0]
    cdef Py_ssize_t task, n, f, p, m
    cdef Tile tb
    cdef floating* cols
    cdef floating* products
    cdef floating* out_tile
    cdef floating shift
    for task in prange(n_tasks, schedule="static", num_threads=num_threads):
        cols = work + threadid() * thread_size
        products = cols + tile_positions * K
        n = task // tiles_per_image
        tb = tile_at(&g, &t, task - n * tiles_per_image)
        m = (tb.oy1 - tb.oy0) * (tb.ox1 - tb.ox0)
        # cols (m, K): row p holds the window of the tile's position p.
        im2col_tile(x_data + n * s_n, s_c, s_h, s_w, &g, tb.oy0, tb.oy1, tb.ox0, tb.ox1, 1, m, cols)
        # products (m, FN) = cols @ W^T, as column-major W (FN, K) @ cols^T (K, m):
        # BLAS runs fastest with the few filters as the rows of its result.
        _gemm(c'T', c'T', <int>FN, <int>m, <int>K, w_data, <int>K, cols, <int>m,
              0, products, <int>FN)
        # out[n, f, p0:p0+m] = products[:, f] + b[f].
        out_tile = out_data + n * FN * P + tb.oy0 * g.out_w + tb.ox0
        for f in range(FN):
            shift = bias[f] if has_bias else 0
            for p in range(m):
                out_tile[f * P + p] = products[p * FN + f] + shift
    free(work)
    return 0


cdef inline void _backward_chunk(const floating* dout_data, const char* x_data,
                                 Py_ssize_t s_n, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                                 const floating* w_data, const Window* g, const Tiling* t,
                                 Py_ssize_t FN, Py_ssize_t n0, Py_ssize_t n1,
                                 floating* cols, floating* dcols, floating* dx_data,
                                 floating* dwt, floating* db) noexcept nogil:
    """dW^T (K, FN) and db (FN,) of images n0..n1-1 into ``dwt`` and ``db``; their dx if ``dcols``.

    ``cols`` and ``dcols`` (NULL when dx is not wanted) are the thread's
    tile buffers. The images and tiles are taken in order, so the sums do
    not depend on which thread runs the chunk.
    """
    cdef Py_ssize_t K = window_size(g), P = g.out_h * g.out_w
    cdef Py_ssize_t image_size = g.channels * g.height * g.width
    cdef Py_ssize_t n, f, tile, p0, m
    cdef Tile tb
    cdef const floating* dout_n
    memset(dwt, 0, FN * K * sizeof(floating))
    memset(db, 0, FN * sizeof(floating))
    for n in range(n0, n1):
        dout_n = dout_data + n * FN * P
        for f in range(FN):
            db[f] += sum_in_order(dout_n + f * P, P, 1)
        if dcols != NULL:
            memset(dx_data + n * image_size, 0, image_size * sizeof(floating))
        for tile in range(t.tiles_h * t.tiles_w):
            tb = tile_at(g, t, tile)
            p0 = tb.oy0 * g.out_w + tb.ox0
            m = (tb.oy1 - tb.oy0) * (tb.ox1 - tb.ox0)
            im2col_tile(x_data + n * s_n, s_c, s_h, s_w, g, tb.oy0, tb.oy1, tb.ox0, tb.ox1, 1, m, cols)
            # Column-major dW (FN, K) += dout[n, :, p0:p0+m] (FN, m) @ cols^T (m, K),
            # stored as dW^T (BLAS runs fastest with the few filters as its rows).
            _gemm(c'T', c'N', <int>FN, <int>K, <int>m, dout_n + p0, <int>P, cols, <int>m,
                  1, dwt, <int>FN)
            if dcols != NULL:
                # dcols (K, m) = (dout[n, :, p0:p0+m]^T (m, FN) @ W (FN, K))^T,
                # folded into dx[n] at once.
                _gemm(c'N', c'T', <int>m, <int>K, <int>FN, dout_n + p0, <int>P, w_data, <int>K,
                      0, dcols, <int>m)
                col2im_tile(<const char*>dcols, sizeof(floating), m * sizeof(floating),
                            0, g.channels, g, tb.oy0, tb.oy1, tb.ox0, tb.ox1, dx_data + n * image_size)


cdef int conv2d_backward_core(const floating[:, :, :, ::1] dout, const floating[:, :, :, :] x,
                              const floating[:, :, :, ::1] weight,
                              Py_ssize_t stride_h, Py_ssize_t stride_w,
                              Py_ssize_t pad_h, Py_ssize_t pad_w,
                              Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                              floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dweight,
                              floating[::1] dbias, bint need_input_grad,
                              int num_threads) noexcept nogil:
    """Gradients of :func:`conv2d_core` for ``dout`` (N, FN, out_h, out_w), C-contiguous.

    Writes ``dweight`` (FN, C, FH, FW), ``dbias`` (FN,) and, when
    ``need_input_grad``, ``dx`` (x's shape; unused otherwise). The same
    guarantees as for :func:`conv2d_core` are the caller's. dW and db are
    summed per fixed chunk of images and the chunks added in order, so the
    results are the same for every thread count. Returns 0, or -1 when the
    buffers could not be allocated (the outputs are then left unwritten).
    """
    # The path does not depend on need_input_grad: dW is the same bit for bit either way.
    if floating is float:
        if direct_applies(stride_h, stride_w) and direct_applies_to_input_grad(
                &weight[0, 0, 0, 0], weight.shape[0] * weight.shape[1] * weight.shape[2] * weight.shape[3],
                weight.shape[2], weight.shape[3], pad_h, pad_w, dilation_h, dilation_w):
            return direct_conv2d_backward(dout, x, weight, pad_h, pad_w, dilation_h, dilation_w,
                                          dx, dweight, dbias, need_input_grad, num_threads)
    cdef Py_ssize_t N = x.shape[0], FN = weight.shape[0]
    cdef Window g = make_window(x.shape[1], x.shape[2], x.shape[3], weight.shape[2],
                                weight.shape[3], stride_h, stride_w, pad_h, pad_w,
                                dilation_h, dilation_w)
    cdef Py_ssize_t K = window_size(&g), P = g.out_h * g.out_w
    # A position takes K entries of the windows and K of their gradients (the
    # same tiles without dx, so that dW is the same bit for bit).
    cdef Tiling t = make_tiling(&g, 2 * K * sizeof(floating), TILE_BYTES)
    cdef Py_ssize_t tile_size = t.tile_h * t.tile_w * K
    cdef Py_ssize_t n_chunks = min(N, <Py_ssize_t>BACKWARD_CHUNKS)
    cdef Py_ssize_t buffers = 2 if need_input_grad else 1
    num_threads = clamp_threads(num_threads, n_chunks, N * P * K * buffers)
    # The threads' tile buffers, then dW^T and db of each chunk.
    cdef Py_ssize_t partial_size = FN * K + FN
    cdef floating* work = <floating*>malloc(
        (num_threads * buffers * tile_size + n_chunks * partial_size) * sizeof(floating))
    if work == NULL:
        return -1
    cdef floating* partials = work + num_threads * buffers * tile_size
    cdef const char* x_data = <const char*>&x[0, 0, 0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    cdef floating* dw_data = &dweight[0, 0, 0, 0]
    cdef floating* db_data = &dbias[0]
    cdef floating* dx_data = &dx[0, 0, 0, 0] if need_input_grad else NULL
    cdef Py_ssize_t chunk
    cdef floating* cols
    cdef floating* dcols
    cdef floating* partial
    for chunk in prange(n_chunks, schedule="static", num_threads=num_threads):
        cols = work + threadid() * buffers * tile_size
        dcols = cols + tile_size if need_input_grad else NULL
        partial = partials + chunk * partial_size
        _backward_chunk(&dout[0, 0, 0, 0], x_data, s_n, s_c, s_h, s_w, &weight[0, 0, 0, 0],
                        &g, &t, FN, chunk * N // n_chunks, (chunk + 1) * N // n_chunks,
                        cols, dcols, dx_data, partial, partial + FN * K)
    # The chunks hold dW^T (K, FN).
    add_chunks_in_order(partials, n_chunks, partial_size, FN, K, 1, FN, dw_data, db_data,
                        num_threads)
    free(work)
    return 0


def _conv_arguments(x, weight, extra, stride, pad, dilation):
    """Check and convert the arguments shared by conv2d and conv2d_backward.

    ``extra`` is a list of (array or None, name, ndim) converted alongside.
    Returns ``(x, weight, extras, stride, pad, dilation, out_hw)``, the arrays
    in their common dtype (float32 only when all are float32). Every check
    runs before any copy, and a copy of more than MAX_ARRAY_BYTES is refused.
    """
    x = as_float_array(x, "x", 4)
    weight = as_float_array(weight, "W", 4)
    extras = [None if a is None else as_float_array(a, name, ndim) for a, name, ndim in extra]
    check_weight(weight, x.shape)
    stride = as_pair(stride, "stride", 1)
    pad = as_pair(pad, "pad", 0)
    dilation = as_pair(dilation, "dilation", 1)
    out_hw = conv_output_size(x.shape[2:], weight.shape[2:], stride, pad, "x", dilation)
    check_gemm_sizes(weight.shape, out_hw)
    dtype = np.result_type(x, weight, *[a for a in extras if a is not None])
    names = ["x", "W"] + [name for _, name, _ in extra]
    arrays = [converted(a, name, dtype) for a, name in zip([x, weight] + extras, names)]
    return arrays[0], arrays[1], arrays[2:], stride, pad, dilation, out_hw


def conv2d(x, W, b=None, stride=1, pad=0, dilation=1, *, out=None):
    """2-D convolution (cross-correlation) of a batch, as ``torch.nn.functional.conv2d``.

    ``out[n, f, oy, ox] = b[f] + sum over c, ky, kx of W[f, c, ky, kx] *
    x[n, c, oy*stride_h - pad_h + ky*dilation_h, ox*stride_w - pad_w + kx*dilation_w]``,
    with zeros outside the image: the book's ``Convolution.forward``
    (im2col and a matrix product) without its batch-sized ``col``.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        The batch; any strides (read in place).
    W : array_like, shape (FN, C, FH, FW)
        The filters.
    b : array_like, shape (FN,), optional
        The biases (none when None).
    stride : int or (int, int), default 1
        Step between windows, >= 1.
    pad : int or (int, int), default 0
        Zero padding on each side, >= 0.
    dilation : int or (int, int), default 1
        Step between a filter's taps, >= 1.
    out : ndarray, optional
        C-contiguous array of the result's shape and dtype to write into.

    Returns
    -------
    out : ndarray, shape (N, FN, out_h, out_w), C-contiguous
        ``out_h = (H + 2*pad_h - dilation_h*(FH - 1) - 1) // stride_h + 1``
        (likewise out_w). float32 when x, W and b are all float32, else
        float64 (the dtype rule of the other kernels applies to each).

    Raises
    ------
    TypeError, ValueError
        For a non-real dtype, W whose channels differ from x's, b that is not
        (FN,), a filter that does not fit the padded input, a bad stride, pad
        or dilation, or an ``out`` that does not fit.

    Examples
    --------
    >>> import numpy as np
    >>> from cconv import conv2d
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), np.array([0.5]), stride=2)
    array([[[[10.5, 18.5],
             [42.5, 50.5]]]])
    """
    x, W, (b,), stride, pad, dilation, (out_h, out_w) = _conv_arguments(
        x, W, [(b, "b", 1)], stride, pad, dilation)
    N, C, H, width = x.shape
    FN = W.shape[0]
    check_bias(b, W.shape)
    result = check_out(out, (N, FN, out_h, out_w), x.dtype,
                       [a for a in (x, W, b) if a is not None])
    if result.size == 0:
        return result
    if C == 0 or H == 0 or width == 0:  # every window is padding: only the bias
        result[...] = 0 if b is None else b.reshape(FN, 1, 1)
        return result
    W = converted(W, "W", x.dtype, contiguous=True)
    bias = np.empty(0, x.dtype) if b is None else converted(b, "b", x.dtype, contiguous=True)
    with single_threaded_blas():
        if x.dtype == np.float32:
            status = _conv2d_with_gil_released[float](x, W, bias, stride, pad, dilation, result)
        else:
            status = _conv2d_with_gil_released[double](x, W, bias, stride, pad, dilation, result)
    if status != 0:
        raise MemoryError("conv2d: could not allocate the threads' tile buffers")
    return result


cdef int _conv2d_with_gil_released(const floating[:, :, :, :] x, const floating[:, :, :, ::1] W,
                                   const floating[::1] bias, tuple stride, tuple pad,
                                   tuple dilation, floating[:, :, :, ::1] out):
    cdef int num_threads = effective_num_threads(), status
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = pad[0], pw = pad[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    with nogil:
        status = conv2d_core(x, W, bias, sh, sw, ph, pw, dh, dw, out, num_threads)
    return status


def conv2d_backward(dout, x, W, stride=1, pad=0, dilation=1, *, need_input_grad=True):
    """Gradients of :func:`conv2d` with respect to its input, filters and biases.

    Parameters
    ----------
    dout : array_like, shape (N, FN, out_h, out_w)
        Gradient of the loss with respect to conv2d's output.
    x : array_like, shape (N, C, H, W)
        The input of the forward pass; any strides.
    W : array_like, shape (FN, C, FH, FW)
        The filters of the forward pass.
    stride, pad, dilation : int or (int, int)
        As given to :func:`conv2d`.
    need_input_grad : bool, default True
        False skips ``dx`` (a network's first layer needs none): no product
        and no fold for it.

    Returns
    -------
    dx : ndarray of x's shape, or None
        None when ``need_input_grad`` is False.
    dW : ndarray of W's shape
    db : ndarray, shape (FN,)
        All C-contiguous, float32 when dout, x and W are all float32, else
        float64. The sums over the batch do not depend on the thread count.

    Raises
    ------
    TypeError, ValueError
        For the arguments conv2d refuses, a ``dout`` that is not the shape
        conv2d returns for x and W, or a ``need_input_grad`` that is not a bool.
    """
    need_input_grad = check_bool(need_input_grad, "need_input_grad")
    x, W, (dout,), stride, pad, dilation, (out_h, out_w) = _conv_arguments(
        x, W, [(dout, "dout", 4)], stride, pad, dilation)
    N, _, H, width = x.shape
    FN = W.shape[0]
    check_shape(dout, (N, FN, out_h, out_w), "dout", "conv2d's output ",
                f" for x of shape {x.shape} and W of shape {W.shape}")
    dtype = x.dtype
    dx = check_out(None, x.shape, dtype, ()) if need_input_grad else None
    dW = check_out(None, W.shape, dtype, ())
    db = check_out(None, (FN,), dtype, ())
    if dout.size == 0 or dW.size == 0 or H == 0 or width == 0:
        # No window sees a pixel (or there is nothing to sum).
        dW[...] = 0
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as in the kernel
            db[...] = dout.sum(axis=(0, 2, 3))
        if dx is not None:
            dx[...] = 0
        return dx, dW, db
    dout = converted(dout, "dout", dtype, contiguous=True)
    W = converted(W, "W", dtype, contiguous=True)
    dx_arg = dx if dx is not None else np.empty((0, 0, 0, 0), dtype)
    with single_threaded_blas():
        if dtype == np.float32:
            status = _conv2d_backward_with_gil_released[float](
                dout, x, W, stride, pad, dilation, dx_arg, dW, db, dx is not None)
        else:
            status = _conv2d_backward_with_gil_released[double](
                dout, x, W, stride, pad, dilation, dx_arg, dW, db, dx is not None)
    if status != 0:
        raise MemoryError("conv2d_backward: could not allocate the threads' tile buffers")
    return dx, dW, db


cdef int _conv2d_backward_with_gil_released(
        const floating[:, :, :, ::1] dout, const floating[:, :, :, :] x,
        const floating[:, :, :, ::1] W, tuple stride, tuple pad, tuple dilation,
        floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dW, floating[::1] db,
        bint need_input_grad):
    cdef int num_threads = effective_num_threads(), status
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = pad[0], pw = pad[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    with nogil:
        status = conv2d_backward_core(dout, x, W, sh, sw, ph, pw, dh, dw, dx, dW, db,
                                      need_input_grad, num_threads)
    return status

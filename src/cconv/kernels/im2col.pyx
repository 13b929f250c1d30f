"""im2col: unfold (N, C, H, W) images into a matrix of filter windows."""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cconv.kernels._common cimport clamp_threads, valid_range
from cconv.kernels._openmp cimport effective_num_threads

import numpy as np

from cconv._validation import as_float_array, as_pair, as_positive_int, check_out, conv_output_size


# Lines of col are built in a per-thread buffer of about this many bytes
# (cache-resident), then copied out in one sequential memcpy: the copy writes
# whole cache lines and so spares reading them first, which the scattered
# stores of the build would cost if they went straight to col.
cdef enum:
    BLOCK_BYTES = 256 * 1024


cdef inline void _im2col_rows(const char* x_n, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                              Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t filter_h, Py_ssize_t filter_w,
                              Py_ssize_t stride_w, Py_ssize_t pad_w, Py_ssize_t out_w,
                              Py_ssize_t iy0, Py_ssize_t ox0, Py_ssize_t ox1,
                              floating* rows) noexcept nogil:
    """Write rows ox0..ox1-1 of one output line (image ``x_n``, top row ``iy0``).

    ``x_n`` points at x[n, 0, 0, 0]; strides are in bytes. ``rows`` is a
    contiguous (ox1 - ox0, K) block, K = C*filter_h*filter_w. It is filled one
    column (c, ky, kx) at a time: a column reads a stretch of one input row,
    and its stores fall in the same few cache lines as the next columns'.
    """
    cdef Py_ssize_t K = C * filter_h * filter_w
    cdef Py_ssize_t c, ky, kx, ox, iy, lo, hi
    cdef Py_ssize_t step = stride_w * s_w
    cdef const char* src
    cdef floating* d
    cdef floating* dst = rows
    for c in range(C):
        for ky in range(filter_h):
            iy = iy0 + ky
            for kx in range(filter_w):
                if 0 <= iy < H:
                    valid_range(kx - pad_w, stride_w, W, out_w, &lo, &hi)
                    lo = min(max(lo, ox0), ox1)
                    hi = max(min(hi, ox1), lo)
                else:
                    lo = hi = ox1
                d = dst
                for ox in range(ox0, lo):
                    d[0] = 0
                    d += K
                src = x_n + c * s_c + iy * s_h + (lo * stride_w + kx - pad_w) * s_w
                for ox in range(lo, hi):
                    d[0] = (<const floating*>src)[0]
                    d += K
                    src += step
                for ox in range(hi, ox1):
                    d[0] = 0
                    d += K
                dst += 1


cdef void im2col_core(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      floating[:, ::1] col, int num_threads) noexcept nogil:
    """Fill ``col`` (N*out_h*out_w, C*filter_h*filter_w) from ``x`` (N, C, H, W).

    Rows are ordered (n, oy, ox), columns (c, ky, kx); positions outside the
    image read as 0. ``x`` may have any strides. The caller guarantees the
    shapes agree and out_h, out_w >= 1. Parallel over output lines (n, oy);
    each thread builds its rows in a small buffer (or, if that cannot be
    allocated, in place).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t out_h = (H + 2 * pad_h - filter_h) // stride_h + 1
    cdef Py_ssize_t out_w = (W + 2 * pad_w - filter_w) // stride_w + 1
    cdef Py_ssize_t K = C * filter_h * filter_w
    cdef Py_ssize_t line, n, ox0, ox1
    if N == 0 or K == 0:
        return
    cdef const char* base = <const char*>&x[0, 0, 0, 0] if C > 0 and H > 0 and W > 0 else NULL
    cdef floating* col_data = &col[0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    if base == NULL:  # an image with no pixels: every window is padding
        memset(col_data, 0, N * out_h * out_w * K * sizeof(floating))
        return
    cdef Py_ssize_t block_rows = max(1, min(out_w, BLOCK_BYTES // (K * sizeof(floating))))
    cdef floating* block = NULL
    cdef floating* rows
    with parallel(num_threads=clamp_threads(num_threads, N * out_h, N * out_h * out_w * K)):
        block = <floating*>malloc(block_rows * K * sizeof(floating))
        for line in prange(N * out_h, schedule="static"):
            n = line // out_h
            ox0 = 0
            while ox0 < out_w:
                ox1 = min(ox0 + block_rows, out_w)
                rows = col_data + (line * out_w + ox0) * K
                _im2col_rows(base + n * s_n, s_c, s_h, s_w, C, H, W, filter_h, filter_w,
                             stride_w, pad_w, out_w, (line - n * out_h) * stride_h - pad_h,
                             ox0, ox1, block if block != NULL else rows)
                if block != NULL:
                    memcpy(rows, block, (ox1 - ox0) * K * sizeof(floating))
                ox0 = ox1
        free(block)


cdef void _im2col_nogil(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                        tuple stride, tuple pad, floating[:, ::1] col):
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t stride_h = stride[0], stride_w = stride[1], pad_h = pad[0], pad_w = pad[1]
    with nogil:
        im2col_core(x, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w, col, num_threads)


def im2col(input_data, filter_h, filter_w, stride=1, pad=0, *, out=None):
    """Unfold filter windows of a batch of images into the rows of a matrix.

    Drop-in for the book's ``common.util.im2col``; reads ``input_data`` through
    its strides (no copy) and allocates only the result.

    Parameters
    ----------
    input_data : array_like, shape (N, C, H, W)
        float32 or float64 (kept); float16 becomes float32, integers and
        bools become float64.
    filter_h, filter_w : int
        Filter height and width, >= 1.
    stride : int or (int, int), default 1
        Step between windows (>= 1), one value or (stride_h, stride_w).
    pad : int or (int, int), default 0
        Zero padding on each side (>= 0), one value or (pad_h, pad_w).
    out : ndarray, optional
        C-contiguous array of the result's shape and dtype to write into.

    Returns
    -------
    col : ndarray, shape (N*out_h*out_w, C*filter_h*filter_w)
        Rows ordered (n, oy, ox), columns (c, ky, kx), where
        ``out_h = (H + 2*pad_h - filter_h) // stride_h + 1`` (likewise out_w).

    Raises
    ------
    TypeError, ValueError
        For a non-real dtype, a wrong ndim, sizes or ``out`` that do not fit.

    Examples
    --------
    >>> import numpy as np
    >>> from cconv import im2col
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> im2col(x, 2, 2, stride=2)
    array([[ 0.,  1.,  4.,  5.],
           [ 2.,  3.,  6.,  7.],
           [ 8.,  9., 12., 13.],
           [10., 11., 14., 15.]])
    """
    x = as_float_array(input_data, "input_data", 4)
    fh = as_positive_int(filter_h, "filter_h")
    fw = as_positive_int(filter_w, "filter_w")
    stride = as_pair(stride, "stride", 1)
    pad = as_pair(pad, "pad", 0)
    N, C, H, W = x.shape
    out_h, out_w = conv_output_size((H, W), (fh, fw), stride, pad, "input_data")
    col = check_out(out, (N * out_h * out_w, C * fh * fw), x.dtype, (x,))
    if col.size == 0:
        return col
    if x.dtype == np.float32:
        _im2col_nogil[float](x, fh, fw, stride, pad, col)
    else:
        _im2col_nogil[double](x, fh, fw, stride, pad, col)
    return col

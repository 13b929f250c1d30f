"""im2col: unfold (N, C, H, W) images into a matrix of filter windows."""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cconv.kernels._common cimport clamp_threads, valid_range
from cconv.kernels._openmp cimport effective_num_threads

import numpy as np

from cconv._validation import as_float_array, as_pair, as_positive_int, check_out, conv_output_size


# col is built tile by tile: a tile is a run of consecutive rows of one image
# (whole output lines, or part of one long line) of about this many bytes. A
# thread builds its tile in a cache-resident buffer, then copies it out with
# one sequential memcpy, which writes whole cache lines and so spares reading
# them first, as the scattered stores of the build would if they went to col.
cdef enum:
    BLOCK_BYTES = 256 * 1024


cdef inline void _im2col_tile(const char* x_n, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                              Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t filter_h, Py_ssize_t filter_w,
                              Py_ssize_t stride_h, Py_ssize_t stride_w,
                              Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t out_w,
                              Py_ssize_t oy0, Py_ssize_t oy1, Py_ssize_t ox0, Py_ssize_t ox1,
                              floating* rows) noexcept nogil:
    """Write the col rows of output lines oy0..oy1-1, positions ox0..ox1-1, of one image.

    ``x_n`` points at x[n, 0, 0, 0]; strides are in bytes. ``rows`` is the
    contiguous ((oy1 - oy0) * (ox1 - ox0), K) block, K = C*filter_h*filter_w.
    It is filled one column (c, ky, kx) at a time: a column reads stretches
    of input rows, and its stores fall in the same cache lines as the next
    columns' stores.
    """
    cdef Py_ssize_t K = C * filter_h * filter_w
    cdef Py_ssize_t line_step = (ox1 - ox0) * K
    cdef Py_ssize_t c, ky, kx, oy, ox, iy, lo, hi
    cdef Py_ssize_t step = stride_w * s_w
    cdef const char* src
    cdef floating* d
    cdef floating* column = rows
    for c in range(C):
        for ky in range(filter_h):
            for kx in range(filter_w):
                valid_range(kx - pad_w, stride_w, W, out_w, &lo, &hi)
                lo = min(max(lo, ox0), ox1)
                hi = max(min(hi, ox1), lo)
                for oy in range(oy0, oy1):
                    iy = oy * stride_h - pad_h + ky
                    d = column + (oy - oy0) * line_step
                    if iy < 0 or iy >= H:
                        for ox in range(ox0, ox1):
                            d[0] = 0
                            d += K
                        continue
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
                column += 1


cdef void im2col_core(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      floating[:, ::1] col, int num_threads) noexcept nogil:
    """Fill ``col`` (N*out_h*out_w, C*filter_h*filter_w) from ``x`` (N, C, H, W).

    Rows are ordered (n, oy, ox), columns (c, ky, kx); positions outside the
    image read as 0. ``x`` may have any strides. The caller guarantees the
    shapes agree and out_h, out_w >= 1. Parallel over tiles of rows; each
    thread builds its tiles in a small buffer (or, if that cannot be
    allocated, in place).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t out_h = (H + 2 * pad_h - filter_h) // stride_h + 1
    cdef Py_ssize_t out_w = (W + 2 * pad_w - filter_w) // stride_w + 1
    cdef Py_ssize_t K = C * filter_h * filter_w
    if N == 0 or K == 0:
        return
    cdef const char* base = <const char*>&x[0, 0, 0, 0] if C > 0 and H > 0 and W > 0 else NULL
    cdef floating* col_data = &col[0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    if base == NULL:  # an image with no pixels: every window is padding
        memset(col_data, 0, N * out_h * out_w * K * sizeof(floating))
        return
    # A tile is tile_h whole lines when a line fits the budget, else tile_w
    # positions of one line; either way its rows are contiguous in col.
    cdef Py_ssize_t row_bytes = K * sizeof(floating)
    cdef Py_ssize_t tile_h = max(1, min(out_h, BLOCK_BYTES // (out_w * row_bytes)))
    cdef Py_ssize_t tile_w = out_w if tile_h > 1 else max(1, min(out_w, BLOCK_BYTES // row_bytes))
    cdef Py_ssize_t tiles_h = (out_h + tile_h - 1) // tile_h
    cdef Py_ssize_t tiles_w = (out_w + tile_w - 1) // tile_w
    cdef Py_ssize_t n_tiles = N * tiles_h * tiles_w
    cdef Py_ssize_t tile, n, rest, oy0, oy1, ox0, ox1
    cdef floating* block = NULL
    cdef floating* rows
    with parallel(num_threads=clamp_threads(num_threads, n_tiles, N * out_h * out_w * K)):
        block = <floating*>malloc(tile_h * tile_w * row_bytes)
        for tile in prange(n_tiles, schedule="static"):
            n = tile // (tiles_h * tiles_w)
            rest = tile - n * tiles_h * tiles_w
            oy0 = (rest // tiles_w) * tile_h
            oy1 = min(oy0 + tile_h, out_h)
            ox0 = (rest % tiles_w) * tile_w
            ox1 = min(ox0 + tile_w, out_w)
            rows = col_data + ((n * out_h + oy0) * out_w + ox0) * K
            _im2col_tile(base + n * s_n, s_c, s_h, s_w, C, H, W, filter_h, filter_w,
                         stride_h, stride_w, pad_h, pad_w, out_w, oy0, oy1, ox0, ox1,
                         block if block != NULL else rows)
            if block != NULL:
                memcpy(rows, block, (oy1 - oy0) * (ox1 - ox0) * row_bytes)
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

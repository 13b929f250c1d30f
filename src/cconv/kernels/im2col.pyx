"""im2col: unfold (N, C, H, W) images into a matrix of filter windows."""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cconv.kernels._common cimport (
    Tile, Tiling, Window, clamp_threads, make_tiling, make_window, tile_at, valid_range, window_size,
)
from cconv.kernels._openmp cimport effective_num_threads

import numpy as np

from cconv._validation import as_float_array, as_pair, check_out, conv_output_size, window_sizes


# col is built tile by tile: a tile is a run of consecutive rows of one image
# (whole output lines, or part of one long line) of about this many bytes. A
# thread builds its tile in a cache-resident buffer, then copies it out with
# one sequential memcpy, which writes whole cache lines and so spares reading
# them first, as the scattered stores of the build would if they went to col.
cdef enum:
    BLOCK_BYTES = 256 * 1024


cdef void im2col_tile(const char* x_n, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                      const Window* g, Py_ssize_t oy0, Py_ssize_t oy1, Py_ssize_t ox0, Py_ssize_t ox1,
                      Py_ssize_t position_step, Py_ssize_t column_step,
                      floating* rows) noexcept nogil:
    """Write the col entries of output lines oy0..oy1-1, positions ox0..ox1-1, of one image.

    ``x_n`` points at x[n, 0, 0, 0]; its strides are in bytes. Entry (p, k) of
    the tile (p counts the tile's positions, k the columns (c, ky, kx)) goes
    to ``rows[p * position_step + k * column_step]``: the book's row layout
    has steps (K, 1), K = C*filter_h*filter_w; the transposed (K, positions)
    layout that the convolution multiplies has steps (1, positions). A
    column is filled at a time: it reads stretches of input rows, and a
    transposed column of a stride-1 window is a plain copy of them.
    """
    cdef Py_ssize_t line_step = (ox1 - ox0) * position_step
    cdef Py_ssize_t c, ky, kx, oy, _ox, iy, lo, hi, i
    cdef Py_ssize_t step = g.stride_w * s_w
    cdef bint copy_runs = position_step == 1 and step == sizeof(floating)
    cdef const char* src
    cdef const floating* run
    cdef floating* d
    cdef floating* column = rows
    for c in range(g.channels):
        for ky in range(g.filter_h):
            for kx in range(g.filter_w):
                valid_range(kx * g.dilation_w - g.pad_w, g.stride_w, g.width, g.out_w, &lo, &hi)
                lo = min(max(lo, ox0), ox1)
                hi = max(min(hi, ox1), lo)
                for oy in range(oy0, oy1):
                    iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h
                    d = column + (oy - oy0) * line_step
                    if iy < 0 or iy >= g.height:
                        for _ox in range(ox0, ox1):
                            d[0] = 0
                            d += position_step
                        continue
                    for _ox in range(ox0, lo):
                        d[0] = 0
                        d += position_step
                    src = (x_n + c * s_c + iy * s_h
                           + (lo * g.stride_w + kx * g.dilation_w - g.pad_w) * s_w)
                    if copy_runs:  # neighbouring pixels: a loop the compiler vectorizes
                        run = <const floating*>src
                        for i in range(hi - lo):
                            d[i] = run[i]
                        d += hi - lo
                    else:
                        for _ox in range(lo, hi):
                            d[0] = (<const floating*>src)[0]
                            d += position_step
                            src += step
                    for _ox in range(hi, ox1):
                        d[0] = 0
                        d += position_step
                column += column_step


cdef void im2col_core(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                      floating[:, ::1] col, int num_threads) noexcept nogil:
    """Fill ``col`` (N*out_h*out_w, C*filter_h*filter_w) from ``x`` (N, C, H, W).

    Rows are ordered (n, oy, ox), columns (c, ky, kx); filter tap (ky, kx) of
    the window at (oy, ox) reads pixel (oy*stride_h - pad_h + ky*dilation_h,
    ox*stride_w - pad_w + kx*dilation_w), and positions outside the image read
    as 0. ``x`` may have any strides. The caller guarantees the shapes agree
    and out_h, out_w >= 1. Parallel over tiles of rows; each thread builds
    its tiles in a small buffer (or, if that cannot be allocated, in place).
    """
    cdef Py_ssize_t N = x.shape[0]
    cdef Window g = make_window(x.shape[1], x.shape[2], x.shape[3], filter_h, filter_w,
                                stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    cdef Py_ssize_t K = window_size(&g)
    if N == 0 or K == 0:
        return
    cdef Py_ssize_t positions = g.out_h * g.out_w
    cdef floating* col_data = &col[0, 0]
    if g.height == 0 or g.width == 0:  # an image with no pixels: every window is padding
        memset(col_data, 0, N * positions * K * sizeof(floating))
        return
    cdef const char* base = <const char*>&x[0, 0, 0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    cdef Py_ssize_t row_bytes = K * sizeof(floating)
    cdef Tiling t = make_tiling(&g, row_bytes, BLOCK_BYTES)
    cdef Py_ssize_t tiles_per_image = t.tiles_h * t.tiles_w
    cdef Py_ssize_t n_tiles = N * tiles_per_image
    cdef Py_ssize_t tile, n
    cdef Tile tb
    cdef floating* block = NULL
    cdef floating* rows
    with parallel(num_threads=clamp_threads(num_threads, n_tiles, N * positions * K)):
        block = <floating*>malloc(t.tile_h * t.tile_w * row_bytes)
        for tile in prange(n_tiles, schedule="static"):
            n = tile // tiles_per_image
            tb = tile_at(&g, &t, tile - n * tiles_per_image)
            rows = col_data + (n * positions + tb.oy0 * g.out_w + tb.ox0) * K
            im2col_tile(base + n * s_n, s_c, s_h, s_w, &g, tb.oy0, tb.oy1, tb.ox0, tb.ox1, K, 1,
                        block if block != NULL else rows)
            if block != NULL:
                memcpy(rows, block, (tb.oy1 - tb.oy0) * (tb.ox1 - tb.ox0) * row_bytes)
        free(block)


cdef void _im2col_with_gil_released(const floating[:, :, :, :] x, tuple filter_hw, tuple stride,
                                    tuple pad, tuple dilation, floating[:, ::1] col):
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t fh = filter_hw[0], fw = filter_hw[1]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = pad[0], pw = pad[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    with nogil:
        im2col_core(x, fh, fw, sh, sw, ph, pw, dh, dw, col, num_threads)


def im2col(input_data, filter_h, filter_w, stride=1, pad=0, dilation=1, *, out=None):
    """Unfold filter windows of a batch of images into the rows of a matrix.

    Drop-in for the book's ``common.util.im2col``; reads ``input_data`` through
    its strides (no copy) and allocates only the result. Equal to
    ``torch.nn.functional.unfold(x, (filter_h, filter_w), dilation, pad,
    stride)`` transposed to (N*out_h*out_w, C*filter_h*filter_w).

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
    dilation : int or (int, int), default 1
        Step between the taps of a filter (>= 1): tap (ky, kx) of the window
        at (oy, ox) reads pixel (oy*stride_h - pad_h + ky*dilation_h,
        ox*stride_w - pad_w + kx*dilation_w).
    out : ndarray, optional
        C-contiguous array of the result's shape and dtype to write into.

    Returns
    -------
    col : ndarray, shape (N*out_h*out_w, C*filter_h*filter_w)
        Rows ordered (n, oy, ox), columns (c, ky, kx), where
        ``out_h = (H + 2*pad_h - dilation_h*(filter_h - 1) - 1) // stride_h + 1``
        (likewise out_w; with dilation 1, the book's
        ``(H + 2*pad_h - filter_h) // stride_h + 1``).

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
    >>> im2col(x, 2, 2, dilation=2)
    array([[ 0.,  2.,  8., 10.],
           [ 1.,  3.,  9., 11.],
           [ 4.,  6., 12., 14.],
           [ 5.,  7., 13., 15.]])
    """
    x = as_float_array(input_data, "input_data", 4)
    filter_hw = window_sizes(filter_h, filter_w)
    stride = as_pair(stride, "stride", 1)
    pad = as_pair(pad, "pad", 0)
    dilation = as_pair(dilation, "dilation", 1)
    N, C, H, W = x.shape
    out_h, out_w = conv_output_size((H, W), filter_hw, stride, pad, "input_data", dilation)
    col = check_out(out, (N * out_h * out_w, C * filter_hw[0] * filter_hw[1]), x.dtype, (x,))
    if col.size == 0:
        return col
    if x.dtype == np.float32:
        _im2col_with_gil_released[float](x, filter_hw, stride, pad, dilation, col)
    else:
        _im2col_with_gil_released[double](x, filter_hw, stride, pad, dilation, col)
    return col

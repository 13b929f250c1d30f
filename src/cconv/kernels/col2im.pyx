"""col2im: fold a matrix of filter windows back into (N, C, H, W) images."""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cconv.kernels._common cimport Window, clamp_threads, make_window, valid_range, window_size
from cconv.kernels._openmp cimport effective_num_threads

import numpy as np

from cconv._validation import (
    as_float_array, as_pair, check_out, check_shape, conv_output_size, input_shape_tuple,
    window_sizes,
)


# Each line of col is read in blocks of about this many bytes. For a
# contiguous col and a thread that owns whole images, a block is first copied
# into a per-thread buffer with one sequential memcpy (which streams well),
# then summed from there.
cdef enum:
    BLOCK_BYTES = 256 * 1024


cdef void col2im_tile(const char* rows, Py_ssize_t s_row, Py_ssize_t s_col,
                      Py_ssize_t c0, Py_ssize_t c1, const Window* g,
                      Py_ssize_t oy0, Py_ssize_t oy1, Py_ssize_t ox0, Py_ssize_t ox1,
                      floating* img_n) noexcept nogil:
    """Add the col entries of lines oy0..oy1-1, positions ox0..ox1-1, into channels c0..c1-1.

    ``rows`` points at the tile's first entry; ``s_row`` steps from one of
    its positions to the next and ``s_col`` from one column (c, ky, kx) to
    the next, in bytes (the book's row layout, or the transposed layout the
    convolution's products write). ``img_n`` is the contiguous (C, H, W)
    image. Entries are read a column at a time, the order in which
    :func:`im2col_tile` writes them, and every pixel sums its contributions
    in the same order whatever the tiling of the lines.
    """
    cdef Py_ssize_t oy, _ox, c, ky, kx, iy, lo, hi, n
    cdef Py_ssize_t H = g.height, W = g.width
    cdef Py_ssize_t line_bytes = (ox1 - ox0) * s_row
    cdef bint contiguous = s_row == sizeof(floating) and g.stride_w == 1
    cdef const char* src
    cdef const floating* run
    cdef floating* dst
    for oy in range(oy0, oy1):
        for c in range(c0, c1):
            for ky in range(g.filter_h):
                iy = oy * g.stride_h - g.pad_h + ky * g.dilation_h
                if iy < 0 or iy >= H:
                    continue
                for kx in range(g.filter_w):
                    valid_range(kx * g.dilation_w - g.pad_w, g.stride_w, W, g.out_w, &lo, &hi)
                    lo = min(max(lo, ox0), ox1)
                    hi = max(min(hi, ox1), lo)
                    src = (rows + (oy - oy0) * line_bytes + (lo - ox0) * s_row
                           + ((c * g.filter_h + ky) * g.filter_w + kx) * s_col)
                    dst = img_n + (c * H + iy) * W + lo * g.stride_w + kx * g.dilation_w - g.pad_w
                    if contiguous:  # a run of neighbouring pixels: a loop the compiler vectorizes
                        run = <const floating*>src
                        for n in range(hi - lo):
                            dst[n] += run[n]
                    else:
                        for _ox in range(lo, hi):
                            dst[0] += (<const floating*>src)[0]
                            dst += g.stride_w
                            src += s_row


cdef inline void _col2im_image(const char* col_n, Py_ssize_t s_row, Py_ssize_t s_col,
                               Py_ssize_t c0, Py_ssize_t c1, const Window* g,
                               Py_ssize_t block_rows, floating* block,
                               floating* img_n) noexcept nogil:
    """Fold the col rows of one image (``col_n``) into channels c0..c1-1 of ``img_n``.

    ``block`` (block_rows x K, or NULL) is the thread's buffer, used only for
    a contiguous col. Every pixel sums its contributions in the same order
    (line by line, block by block, column by column) whatever the channel
    split and ``block``, so results do not depend on the thread count.
    """
    cdef Py_ssize_t K = window_size(g)
    cdef Py_ssize_t oy, ox0, ox1
    cdef const char* rows
    cdef bint copy = block != NULL and s_col == sizeof(floating) and s_row == K * s_col
    memset(img_n + c0 * g.height * g.width, 0, (c1 - c0) * g.height * g.width * sizeof(floating))
    for oy in range(g.out_h):
        ox0 = 0
        while ox0 < g.out_w:
            ox1 = min(ox0 + block_rows, g.out_w)
            rows = col_n + (oy * g.out_w + ox0) * s_row
            if copy:
                memcpy(block, rows, (ox1 - ox0) * K * sizeof(floating))
                rows = <const char*>block
            col2im_tile(rows, s_row, s_col, c0, c1, g, oy, oy + 1, ox0, ox1, img_n)
            ox0 = ox1


cdef void col2im_core(const floating[:, :] col, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                      floating[:, :, :, ::1] img, int num_threads) noexcept nogil:
    """Fold ``col`` (N*out_h*out_w, C*filter_h*filter_w) into ``img`` (N, C, H, W).

    The adjoint of :func:`im2col_core`: every col entry is added to the pixel
    it was read from; entries that fall in the padding are dropped. ``img`` is
    overwritten (no need to zero it); ``col`` may have any strides. Each
    thread owns whole images (or, for a batch smaller than the thread count,
    whole channels), so no pixel is written by two threads.
    """
    cdef Py_ssize_t N = img.shape[0], C = img.shape[1]
    cdef Window g = make_window(C, img.shape[2], img.shape[3], filter_h, filter_w,
                                stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    cdef Py_ssize_t K = window_size(&g)
    cdef Py_ssize_t n, task
    if N == 0 or C == 0 or g.height == 0 or g.width == 0:
        return
    cdef const char* col_data = <const char*>&col[0, 0]
    cdef Py_ssize_t s_image = g.out_h * g.out_w * col.strides[0]
    cdef Py_ssize_t s_row = col.strides[0], s_col = col.strides[1]
    cdef floating* img_data = &img[0, 0, 0, 0]
    cdef Py_ssize_t image_size = C * g.height * g.width
    cdef Py_ssize_t block_rows = max(1, min(g.out_w, BLOCK_BYTES // (K * sizeof(floating))))
    cdef floating* block = NULL
    num_threads = clamp_threads(num_threads, N * C, N * g.out_h * g.out_w * K)
    if N >= num_threads:
        with parallel(num_threads=num_threads):
            block = <floating*>malloc(block_rows * K * sizeof(floating))
            for n in prange(N, schedule="static"):
                _col2im_image(col_data + n * s_image, s_row, s_col, 0, C, &g,
                              block_rows, block, img_data + n * image_size)
            free(block)
    else:
        for task in prange(N * C, schedule="static", num_threads=num_threads):
            n = task // C
            _col2im_image(col_data + n * s_image, s_row, s_col, task - n * C, task - n * C + 1,
                          &g, block_rows, NULL, img_data + n * image_size)


cdef void _col2im_with_gil_released(const floating[:, :] col, tuple filter_hw, tuple stride,
                                    tuple pad, tuple dilation, floating[:, :, :, ::1] img):
    cdef int num_threads = effective_num_threads()
    cdef Py_ssize_t fh = filter_hw[0], fw = filter_hw[1]
    cdef Py_ssize_t sh = stride[0], sw = stride[1], ph = pad[0], pw = pad[1]
    cdef Py_ssize_t dh = dilation[0], dw = dilation[1]
    with nogil:
        col2im_core(col, fh, fw, sh, sw, ph, pw, dh, dw, img, num_threads)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0, dilation=1, *, out=None):
    """Fold a matrix of filter windows back into a batch of images.

    The exact adjoint of :func:`im2col` (where windows overlap, their values
    sum) and a drop-in for the book's ``common.util.col2im``; equal to
    ``torch.nn.functional.fold`` of the transposed ``col``.

    Parameters
    ----------
    col : array_like, shape (N*out_h*out_w, C*filter_h*filter_w)
        Rows ordered (n, oy, ox), columns (c, ky, kx), as im2col returns them;
        any strides. Same dtype policy as :func:`im2col`.
    input_shape : sequence of 4 ints
        (N, C, H, W) of the images.
    filter_h, filter_w : int
        Filter height and width, >= 1.
    stride, pad, dilation : int or (int, int)
        As for :func:`im2col`.
    out : ndarray, optional
        C-contiguous (N, C, H, W) array of col's dtype to write into.

    Returns
    -------
    img : ndarray, shape (N, C, H, W), dtype of col

    Raises
    ------
    TypeError, ValueError
        For a non-real dtype, ``col`` whose shape does not match
        ``input_shape`` and the filter, or an ``out`` that does not fit.

    Examples
    --------
    >>> import numpy as np
    >>> from cconv import col2im
    >>> col2im(np.ones((4, 4)), (1, 1, 3, 3), 2, 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    col = as_float_array(col, "col", 2)
    N, C, H, W = input_shape_tuple(input_shape)
    filter_hw = window_sizes(filter_h, filter_w)
    stride = as_pair(stride, "stride", 1)
    pad = as_pair(pad, "pad", 0)
    dilation = as_pair(dilation, "dilation", 1)
    out_h, out_w = conv_output_size((H, W), filter_hw, stride, pad, "input_shape", dilation)
    window = f"a {filter_hw[0]}x{filter_hw[1]} filter, stride {stride}"
    window += f" and pad {pad}" if dilation == (1, 1) else f", pad {pad} and dilation {dilation}"
    check_shape(col, (N * out_h * out_w, C * filter_hw[0] * filter_hw[1]), "col",
                context=f" for input_shape {(N, C, H, W)} with {window}")
    img = check_out(out, (N, C, H, W), col.dtype, (col,))
    if img.size == 0:
        return img
    if col.dtype == np.float32:
        _col2im_with_gil_released[float](col, filter_hw, stride, pad, dilation, img)
    else:
        _col2im_with_gil_released[double](col, filter_hw, stride, pad, dilation, img)
    return img

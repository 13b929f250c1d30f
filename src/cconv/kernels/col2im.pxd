from cython cimport floating

from cconv.kernels._common cimport Window


cdef void col2im_core(const floating[:, :] col, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                      floating[:, :, :, ::1] img, int num_threads) noexcept nogil

# The tile folder the convolution kernels share (see its docstring).
cdef void col2im_tile(const char* rows, Py_ssize_t s_row, Py_ssize_t s_col,
                      Py_ssize_t c0, Py_ssize_t c1, const Window* g,
                      Py_ssize_t oy0, Py_ssize_t oy1, Py_ssize_t ox0, Py_ssize_t ox1,
                      floating* img_n) noexcept nogil

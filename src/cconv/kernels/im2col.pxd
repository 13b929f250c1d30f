from cython cimport floating

from cconv.kernels._common cimport Window


cdef void im2col_core(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                      floating[:, ::1] col, int num_threads) noexcept nogil

# The tile builder the convolution kernels share (see its docstring).
cdef void im2col_tile(const char* x_n, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                      const Window* g, Py_ssize_t oy0, Py_ssize_t oy1, Py_ssize_t ox0, Py_ssize_t ox1,
                      Py_ssize_t position_step, Py_ssize_t column_step,
                      floating* rows) noexcept nogil

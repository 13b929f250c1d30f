from cython cimport floating


cdef int conv2d_core(const floating[:, :, :, :] x, const floating[:, :, :, ::1] weight,
                     const floating[::1] bias,
                     Py_ssize_t stride_h, Py_ssize_t stride_w,
                     Py_ssize_t pad_h, Py_ssize_t pad_w,
                     Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     floating[:, :, :, ::1] out, int num_threads) noexcept nogil

cdef int conv2d_backward_core(const floating[:, :, :, ::1] dout, const floating[:, :, :, :] x,
                              const floating[:, :, :, ::1] weight,
                              Py_ssize_t stride_h, Py_ssize_t stride_w,
                              Py_ssize_t pad_h, Py_ssize_t pad_w,
                              Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                              floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dweight,
                              floating[::1] dbias, bint need_input_grad,
                              int num_threads) noexcept nogil

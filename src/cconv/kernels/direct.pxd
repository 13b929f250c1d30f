# The direct stride-1 float32 convolution that conv.pyx's cores hand over to
# where it applies (see direct.pyx). The callers guarantee the sizes.


cdef bint direct_applies(Py_ssize_t stride_h, Py_ssize_t stride_w) noexcept nogil

cdef bint direct_applies_to_input_grad(const float* weight, Py_ssize_t size,
                                       Py_ssize_t filter_h, Py_ssize_t filter_w,
                                       Py_ssize_t pad_h, Py_ssize_t pad_w,
                                       Py_ssize_t dilation_h, Py_ssize_t dilation_w) noexcept nogil

cdef int direct_conv2d(const float[:, :, :, :] x, const float[:, :, :, ::1] weight,
                       const float[::1] bias, Py_ssize_t pad_h, Py_ssize_t pad_w,
                       Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                       float[:, :, :, ::1] out, int num_threads) noexcept nogil

cdef int direct_conv2d_backward(const float[:, :, :, ::1] dout, const float[:, :, :, :] x,
                                const float[:, :, :, ::1] weight,
                                Py_ssize_t pad_h, Py_ssize_t pad_w,
                                Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                                float[:, :, :, ::1] dx, float[:, :, :, ::1] dweight,
                                float[::1] dbias, bint need_input_grad,
                                int num_threads) noexcept nogil

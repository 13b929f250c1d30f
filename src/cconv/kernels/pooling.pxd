from cython cimport floating
from libc.stdint cimport int64_t


cdef void max_pool2d_core(const floating[:, :, :, :] x, Py_ssize_t pool_h, Py_ssize_t pool_w,
                          Py_ssize_t stride_h, Py_ssize_t stride_w,
                          Py_ssize_t pad_h, Py_ssize_t pad_w,
                          floating[:, :, :, ::1] out, int64_t[:, :, :, ::1] argmax,
                          int num_threads) noexcept nogil

# Returns the number of argmax entries outside the window (they route nothing).
cdef Py_ssize_t max_pool2d_backward_core(const floating[:, :, :, :] dout,
                                         const int64_t[:, :, :, :] argmax,
                                         Py_ssize_t pool_h, Py_ssize_t pool_w,
                                         Py_ssize_t stride_h, Py_ssize_t stride_w,
                                         Py_ssize_t pad_h, Py_ssize_t pad_w,
                                         floating[:, :, :, ::1] dx, int num_threads) noexcept nogil

cdef void avg_pool2d_core(const floating[:, :, :, :] x, Py_ssize_t pool_h, Py_ssize_t pool_w,
                          Py_ssize_t stride_h, Py_ssize_t stride_w,
                          Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad,
                          floating[:, :, :, ::1] out, int num_threads) noexcept nogil

cdef void avg_pool2d_backward_core(const floating[:, :, :, :] dout,
                                   Py_ssize_t pool_h, Py_ssize_t pool_w,
                                   Py_ssize_t stride_h, Py_ssize_t stride_w,
                                   Py_ssize_t pad_h, Py_ssize_t pad_w, bint count_include_pad,
                                   floating[:, :, :, ::1] dx, int num_threads) noexcept nogil

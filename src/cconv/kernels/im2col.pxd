from cython cimport floating


cdef void im2col_core(const floating[:, :, :, :] x, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      floating[:, ::1] col, int num_threads) noexcept nogil

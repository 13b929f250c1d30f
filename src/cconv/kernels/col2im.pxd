from cython cimport floating


cdef void col2im_core(const floating[:, :] col, Py_ssize_t filter_h, Py_ssize_t filter_w,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w,
                      floating[:, :, :, ::1] img, int num_threads) noexcept nogil

from cython cimport floating


cdef void adam_update_core(floating[::1] param, const floating[::1] grad, floating[::1] m,
                           floating[::1] v, double lr_t, double beta1, double beta2, double eps,
                           int num_threads) noexcept nogil

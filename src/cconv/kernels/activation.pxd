from cython cimport floating


cdef void relu_core(const floating[::1] x, floating[::1] out, unsigned char[::1] mask,
                    int num_threads) noexcept nogil

cdef void relu_backward_core(const floating[::1] dout, const unsigned char[::1] mask,
                             floating[::1] dx, int num_threads) noexcept nogil

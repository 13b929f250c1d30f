# Thread control shared by the kernels: how many OpenMP threads a kernel uses.

cdef int effective_num_threads() noexcept nogil

"""OpenMP availability and the thread count of the cconv kernels."""

from cconv._validation import check_int

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CCONV_OPENMP_ENABLED 1
    static int cconv_omp_max_threads(void) { return omp_get_max_threads(); }
    static int cconv_omp_num_procs(void) { return omp_get_num_procs(); }
    #else
    #define CCONV_OPENMP_ENABLED 0
    static int cconv_omp_max_threads(void) { return 1; }
    static int cconv_omp_num_procs(void) { return 1; }
    #endif
    """
    int CCONV_OPENMP_ENABLED
    int cconv_omp_max_threads() noexcept nogil
    int cconv_omp_num_procs() noexcept nogil

# More threads than this per processor only cost: requests above it are capped
# (a runaway count would make the OpenMP runtime fail to create threads).
cdef enum:
    THREADS_PER_PROC = 4

# 0: follow OpenMP's own setting (OMP_NUM_THREADS, omp_set_num_threads,
# threadpoolctl); otherwise the count chosen with set_num_threads().
cdef int _num_threads = 0


cdef int effective_num_threads() noexcept nogil:
    """Number of threads the next kernel call uses (1 in a serial build)."""
    if not CCONV_OPENMP_ENABLED:
        return 1
    cdef int requested = _num_threads if _num_threads > 0 else cconv_omp_max_threads()
    return max(min(requested, THREADS_PER_PROC * cconv_omp_num_procs()), 1)


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP support."""
    return bool(CCONV_OPENMP_ENABLED)


def get_num_threads():
    """Return the number of threads the kernels use (int >= 1).

    Unless set with :func:`set_num_threads`, this follows OpenMP's setting:
    ``OMP_NUM_THREADS``, else the number of cores. Always 1 in a serial build;
    never more than 4 per processor. A kernel uses fewer when it has fewer
    independent tasks (images, channels or output lines) than threads.
    """
    return effective_num_threads()


def set_num_threads(n):
    """Set the number of threads the kernels use.

    Parameters
    ----------
    n : int >= 1 or None
        Thread count; ``None`` goes back to following OpenMP's setting
        (``OMP_NUM_THREADS``). Counts above 4 per processor are capped there.
        In a serial build the kernels always use 1.
    """
    global _num_threads
    if n is None:
        _num_threads = 0
        return
    _num_threads = min(check_int(n, "n"), 1 << 20)

# Inline functions shared by the kernel modules (no C API of their own).


cdef inline Py_ssize_t clip_low(Py_ssize_t start) noexcept nogil:
    """First in-bounds offset of a window that starts at ``start`` (may be < 0)."""
    return -start if start < 0 else 0


cdef inline Py_ssize_t clip_high(Py_ssize_t start, Py_ssize_t size, Py_ssize_t extent) noexcept nogil:
    """One past the last in-bounds offset of a window of ``size`` at ``start``."""
    return size if start + size <= extent else extent - start


cdef inline void valid_range(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t extent,
                             Py_ssize_t count, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Positions o in [lo, hi) of 0..count-1 whose input index o*stride + offset is in [0, extent).

    Short loops instead of divisions: only windows that touch the padding move
    the bounds, so each loop runs about pad/stride times.
    """
    lo[0] = 0
    while lo[0] < count and lo[0] * stride + offset < 0:
        lo[0] += 1
    hi[0] = count
    while hi[0] > lo[0] and (hi[0] - 1) * stride + offset >= extent:
        hi[0] -= 1


cdef enum:
    # Below this many elements of work per thread, waking another thread
    # costs more than it saves.
    MIN_WORK_PER_THREAD = 32768


cdef inline int clamp_threads(int num_threads, Py_ssize_t tasks, Py_ssize_t work) noexcept nogil:
    """Threads for a loop of ``tasks`` iterations touching ``work`` elements.

    At least 1, at most ``tasks``, and no more than one per
    MIN_WORK_PER_THREAD elements, so small calls run serially.
    """
    if num_threads > tasks:
        num_threads = <int>tasks
    if num_threads > work // MIN_WORK_PER_THREAD:
        num_threads = <int>(work // MIN_WORK_PER_THREAD)
    return num_threads if num_threads >= 1 else 1

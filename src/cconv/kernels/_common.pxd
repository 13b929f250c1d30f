# Inline functions shared by the kernel modules (no C API of their own).

from cython cimport floating
from cython.parallel cimport prange


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
    # The backward passes of the convolution sum dW and db over this many
    # fixed chunks of the batch (fewer for a smaller batch), then add the
    # chunks in order: the result does not depend on the thread count.
    BACKWARD_CHUNKS = 12
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


ctypedef struct Window:
    # Geometry of filter windows over (C, H, W) images: the input extent, the
    # filter, its stride, zero padding and dilation, and the output extent.
    Py_ssize_t channels, height, width
    Py_ssize_t filter_h, filter_w
    Py_ssize_t stride_h, stride_w
    Py_ssize_t pad_h, pad_w
    Py_ssize_t dilation_h, dilation_w
    Py_ssize_t out_h, out_w


cdef inline Py_ssize_t output_size(Py_ssize_t size, Py_ssize_t filter_size, Py_ssize_t stride,
                                   Py_ssize_t pad, Py_ssize_t dilation) noexcept nogil:
    """Number of window positions along one axis (the caller ensures it is >= 1).

    The kernels' one output-size formula, the same as Python's
    ``cconv._validation.output_length``.
    """
    return (size + 2 * pad - dilation * (filter_size - 1) - 1) // stride + 1


cdef inline Window make_window(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width,
                               Py_ssize_t filter_h, Py_ssize_t filter_w,
                               Py_ssize_t stride_h, Py_ssize_t stride_w,
                               Py_ssize_t pad_h, Py_ssize_t pad_w,
                               Py_ssize_t dilation_h, Py_ssize_t dilation_w) noexcept nogil:
    cdef Window g
    g.channels, g.height, g.width = channels, height, width
    g.filter_h, g.filter_w = filter_h, filter_w
    g.stride_h, g.stride_w = stride_h, stride_w
    g.pad_h, g.pad_w = pad_h, pad_w
    g.dilation_h, g.dilation_w = dilation_h, dilation_w
    g.out_h = output_size(height, filter_h, stride_h, pad_h, dilation_h)
    g.out_w = output_size(width, filter_w, stride_w, pad_w, dilation_w)
    return g


cdef inline Py_ssize_t window_size(const Window* g) noexcept nogil:
    """Entries per window, C*filter_h*filter_w (the columns of col)."""
    return g.channels * g.filter_h * g.filter_w


ctypedef struct Tiling:
    # Rows of col (output positions of one image) split into tiles: tile_h
    # whole output lines when a line fits the budget, else tile_w positions
    # of one line; either way a tile's positions are consecutive.
    Py_ssize_t tile_h, tile_w, tiles_h, tiles_w


cdef inline Tiling make_tiling(const Window* g, Py_ssize_t row_bytes, Py_ssize_t budget) noexcept nogil:
    """Tiles of at most ``budget`` bytes (at least one position) of rows of ``row_bytes``."""
    cdef Tiling t
    t.tile_h = max(1, min(g.out_h, budget // max(1, g.out_w * row_bytes)))
    t.tile_w = g.out_w if t.tile_h > 1 else max(1, min(g.out_w, budget // max(1, row_bytes)))
    t.tiles_h = (g.out_h + t.tile_h - 1) // t.tile_h
    t.tiles_w = (g.out_w + t.tile_w - 1) // t.tile_w
    return t


ctypedef struct Tile:
    # Output lines [oy0, oy1) and positions [ox0, ox1) of one tile of an image.
    Py_ssize_t oy0, oy1, ox0, ox1


cdef inline Tile tile_at(const Window* g, const Tiling* t, Py_ssize_t index) noexcept nogil:
    """Tile number ``index`` of an image (tiles run line by line)."""
    cdef Tile tile
    tile.oy0 = (index // t.tiles_w) * t.tile_h
    tile.oy1 = min(tile.oy0 + t.tile_h, g.out_h)
    tile.ox0 = (index % t.tiles_w) * t.tile_w
    tile.ox1 = min(tile.ox0 + t.tile_w, g.out_w)
    return tile


cdef inline floating sum_in_order(const floating* values, Py_ssize_t count,
                                  Py_ssize_t step) noexcept nogil:
    """values[0] + values[step] + ... + values[(count - 1)*step], added in that order."""
    cdef floating total = 0
    cdef Py_ssize_t i
    for i in range(count):
        total = total + values[i * step]
    return total


cdef inline void add_chunks_in_order(const floating* partials, Py_ssize_t n_chunks,
                                     Py_ssize_t partial_size, Py_ssize_t filters, Py_ssize_t taps,
                                     Py_ssize_t filter_step, Py_ssize_t tap_step,
                                     floating* dw, floating* db, int num_threads) noexcept nogil:
    """dW (filters, taps) and db of the convolutions' backward passes: their chunks' sums, added in order.

    Chunk c's dW entry (f, k) is partials[c*partial_size + f*filter_step +
    k*tap_step], its db entries follow its filters*taps dW entries. In
    parallel over the filters; the result does not depend on the thread count.
    """
    cdef Py_ssize_t f, k
    for f in prange(filters, schedule="static", num_threads=num_threads):
        for k in range(taps):
            dw[f * taps + k] = sum_in_order(partials + f * filter_step + k * tap_step,
                                            n_chunks, partial_size)
        db[f] = sum_in_order(partials + filters * taps + f, n_chunks, partial_size)

"""Direct float32 convolution with stride 1, on the micro-kernels of ``direct_conv.h``.

The GEMM path of :mod:`cconv.kernels.conv` unfolds every window into a tile
and hands it to BLAS, which packs it once more: for the small filters of
CNNs that copying costs as much as the products. Here nothing is unfolded.
Each task copies a band of an image's rows, zero-padded, into a buffer of its
own, and register-blocked kernels read each tap straight from it (one offset
per tap into the padded rows, see ``direct_conv.h``):

* forward: four filters by two or three vectors of 8 outputs of a row per
  block, the bias added in the same pass, written straight into ``out``;
* input gradient: the forward pass of ``dout`` with the filters flipped and
  their axes swapped (for stride 1 that is exactly col2im of ``dout @ W``);
* weight gradient: four filters by three taps per block, summed over the
  output positions of fixed chunks of images, chunks added in order (the
  result does not depend on the thread count).

:mod:`cconv.kernels.conv` takes this path for float32 with stride 1 when the
CPU has AVX2 and FMA; the callers guarantee the sizes, as for its cores.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport isfinite
from libc.stddef cimport ptrdiff_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cconv.kernels._common cimport (
    BACKWARD_CHUNKS, add_chunks_in_order, clamp_threads, output_size, sum_in_order,
)


cdef extern from "direct_conv.h" nogil:
    enum:
        CCONV_DIRECT_FILTERS
        CCONV_DIRECT_LANES
    int cconv_direct_supported()
    void cconv_direct_forward_f32(const float* x, ptrdiff_t x_row_stride,
                                  const ptrdiff_t* offsets, ptrdiff_t taps, const float* packed,
                                  const float* bias, ptrdiff_t out_channels, ptrdiff_t rows,
                                  ptrdiff_t row_length, int vectors, float* out,
                                  ptrdiff_t out_stride)
    void cconv_direct_weight_grad_f32(const float* x, ptrdiff_t x_item_stride,
                                      ptrdiff_t x_row_stride, const ptrdiff_t* offsets,
                                      ptrdiff_t taps, const float* dout, ptrdiff_t dout_stride,
                                      ptrdiff_t dout_item_stride, ptrdiff_t out_channels,
                                      ptrdiff_t items, ptrdiff_t rows, ptrdiff_t row_length,
                                      float* dw, ptrdiff_t dw_stride)


cdef enum:
    # A band's padded input and its outputs take about this many bytes, so
    # that they stay in a core's L2 (at least one output row per band).
    BAND_BYTES = 256 * 1024
    # Zeros after a band's last plane: the forward kernel's last vector of a
    # row may read up to 7 floats past it.
    SLACK = 16


cdef bint _supported = cconv_direct_supported() != 0
cdef bint _enabled = _supported


def supported():
    """True when this CPU runs the direct kernels (x86-64 with AVX2 and FMA)."""
    return bool(_supported)


def set_enabled(enabled):
    """Let conv2d use the direct path where it applies (True) or never (False); returns the old setting.

    For tests and benchmarks that compare it with the GEMM path. Not thread-safe
    against convolutions running meanwhile.
    """
    global _enabled
    previous = bool(_enabled)
    _enabled = bool(enabled) and _supported
    return previous


cdef bint direct_applies(Py_ssize_t stride_h, Py_ssize_t stride_w) noexcept nogil:
    return _enabled and stride_h == 1 and stride_w == 1


cdef bint direct_applies_to_input_grad(const float* weight, Py_ssize_t size,
                                       Py_ssize_t filter_h, Py_ssize_t filter_w,
                                       Py_ssize_t pad_h, Py_ssize_t pad_w,
                                       Py_ssize_t dilation_h, Py_ssize_t dilation_w) noexcept nogil:
    # The flipped convolution pads dout by dilation*(F-1) - pad (>= 0 needed)
    # and multiplies that padding by the filters: 0*inf would be NaN where the
    # exact sum has no such term, so non-finite filters take the GEMM path.
    cdef Py_ssize_t i
    if pad_h > dilation_h * (filter_h - 1) or pad_w > dilation_w * (filter_w - 1):
        return False
    for i in range(size):
        if not isfinite(weight[i]):
            return False
    return True


ctypedef struct Plan:
    # A stride-1 convolution of (channels, height, width) images into
    # (out_channels, out_h, out_w), cut into bands of band_h output rows.
    Py_ssize_t channels, height, width, out_channels
    Py_ssize_t filter_h, filter_w, pad_h, pad_w, dilation_h, dilation_w
    Py_ssize_t out_h, out_w
    Py_ssize_t padded_w       # width + 2*pad_w: the row stride of the padded bands
    Py_ssize_t taps           # channels*filter_h*filter_w
    Py_ssize_t filters_r      # out_channels rounded up to CCONV_DIRECT_FILTERS
    Py_ssize_t band_h, bands
    int vectors               # 2 or 3 vectors of 8 outputs per forward block
    Py_ssize_t input_size     # floats of a band's padded input, SLACK included


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t step) noexcept nogil:
    return (n + step - 1) // step * step


cdef Plan _make_plan(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width,
                     Py_ssize_t out_channels, Py_ssize_t filter_h, Py_ssize_t filter_w,
                     Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t dilation_h,
                     Py_ssize_t dilation_w, Py_ssize_t min_bands) noexcept nogil:
    """The plan of a convolution; at least ``min_bands`` bands per image where it has the rows."""
    cdef Plan p
    cdef Py_ssize_t row_bytes, band_vectors
    p.channels, p.height, p.width, p.out_channels = channels, height, width, out_channels
    p.filter_h, p.filter_w, p.pad_h, p.pad_w = filter_h, filter_w, pad_h, pad_w
    p.dilation_h, p.dilation_w = dilation_h, dilation_w
    p.out_h = output_size(height, filter_h, 1, pad_h, dilation_h)
    p.out_w = output_size(width, filter_w, 1, pad_w, dilation_w)
    p.padded_w = width + 2 * pad_w
    p.taps = channels * filter_h * filter_w
    p.filters_r = _round_up(out_channels, CCONV_DIRECT_FILTERS)
    row_bytes = (channels * p.padded_w + out_channels * p.out_w) * sizeof(float)
    p.band_h = max(1, min(p.out_h, BAND_BYTES // row_bytes))
    if min_bands > 1:
        p.band_h = min(p.band_h, max(1, (p.out_h + min_bands - 1) // min_bands))
    p.bands = (p.out_h + p.band_h - 1) // p.band_h
    band_vectors = p.band_h * ((p.out_w + CCONV_DIRECT_LANES - 1) // CCONV_DIRECT_LANES)
    # The block width that computes fewer repeated vectors (3 on a tie).
    p.vectors = 2 if _round_up(band_vectors, 2) < _round_up(band_vectors, 3) else 3
    p.input_size = channels * (p.band_h + dilation_h * (filter_h - 1)) * p.padded_w + SLACK
    return p


cdef void _pack_filters(const float* weight, const Plan* p, bint flipped, float* packed) noexcept nogil:
    """The filters in the forward kernel's layout: blocks of 4 output channels, taps, channel.

    ``weight`` is (out_channels, channels, FH, FW), or, when ``flipped``,
    (channels, out_channels, FH, FW) read with both filter axes reversed (the
    filters of the input gradient). Rows past out_channels are zeros.
    """
    cdef Py_ssize_t FH = p.filter_h, FW = p.filter_w, o, c, ky, kx, k
    cdef Py_ssize_t fr = CCONV_DIRECT_FILTERS
    for o in range(p.filters_r):
        for c in range(p.channels):
            for ky in range(FH):
                for kx in range(FW):
                    k = (c * FH + ky) * FW + kx
                    if o >= p.out_channels:
                        packed[(o // fr) * p.taps * fr + k * fr + o % fr] = 0
                    elif flipped:
                        packed[(o // fr) * p.taps * fr + k * fr + o % fr] = weight[
                            ((c * p.out_channels + o) * FH + FH - 1 - ky) * FW + FW - 1 - kx]
                    else:
                        packed[(o // fr) * p.taps * fr + k * fr + o % fr] = weight[
                            ((o * p.channels + c) * FH + ky) * FW + kx]


cdef inline Py_ssize_t _band_rows(const Plan* p, Py_ssize_t band, Py_ssize_t* oy0) noexcept nogil:
    """Output rows of ``band``: the first in ``oy0``, their count returned."""
    oy0[0] = band * p.band_h
    return min(p.band_h, p.out_h - oy0[0])


cdef void _pad_band(const char* image, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                    const Plan* p, Py_ssize_t oy0, Py_ssize_t rows, float* padded,
                    ptrdiff_t* offsets) noexcept nogil:
    """The input of output rows [oy0, oy0+rows), zero-padded, and the offset of each tap in it.

    ``image`` (channels, height, width) has byte strides s_c, s_h, s_w. Each
    channel plane holds rows + dilation_h*(FH-1) rows of padded_w floats;
    SLACK zeros follow the last one.
    """
    cdef Py_ssize_t in_rows = rows + p.dilation_h * (p.filter_h - 1)
    cdef Py_ssize_t plane = in_rows * p.padded_w
    cdef Py_ssize_t c, r, iy, ix, ky, kx
    cdef float* dst
    cdef const char* src
    memset(padded, 0, (p.channels * plane + SLACK) * sizeof(float))
    for c in range(p.channels):
        for r in range(in_rows):
            iy = oy0 - p.pad_h + r
            if iy < 0 or iy >= p.height:
                continue
            dst = padded + c * plane + r * p.padded_w + p.pad_w
            src = image + c * s_c + iy * s_h
            if s_w == sizeof(float):
                memcpy(dst, src, p.width * sizeof(float))
            else:
                for ix in range(p.width):
                    dst[ix] = (<const float*>(src + ix * s_w))[0]
    for c in range(p.channels):
        for ky in range(p.filter_h):
            for kx in range(p.filter_w):
                offsets[(c * p.filter_h + ky) * p.filter_w + kx] = (
                    c * plane + ky * p.dilation_h * p.padded_w + kx * p.dilation_w)


cdef void _forward_band(const char* image, Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w,
                        const Plan* p, const float* packed, const float* bias,
                        Py_ssize_t band, float* out_image, float* padded,
                        ptrdiff_t* offsets) noexcept nogil:
    """Output rows of ``band`` into ``out_image`` (out_channels, out_h, out_w), plus ``bias`` if not NULL."""
    cdef Py_ssize_t oy0, rows = _band_rows(p, band, &oy0)
    _pad_band(image, s_c, s_h, s_w, p, oy0, rows, padded, offsets)
    cconv_direct_forward_f32(padded, p.padded_w, offsets, p.taps, packed, bias, p.out_channels,
                             rows, p.out_w, p.vectors, out_image + oy0 * p.out_w,
                             p.out_h * p.out_w)


cdef int _direct_forward(const char* data, Py_ssize_t s_n, Py_ssize_t s_c, Py_ssize_t s_h,
                         Py_ssize_t s_w, Py_ssize_t N, const Plan* p, const float* weight,
                         bint flipped, const float* bias, float* out, int num_threads) noexcept nogil:
    """``out`` (N, out_channels, out_h, out_w) of the N images at ``data``; one task per (image, band)."""
    cdef Py_ssize_t tasks = N * p.bands, task, n
    cdef Py_ssize_t work_size = p.input_size
    cdef Py_ssize_t out_size = p.out_channels * p.out_h * p.out_w
    num_threads = clamp_threads(num_threads, tasks, N * out_size * p.taps)
    cdef float* packed = <float*>malloc(p.filters_r * p.taps * sizeof(float))
    cdef float* work = <float*>malloc(num_threads * work_size * sizeof(float))
    cdef ptrdiff_t* offsets = <ptrdiff_t*>malloc(num_threads * p.taps * sizeof(ptrdiff_t))
    if packed == NULL or work == NULL or offsets == NULL:
        free(packed)
        free(work)
        free(offsets)
        return -1
    _pack_filters(weight, p, flipped, packed)
    for task in prange(tasks, schedule="static", num_threads=num_threads):
        n = task // p.bands
        _forward_band(data + n * s_n, s_c, s_h, s_w, p, packed, bias, task - n * p.bands,
                      out + n * out_size, work + threadid() * work_size,
                      offsets + threadid() * p.taps)
    free(packed)
    free(work)
    free(offsets)
    return 0


cdef int direct_conv2d(const float[:, :, :, :] x, const float[:, :, :, ::1] weight,
                       const float[::1] bias, Py_ssize_t pad_h, Py_ssize_t pad_w,
                       Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                       float[:, :, :, ::1] out, int num_threads) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0]
    cdef Plan p = _make_plan(x.shape[1], x.shape[2], x.shape[3], weight.shape[0],
                             weight.shape[2], weight.shape[3], pad_h, pad_w,
                             dilation_h, dilation_w, (num_threads + N - 1) // N)
    return _direct_forward(<const char*>&x[0, 0, 0, 0], x.strides[0], x.strides[1],
                           x.strides[2], x.strides[3], N, &p, &weight[0, 0, 0, 0], False,
                           &bias[0] if bias.shape[0] > 0 else NULL, &out[0, 0, 0, 0],
                           num_threads)


cdef void _weight_grad_chunk(const float* dout, const char* x_data, Py_ssize_t s_n,
                             Py_ssize_t s_c, Py_ssize_t s_h, Py_ssize_t s_w, const Plan* p,
                             Py_ssize_t group, Py_ssize_t n0, Py_ssize_t n1, float* work,
                             ptrdiff_t* offsets, float* dw, float* db) noexcept nogil:
    """dW (out_channels, taps) and db of images n0..n1-1 into ``dw`` and ``db``.

    Bands are taken in order, ``group`` whole images at a time when an image
    is one band, so the sums do not depend on which thread runs the chunk.
    """
    cdef Py_ssize_t out_size = p.out_channels * p.out_h * p.out_w
    cdef Py_ssize_t positions = p.out_h * p.out_w
    cdef Py_ssize_t n, f, band, oy0, rows, items, t
    memset(dw, 0, p.out_channels * p.taps * sizeof(float))
    memset(db, 0, p.out_channels * sizeof(float))
    for n in range(n0, n1):
        for f in range(p.out_channels):
            db[f] += sum_in_order(dout + n * out_size + f * positions, positions, 1)
    n = n0
    while n < n1:
        if p.bands == 1:
            items = min(group, n1 - n)
            for t in range(items):
                _pad_band(x_data + (n + t) * s_n, s_c, s_h, s_w, p, 0, p.out_h,
                          work + t * p.input_size, offsets)
            cconv_direct_weight_grad_f32(work, p.input_size, p.padded_w, offsets, p.taps,
                                         dout + n * out_size, positions, out_size,
                                         p.out_channels, items, p.out_h, p.out_w, dw, p.taps)
            n += items
        else:
            for band in range(p.bands):
                rows = _band_rows(p, band, &oy0)
                _pad_band(x_data + n * s_n, s_c, s_h, s_w, p, oy0, rows, work, offsets)
                cconv_direct_weight_grad_f32(work, p.input_size, p.padded_w, offsets, p.taps,
                                             dout + n * out_size + oy0 * p.out_w, positions,
                                             out_size, p.out_channels, 1, rows, p.out_w, dw,
                                             p.taps)
            n += 1


cdef int direct_conv2d_backward(const float[:, :, :, ::1] dout, const float[:, :, :, :] x,
                                const float[:, :, :, ::1] weight,
                                Py_ssize_t pad_h, Py_ssize_t pad_w,
                                Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                                float[:, :, :, ::1] dx, float[:, :, :, ::1] dweight,
                                float[::1] dbias, bint need_input_grad,
                                int num_threads) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], FN = weight.shape[0], FH = weight.shape[2], FW = weight.shape[3]
    cdef Plan p = _make_plan(x.shape[1], x.shape[2], x.shape[3], FN, FH, FW, pad_h, pad_w,
                             dilation_h, dilation_w, 1)
    cdef Plan back
    cdef Py_ssize_t n_chunks = min(N, <Py_ssize_t>BACKWARD_CHUNKS)
    # Whole images per call of the weight-gradient kernel: as many as fit the band budget.
    cdef Py_ssize_t group = max(1, min((N + n_chunks - 1) // n_chunks,
                                       BAND_BYTES // (p.input_size * sizeof(float))))
    cdef Py_ssize_t work_size = group * p.input_size
    cdef Py_ssize_t partial_size = FN * p.taps + FN
    cdef int chunk_threads = clamp_threads(num_threads, n_chunks, N * p.out_h * p.out_w * p.taps)
    cdef float* work = <float*>malloc(chunk_threads * work_size * sizeof(float))
    cdef ptrdiff_t* offsets = <ptrdiff_t*>malloc(chunk_threads * p.taps * sizeof(ptrdiff_t))
    cdef float* partials = <float*>malloc(n_chunks * partial_size * sizeof(float))
    cdef const char* x_data = <const char*>&x[0, 0, 0, 0]
    cdef Py_ssize_t s_n = x.strides[0], s_c = x.strides[1], s_h = x.strides[2], s_w = x.strides[3]
    cdef Py_ssize_t chunk
    cdef float* partial
    cdef int status = 0
    if work == NULL or offsets == NULL or partials == NULL:
        free(work)
        free(offsets)
        free(partials)
        return -1
    for chunk in prange(n_chunks, schedule="static", num_threads=chunk_threads):
        partial = partials + chunk * partial_size
        _weight_grad_chunk(&dout[0, 0, 0, 0], x_data, s_n, s_c, s_h, s_w, &p, group,
                           chunk * N // n_chunks, (chunk + 1) * N // n_chunks,
                           work + threadid() * work_size, offsets + threadid() * p.taps,
                           partial, partial + FN * p.taps)
    add_chunks_in_order(partials, n_chunks, partial_size, FN, p.taps, p.taps, 1,
                        &dweight[0, 0, 0, 0], &dbias[0], chunk_threads)
    free(work)
    free(offsets)
    free(partials)
    if need_input_grad:
        # dx = the stride-1 convolution of dout, padded by dilation*(F-1) - pad,
        # with the filters flipped and their channel axes swapped.
        back = _make_plan(FN, p.out_h, p.out_w, x.shape[1], FH, FW,
                          dilation_h * (FH - 1) - pad_h, dilation_w * (FW - 1) - pad_w,
                          dilation_h, dilation_w, (num_threads + N - 1) // N)
        status = _direct_forward(<const char*>&dout[0, 0, 0, 0], dout.strides[0],
                                 dout.strides[1], dout.strides[2], dout.strides[3], N, &back,
                                 &weight[0, 0, 0, 0], True, NULL, &dx[0, 0, 0, 0], num_threads)
    return status

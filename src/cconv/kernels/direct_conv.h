/*
 * Micro-kernels of the direct (stride-1) float32 convolution, for x86-64 CPUs
 * with AVX2 and FMA; used by direct.pyx.
 *
 * Both read an image band zero-padded to rows of padded_w floats, one plane
 * per channel. A tap k of the filter is then one offset offsets[k] into that
 * buffer (channel plane + ky*dilation_h*padded_w + kx*dilation_w), and the
 * inputs of 8 consecutive outputs of a row for one tap are 8 consecutive
 * floats: the kernels read the padded image itself, never an unfolded copy
 * of it. Each output row is taken in vectors of 8, its last one through a
 * mask, so nothing outside the outputs is stored or summed.
 *
 * Elsewhere (other CPUs and compilers) cconv_direct_supported() is 0 and the
 * convolution runs on its GEMM path; the kernels are then empty stubs.
 */
#ifndef CCONV_DIRECT_CONV_H
#define CCONV_DIRECT_CONV_H

#include <stddef.h>

/* Output channels per register block, taps per block of the weight gradient,
   floats per vector. */
#define CCONV_DIRECT_FILTERS 4
#define CCONV_DIRECT_TAPS 3
#define CCONV_DIRECT_LANES 8

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CCONV_DIRECT_X86 1
#include <immintrin.h>
#define CCONV_AVX2 __attribute__((target("avx2,fma")))
#endif

/* 1 when the CPU runs the kernels below, else 0. */
static int cconv_direct_supported(void)
{
#ifdef CCONV_DIRECT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#ifdef CCONV_DIRECT_X86

/* One block: 4 output channels by `vectors` vectors of 8 positions. Vector j
   reads x + base[j] + offsets[k] for tap k and is stored at out + out_base[j],
   through `tail_mask` (the lanes left in its row) unless full[j]. Channels
   past out_channels are not stored. */
static inline __attribute__((always_inline)) CCONV_AVX2 void
cconv_forward_block(const float *x, const ptrdiff_t *base, const ptrdiff_t *offsets,
                    ptrdiff_t taps, const float *packed, const float *bias,
                    ptrdiff_t out_channels, float *out, const ptrdiff_t *out_base,
                    ptrdiff_t out_stride, __m256i tail_mask, const int *full,
                    const int vectors)
{
    __m256 acc[CCONV_DIRECT_FILTERS][3];
    for (int i = 0; i < CCONV_DIRECT_FILTERS; i++) {
        __m256 b = _mm256_set1_ps(bias != NULL && i < out_channels ? bias[i] : 0.0f);
        for (int j = 0; j < vectors; j++)
            acc[i][j] = b;
    }
    const float *x0 = x + base[0], *x1 = x + base[1], *x2 = x + base[vectors - 1];
    for (ptrdiff_t k = 0; k < taps; k++) {
        const ptrdiff_t offset = offsets[k];
        const float *wk = packed + CCONV_DIRECT_FILTERS * k;
        __m256 xv[3];
        xv[0] = _mm256_loadu_ps(x0 + offset);
        xv[1] = _mm256_loadu_ps(x1 + offset);
        if (vectors == 3)
            xv[2] = _mm256_loadu_ps(x2 + offset);
        for (int i = 0; i < CCONV_DIRECT_FILTERS; i++) {
            __m256 w = _mm256_broadcast_ss(wk + i);
            for (int j = 0; j < vectors; j++)
                acc[i][j] = _mm256_fmadd_ps(w, xv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < CCONV_DIRECT_FILTERS && i < out_channels; i++)
        for (int j = 0; j < vectors; j++) {
            float *dst = out + i * out_stride + out_base[j];
            if (full[j])
                _mm256_storeu_ps(dst, acc[i][j]);
            else
                _mm256_maskstore_ps(dst, tail_mask, acc[i][j]);
        }
}

/*
 * out[o][r*row_length + c] = bias[o] (0 when bias is NULL) + sum over taps k
 * of w[o][k] * x[offsets[k] + r*x_row_stride + c], for o < out_channels,
 * r < rows and c < row_length. `packed` holds the filters in blocks of 4
 * output channels, zeros past out_channels:
 * packed[(o/4)*taps*4 + k*4 + o%4] = w[o][k]. Each output row is computed
 * in vectors of 8 (the last one stored through a mask), `vectors` (2 or 3)
 * vectors per block; x must be readable 7 floats past every row it reads.
 */
static CCONV_AVX2 void
cconv_direct_forward_f32(const float *x, ptrdiff_t x_row_stride, const ptrdiff_t *offsets,
                         ptrdiff_t taps, const float *packed, const float *bias,
                         ptrdiff_t out_channels, ptrdiff_t rows, ptrdiff_t row_length,
                         int vectors, float *out, ptrdiff_t out_stride)
{
    const ptrdiff_t per_row = (row_length + CCONV_DIRECT_LANES - 1) / CCONV_DIRECT_LANES;
    const ptrdiff_t total = rows * per_row;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int tail = (int)(row_length - (per_row - 1) * CCONV_DIRECT_LANES);
    const __m256i tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), lane);
    for (ptrdiff_t v = 0; v < total; v += vectors) {
        ptrdiff_t base[3], out_base[3];
        int full[3];
        for (int j = 0; j < vectors; j++) {
            /* the last block repeats the last vector: the same values stored twice */
            ptrdiff_t u = v + j < total ? v + j : total - 1;
            ptrdiff_t r = u / per_row, c = (u % per_row) * CCONV_DIRECT_LANES;
            base[j] = r * x_row_stride + c;
            out_base[j] = r * row_length + c;
            full[j] = c + CCONV_DIRECT_LANES <= row_length;
        }
        for (ptrdiff_t o = 0; o < out_channels; o += CCONV_DIRECT_FILTERS) {
            const float *w = packed + o * taps;
            const float *b = bias != NULL ? bias + o : NULL;
            if (vectors == 3)
                cconv_forward_block(x, base, offsets, taps, w, b, out_channels - o,
                                    out + o * out_stride, out_base, out_stride, tail_mask, full, 3);
            else
                cconv_forward_block(x, base, offsets, taps, w, b, out_channels - o,
                                    out + o * out_stride, out_base, out_stride, tail_mask, full, 2);
        }
    }
}

static inline CCONV_AVX2 float cconv_sum_lanes(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/*
 * dw[o][k] += sum over items t, rows r and columns c < row_length of
 *     dout[t*dout_item_stride + o*dout_stride + r*row_length + c]
 *   * x[t*x_item_stride + offsets[k] + r*x_row_stride + c],
 * for o < out_channels and k < taps (any counts: a block past the end
 * repeats the last channel or reads offset 0, and its sums are dropped).
 * Only the row_length real positions of each row are read (the row's last
 * vector through a mask), so no product of a non-output position is added.
 * The sums of one (o, k) run in a fixed order: the result does not depend on
 * the caller's thread.
 */
static CCONV_AVX2 void
cconv_direct_weight_grad_f32(const float *x, ptrdiff_t x_item_stride, ptrdiff_t x_row_stride,
                             const ptrdiff_t *offsets, ptrdiff_t taps,
                             const float *dout, ptrdiff_t dout_stride, ptrdiff_t dout_item_stride,
                             ptrdiff_t out_channels, ptrdiff_t items, ptrdiff_t rows,
                             ptrdiff_t row_length, float *dw, ptrdiff_t dw_stride)
{
    const ptrdiff_t full = row_length - row_length % CCONV_DIRECT_LANES;
    const int tail = (int)(row_length - full);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), lane);
    for (ptrdiff_t o = 0; o < out_channels; o += CCONV_DIRECT_FILTERS) {
        ptrdiff_t channel[CCONV_DIRECT_FILTERS];
        for (int i = 0; i < CCONV_DIRECT_FILTERS; i++)
            channel[i] = o + i < out_channels ? o + i : out_channels - 1;
        for (ptrdiff_t k = 0; k < taps; k += CCONV_DIRECT_TAPS) {
            ptrdiff_t offset[CCONV_DIRECT_TAPS];
            for (int j = 0; j < CCONV_DIRECT_TAPS; j++)
                offset[j] = k + j < taps ? offsets[k + j] : 0;
            __m256 acc[CCONV_DIRECT_FILTERS][CCONV_DIRECT_TAPS];
            for (int i = 0; i < CCONV_DIRECT_FILTERS; i++)
                for (int j = 0; j < CCONV_DIRECT_TAPS; j++)
                    acc[i][j] = _mm256_setzero_ps();
            for (ptrdiff_t t = 0; t < items; t++)
                for (ptrdiff_t r = 0; r < rows; r++) {
                    const float *xr = x + t * x_item_stride + r * x_row_stride;
                    const float *x0 = xr + offset[0], *x1 = xr + offset[1], *x2 = xr + offset[2];
                    const float *d[CCONV_DIRECT_FILTERS];
                    for (int i = 0; i < CCONV_DIRECT_FILTERS; i++)
                        d[i] = dout + t * dout_item_stride + channel[i] * dout_stride + r * row_length;
                    ptrdiff_t c = 0;
                    for (; c < full; c += CCONV_DIRECT_LANES) {
                        __m256 xv0 = _mm256_loadu_ps(x0 + c);
                        __m256 xv1 = _mm256_loadu_ps(x1 + c);
                        __m256 xv2 = _mm256_loadu_ps(x2 + c);
                        for (int i = 0; i < CCONV_DIRECT_FILTERS; i++) {
                            __m256 dv = _mm256_loadu_ps(d[i] + c);
                            acc[i][0] = _mm256_fmadd_ps(dv, xv0, acc[i][0]);
                            acc[i][1] = _mm256_fmadd_ps(dv, xv1, acc[i][1]);
                            acc[i][2] = _mm256_fmadd_ps(dv, xv2, acc[i][2]);
                        }
                    }
                    if (tail) {
                        __m256 xv0 = _mm256_maskload_ps(x0 + c, mask);
                        __m256 xv1 = _mm256_maskload_ps(x1 + c, mask);
                        __m256 xv2 = _mm256_maskload_ps(x2 + c, mask);
                        for (int i = 0; i < CCONV_DIRECT_FILTERS; i++) {
                            __m256 dv = _mm256_maskload_ps(d[i] + c, mask);
                            acc[i][0] = _mm256_fmadd_ps(dv, xv0, acc[i][0]);
                            acc[i][1] = _mm256_fmadd_ps(dv, xv1, acc[i][1]);
                            acc[i][2] = _mm256_fmadd_ps(dv, xv2, acc[i][2]);
                        }
                    }
                }
            for (int i = 0; i < CCONV_DIRECT_FILTERS && o + i < out_channels; i++)
                for (int j = 0; j < CCONV_DIRECT_TAPS && k + j < taps; j++)
                    dw[(o + i) * dw_stride + k + j] += cconv_sum_lanes(acc[i][j]);
        }
    }
}

#else  /* no AVX2 kernels: never called, since cconv_direct_supported() is 0 */

static void
cconv_direct_forward_f32(const float *x, ptrdiff_t x_row_stride, const ptrdiff_t *offsets,
                         ptrdiff_t taps, const float *packed, const float *bias,
                         ptrdiff_t out_channels, ptrdiff_t rows, ptrdiff_t row_length,
                         int vectors, float *out, ptrdiff_t out_stride)
{
    (void)x; (void)x_row_stride; (void)offsets; (void)taps; (void)packed; (void)bias;
    (void)out_channels; (void)rows; (void)row_length; (void)vectors; (void)out;
    (void)out_stride;
}

static void
cconv_direct_weight_grad_f32(const float *x, ptrdiff_t x_item_stride, ptrdiff_t x_row_stride,
                             const ptrdiff_t *offsets, ptrdiff_t taps,
                             const float *dout, ptrdiff_t dout_stride, ptrdiff_t dout_item_stride,
                             ptrdiff_t out_channels, ptrdiff_t items, ptrdiff_t rows,
                             ptrdiff_t row_length, float *dw, ptrdiff_t dw_stride)
{
    (void)x; (void)x_item_stride; (void)x_row_stride; (void)offsets; (void)taps; (void)dout;
    (void)dout_stride; (void)dout_item_stride; (void)out_channels; (void)items; (void)rows;
    (void)row_length; (void)dw; (void)dw_stride;
}

#endif
#endif

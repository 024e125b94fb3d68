/* mxfp4.c — MXFP4: blocks of 32 E2M1 values with a shared E8M0 scale (layout in mxfp.h).
 * Decoder, llama.cpp-exact reference encoder, smelt's encoder (the best scale under the
 * importance weights, found exhaustively around the reference one), dot with Q8_0, the
 * type's descriptor and the family table. Includes quant/ only. */
#include <math.h>

#include "mxfp.h"
#include "quant/block_rows.h"
#include "quant/legacy/legacy.h"

#define QK 32

/* the format's E2M1 values, doubled (ggml's kvalues_mxfp4) */
const int8_t smelt_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* Midpoints between the magnitudes 0 1 2 3 4 6 8 12 (code order): a magnitude's code is
 * the number of midpoints at or below it. */
static const float k_mid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.f, 7.f, 10.f};

/* h(e) of mxfp.h: 2^(e - 128) as an f32 bit pattern (subnormal for e < 2) */
static float half_scale(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void deq_mxfp4(const void *src, float *y, size_t n)
{
    const smelt_block_mxfp4 *b = src;
    for (size_t i = 0; i < n / QK; i++, y += QK) {
        float d = half_scale(b[i].e);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)smelt_mxfp4_values[b[i].qs[j] & 15] * d;
            y[j + 16] = (float)smelt_mxfp4_values[b[i].qs[j] >> 4] * d;
        }
    }
}

/* The reference scale: the largest |x| lands on values 8 .. 16 (its binary exponent minus
 * 3, so 12, the largest value, may clip it); 0 for an all-zero block. Computed through
 * log2f as llama.cpp does, so that values a hair below a power of two round the same way;
 * out-of-range exponents wrap to 8 bits as its float-to-byte conversion does on x86-64. */
static uint8_t ref_exponent(float amax)
{
    return amax > 0 ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
}

/* Reference: each code the first of the 16 with the smallest |value * h - x|. */
static void ref_mxfp4(const float *x, void *dst, int64_t k)
{
    smelt_block_mxfp4 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float amax = 0;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        y[i].e = ref_exponent(amax);
        float d = half_scale(y[i].e);
        uint8_t c[QK];
        for (int j = 0; j < QK; j++) {
            int best = 0;
            float be = fabsf((float)smelt_mxfp4_values[0] * d - x[j]);
            for (int v = 1; v < 16; v++) {
                float err = fabsf((float)smelt_mxfp4_values[v] * d - x[j]);
                if (err < be) {
                    best = v;
                    be = err;
                }
            }
            c[j] = (uint8_t)best;
        }
        for (int j = 0; j < 16; j++) y[i].qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
    }
}

/* The nearest code of each magnitude u (in doubled units of the half scale), counted one
 * midpoint at a time over the block so that the loops vectorize. */
static void magnitude_codes(const float *u, int32_t *k)
{
    for (int j = 0; j < QK; j++) k[j] = 0;
    for (int m = 0; m < 7; m++) {
        const float t = k_mid[m];
        for (int j = 0; j < QK; j++) k[j] += u[j] >= t;
    }
}

/* Weighted squared error of the nearest codes of magnitudes a at half scale d. */
static float fit_error(const float *a, const float *w, float d)
{
    float u[QK], e[8] = {0}, inv = 1.f / d;
    int32_t k[QK];
    for (int j = 0; j < QK; j++) u[j] = a[j] * inv;
    magnitude_codes(u, k);
    /* the magnitudes 0 1 2 3 4 6 8 12 of codes 0..7, by arithmetic (no table lookups) */
    for (int j = 0; j < QK; j++) {
        int c = k[j];
        u[j] = (float)(c + (c > 4 ? c - 4 : 0) + (c == 7 ? 2 : 0));
    }
    for (int j = 0; j < QK; j += 8)
        for (int l = 0; l < 8; l++) {
            float r = a[j + l] - u[j + l] * d;
            e[l] += w[j + l] * r * r;
        }
    return q_lanes_sum(e);
}

/* The reference exponent, one above and one below: with the scale fixed the nearest codes
 * are optimal for any weights, so this is the best block among those scales (above: no
 * clipping, a coarser grid; below: a finer grid that clips the largest values, which wins
 * on about 6% of blocks with an imatrix; two below won on < 0.1%, not tried). */
static void enc_block(const void *ctx, const float *x, const float *w, void *dst)
{
    (void)ctx;
    smelt_block_mxfp4 *y = dst;
    float a[QK], amax = 0;
    for (int j = 0; j < QK; j++) {
        a[j] = fabsf(x[j]);
        amax = a[j] > amax ? a[j] : amax;
    }
    /* the reference exponent from the bits of amax: its log2f may round up to the next
     * integer just below a power of two, which is the candidate above */
    uint32_t bits;
    memcpy(&bits, &amax, 4);
    int e0 = (int)(bits >> 23) - 2;
    e0 = e0 < 0 ? 0 : e0 > 254 ? 254 : e0;
    float best = INFINITY;
    int be = e0;
    /* one above only when the largest value is beyond the top code 12 at e0: below that,
     * its codes within reach are a subset of e0's (all doubled), so it cannot win */
    int e_hi = amax > 12.f * half_scale((uint8_t)e0) ? e0 + 1 : e0;
    for (int e = e0 - 1; e <= e_hi && amax > 0; e++) {
        if (e < 0 || e > 254) continue;
        float err = fit_error(a, w, half_scale((uint8_t)e));
        if (err < best) {
            best = err;
            be = e;
        }
    }
    float u[QK], inv = 1.f / half_scale((uint8_t)be);
    int32_t k[QK];
    for (int j = 0; j < QK; j++) u[j] = a[j] * inv;
    magnitude_codes(u, k);
    for (int j = 0; j < QK; j++) k[j] = k[j] == 0 ? 0 : x[j] < 0 ? k[j] + 8 : k[j];
    y->e = (uint8_t)be;
    for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(k[j] | k[j + 16] << 4);
}

static void quant_mxfp4(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    smelt_block_rows(enc_block, NULL, QK, sizeof(smelt_block_mxfp4), src, dst, n_rows, row_len, imx);
}

static const smelt_qtype_ops k_mxfp[] = {{
    .type = SMELT_TYPE_MXFP4,
    .dequantize = deq_mxfp4,
    .quantize = quant_mxfp4,
    .quantize_ref = ref_mxfp4,
}};

const smelt_qfamily smelt_mxfp_family = {k_mxfp, sizeof k_mxfp / sizeof k_mxfp[0], NULL};

/* legacy.c — Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1: decoders, llama.cpp-exact reference encoders,
 * smelt's error-minimising encoders and portable dot products.
 * Includes quant/ headers and formats/base/half.h only. */
#include "legacy.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "quant/quant_int.h"
#include "quant/search.h"

#define QK SMELT_QK_LEGACY

/* ==== packing ==== */

static void pack_nibbles(uint8_t *qs, const uint8_t *L)
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 15) | (L[j + 16] & 15) << 4);
}

static void pack_high_bits(uint8_t *qh, const uint8_t *L)
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    memcpy(qh, &h, 4);
}

/* ==== dequantize (bit-exact with ggml's dequantize_row_*) ==== */

static void deq_q4_0(const void *src, float *dst, size_t n)
{
    const smelt_block_q4_0 *b = src;
    for (size_t i = 0; i < n / QK; i++, dst += QK) {
        float d = q_f16(&b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((b[i].qs[j] & 15) - 8) * d;
            dst[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const void *src, float *dst, size_t n)
{
    const smelt_block_q4_1 *b = src;
    for (size_t i = 0; i < n / QK; i++, dst += QK) {
        float d = q_f16(&b[i].d), m = q_f16(&b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(b[i].qs[j] & 15) * d + m;
            dst[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void deq_q5_0(const void *src, float *dst, size_t n)
{
    const smelt_block_q5_0 *b = src;
    for (size_t i = 0; i < n / QK; i++, dst += QK) {
        float d = q_f16(&b[i].d);
        uint32_t h;
        memcpy(&h, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int q0 = (b[i].qs[j] & 15) | (int)((h >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            dst[j] = (float)(q0 - 16) * d;
            dst[j + 16] = (float)(q1 - 16) * d;
        }
    }
}

static void deq_q5_1(const void *src, float *dst, size_t n)
{
    const smelt_block_q5_1 *b = src;
    for (size_t i = 0; i < n / QK; i++, dst += QK) {
        float d = q_f16(&b[i].d), m = q_f16(&b[i].m);
        uint32_t h;
        memcpy(&h, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int q0 = (b[i].qs[j] & 15) | (int)((h >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            dst[j] = (float)q0 * d + m;
            dst[j + 16] = (float)q1 * d + m;
        }
    }
}

static void deq_q8_0(const void *src, float *dst, size_t n)
{
    const smelt_block_q8_0 *b = src;
    for (size_t i = 0; i < n / QK; i++, dst += QK) {
        float d = q_f16(&b[i].d);
        for (int j = 0; j < QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

static void deq_q8_1(const void *src, float *dst, size_t n)
{
    const smelt_block_q8_1 *b = src;
    for (size_t i = 0; i < n / QK; i++, dst += QK) {
        float d = q_f16(&b[i].d);
        for (int j = 0; j < QK; j++) dst[j] = (float)b[i].qs[j] * d;
    }
}

/* ==== reference encoders (bit-exact with ggml's quantize_row_*_ref) ====
 * The scale comes from the element of largest magnitude (or from min and max); levels
 * are truncations of x/d + offset + 1/2, except Q8 which rounds half away from zero. */

/* Largest-magnitude element, keeping the first one on ties. */
static float signed_absmax(const float *x, int n)
{
    float amax = 0, v = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            v = x[j];
        }
    return v;
}

/* Levels of the symmetric reference encoders (Q4_0: half = 8, Q5_0: half = 16). */
static void ref_levels_sym(const float *x, int half, float *d_out, uint8_t *L)
{
    float d = signed_absmax(x, QK) / (float)-half;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) {
        int l = (int)(x[j] * id + ((float)half + 0.5f));
        L[j] = (uint8_t)(l > 2 * half - 1 ? 2 * half - 1 : l);
    }
    *d_out = d;
}

static void ref_levels_asym(const float *x, int nmax, float *d_out, float *m_out, uint8_t *L)
{
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    float d = (mx - mn) / (float)nmax;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) {
        int l = (int)((x[j] - mn) * id + 0.5f);
        L[j] = (uint8_t)(l > nmax ? nmax : l);
    }
    *d_out = d;
    *m_out = mn;
}

static void ref_q4_0(const float *x, void *dst, int64_t k)
{
    smelt_block_q4_0 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float d;
        uint8_t L[QK];
        ref_levels_sym(x, 8, &d, L);
        q_put_f16(&y[i].d, d);
        pack_nibbles(y[i].qs, L);
    }
}

static void ref_q5_0(const float *x, void *dst, int64_t k)
{
    smelt_block_q5_0 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float d;
        uint8_t L[QK];
        ref_levels_sym(x, 16, &d, L);
        q_put_f16(&y[i].d, d);
        pack_nibbles(y[i].qs, L);
        pack_high_bits(y[i].qh, L);
    }
}

static void ref_q4_1(const float *x, void *dst, int64_t k)
{
    smelt_block_q4_1 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float d, m;
        uint8_t L[QK];
        ref_levels_asym(x, 15, &d, &m, L);
        q_put_f16(&y[i].d, d);
        q_put_f16(&y[i].m, m);
        pack_nibbles(y[i].qs, L);
    }
}

static void ref_q5_1(const float *x, void *dst, int64_t k)
{
    smelt_block_q5_1 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float d, m;
        uint8_t L[QK];
        ref_levels_asym(x, 31, &d, &m, L);
        q_put_f16(&y[i].d, d);
        q_put_f16(&y[i].m, m);
        pack_nibbles(y[i].qs, L);
        pack_high_bits(y[i].qh, L);
    }
}

/* Q8 reference: d = max|x| / 127, q = round-half-away(x / d). Returns sum(q). */
static int ref_levels_q8(const float *x, float *d_out, int8_t *q)
{
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    float d = amax / 127.f;
    float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; j++) {
        q[j] = (int8_t)roundf(x[j] * id);
        sum += q[j];
    }
    *d_out = d;
    return sum;
}

static void ref_q8_0(const float *x, void *dst, int64_t k)
{
    smelt_block_q8_0 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float d;
        ref_levels_q8(x, &d, y[i].qs);
        q_put_f16(&y[i].d, d);
    }
}

static void ref_q8_1(const float *x, void *dst, int64_t k)
{
    smelt_block_q8_1 *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float d;
        int sum = ref_levels_q8(x, &d, y[i].qs);
        q_put_f16(&y[i].d, d);
        q_put_f16(&y[i].s, (float)sum * d);
    }
}

/* ==== smelt's encoders ====
 * Per block, candidates are scored by their exact weighted error with the f16 values
 * that will be stored, and the best is kept:
 *   - the reference encoder's choice (so a block is never worse than llama.cpp's
 *     quantize_row_*_ref, which is what llama.cpp uses without an imatrix);
 *   - the scale (and offset) of an exact threshold sweep, stored in f16, with the levels
 *     re-rounded for that stored value. */

/* Exact weighted error of the stored symmetric block (levels biased by `half`). */
static double err_biased(const float *x, const float *w, float d, const uint8_t *L, int half)
{
    double e = 0;
    for (int j = 0; j < QK; j++) {
        float r = (float)(L[j] - half) * d - x[j];
        e += (double)w[j] * r * r;
    }
    return e;
}

static double err_offset(const float *x, const float *w, float d, float m, const uint8_t *L)
{
    double e = 0;
    for (int j = 0; j < QK; j++) {
        float r = (float)L[j] * d + m - x[j];
        e += (double)w[j] * r * r;
    }
    return e;
}

/* Levels (biased by half, in [0, 2 half - 1]) nearest to x for a stored scale d. */
static void round_biased(const float *x, float d, int half, uint8_t *L)
{
    float id = d != 0 ? 1.f / d : 0.f;
    for (int j = 0; j < QK; j++) {
        float t = x[j] * id;
        int l = t <= (float)-half ? -half : t >= (float)(half - 1) ? half - 1 : q_nearest(t);
        L[j] = (uint8_t)(l + half);
    }
}

static void round_offset(const float *x, float d, float m, int nmax, uint8_t *L)
{
    float id = d != 0 ? 1.f / d : 0.f;
    for (int j = 0; j < QK; j++) {
        float t = (x[j] - m) * id;
        int l = t <= 0 ? 0 : t >= (float)nmax ? nmax : q_nearest(t);
        L[j] = (uint8_t)l;
    }
}

/* Best stored (d, L) for a symmetric block. */
static uint16_t best_sym(const float *x, const float *w, int half, uint8_t *L)
{
    float dr;
    uint8_t Lr[QK];
    ref_levels_sym(x, half, &dr, Lr);
    uint16_t hr = smelt_f32_to_f16(dr);
    double er = err_biased(x, w, smelt_f16_to_f32(hr), Lr, half);

    int8_t S[QK];
    float d = smelt_qs_sym(QK, -half, half - 1, x, w, S, 0.7f, 1.35f);
    uint16_t hs = smelt_f32_to_f16(d);
    float ds = smelt_f16_to_f32(hs);
    round_biased(x, ds, half, L);
    double es = err_biased(x, w, ds, L, half);
    if (er <= es) {
        memcpy(L, Lr, QK);
        return hr;
    }
    return hs;
}

static void best_asym(const float *x, const float *w, int nmax, uint16_t *hd, uint16_t *hm, uint8_t *L)
{
    float dr, mr;
    uint8_t Lr[QK];
    ref_levels_asym(x, nmax, &dr, &mr, Lr);
    uint16_t hdr = smelt_f32_to_f16(dr), hmr = smelt_f32_to_f16(mr);
    double er = err_offset(x, w, smelt_f16_to_f32(hdr), smelt_f16_to_f32(hmr), Lr);

    float b;
    float a = smelt_qs_asym(QK, nmax, x, w, L, &b, false, 0.7f, 1.3f, 2);
    uint16_t hda = smelt_f32_to_f16(a), hma = smelt_f32_to_f16(b);
    float da = smelt_f16_to_f32(hda), ma = smelt_f16_to_f32(hma);
    round_offset(x, da, ma, nmax, L);
    double es = err_offset(x, w, da, ma, L);
    if (er <= es) {
        memcpy(L, Lr, QK);
        *hd = hdr;
        *hm = hmr;
    } else {
        *hd = hda;
        *hm = hma;
    }
}

/* Q8_0: the reference scale, the scale mapping the extreme to -128, and their
 * least-squares refits; levels always re-rounded for the stored scale. */
static uint16_t best_q8(const float *x, const float *w, int8_t *q)
{
    float dr;
    int8_t qr[QK];
    ref_levels_q8(x, &dr, qr);
    uint16_t best_h = smelt_f32_to_f16(dr);
    double best = smelt_qs_err_sym(QK, x, w, smelt_f16_to_f32(best_h), qr);
    memcpy(q, qr, QK);
    float v = signed_absmax(x, QK);
    float cand[2] = {dr, v / -128.f};
    int8_t t[QK];
    for (int c = 0; c < 2; c++) {
        float d = cand[c];
        for (int it = 0; it < 2; it++) {
            uint16_t h = smelt_f32_to_f16(d);
            float dh = smelt_f16_to_f32(h);
            double e = smelt_qs_round_sym(QK, -128, 127, x, w, dh, t);
            if (e < best) {
                best = e;
                best_h = h;
                memcpy(q, t, QK);
            }
            double sxl = 0, sl2 = 0;
            for (int j = 0; j < QK; j++) {
                sxl += (double)w[j] * x[j] * t[j];
                sl2 += (double)w[j] * t[j] * t[j];
            }
            if (!(sl2 > 0)) break;
            d = (float)(sxl / sl2);
        }
    }
    return best_h;
}

#define ROWS_LOOP(BLOCK, BODY)                                                                               \
    float fl = 0;                                                                                           \
    if (imx) fl = smelt_qs_weight_floor(imx, row_len);                                                       \
    BLOCK *y = dst;                                                                                         \
    int64_t nb = row_len / QK;                                                                              \
    for (int64_t r = 0; r < n_rows; r++)                                                                    \
        for (int64_t ib = 0; ib < nb; ib++, y++) {                                                          \
            const float *x = src + r * row_len + ib * QK;                                                   \
            float w[QK];                                                                                    \
            smelt_qs_block_weights(imx ? imx + ib * QK : NULL, fl, QK, w);                                     \
            BODY                                                                                            \
        }

static void quant_q4_0(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    ROWS_LOOP(smelt_block_q4_0, {
        uint8_t L[QK];
        y->d = best_sym(x, w, 8, L);
        pack_nibbles(y->qs, L);
    })
}

static void quant_q5_0(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    ROWS_LOOP(smelt_block_q5_0, {
        uint8_t L[QK];
        y->d = best_sym(x, w, 16, L);
        pack_nibbles(y->qs, L);
        pack_high_bits(y->qh, L);
    })
}

static void quant_q4_1(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    ROWS_LOOP(smelt_block_q4_1, {
        uint8_t L[QK];
        best_asym(x, w, 15, &y->d, &y->m, L);
        pack_nibbles(y->qs, L);
    })
}

static void quant_q5_1(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    ROWS_LOOP(smelt_block_q5_1, {
        uint8_t L[QK];
        best_asym(x, w, 31, &y->d, &y->m, L);
        pack_nibbles(y->qs, L);
        pack_high_bits(y->qh, L);
    })
}

static void quant_q8_0(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    ROWS_LOOP(smelt_block_q8_0, { y->d = best_q8(x, w, y->qs); })
}

/* ==== dot products (portable) ====
 * Integer sums per block are exact; the float combination per block, in block order, is
 * the one every SIMD path reproduces:  sum += (dx * dy) * isum  [+ mx * sy]. */

static float dot_q4_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += ((x[i].qs[j] & 15) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum;
    }
    return sum;
}

static float dot_q4_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) isum += (x[i].qs[j] & 15) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum + q_f16(&x[i].m) * q_f16(&y[i].s);
    }
    return sum;
}

static float dot_q5_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        uint32_t h;
        memcpy(&h, x[i].qh, 4);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = ((x[i].qs[j] & 15) | (int)((h >> j) & 1) << 4) - 16;
            int q1 = ((x[i].qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4) - 16;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum;
    }
    return sum;
}

static float dot_q5_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        uint32_t h;
        memcpy(&h, x[i].qh, 4);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[i].qs[j] & 15) | (int)((h >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum + q_f16(&x[i].m) * q_f16(&y[i].s);
    }
    return sum;
}

static float dot_q8_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q8_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += x[i].qs[j] * y[i].qs[j];
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum;
    }
    return sum;
}

/* ==== the family ==== */

static const smelt_qtype_ops k_legacy[] = {
    {SMELT_TYPE_Q4_0, deq_q4_0, quant_q4_0, ref_q4_0, dot_q4_0, SMELT_TYPE_Q8_0, false, false},
    {SMELT_TYPE_Q4_1, deq_q4_1, quant_q4_1, ref_q4_1, dot_q4_1, SMELT_TYPE_Q8_1, false, false},
    {SMELT_TYPE_Q5_0, deq_q5_0, quant_q5_0, ref_q5_0, dot_q5_0, SMELT_TYPE_Q8_0, false, false},
    {SMELT_TYPE_Q5_1, deq_q5_1, quant_q5_1, ref_q5_1, dot_q5_1, SMELT_TYPE_Q8_1, false, false},
    {SMELT_TYPE_Q8_0, deq_q8_0, quant_q8_0, ref_q8_0, dot_q8_0, SMELT_TYPE_Q8_0, false, false},
    {SMELT_TYPE_Q8_1, deq_q8_1, NULL, ref_q8_1, NULL, SMELT_TYPE_Q8_1, false, true},
};

_Static_assert(sizeof k_legacy / sizeof k_legacy[0] == SMELT_LEGACY_N_TYPES, "legacy family size");
const smelt_qfamily smelt_legacy_family = {k_legacy, sizeof k_legacy / sizeof k_legacy[0]};

/* legacy.c — Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1: decoders, llama.cpp-exact reference encoders,
 * smelt's error-minimising encoders and portable dot products.
 * Includes quant/ headers and formats/base/half.h only. */
#include "legacy.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "quant/quant_int.h"
#include "legacy_int.h"
#include "quant/kern.h"
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
 * that will be stored (levels re-rounded for those values), and the best is kept:
 *   - the reference encoder's scale (and offset): a block is never worse than llama.cpp's
 *     quantize_row_*_ref, which is what llama.cpp uses without an imatrix;
 *   - the result of a scale search (search.h), whose plan is cheap without an imatrix
 *     and thorough with one. */

typedef struct {
    smelt_qs_plan plain, imx;
} enc_plans;

static const enc_plans k_plans_4 = {{0.85f, 1.1f, 4, 0.f, 2, 1}, {0.6f, 1.3f, 16, 1.f, 3, 1}};
static const enc_plans k_plans_5 = {{0.9f, 1.05f, 4, 0.f, 2, 1}, {0.7f, 1.2f, 16, 1.f, 3, 1}};
static const enc_plans k_plans_8 = {{1.f, 1.0078f, 2, 0.f, 2, 1}, {0.99f, 1.01f, 5, 0.f, 3, 1}};

/* Stored scale bits and levels (biased by -lo) of a symmetric block. */
static uint16_t best_sym(const smelt_qkern *k, const float *x, const float *w, int lo, int hi, const smelt_qs_plan *p,
                         int8_t *L)
{
    float vmax = signed_absmax(x, QK);
    float dr = lo == -8 || lo == -16 ? vmax / (float)lo : fabsf(vmax) / 127.f; /* the reference's scale */
    int8_t S[QK], T[QK];
    smelt_qs_fit f;
    smelt_qs_sym(k, QK, lo, hi, x, w, p, S, &f);
    uint16_t cand[2] = {smelt_f32_to_f16(dr), smelt_f32_to_f16(f.a)};
    uint16_t best_h = 0;
    float best = INFINITY, sums[3];
    for (int c = 0; c < 2; c++) {
        if (c == 1 && cand[1] == cand[0]) break;
        float d = smelt_f16_to_f32(cand[c]);
        float e = k->sym_round(QK, x, w, d, d != 0 ? 1.f / d : 0.f, lo, hi, T, sums);
        if (e < best) {
            best = e;
            best_h = cand[c];
            memcpy(L, T, QK);
        }
    }
    return best_h;
}

static void best_asym(const smelt_qkern *k, const float *x, const float *w, int nmax, const smelt_qs_plan *p,
                      uint16_t *hd, uint16_t *hm, uint8_t *L)
{
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    uint8_t T[QK];
    smelt_qs_fit f;
    smelt_qs_asym(k, QK, nmax, x, w, p, false, T, &f);
    uint16_t cd[2] = {smelt_f32_to_f16((mx - mn) / (float)nmax), smelt_f32_to_f16(f.a)};
    uint16_t cm[2] = {smelt_f32_to_f16(mn), smelt_f32_to_f16(f.b)};
    float best = INFINITY, sums[3];
    for (int c = 0; c < 2; c++) {
        if (c == 1 && cd[1] == cd[0] && cm[1] == cm[0]) break;
        float d = smelt_f16_to_f32(cd[c]), m = smelt_f16_to_f32(cm[c]);
        float e = k->asym_round(QK, x, w, d, m, d != 0 ? 1.f / d : 0.f, nmax, T, sums);
        if (e < best) {
            best = e;
            *hd = cd[c];
            *hm = cm[c];
            memcpy(L, T, QK);
        }
    }
}

typedef void (*block_fn)(const smelt_qkern *k, const float *x, const float *w, const smelt_qs_plan *p, void *y);

static void rows(const smelt_qkern *k, const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx,
                 size_t bytes, const enc_plans *plans, block_fn fn)
{
    float fl = imx ? smelt_qs_weight_floor(imx, row_len) : 0;
    const smelt_qs_plan *p = imx ? &plans->imx : &plans->plain;
    uint8_t *y = dst;
    int64_t nb = row_len / QK;
    float w[QK], clean[QK];
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t ib = 0; ib < nb; ib++, y += bytes) {
            const float *x = src + r * row_len + ib * QK;
            smelt_qs_block_weights(imx ? imx + ib * QK : NULL, fl, QK, w);
            if (smelt_qs_sanitize(x, QK, clean)) x = clean;
            fn(k, x, w, p, y);
        }
}

static void blk_q4_0(const smelt_qkern *k, const float *x, const float *w, const smelt_qs_plan *p, void *dst)
{
    smelt_block_q4_0 *y = dst;
    int8_t L[QK];
    uint8_t U[QK];
    y->d = best_sym(k, x, w, -8, 7, p, L);
    for (int j = 0; j < QK; j++) U[j] = (uint8_t)(L[j] + 8);
    pack_nibbles(y->qs, U);
}

static void blk_q5_0(const smelt_qkern *k, const float *x, const float *w, const smelt_qs_plan *p, void *dst)
{
    smelt_block_q5_0 *y = dst;
    int8_t L[QK];
    uint8_t U[QK];
    y->d = best_sym(k, x, w, -16, 15, p, L);
    for (int j = 0; j < QK; j++) U[j] = (uint8_t)(L[j] + 16);
    pack_nibbles(y->qs, U);
    pack_high_bits(y->qh, U);
}

static void blk_q4_1(const smelt_qkern *k, const float *x, const float *w, const smelt_qs_plan *p, void *dst)
{
    smelt_block_q4_1 *y = dst;
    uint8_t L[QK];
    best_asym(k, x, w, 15, p, &y->d, &y->m, L);
    pack_nibbles(y->qs, L);
}

static void blk_q5_1(const smelt_qkern *k, const float *x, const float *w, const smelt_qs_plan *p, void *dst)
{
    smelt_block_q5_1 *y = dst;
    uint8_t L[QK];
    best_asym(k, x, w, 31, p, &y->d, &y->m, L);
    pack_nibbles(y->qs, L);
    pack_high_bits(y->qh, L);
}

static void blk_q8_0(const smelt_qkern *k, const float *x, const float *w, const smelt_qs_plan *p, void *dst)
{
    smelt_block_q8_0 *y = dst;
    y->d = best_sym(k, x, w, -128, 127, p, y->qs);
}

#define ENCODER(t, plans)                                                                                    \
    static void quant_##t(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)   \
    {                                                                                                        \
        rows(&smelt_qkern_portable, src, dst, n_rows, row_len, imx, sizeof(smelt_block_##t), &plans,         \
             blk_##t);                                                                                       \
    }                                                                                                        \
    void smelt_quant_##t##_avx2(const float *src, void *dst, int64_t n_rows, int64_t row_len,               \
                                const float *imx)                                                            \
    {                                                                                                        \
        rows(&smelt_qkern_avx2, src, dst, n_rows, row_len, imx, sizeof(smelt_block_##t), &plans, blk_##t);   \
    }

ENCODER(q4_0, k_plans_4)
ENCODER(q5_0, k_plans_5)
ENCODER(q4_1, k_plans_4)
ENCODER(q5_1, k_plans_5)
ENCODER(q8_0, k_plans_8)

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

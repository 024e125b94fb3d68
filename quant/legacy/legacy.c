/* legacy.c — Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1: decoders, llama.cpp-exact reference encoders,
 * smelt's error-minimising encoders and portable dot products.
 * Includes quant/ headers and formats/base/half.h only. */
#include "legacy.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "quant/quant_int.h"
#include "legacy_int.h"

#define QK SMELT_QK_LEGACY

/* ==== packing ==== */

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

/* Levels of the symmetric reference encoders (Q4_0: half = 8, Q5_0: half = 16). */
static void ref_levels_sym(const float *x, int half, float *d_out, uint8_t *L)
{
    float d = q_signed_absmax(x, QK) / (float)-half;
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
        legacy_pack_nibbles(y[i].qs, L);
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
        legacy_pack_nibbles(y[i].qs, L);
        legacy_pack_high_bits(y[i].qh, L);
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
        legacy_pack_nibbles(y[i].qs, L);
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
        legacy_pack_nibbles(y[i].qs, L);
        legacy_pack_high_bits(y[i].qh, L);
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

/* ==== smelt's encoders (portable build of legacy_enc.inc) ==== */

#include "quant/vec.h"

#include "legacy_enc.inc"

/* ==== dot products (portable) ====
 * Integer lane sums per block (quant_int.h), then acc[j] += (dx * dy) * p[j]; the _1
 * types add m * s per block to a separate scalar, added after the lanes. */

/* Levels of a 32-element nibble block in element order (low nibbles, then high). */
static void nibbles(const uint8_t *qs, int bias, int *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) - bias;
        q[j + 16] = (qs[j] >> 4) - bias;
    }
}

static void q5_levels(const uint8_t *qs, const uint8_t *qh, int bias, int *q)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    nibbles(qs, 0, q);
    for (int j = 0; j < 32; j++) q[j] = (q[j] | (int)((h >> j) & 1) << 4) - bias;
}

static float dot_q4_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float acc[8] = {0};
    int q[32];
    int32_t p[8];
    for (size_t i = 0; i < n / QK; i++) {
        nibbles(x[i].qs, 8, q);
        q_lanes_dot32(q, y[i].qs, p);
        q_lanes_add(acc, q_f16(&x[i].d) * q_f16(&y[i].d), p);
    }
    return q_lanes_sum(acc);
}

static float dot_q4_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    float acc[8] = {0}, ms = 0;
    int q[32];
    int32_t p[8];
    for (size_t i = 0; i < n / QK; i++) {
        nibbles(x[i].qs, 0, q);
        q_lanes_dot32(q, y[i].qs, p);
        q_lanes_add(acc, q_f16(&x[i].d) * q_f16(&y[i].d), p);
        ms = ms + q_f16(&x[i].m) * q_f16(&y[i].s);
    }
    return q_lanes_sum(acc) + ms;
}

static float dot_q5_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float acc[8] = {0};
    int q[32];
    int32_t p[8];
    for (size_t i = 0; i < n / QK; i++) {
        q5_levels(x[i].qs, x[i].qh, 16, q);
        q_lanes_dot32(q, y[i].qs, p);
        q_lanes_add(acc, q_f16(&x[i].d) * q_f16(&y[i].d), p);
    }
    return q_lanes_sum(acc);
}

static float dot_q5_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    float acc[8] = {0}, ms = 0;
    int q[32];
    int32_t p[8];
    for (size_t i = 0; i < n / QK; i++) {
        q5_levels(x[i].qs, x[i].qh, 0, q);
        q_lanes_dot32(q, y[i].qs, p);
        q_lanes_add(acc, q_f16(&x[i].d) * q_f16(&y[i].d), p);
        ms = ms + q_f16(&x[i].m) * q_f16(&y[i].s);
    }
    return q_lanes_sum(acc) + ms;
}

static float dot_q8_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q8_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float acc[8] = {0};
    int q[32];
    int32_t p[8];
    for (size_t i = 0; i < n / QK; i++) {
        for (int j = 0; j < QK; j++) q[j] = x[i].qs[j];
        q_lanes_dot32(q, y[i].qs, p);
        q_lanes_add(acc, q_f16(&x[i].d) * q_f16(&y[i].d), p);
    }
    return q_lanes_sum(acc);
}

/* ==== the family ==== */

static const smelt_qtype_ops k_legacy[] = {
    {SMELT_TYPE_Q4_0, deq_q4_0, smelt_quant_q4_0_port, ref_q4_0, dot_q4_0, SMELT_TYPE_Q8_0, false, false, smelt_quant_q4_0_err_port},
    {SMELT_TYPE_Q4_1, deq_q4_1, smelt_quant_q4_1_port, ref_q4_1, dot_q4_1, SMELT_TYPE_Q8_1, false, false, smelt_quant_q4_1_err_port},
    {SMELT_TYPE_Q5_0, deq_q5_0, smelt_quant_q5_0_port, ref_q5_0, dot_q5_0, SMELT_TYPE_Q8_0, false, false, smelt_quant_q5_0_err_port},
    {SMELT_TYPE_Q5_1, deq_q5_1, smelt_quant_q5_1_port, ref_q5_1, dot_q5_1, SMELT_TYPE_Q8_1, false, false, smelt_quant_q5_1_err_port},
    {SMELT_TYPE_Q8_0, deq_q8_0, smelt_quant_q8_0_port, ref_q8_0, dot_q8_0, SMELT_TYPE_Q8_0, false, false, smelt_quant_q8_0_err_port},
    {SMELT_TYPE_Q8_1, deq_q8_1, NULL, ref_q8_1, NULL, SMELT_TYPE_Q8_1, false, true, NULL},
};

const smelt_qfamily smelt_legacy_family = {k_legacy, sizeof k_legacy / sizeof k_legacy[0]};

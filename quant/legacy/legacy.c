/* legacy.c — Q4_0 Q4_1 Q5_0 Q5_1 Q8_0: decoders, llama.cpp-exact reference encoders and
 * smelt's error-minimising encoders.
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

/* ==== smelt's encoders (portable build of legacy_enc.inc) ==== */

#include "quant/vec.h"

#include "legacy_enc.inc"

/* ==== the family ==== */

static const smelt_qtype_ops k_legacy[] = {
    {.type = SMELT_TYPE_Q4_0, .dequantize = deq_q4_0, .quantize = smelt_quant_q4_0_port, .quantize_ref = ref_q4_0, .quantize_err = smelt_quant_q4_0_err_port},
    {.type = SMELT_TYPE_Q4_1, .dequantize = deq_q4_1, .quantize = smelt_quant_q4_1_port, .quantize_ref = ref_q4_1, .quantize_err = smelt_quant_q4_1_err_port},
    {.type = SMELT_TYPE_Q5_0, .dequantize = deq_q5_0, .quantize = smelt_quant_q5_0_port, .quantize_ref = ref_q5_0, .quantize_err = smelt_quant_q5_0_err_port},
    {.type = SMELT_TYPE_Q5_1, .dequantize = deq_q5_1, .quantize = smelt_quant_q5_1_port, .quantize_ref = ref_q5_1, .quantize_err = smelt_quant_q5_1_err_port},
    {.type = SMELT_TYPE_Q8_0, .dequantize = deq_q8_0, .quantize = smelt_quant_q8_0_port, .quantize_ref = ref_q8_0, .quantize_err = smelt_quant_q8_0_err_port},
};

const smelt_qfamily smelt_legacy_family = {k_legacy, sizeof k_legacy / sizeof k_legacy[0]};

/* q6_K.c — Q6_K: 16 sub-blocks of 16, 6-bit signed levels, 8-bit signed scales (layout
 * in kquant.h). Decoder, llama.cpp-exact reference encoder, smelt's encoder, portable
 * dot with Q8_K. Includes quant/ only. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kquant_int.h"

#define QK SMELT_QK_K

/* geometry; plans without / with an imatrix: {sub-block search}, {scale search}, passes
 * (search plans: window lo, hi, grid points, sweep, polish rounds, re-centrings) */
static const kq_shape k_shape = {16, 16, -32, 31, -128, 127, 0, {{0.85f, 1.15f, 16, 0.f, 2, 1}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}, {{0.8f, 1.2f, 16, 0.f, 2, 1}, {0.8f, 1.2f, 48, 0.f, 2, 1}, 2}};

/* Levels 0..63 (stored value, bias 32) into ql/qh. */
static void pack_levels(smelt_block_q6_K *y, const uint8_t *L)
{
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        const uint8_t *p = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((p[l] & 15) | (p[l + 64] & 15) << 4);
            ql[l + 32] = (uint8_t)((p[l + 32] & 15) | (p[l + 96] & 15) << 4);
            qh[l] = (uint8_t)((p[l] >> 4) | (p[l + 32] >> 4) << 2 | (p[l + 64] >> 4) << 4 | (p[l + 96] >> 4) << 6);
        }
    }
}

/* Stored level (0..63) of element i. */
static inline int level_at(const smelt_block_q6_K *b, int i)
{
    int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
    int lo = (b->ql[64 * h + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 15;
    int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return lo | hi << 4;
}

void smelt_deq_q6_K(const void *src, float *y, size_t n)
{
    const smelt_block_q6_K *b = src;
    for (size_t i = 0; i < n / QK; i++, y += QK) {
        float d = q_f16(&b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            float *o = y + 128 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                o[l] = d * (float)sc[is] * (float)q1;
                o[l + 32] = d * (float)sc[is + 2] * (float)q2;
                o[l + 64] = d * (float)sc[is + 4] * (float)q3;
                o[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* Reference: per sub-block a symmetric scale from a grid (weights x^2), scales quantized
 * to 8 bits against the largest, levels re-rounded. */
void smelt_ref_q6_K(const float *x, void *dst, int64_t k)
{
    smelt_block_q6_K *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        int8_t L[QK];
        float sc[16];
        float max_sc = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = kq_ref_scale_sym(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(sc[j]) > amax) {
                amax = fabsf(sc[j]);
                max_sc = sc[j];
            }
        }
        if (amax < 1e-15f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_sc;
        q_put_f16(&y[i].d, 1 / iscale);
        for (int j = 0; j < 16; j++) {
            int v = q_nearest(iscale * sc[j]);
            y[i].scales[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            float d = q_f16(&y[i].d) * (float)y[i].scales[j];
            if (d == 0) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(q_clampi(q_nearest(x[16 * j + l] / d), -32, 31) + 32);
        }
        pack_levels(&y[i], (const uint8_t *)L);
    }
}

static void quant_block(const kq_engine *e, const kq_shape *g, const float *x, const float *w, void *dst,
                        kq_result *r)
{
    smelt_block_q6_K *y = dst;
    e->search(e->k, g, x, w, r);
    uint8_t L[QK];
    for (int i = 0; i < QK; i++) L[i] = (uint8_t)(r->L[i] + 32);
    for (int j = 0; j < 16; j++) y->scales[j] = (int8_t)r->S[j];
    y->d = r->d;
    pack_levels(y, L);
}

KQ_ROW_ENTRIES(q6_K, &k_shape, 1, offsetof(smelt_block_q6_K, d))


/* q5_K.c — Q5_K: 8 sub-blocks of 32, 5-bit levels, 6-bit scales and mins (layout in
 * kquant.h). Decoder, llama.cpp-exact reference encoder, smelt's encoder, portable dot
 * with Q8_K. Includes quant/ only. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kquant_int.h"

#define QK SMELT_QK_K

/* geometry; plans without / with an imatrix: {sub-block search}, {scale search}, passes
 * (search plans: window lo, hi, grid points, sweep, polish rounds, re-centrings) */
static const kq_shape k_shape = {8, 32, 0, 31, 0, 63, 63, {{0.8f, 1.2f, 24, 0.f, 2, 2, 2}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}, {{0.8f, 1.2f, 24, 0.f, 2, 2, 4}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}};

static void pack_levels(smelt_block_q5_K *y, const uint8_t *L)
{
    memset(y->qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int a = L[64 * c + l], b = L[64 * c + 32 + l];
            y->qs[32 * c + l] = (uint8_t)((a & 15) | (b & 15) << 4);
            y->qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * c) | ((b >> 4) & 1) << (2 * c + 1));
        }
}

void smelt_deq_q5_K(const void *src, float *y, size_t n)
{
    const smelt_block_q5_K *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = q_f16(&b[i].d), dmin = q_f16(&b[i].dmin);
        const uint8_t *q = b[i].qs, *qh = b[i].qh;
        for (int c = 0; c < 4; c++, q += 32) {
            float d1, m1, d2, m2;
            kq_sub_pair_k4(b[i].scales, c, d, dmin, &d1, &m1, &d2, &m2);
            int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 15) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Reference: per sub-block scale/min from a grid search weighted by rms + |x|, then
 * both quantized to 6 bits against the largest, then levels re-rounded. */
void smelt_ref_q5_K(const float *x, void *dst, int64_t k)
{
    smelt_block_q5_K *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        uint8_t L[QK];
        kq_ref_scales_k4(x, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        pack_levels(&y[i], L);
    }
}

static void quant_block(const kq_engine *e, const kq_shape *g, const float *x, const float *w, void *dst,
                        kq_result *r)
{
    smelt_block_q5_K *y = dst;
    uint8_t L[QK];
    kq_search_k4(e, g, x, w, r, &y->d, &y->dmin, y->scales, L);
    pack_levels(y, L);
}

KQ_ROW_ENTRIES(q5_K, &k_shape, 2, offsetof(smelt_block_q5_K, d), offsetof(smelt_block_q5_K, dmin))


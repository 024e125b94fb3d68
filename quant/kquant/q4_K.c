/* q4_K.c — Q4_K: 8 sub-blocks of 32, 4-bit levels, 6-bit scales and mins (layout in
 * kquant.h). Decoder, llama.cpp-exact reference encoder, smelt's encoder, portable dot
 * with Q8_K. Includes quant/ only. */
#include <math.h>
#include <stddef.h>

#include "kquant_int.h"

#define QK SMELT_QK_K

/* geometry; plans without / with an imatrix: {sub-block search}, {scale search}, passes
 * (search plans: window lo, hi, grid points, sweep, polish rounds, re-centrings) */
static const kq_shape k_shape = {8, 32, 0, 15, 0, 63, 63, {{0.7f, 1.3f, 24, 0.f, 2, 2, 2}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}, {{0.7f, 1.3f, 24, 0.f, 2, 2, 4}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}};

static void pack_levels(uint8_t *qs, const uint8_t *L)
{
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 15) | (L[64 * c + 32 + l] & 15) << 4);
}

void smelt_deq_q4_K(const void *src, float *y, size_t n)
{
    const smelt_block_q4_K *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = q_f16(&b[i].d), dmin = q_f16(&b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            float d1, m1, d2, m2;
            kq_sub_pair_k4(b[i].scales, c, d, dmin, &d1, &m1, &d2, &m2);
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 15) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Reference: per sub-block scale/min from a grid search weighted by rms + |x|, then
 * both quantized to 6 bits against the largest, then levels re-rounded. */
void smelt_ref_q4_K(const float *x, void *dst, int64_t k)
{
    smelt_block_q4_K *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        uint8_t L[QK];
        kq_ref_scales_k4(x, 15, -1.f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        pack_levels(y[i].qs, L);
    }
}

static void quant_block(const kq_engine *e, const kq_shape *g, const float *x, const float *w, void *dst,
                        kq_result *r)
{
    smelt_block_q4_K *y = dst;
    uint8_t L[QK];
    kq_search_k4(e, g, x, w, r, &y->d, &y->dmin, y->scales, L);
    pack_levels(y->qs, L);
}

KQ_ROW_ENTRIES(q4_K, &k_shape, 2, offsetof(smelt_block_q4_K, d), offsetof(smelt_block_q4_K, dmin))


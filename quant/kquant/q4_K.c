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
            int sc, m;
            kq_scale_min_k4(2 * c, b[i].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            kq_scale_min_k4(2 * c + 1, b[i].scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
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
    e->search(e->k, g, x, w, r);
    uint8_t L[QK];
    for (int i = 0; i < QK; i++) L[i] = (uint8_t)r->L[i];
    y->d = r->d;
    y->dmin = r->dmin;
    kq_pack_scale_min_k4(y->scales, r->S, r->M);
    pack_levels(y->qs, L);
}

KQ_ROW_ENTRIES(q4_K, &k_shape, 2, offsetof(smelt_block_q4_K, d), offsetof(smelt_block_q4_K, dmin))

float smelt_dot_q4_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_K *x = vx;
    const smelt_block_q8_K *y = vy;
    float acc[8] = {0}, accm = 0;
    for (size_t i = 0; i < n / QK; i++) {
        int32_t lane[8] = {0};
        int summ = 0, lv[32];
        for (int j = 0; j < 8; j++) {
            int sc, m;
            kq_scale_min_k4(j, x[i].scales, &sc, &m);
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            int shift = 4 * (j & 1);
            for (int l = 0; l < 32; l++) lv[l] = ((q[l] >> shift) & 15);
            kq_lanes_sub(lane, 32, j, sc, lv, y[i].qs + 32 * j);
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        q_lanes_add(acc, q_f16(&x[i].d) * y[i].d, lane);
        accm = accm + (q_f16(&x[i].dmin) * y[i].d) * (float)summ;
    }
    return q_lanes_sum(acc) - accm;
}

/* q2_K.c — Q2_K: 16 sub-blocks of 16, 2-bit levels, 4-bit scales and mins (layout in
 * kquant.h). Decoder, llama.cpp-exact reference encoder, smelt's encoder, portable dot
 * with Q8_K. Includes quant/ only. */
#include <math.h>
#include <stddef.h>

#include "kquant_int.h"

#define QK SMELT_QK_K

/* geometry; plans without / with an imatrix: {sub-block search}, {scale search}, passes
 * (search plans: window lo, hi, grid points, sweep, polish rounds, re-centrings) */
static const kq_shape k_shape = {16, 16, 0, 3, 0, 15, 15, {{0.5f, 1.6f, 16, 0.f, 2, 1, 2}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}, {{0.5f, 1.6f, 24, 0.f, 2, 2, 4}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}};

void smelt_deq_q2_K(const void *src, float *y, size_t n)
{
    const smelt_block_q2_K *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = q_f16(&b[i].d), dmin = q_f16(&b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int h = 0; h < 2; h++, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = b[i].scales[is++];
                    float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
    }
}

/* Reference: per sub-block scale/min from a grid search minimising sum |x| * |error|,
 * both quantized to 4 bits against the largest, levels re-rounded. */
void smelt_ref_q2_K(const float *x, void *dst, int64_t k)
{
    smelt_block_q2_K *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        uint8_t L[QK];
        float w[16], sc[16], mn[16];
        float max_sc = 0, max_mn = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            sc[j] = kq_ref_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mn[j], -0.5f, 0.1f, 15, true);
            if (sc[j] > max_sc) max_sc = sc[j];
            if (mn[j] > max_mn) max_mn = mn[j];
        }
        if (max_sc > 0) {
            float iscale = 15.f / max_sc;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)q_nearest(iscale * sc[j]);
            q_put_f16(&y[i].d, max_sc / 15.f);
        } else {
            for (int j = 0; j < 16; j++) y[i].scales[j] = 0;
            q_put_f16(&y[i].d, 0.f);
        }
        if (max_mn > 0) {
            float iscale = 15.f / max_mn;
            for (int j = 0; j < 16; j++) y[i].scales[j] |= (uint8_t)(q_nearest(iscale * mn[j]) << 4);
            q_put_f16(&y[i].dmin, max_mn / 15.f);
        } else {
            q_put_f16(&y[i].dmin, 0.f);
        }
        for (int j = 0; j < 16; j++) {
            float d = q_f16(&y[i].d) * (float)(y[i].scales[j] & 15);
            if (d == 0) continue;
            float dm = q_f16(&y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)q_clampi(q_nearest((x[16 * j + l] + dm) / d), 0, 3);
        }
        kq_pack_2bit(y[i].qs, L);
    }
}

static void quant_block(const kq_engine *e, const kq_shape *g, const float *x, const float *w, void *dst,
                        kq_result *r)
{
    smelt_block_q2_K *y = dst;
    e->search(e->k, g, x, w, r);
    uint8_t L[QK];
    for (int i = 0; i < QK; i++) L[i] = (uint8_t)r->L[i];
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(r->S[j] | r->M[j] << 4);
    y->d = r->d;
    y->dmin = r->dmin;
    kq_pack_2bit(y->qs, L);
}

KQ_ROW_ENTRIES(q2_K, &k_shape, 2, offsetof(smelt_block_q2_K, d), offsetof(smelt_block_q2_K, dmin))


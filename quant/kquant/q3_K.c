/* q3_K.c — Q3_K: 16 sub-blocks of 16, 3-bit signed levels, 6-bit signed scales (layout
 * in kquant.h). Decoder, llama.cpp-exact reference encoder, smelt's encoder, portable
 * dot with Q8_K. Includes quant/ only. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kquant_int.h"

#define QK SMELT_QK_K

/* geometry; plans without / with an imatrix: {sub-block search}, {scale search}, passes
 * (search plans: window lo, hi, grid points, sweep, polish rounds, re-centrings) */
static const kq_shape k_shape = {16, 16, -4, 3, -32, 31, 0, {{0.6f, 1.5f, 8, 0.f, 2, 1}, {0.6f, 1.5f, 16, 0.f, 2, 1}, 1}, {{0.6f, 1.5f, 16, 0.f, 2, 1}, {0.6f, 1.5f, 48, 0.f, 2, 1}, 2}};

/* 16 scales biased by 32 (0..63) into / out of the 12 packed bytes. */
static void pack_scales(uint8_t *q, const int *s)
{
    memset(q, 0, 12);
    for (int j = 0; j < 16; j++) {
        int l = s[j] & 63;
        if (j < 8) q[j] = (uint8_t)(l & 15);
        else q[j - 8] |= (uint8_t)((l & 15) << 4);
        q[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}


/* Levels 0..7 (stored value, bias 4) into the 2-bit planes and the high-bit mask. */
static void pack_levels(smelt_block_q3_K *y, uint8_t *L)
{
    for (int l = 0; l < 32; l++) {
        int m = 0;
        for (int k = 0; k < 8; k++) m |= ((L[32 * k + l] >> 2) & 1) << k;
        y->hmask[l] = (uint8_t)m;
    }
    for (int i = 0; i < QK; i++) L[i] &= 3;
    kq_pack_2bit(y->qs, L);
}

void smelt_deq_q3_K(const void *src, float *y, size_t n)
{
    const smelt_block_q3_K *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = q_f16(&b[i].d);
        const uint8_t *q = b[i].qs, *hm = b[i].hmask;
        int is = 0, bit = 0;
        for (int h = 0; h < 2; h++, q += 32)
            for (int shift = 0; shift < 8; shift += 2, bit++)
                for (int half = 0; half < 2; half++) {
                    float dl = d * (float)kq_q3_scale(b[i].scales, is++);
                    for (int l = 0; l < 16; l++) {
                        int k = l + 16 * half;
                        int v = ((q[k] >> shift) & 3) - ((hm[k] >> bit) & 1 ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
    }
}

/* Reference: per sub-block a symmetric scale refined by coordinate descent on the
 * levels (weights x^2), scales quantized to 6 bits against the largest, levels
 * re-rounded. */
void smelt_ref_q3_K(const float *x, void *dst, int64_t k)
{
    smelt_block_q3_K *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        int8_t L[QK];
        float sc[16];
        float max_sc = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = kq_ref_scale_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(sc[j]) > amax) {
                amax = fabsf(sc[j]);
                max_sc = sc[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_sc != 0) {
            float iscale = -32.f / max_sc;
            int s[16];
            for (int j = 0; j < 16; j++) s[j] = q_clampi((int8_t)q_nearest(iscale * sc[j]), -32, 31) + 32;
            pack_scales(y[i].scales, s);
            q_put_f16(&y[i].d, 1 / iscale);
        } else {
            q_put_f16(&y[i].d, 0.f);
        }
        for (int j = 0; j < 16; j++) {
            float d = q_f16(&y[i].d) * (float)kq_q3_scale(y[i].scales, j);
            if (d == 0) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(q_clampi(q_nearest(x[16 * j + l] / d), -4, 3) + 4);
        }
        pack_levels(&y[i], (uint8_t *)L);
    }
}

static void quant_block(const kq_engine *e, const kq_shape *g, const float *x, const float *w, void *dst,
                        kq_result *r)
{
    smelt_block_q3_K *y = dst;
    e->search(e->k, g, x, w, r);
    uint8_t L[QK];
    for (int i = 0; i < QK; i++) L[i] = (uint8_t)(r->L[i] + 4);
    int s[16];
    for (int j = 0; j < 16; j++) s[j] = r->S[j] + 32;
    pack_scales(y->scales, s);
    y->d = r->d;
    pack_levels(y, L);
}

KQ_ROW_ENTRIES(q3_K, &k_shape, 1, offsetof(smelt_block_q3_K, d))


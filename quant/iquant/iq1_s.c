/* iq1_s.c — IQ1_S: super-blocks of 256, runs of 8 on a 2048-point {-1, 0, 1} codebook,
 * a 3-bit scale and a shift sign per 32 (layout in iq1.h). Decoder, llama.cpp's encoder
 * (the candidate smelt's encoder must never do worse than; ggml has no reference encoder
 * and requires an importance matrix), smelt's encoder and the type's descriptor. Includes
 * quant/ only. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "iq1.h"

#define QK 256
#define GS 32 /* elements per scale */

static void deq_iq1_s(const void *src, float *y, size_t n)
{
    const iqg_grid *g = iqg_get(IQG_1S);
    const smelt_block_iq1_s *b = src;
    for (size_t i = 0; i < n / QK; i++, b++) {
        float d = q_f16((const uint8_t *)&b->d);
        for (int j = 0; j < 8; j++) {
            unsigned h = b->qh[j];
            float dl = d * (float)(2 * ((h >> 12) & 7) + 1), delta = h & 0x8000 ? -IQ1_DELTA : IQ1_DELTA;
            for (int k = 0; k < 4; k++, y += 8) iq1_run(g, b->qs[4 * j + k] | (int)((h >> 3 * k) & 7) << 8, dl, delta, y);
        }
    }
}

static void pack(const iq1_choice *c, void *dst)
{
    smelt_block_iq1_s *y = dst;
    memset(y, 0, sizeof *y);
    y->d = smelt_f32_to_f16(c->d);
    for (int j = 0; j < 8; j++) {
        unsigned h = (unsigned)c->l[j] << 12 | (unsigned)c->neg[4 * j] << 15;
        for (int k = 0; k < 4; k++) {
            y->qs[4 * j + k] = (uint8_t)(c->pt[4 * j + k] & 255);
            h |= (unsigned)(c->pt[4 * j + k] >> 8) << 3 * k;
        }
        y->qh[j] = (uint16_t)h;
    }
}

/* ==== llama.cpp's encoder ====
 * Per group of 32 (weights qw * sqrt(2 mean(x^2) + x^2)): the values sorted, every split
 * into levels -1 / 0 / 1 with either shift scored by least squares through prefix sums,
 * the best split's runs moved to the grid (off-grid runs to the nearest neighbour at that
 * scale, then the scale refitted); the factor maps the largest scale on 15, times 1.125. */
static void llama_block(const float *x, const float *qw, iq1_choice *c)
{
    const iqg_grid *g = iqg_get(IQG_1S);
    float scales[8], max_scale = 0, sumx2 = 0;
    memset(c, 0, sizeof *c);
    for (int i = 0; i < QK; i++) sumx2 += x[i] * x[i];
    float sigma2 = 2 * sumx2 / QK;
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = x + GS * ib;
        float w[GS], sumx[GS + 1], sumw[GS + 1], max = fabsf(xb[0]);
        int idx[GS];
        int8_t L[GS];
        for (int i = 0; i < GS; i++) w[i] = (qw ? qw[GS * ib + i] : 1.f) * sqrtf(sigma2 + xb[i] * xb[i]);
        for (int i = 1; i < GS; i++) max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
        scales[ib] = 0;
        if (max < 1e-12f) continue; /* shift +1/8, point 0 */
        iq1_sort(xb, GS, idx);
        sumx[0] = sumw[0] = 0;
        for (int j = 0; j < GS; j++) {
            sumx[j + 1] = sumx[j] + w[idx[j]] * xb[idx[j]];
            sumw[j + 1] = sumw[j] + w[idx[j]];
        }
        float best = -FLT_MAX, scale = max;
        int b1 = -1, b2 = -1, bs = 0;
        for (int i1 = 0; i1 <= GS; i1++)
            for (int i2 = i1; i2 <= GS; i2++)
                for (int s = 0; s < 2; s++) {
                    const float *q = iq1_lev[s];
                    float sqx = (sumx[i1] - sumx[0]) * q[0] + (sumx[i2] - sumx[i1]) * q[1] + (sumx[GS] - sumx[i2]) * q[2];
                    float sq2 = (sumw[i1] - sumw[0]) * q[0] * q[0] + (sumw[i2] - sumw[i1]) * q[1] * q[1] +
                                (sumw[GS] - sumw[i2]) * q[2] * q[2];
                    if (sq2 > 0 && sqx * sqx > best * sq2) {
                        scale = sqx / sq2;
                        best = scale * sqx;
                        b1 = i1;
                        b2 = i2;
                        bs = s ? -1 : 1;
                    }
                }
        if (b1 < 0 || b2 < 0 || bs == 0) continue;
        for (int j = 0; j < GS; j++) L[idx[j]] = (int8_t)(j < b1 ? 0 : j < b2 ? 1 : 2);
        if (scale < 0) {
            for (int j = 0; j < GS; j++) L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            bs = -bs;
        }
        bool all_on = true, on;
        for (int k = 0; k < GS / 8; k++) {
            c->neg[4 * ib + k] = bs == -1;
            c->pt[4 * ib + k] =
                (uint16_t)iq1_llama_point(g, xb + 8 * k, w + 8 * k, scale, iq1_lev[bs == -1], L + 8 * k, &on);
            all_on = all_on && on;
        }
        if (!all_on) scale = iq1_llama_refit_scale(g, c->pt + 4 * ib, c->neg + 4 * ib, GS / 8, xb, w, scale);
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(c, 0, sizeof *c);
        return;
    }
    float d = max_scale / 15, id = 1 / d;
    c->d = q_as_f16(d * 1.125f);
    for (int ib = 0; ib < 8; ib++) c->l[ib] = (uint8_t)q_clampi(q_nearest(0.5f * (id * scales[ib] - 1)), 0, 7);
}

static const iq1_type k_iq1 = {GS, false, sizeof(smelt_block_iq1_s), llama_block, pack, deq_iq1_s};

/* llama.cpp's encoder with an importance of ones. */
static void ref_iq1_s(const float *x, void *dst, int64_t k) { iq1_llama_rows(&k_iq1, x, dst, k); }

/* ==== smelt's encoder ==== */

static void enc_block(const float *x, const float *w, const float *qw, void *dst) { iq1_encode(&k_iq1, x, w, qw, dst); }

static const iq4_type k_type = {QK, sizeof(smelt_block_iq1_s), enc_block, ref_iq1_s, deq_iq1_s, NULL};

const smelt_qtype_ops smelt_iq1_s_ops = {
    .type = SMELT_TYPE_IQ1_S,
    .dequantize = deq_iq1_s,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq1_s,
    .needs_imatrix = true,
    .encode_cost = 40,
};

/* iq3_xxs.c — IQ3_XXS: super-blocks of 256, 4 magnitudes per point of a 256-point grid,
 * signs in 7-bit bytes, a 4-bit scale per 32 (layout in iqgrid.h). Decoder, llama.cpp-exact
 * encoder (its reference blocks, and the candidate smelt's encoder must never do worse
 * than), smelt's encoder, portable dot with Q8_K, and the type's descriptor. Includes
 * quant/ only. */
#include <math.h>
#include <string.h>

#include "iqgrid.h"
#include "quant/kquant/kquant.h"

#define QK SMELT_QK_K

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

static void deq_iq3_xxs(const void *src, float *y, size_t n)
{
    const smelt_block_iq3_xxs *b = src;
    const float *val = iqg_get(IQG_3XXS)->val;
    for (size_t i = 0; i < n / QK; i++) {
        float d = q_f16(&b[i].d);
        for (int j = 0; j < 8; j++) {
            uint32_t ss = get32(b[i].qs + 64 + 4 * j);
            float db = d * (0.5f + (float)(ss >> 28)) * 0.5f;
            for (int k = 0; k < 8; k++, y += 4) {
                unsigned signs = iqg_signs8((ss >> 7 * (k / 2)) & 127) >> 4 * (k % 2);
                const float *v = val + 4 * b[i].qs[8 * j + k];
                for (int e = 0; e < 4; e++) y[e] = db * v[e] * (signs >> e & 1 ? -1.f : 1.f);
            }
        }
    }
}

/* ==== llama.cpp's encoder ====
 * Same float expressions in the same order (its blocks must come out byte for byte):
 * per group of 32 the signs, 31 trial scales around the largest magnitude on level 7, the
 * best by least squares on the "2l + 1" levels, off-grid points re-picked at that scale;
 * the factor maps the largest group scale on 31, times 1.0125. Weights x^2 without qw,
 * qw * sqrt(2 mean(x^2) + x^2) with it. */
static void llama_block(const float *x, const float *qw, smelt_block_iq3_xxs *y)
{
    const iqg_grid *g = iqg_get(IQG_3XXS);
    const int kmax = 8;
    uint8_t q[96] = {0};
    uint32_t ss[8] = {0};
    float scales[8], max_scale = 0, sumx2 = 0;
    for (int i = 0; i < QK; i++) sumx2 += x[i] * x[i];
    float sigma2 = 2 * sumx2 / QK;
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = x + 32 * ib;
        float w[32], wa[32], xv[32];
        int8_t L[32] = {0}, La[32];
        int idx[8], idxa[8];
        bool on[8], ona[8];
        uint8_t signs[4];
        for (int i = 0; i < 32; i++) w[i] = qw ? qw[32 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
        for (int i = 0; i < 32; i++) wa[i] = sqrtf(w[i]);
        iqg_llama_signs(xb, w, xv, signs);
        float max = xv[0];
        for (int i = 1; i < 32; i++) max = max > xv[i] ? max : xv[i];
        if (max < 1e-8f) {
            scales[ib] = 0;
            continue;
        }
        for (int k = 0; k < 8; k++) {
            on[k] = true;
            idx[k] = g->map[0];
        }
        float best = 0, scale = max / (2 * kmax - 1), sqx, sq2;
        for (int is = -15; is <= 15; is++) {
            float id = (2 * kmax - 1 + (float)is * 0.2f) / max, this_scale = 1 / id;
            for (int k = 0; k < 8; k++) idxa[k] = iqg_llama_point(g, xv + 4 * k, wa + 4 * k, id, this_scale, La + 4 * k, &ona[k]);
            iqg_llama_sums(w, xv, La, 32, &sqx, &sq2);
            if (sq2 > 0 && sqx * sqx > best * sq2) {
                scale = sqx / sq2;
                best = scale * sqx;
                memcpy(L, La, sizeof L);
                memcpy(idx, idxa, sizeof idx);
                memcpy(on, ona, sizeof on);
            }
        }
        int off = 0;
        for (int k = 0; k < 8; k++) off += !on[k];
        if (off > 0 && scale > 0) {
            float id = 1 / scale;
            for (int k = 0; k < 8; k++)
                if (!on[k]) idx[k] = iqg_llama_point(g, xv + 4 * k, wa + 4 * k, id, scale, L + 4 * k, NULL);
            iqg_llama_sums(w, xv, L, 32, &sqx, &sq2);
            if (sq2 > 0) scale = sqx / sq2;
        }
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; k++) signs[k] = (uint8_t)(~signs[k] & 127);
        }
        for (int k = 0; k < 8; k++) q[8 * ib + k] = (uint8_t)idx[k];
        ss[ib] = (uint32_t)signs[0] | (uint32_t)signs[1] << 7 | (uint32_t)signs[2] << 14 | (uint32_t)signs[3] << 21;
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    memset(y, 0, sizeof *y);
    y->d = smelt_f32_to_f16(0.f);
    if (!max_scale) return;
    float d = max_scale / 31;
    y->d = smelt_f32_to_f16(d * 1.0125f);
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib++) {
        int l = q_clampi(q_nearest(0.5f * (id * scales[ib] - 1)), 0, 15);
        ss[ib] |= (uint32_t)l << 28;
    }
    memcpy(y->qs, q, 64);
    for (int ib = 0; ib < 8; ib++) put32(y->qs + 64 + 4 * ib, ss[ib]);
}

static void ref_iq3_xxs(const float *x, void *dst, int64_t k)
{
    smelt_block_iq3_xxs *y = dst;
    for (int64_t i = 0; i < k / QK; i++) llama_block(x + QK * i, NULL, &y[i]);
}

/* ==== smelt's encoder ==== */

static const iqg_fit k_fit = {NULL, 32, 0.25f, true};

static void put(const iqg_choice *c, smelt_block_iq3_xxs *y)
{
    memset(y, 0, sizeof *y);
    if (c->d == 0) return;
    y->d = smelt_f32_to_f16(c->d);
    for (int k = 0; k < 64; k++) y->qs[k] = (uint8_t)c->pt[k];
    for (int j = 0; j < 8; j++) {
        const uint8_t *s = c->sign + 4 * j;
        put32(y->qs + 64 + 4 * j, (uint32_t)s[0] | (uint32_t)s[1] << 7 | (uint32_t)s[2] << 14 |
                                      (uint32_t)s[3] << 21 | (uint32_t)c->s[j] << 28);
    }
}

/* Smelt: iqg_search on the decoded grid values (every group scale chosen on the factor's
 * ladder, points re-picked at that scale); llama.cpp's block when that is better. */
static void enc_block(const float *x, const float *w, const float *qw, void *dst)
{
    smelt_block_iq3_xxs *y = dst, ll, mine;
    iqg_fit f = k_fit;
    f.g = iqg_get(IQG_3XXS);
    iqg_choice c;
    iqg_search(&f, x, w, &c);
    put(&c, &mine);
    llama_block(x, qw, &ll);
    float ym[QK], yl[QK];
    deq_iq3_xxs(&mine, ym, QK);
    deq_iq3_xxs(&ll, yl, QK);
    *y = iq4_error(x, yl, w, QK) < iq4_error(x, ym, w, QK) ? ll : mine;
}

static void quant_err_iq3_xxs(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx,
                              const smelt_qerr *m)
{
    static const iq4_type k_type = {QK, sizeof(smelt_block_iq3_xxs), enc_block, ref_iq3_xxs, deq_iq3_xxs};
    iq4_quantize_rows(&k_type, src, dst, n_rows, row_len, imx, m);
}

static void quant_iq3_xxs(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    quant_err_iq3_xxs(src, dst, n_rows, row_len, imx, NULL);
}

/* Dot with Q8_K: per group of 32 the lane sums of signed grid values times 2 s + 1, per
 * super-block times d * d8, the total times 1/4. */
static float dot_iq3_xxs(const void *vx, const void *vy, size_t n)
{
    const smelt_block_iq3_xxs *x = vx;
    const smelt_block_q8_K *y = vy;
    const iqg_grid *g = iqg_get(IQG_3XXS);
    float acc[8] = {0};
    int q[32];
    int32_t p[8];
    for (size_t i = 0; i < n / QK; i++) {
        int32_t lane[8] = {0};
        for (int j = 0; j < 8; j++) {
            uint32_t ss = get32(x[i].qs + 64 + 4 * j);
            for (int k = 0; k < 8; k++) {
                unsigned signs = iqg_signs8((ss >> 7 * (k / 2)) & 127) >> 4 * (k % 2);
                const float *v = g->val + 4 * x[i].qs[8 * j + k];
                for (int e = 0; e < 4; e++) q[4 * k + e] = (signs >> e & 1) ? -(int)v[e] : (int)v[e];
            }
            q_lanes_dot32(q, y[i].qs + 32 * j, p);
            int sc = 2 * (int)(ss >> 28) + 1;
            for (int k = 0; k < 8; k++) lane[k] += sc * p[k];
        }
        q_lanes_add(acc, q_f16(&x[i].d) * y[i].d, lane);
    }
    return 0.25f * q_lanes_sum(acc);
}

const smelt_qtype_ops smelt_iq3_xxs_ops = {
    .type = SMELT_TYPE_IQ3_XXS,
    .dequantize = deq_iq3_xxs,
    .quantize = quant_iq3_xxs,
    .quantize_ref = ref_iq3_xxs,
    .vec_dot = dot_iq3_xxs,
    .vec_dot_type = SMELT_TYPE_Q8_K,
    .quantize_err = quant_err_iq3_xxs,
};

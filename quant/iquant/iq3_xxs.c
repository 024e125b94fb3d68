/* iq3_xxs.c — IQ3_XXS: super-blocks of 256, 4 magnitudes per point of a 256-point grid,
 * signs in 7-bit bytes, a 4-bit scale per 32 (layout in iqgrid.h). Decoder, llama.cpp-exact
 * encoder (its reference blocks, and the candidate smelt's encoder must never do worse
 * than), smelt's encoder and the type's descriptor. Includes
 * quant/ only. */
#include <math.h>
#include <string.h>

#include "iqgrid.h"
#include "quant/kquant/kquant.h"

#define QK SMELT_QK_K

/* Group j: 8 point bytes, then its word of four 7-bit sign fields and the scale. */
static void group(const iqg_grid *g, const uint8_t *b, int j, int *q, int *ls)
{
    uint32_t ss = iqg_get32(b + 2 + 64 + 4 * j);
    ls[0] = ls[1] = 2 * (int)(ss >> 28) + 1;
    for (int k = 0; k < 8; k++)
        iqg_signed_run(g, b[2 + 8 * j + k], iqg_signs8((ss >> 7 * (k / 2)) & 127) >> 4 * (k % 2), q + 4 * k);
}

static const iqg_layout k_layout = {IQG_3XXS, sizeof(smelt_block_iq3_xxs), 0.25f, group};

static void deq_iq3_xxs(const void *src, float *y, size_t n) { iqg_dequantize(&k_layout, src, y, n); }

/* ==== llama.cpp's encoder ====
 * Same float expressions in the same order (its blocks must come out byte for byte):
 * per group of 32 the signs, 31 trial scales around the largest magnitude on level 7, the
 * best by least squares on the "2l + 1" levels, off-grid points re-picked at that scale;
 * the factor maps the largest group scale on 31, times 1.0125. Weights x^2 without qw,
 * qw * sqrt(2 mean(x^2) + x^2) with it. */
static const iqg_llama_plan k_llama = {8, 15, 0.2f, false, 1e-8f, true, IQG_REPICK_OFF_GRID};

static void llama_block(const float *x, const float *qw, void *dst)
{
    smelt_block_iq3_xxs *y = dst;
    const iqg_grid *g = iqg_get(IQG_3XXS);
    uint8_t q[64] = {0};
    uint32_t ss[8] = {0};
    float scales[8], max_scale = 0, sumx2 = 0;
    for (int i = 0; i < QK; i++) sumx2 += x[i] * x[i];
    float sigma2 = 2 * sumx2 / QK;
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = x + 32 * ib;
        float w[32], xv[32], scale;
        int idx[8];
        uint8_t signs[4];
        for (int i = 0; i < 32; i++) w[i] = qw ? qw[32 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
        iqg_llama_signs(xb, w, xv, signs);
        scales[ib] = 0;
        if (!iqg_llama_group(g, &k_llama, 32, xv, w, idx, &scale)) continue;
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
    for (int ib = 0; ib < 8; ib++) iqg_put32(y->qs + 64 + 4 * ib, ss[ib]);
}

static void ref_iq3_xxs(const float *x, void *dst, int64_t k)
{
    smelt_block_iq3_xxs *y = dst;
    for (int64_t i = 0; i < k / QK; i++) llama_block(x + QK * i, NULL, &y[i]);
}

/* ==== smelt's encoder ==== */

static void put(const iqg_choice *c, void *dst)
{
    smelt_block_iq3_xxs *y = dst;
    memset(y, 0, sizeof *y);
    if (c->d == 0) return;
    y->d = smelt_f32_to_f16(c->d);
    for (int k = 0; k < 64; k++) y->qs[k] = (uint8_t)c->pt[k];
    for (int j = 0; j < 8; j++) {
        const uint8_t *s = c->sign + 4 * j;
        iqg_put32(y->qs + 64 + 4 * j, (uint32_t)s[0] | (uint32_t)s[1] << 7 | (uint32_t)s[2] << 14 |
                                      (uint32_t)s[3] << 21 | (uint32_t)c->s[j] << 28);
    }
}

/* Smelt's encoder: iqg_search on the decoded grid values; llama.cpp's block when that is
 * better. */
static const iqg_type k_grid = {IQG_3XXS, {NULL, 32, 0.25f, true}, sizeof(smelt_block_iq3_xxs), put, llama_block, deq_iq3_xxs};
static const iq4_type k_type = {QK, sizeof(smelt_block_iq3_xxs), NULL, ref_iq3_xxs, deq_iq3_xxs, &k_grid};

static void quant_err_iq3_xxs(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx,
                         const smelt_qerr *m)
{
    iq4_quantize_rows(&k_type, src, dst, n_rows, row_len, imx, m);
}

static void quant_iq3_xxs(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    quant_err_iq3_xxs(src, dst, n_rows, row_len, imx, NULL);
}


const smelt_qtype_ops smelt_iq3_xxs_ops = {
    .type = SMELT_TYPE_IQ3_XXS,
    .dequantize = deq_iq3_xxs,
    .quantize = quant_iq3_xxs,
    .quantize_ref = ref_iq3_xxs,
    .quantize_err = quant_err_iq3_xxs,
    .encode_cost = 40,
};

/* iq3_s.c — IQ3_S: super-blocks of 256, 4 magnitudes per point of a 512-point grid (9-bit
 * indices), every sign stored, a 4-bit scale per 32 (layout in iqgrid.h). Decoder,
 * llama.cpp-exact encoder (its reference blocks, and the candidate smelt's encoder must
 * never do worse than), smelt's encoder and the type's descriptor.
 * Includes quant/ only. */
#include <math.h>
#include <string.h>

#include "iqgrid.h"

#define QK 256 /* elements per super-block */

/* Group j: 8 low index bytes, their 9th bits in one byte, 4 sign bytes, a scale nibble. */
static void group(const iqg_grid *g, const uint8_t *b, int j, int *q, int *ls)
{
    const smelt_block_iq3_s *y = (const smelt_block_iq3_s *)b;
    ls[0] = ls[1] = 2 * ((y->scales[j / 2] >> 4 * (j % 2)) & 15) + 1;
    for (int k = 0; k < 8; k++)
        iqg_signed_run(g, y->qs[8 * j + k] | ((y->qh[j] >> k) & 1) << 8, (unsigned)y->signs[4 * j + k / 2] >> 4 * (k % 2),
                       q + 4 * k);
}

static const iqg_layout k_layout = {IQG_3S, sizeof(smelt_block_iq3_s), 1.f, group};

static void deq_iq3_s(const void *src, float *y, size_t n) { iqg_dequantize(&k_layout, src, y, n); }

/* ==== llama.cpp's encoder ====
 * Per group of 32 (weights x^2, or qw * sqrt(2 mean(x^2) + x^2)): the signs as they are,
 * 19 trial scales (15 + 0.2t) / max, and when any point was off the grid all points
 * re-picked at the fitted scale; the factor maps the largest group scale on 31, times
 * 1.033. */
static const iqg_llama_plan k_llama = {8, 9, 0.2f, false, 0x1p-149f, false, IQG_REPICK_ALL_IF_OFF};

static void llama_block(const float *x, const float *qw, void *dst)
{
    smelt_block_iq3_s *y = dst;
    const iqg_grid *g = iqg_get(IQG_3S);
    float scales[8], max_scale = 0, sumx2 = 0;
    int done = 0;
    memset(y, 0, sizeof *y);
    for (int i = 0; i < QK; i++) sumx2 += x[i] * x[i];
    float sigma2 = 2 * sumx2 / QK;
    for (int ib = 0; ib < 8; ib++) {
        const float *xb = x + 32 * ib;
        float w[32], xv[32], scale;
        int idx[8];
        uint8_t signs[4];
        for (int i = 0; i < 32; i++) w[i] = qw ? qw[32 * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
        iqg_llama_signs(xb, w, 32, false, xv, signs);
        scales[ib] = 0;
        if (!iqg_llama_group(g, &k_llama, 32, xv, w, idx, &scale)) continue;
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; k++) signs[k] = (uint8_t)~signs[k];
        }
        /* ggml moves on in qs and signs only past groups it encoded (a skipped group's place
         * takes the next group's bytes); the high bits go by group number */
        for (int k = 0; k < 8; k++) {
            y->qs[8 * done + k] = (uint8_t)(idx[k] & 255);
            y->qh[ib] |= (uint8_t)((idx[k] >> 8) << k);
        }
        memcpy(y->signs + 4 * done, signs, 4);
        done++;
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) return;
    float d = max_scale / 31;
    y->d = smelt_f32_to_f16(d * 1.033f);
    float id = 1 / d;
    for (int ib = 0; ib < 8; ib += 2) {
        int l1 = q_clampi(q_nearest(0.5f * (id * scales[ib] - 1)), 0, 15);
        int l2 = q_clampi(q_nearest(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
        y->scales[ib / 2] = (uint8_t)(l1 | l2 << 4);
    }
}


/* ==== smelt's encoder ==== */

static void put(const iqg_choice *c, void *dst)
{
    smelt_block_iq3_s *y = dst;
    memset(y, 0, sizeof *y);
    if (c->d == 0) return;
    y->d = smelt_f32_to_f16(c->d);
    for (int k = 0; k < 64; k++) {
        y->qs[k] = (uint8_t)(c->pt[k] & 255);
        y->qh[k / 8] |= (uint8_t)((c->pt[k] >> 8) << k % 8);
    }
    memcpy(y->signs, c->sign, 32);
    for (int j = 0; j < 8; j++) y->scales[j / 2] |= (uint8_t)(c->s[j] << 4 * (j % 2));
}

/* Smelt's encoder: iqg_search on the decoded grid values; llama.cpp's block when that is
 * better. */
static const iqg_type k_grid = {IQG_3S, {NULL, 32, 1.f, false}, sizeof(smelt_block_iq3_s), put, NULL, llama_block,
                                deq_iq3_s};

/* ggml's quantize_row_iq3_s_ref. */
static void ref_iq3_s(const float *x, void *dst, int64_t k) { iqg_llama_rows(&k_grid, x, dst, k); }
static const iq4_type k_type = {QK, sizeof(smelt_block_iq3_s), NULL, ref_iq3_s, deq_iq3_s, &k_grid};

const smelt_qtype_ops smelt_iq3_s_ops = {
    .type = SMELT_TYPE_IQ3_S,
    .dequantize = deq_iq3_s,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq3_s,
    .encode_cost = 40,
};

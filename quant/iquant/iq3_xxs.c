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
static const iqg_llama_spec k_llama = {IQG_3XXS, 32, 2, IQG_NOQW_X2, true, 1.0125f, {8, 15, 0.2f, false, 1e-8f, true, IQG_REPICK_OFF_GRID}};

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
static const iqg_type k_grid = {IQG_3XXS, {NULL, 32, 0.25f, true}, sizeof(smelt_block_iq3_xxs), put, &k_llama, NULL,
                                deq_iq3_xxs};

/* ggml's quantize_row_iq3_xxs_ref. */
static void ref_iq3_xxs(const float *x, void *dst, int64_t k) { iqg_llama_rows(&k_grid, x, dst, k); }
static const iq4_type k_type = {QK, sizeof(smelt_block_iq3_xxs), NULL, ref_iq3_xxs, deq_iq3_xxs, &k_grid};

const smelt_qtype_ops smelt_iq3_xxs_ops = {
    .type = SMELT_TYPE_IQ3_XXS,
    .dequantize = deq_iq3_xxs,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq3_xxs,
    .encode_cost = 40,
};

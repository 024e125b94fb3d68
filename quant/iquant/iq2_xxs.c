/* iq2_xxs.c — IQ2_XXS: super-blocks of 256, 8 magnitudes per point of a 256-point grid,
 * signs in 7-bit bytes, a 4-bit scale per 32 (layout in iqgrid.h). Decoder, llama.cpp's
 * encoder (it has no reference encoder for this type: run with unit importance it is
 * `quantize_ref`, and the candidate smelt's encoder must never do worse than), smelt's
 * encoder, and the type's descriptor. Includes quant/ only. */
#include <math.h>
#include <string.h>

#include "iqgrid.h"
#include "quant/kquant/kquant.h"

#define QK SMELT_QK_K

/* Group j: a word of four point indices, a word of four 7-bit sign fields and the scale. */
static void group(const iqg_grid *g, const uint8_t *b, int j, int *q, int *ls)
{
    uint32_t pw = iqg_get32(b + 2 + 8 * j), sw = iqg_get32(b + 2 + 8 * j + 4);
    ls[0] = ls[1] = 2 * (int)(sw >> 28) + 1;
    for (int k = 0; k < 4; k++) iqg_signed_run(g, (pw >> 8 * k) & 255, iqg_signs8((sw >> 7 * k) & 127), q + 8 * k);
}

static const iqg_layout k_layout = {IQG_2XXS, sizeof(smelt_block_iq2_xxs), 0.125f, group};

static void deq_iq2_xxs(const void *src, float *y, size_t n) { iqg_dequantize(&k_layout, src, y, n); }

/* ==== llama.cpp's encoder ====
 * Per group of 32 (weights qw * sqrt(mean(x^2) + x^2)): signs, a first scale from
 * make_qp_quants, 13 trial scales around it, every point re-picked at the fitted scale; the
 * factor maps the largest group scale on 31. */
static const iqg_llama_spec k_llama = {IQG_2XXS, 32, 1, IQG_NOQW_SQRT, true, 1, {3, 6, 0.1f, true, 1e-15f, true, IQG_REPICK_ALL}};

/* ==== smelt's encoder ==== */

static void put(const iqg_choice *c, void *dst)
{
    smelt_block_iq2_xxs *y = dst;
    memset(y, 0, sizeof *y);
    if (c->d == 0) return;
    y->d = smelt_f32_to_f16(c->d);
    for (int j = 0; j < 8; j++) {
        const uint8_t *s = c->sign + 4 * j;
        const uint16_t *p = c->pt + 4 * j;
        uint8_t *q = (uint8_t *)y->qs + 8 * j;
        iqg_put32(q, (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        iqg_put32(q + 4, (uint32_t)s[0] | (uint32_t)s[1] << 7 | (uint32_t)s[2] << 14 | (uint32_t)s[3] << 21 |
                             (uint32_t)c->s[j] << 28);
    }
}

/* Smelt's encoder: iqg_search on the decoded grid values; llama.cpp's block when that is
 * better. */
static const iqg_type k_grid = {IQG_2XXS, {NULL, 32, 0.125f, true}, sizeof(smelt_block_iq2_xxs), put, &k_llama, NULL,
                                deq_iq2_xxs};

/* llama.cpp's encoder with unit importance (what ggml_quantize_chunk writes for an
 * imatrix of ones). */
static void ref_iq2_xxs(const float *x, void *dst, int64_t k) { iqg_llama_rows(&k_grid, x, dst, k); }
static const iq4_type k_type = {QK, sizeof(smelt_block_iq2_xxs), NULL, ref_iq2_xxs, deq_iq2_xxs, &k_grid};

const smelt_qtype_ops smelt_iq2_xxs_ops = {
    .type = SMELT_TYPE_IQ2_XXS,
    .dequantize = deq_iq2_xxs,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq2_xxs,
    .needs_imatrix = true,
    .encode_cost = 40,
};

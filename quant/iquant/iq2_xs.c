/* iq2_xs.c — IQ2_XS: super-blocks of 256, 8 magnitudes per point of a 512-point grid,
 * 9-bit point and 7-bit signs per run of 8, a 4-bit scale per 16 (layout in iqgrid.h).
 * Decoder, llama.cpp's encoder (no reference encoder in ggml: with unit importance it is
 * `quantize_ref`, and the candidate smelt's encoder must never do worse than), smelt's
 * encoder, and the type's descriptor. Includes quant/ only. */
#include <math.h>
#include <string.h>

#include "iqgrid.h"
#include "quant/kquant/kquant.h"

#define QK SMELT_QK_K


/* Group j: four 16-bit words (9-bit point, 7 sign bits) and the two scales of its halves. */
static void group(const iqg_grid *g, const uint8_t *b, int j, int *q, int *ls)
{
    for (int h = 0; h < 2; h++) ls[h] = 2 * ((b[66 + j] >> 4 * h) & 15) + 1;
    for (int k = 0; k < 4; k++) {
        unsigned w = (unsigned)b[2 + 8 * j + 2 * k] | (unsigned)b[3 + 8 * j + 2 * k] << 8;
        iqg_signed_run(g, (int)(w & 511), iqg_signs8(w >> 9), q + 8 * k);
    }
}

static const iqg_layout k_layout = {IQG_2XS, sizeof(smelt_block_iq2_xs), 0.125f, group};

static void deq_iq2_xs(const void *src, float *y, size_t n) { iqg_dequantize(&k_layout, src, y, n); }

/* ==== llama.cpp's encoder ====
 * Per group of 16 (weights qw * sqrt(mean(x^2) + x^2)): signs, 19 trial scales
 * (5 + 0.1t) / max, off-grid runs re-picked at the fitted scale; the factor maps the largest
 * group scale on 31. */
static const iqg_llama_spec k_llama = {IQG_2XS, 16, 1, IQG_NOQW_SQRT, true, 1, {3, 9, 0.1f, false, 1e-15f, true, IQG_REPICK_OFF_GRID}};

/* ==== smelt's encoder ==== */

static void put(const iqg_choice *c, void *dst)
{
    smelt_block_iq2_xs *y = dst;
    memset(y, 0, sizeof *y);
    if (c->d == 0) return;
    y->d = smelt_f32_to_f16(c->d);
    for (int k = 0; k < 32; k++) y->qs[k] = (uint16_t)(c->pt[k] | c->sign[k] << 9);
    for (int j = 0; j < 16; j++) y->scales[j / 2] |= (uint8_t)(c->s[j] << 4 * (j % 2));
}

/* Smelt's encoder: iqg_search on the decoded grid values; llama.cpp's block when that is
 * better. */
static const iqg_type k_grid = {IQG_2XS, {NULL, 16, 0.125f, true}, sizeof(smelt_block_iq2_xs), put, &k_llama, NULL,
                                deq_iq2_xs};

/* llama.cpp's encoder with unit importance (what ggml_quantize_chunk writes for an
 * imatrix of ones). */
static void ref_iq2_xs(const float *x, void *dst, int64_t k) { iqg_llama_rows(&k_grid, x, dst, k); }
static const iq4_type k_type = {QK, sizeof(smelt_block_iq2_xs), NULL, ref_iq2_xs, deq_iq2_xs, &k_grid};

const smelt_qtype_ops smelt_iq2_xs_ops = {
    .type = SMELT_TYPE_IQ2_XS,
    .dequantize = deq_iq2_xs,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq2_xs,
    .needs_imatrix = true,
    .encode_cost = 40,
};

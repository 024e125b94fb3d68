/* iq2_s.c — IQ2_S: super-blocks of 256, 8 magnitudes per point of a 1024-point grid
 * (10-bit indices), every sign stored, a 4-bit scale per 16 (layout in iqgrid.h). Decoder,
 * llama.cpp's encoder (ggml's reference blocks, and the candidate smelt's encoder must
 * never do worse than), smelt's encoder, and the type's descriptor. Includes quant/ only. */
#include <string.h>

#include "iqgrid.h"
#include "quant/kquant/kquant.h"

#define QK SMELT_QK_K

/* Group j: four 10-bit points (low bytes, high bits in qh[j]), four sign bytes and the two
 * scales of its halves. */
static void group(const iqg_grid *g, const uint8_t *b, int j, int *q, int *ls)
{
    const smelt_block_iq2_s *y = (const smelt_block_iq2_s *)b;
    for (int h = 0; h < 2; h++) ls[h] = 2 * ((y->scales[j] >> 4 * h) & 15) + 1;
    for (int k = 0; k < 4; k++)
        iqg_signed_run(g, y->qs[4 * j + k] | ((y->qh[j] >> 2 * k) & 3) << 8, y->signs[4 * j + k], q + 8 * k);
}

static const iqg_layout k_layout = {IQG_2S, sizeof(smelt_block_iq2_s), 0.125f, group};

static void deq_iq2_s(const void *src, float *y, size_t n) { iqg_dequantize(&k_layout, src, y, n); }

/* ==== llama.cpp's encoder ====
 * Per group of 16 (weights qw * sqrt(2 mean(x^2) + x^2), without qw 2 mean(x^2) / 4 + x^2):
 * the signs as they are, 19 trial scales (5 + 0.1t) / max, off-grid runs re-picked at the
 * fitted scale; the factor maps the largest group scale on 31, times 0.9875. */
static const iqg_llama_spec k_llama = {IQG_2S, 16, 2, IQG_NOQW_FLOOR, false, 0.9875f,
                                       {3, 9, 0.1f, false, 1e-8f, true, IQG_REPICK_OFF_GRID}};

/* ==== smelt's encoder ==== */

static void put(const iqg_choice *c, void *dst)
{
    smelt_block_iq2_s *y = dst;
    memset(y, 0, sizeof *y);
    if (c->d == 0) return;
    y->d = smelt_f32_to_f16(c->d);
    for (int k = 0; k < 32; k++) {
        y->qs[k] = (uint8_t)(c->pt[k] & 255);
        y->qh[k / 4] |= (uint8_t)((c->pt[k] >> 8) << 2 * (k % 4));
    }
    memcpy(y->signs, c->sign, 32);
    for (int j = 0; j < 16; j++) y->scales[j / 2] |= (uint8_t)(c->s[j] << 4 * (j % 2));
}

/* Smelt's encoder: iqg_search on the decoded grid values; llama.cpp's block when that is
 * better. */
static const iqg_type k_grid = {IQG_2S, {NULL, 16, 0.125f, false}, sizeof(smelt_block_iq2_s), put, &k_llama, NULL,
                                deq_iq2_s};

/* ggml's quantize_row_iq2_s_ref. */
static void ref_iq2_s(const float *x, void *dst, int64_t k) { iqg_llama_rows(&k_grid, x, dst, k); }
static const iq4_type k_type = {QK, sizeof(smelt_block_iq2_s), NULL, ref_iq2_s, deq_iq2_s, &k_grid};

const smelt_qtype_ops smelt_iq2_s_ops = {
    .type = SMELT_TYPE_IQ2_S,
    .dequantize = deq_iq2_s,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq2_s,
    .encode_cost = 40,
};

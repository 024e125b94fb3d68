/* iq4_nl.c — IQ4_NL: blocks of 32, one f16 scale, 4-bit indices into the 16-level grid
 * (layout in iquant.h). Decoder, llama.cpp-exact reference encoder, smelt's encoder,
 * portable dot with Q8_0, and the type's descriptor. Includes quant/ only. */
#include <math.h>

#include "iquant_int.h"
#include "quant/legacy/legacy.h"

#define QK IQ4_GROUP

static void deq_iq4_nl(const void *src, float *y, size_t n)
{
    const smelt_block_iq4_nl *b = src;
    for (size_t i = 0; i < n / QK; i++, y += QK) {
        float d = q_f16(&b[i].d);
        for (int l = 0; l < 16; l++) {
            y[l] = d * (float)smelt_iq4_grid[b[i].qs[l] & 15];
            y[l + 16] = d * (float)smelt_iq4_grid[b[i].qs[l] >> 4];
        }
    }
}

/* Reference: the group's scale from llama.cpp's first guess (the largest |x| on the grid's
 * lowest level) fitted to its levels, weights x^2; levels not re-picked. */
static void ref_iq4_nl(const float *x, void *dst, int64_t k)
{
    smelt_block_iq4_nl *y = dst;
    uint8_t L[QK] = {0};
    for (int64_t i = 0; i < k / QK; i++) iq4_llama_block(1, x + QK * i, NULL, -1, L, &y[i].d, y[i].qs, NULL, NULL);
}

/* Smelt: the best continuous scale (iq4_group_scale), then the f16 values around it, each
 * with its levels re-picked against the decoded grid; llama.cpp's block when that is
 * better (so never worse than it under the same weights). */
static void enc_block(const float *x, const float *w, const float *qw, void *dst)
{
    smelt_block_iq4_nl *y = dst;
    uint8_t L[QK], Lt[QK];
    float d = iq4_group_scale(x, w), best = INFINITY;
    uint16_t h = smelt_f32_to_f16(d), bh = 0;
    for (int k = -2; k <= 2; k++) {
        int hk = (int)(h & 0x7fff) + k;
        if (hk < 0 || hk >= 0x7c00) continue;
        uint16_t hh = (uint16_t)((h & 0x8000) | hk);
        float e = iq4_fit(x, w, smelt_f16_to_f32(hh), Lt);
        if (e < best) {
            best = e;
            bh = hh;
            memcpy(L, Lt, QK);
        }
    }
    if (best == INFINITY) iq4_fit(x, w, 0, L); /* d = 0, or scale out of f16 range */
    smelt_block_iq4_nl mine, ll;
    mine.d = bh;
    iq4_pack(mine.qs, L, 1);
    iq4_llama_block(1, x, qw, 7, Lt, &ll.d, ll.qs, NULL, NULL);
    float ym[QK], yl[QK];
    deq_iq4_nl(&mine, ym, QK);
    deq_iq4_nl(&ll, yl, QK);
    *y = iq4_error(x, yl, w, QK) < iq4_error(x, ym, w, QK) ? ll : mine;
}

static const iq4_type k_type = {QK, sizeof(smelt_block_iq4_nl), enc_block, ref_iq4_nl, deq_iq4_nl};

const smelt_qtype_ops smelt_iq4_nl_ops = {
    .type = SMELT_TYPE_IQ4_NL,
    .dequantize = deq_iq4_nl,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq4_nl,
    .encode_cost = 10,
};

/* tq2_0.c — TQ2_0: 2-bit codes of 256 elements, one f16 scale (layout in ternary.h): the
 * packing, and the type's descriptor over the shared decoder, reference encoder, encoder
 * and dot (tq_common.c). Includes quant/ only.
 *
 * The format decodes code c to the level c - 1, so its four codes could mean -1, 0, 1 and 2;
 * llama.cpp's encoder writes only the first three (the ternary levels), and so does
 * smelt's: a backend written for ternary models may rely on it (docs/NOTES.md measures
 * what the fourth level would buy on a model that is not ternary). */
#include "ternary_int.h"

/* code of element 128h + 32l + m is in bits 2l..2l+1 of qs[32h + m] */
static float block_codes(const void *blk, int *c)
{
    const smelt_block_tq2_0 *b = blk;
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++) c[128 * h + 32 * l + m] = (b->qs[32 * h + m] >> (2 * l)) & 3;
    return q_f16(&b->d);
}

static void pack(const int *c, uint16_t d, void *blk)
{
    smelt_block_tq2_0 *b = blk;
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 32; m++) {
            int v = 0;
            for (int l = 0; l < 4; l++) v |= (c[128 * h + 32 * l + m] & 3) << (2 * l);
            b->qs[32 * h + m] = (uint8_t)v;
        }
    b->d = d;
}

static const tq_format k_format = {sizeof(smelt_block_tq2_0), 1, block_codes, pack};

static void deq_tq2_0(const void *src, float *y, size_t n) { tq_dequantize(&k_format, src, y, n); }
static void ref_tq2_0(const float *x, void *dst, int64_t n) { tq_ref(&k_format, x, dst, n); }

static void quant_tq2_0(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    smelt_block_rows(tq_encode_block, &k_format, TQ_BLOCK, k_format.bytes, src, dst, n_rows, row_len, imx);
}

const smelt_qtype_ops smelt_tq2_0_ops = {
    .type = SMELT_TYPE_TQ2_0,
    .dequantize = deq_tq2_0,
    .quantize = quant_tq2_0,
    .quantize_ref = ref_tq2_0,
};

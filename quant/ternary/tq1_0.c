/* tq1_0.c — TQ1_0: 256 trits packed five to a byte in base 3, one f16 scale (layout in
 * ternary.h): the packing, and the type's descriptor over the shared decoder, reference
 * encoder, encoder and dot (tq_common.c). Includes quant/ only. */
#include "ternary_int.h"

/* Where each byte's trits go: byte k of the block (qs then qh) holds the elements
 * first + stride * n, n = 0 .. count - 1, the first one most significant. */
static void byte_elements(int k, int *first, int *stride, int *count)
{
    if (k < 32) *first = k, *stride = 32, *count = 5;
    else if (k < 48) *first = 160 + (k - 32), *stride = 16, *count = 5;
    else *first = 240 + (k - 48), *stride = 4, *count = 4;
}

static float block_codes(const void *blk, int *t)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const smelt_block_tq1_0 *b = blk;
    for (int k = 0; k < 52; k++) {
        uint8_t v = k < 48 ? b->qs[k] : b->qh[k - 48];
        int first, stride, count;
        byte_elements(k, &first, &stride, &count);
        for (int n = 0; n < count; n++) {
            uint8_t q = (uint8_t)(v * pow3[n]);
            t[first + stride * n] = (q * 3) >> 8;
        }
    }
    return q_f16(&b->d);
}

/* t[i] in 0..2 → the 52 bytes (a 4-trit byte gets a fifth trit 0) */
static void pack(const int *t, uint16_t d, void *blk)
{
    smelt_block_tq1_0 *b = blk;
    for (int k = 0; k < 52; k++) {
        int first, stride, count, v = 0;
        byte_elements(k, &first, &stride, &count);
        for (int n = 0; n < 5; n++) v = 3 * v + (n < count ? t[first + stride * n] : 0);
        uint8_t byte = (uint8_t)((v * 256 + 242) / 243);
        if (k < 48) b->qs[k] = byte;
        else b->qh[k - 48] = byte;
    }
    b->d = d;
}

static const tq_format k_format = {sizeof(smelt_block_tq1_0), 1, block_codes, pack};

static void deq_tq1_0(const void *src, float *y, size_t n) { tq_dequantize(&k_format, src, y, n); }
static void ref_tq1_0(const float *x, void *dst, int64_t n) { tq_ref(&k_format, x, dst, n); }
static float dot_tq1_0(const void *x, const void *y, size_t n) { return tq_dot(&k_format, x, y, n); }

static void quant_tq1_0(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    smelt_block_rows(tq_encode_block, &k_format, TQ_BLOCK, k_format.bytes, src, dst, n_rows, row_len, imx);
}

const smelt_qtype_ops smelt_tq1_0_ops = {
    .type = SMELT_TYPE_TQ1_0,
    .dequantize = deq_tq1_0,
    .quantize = quant_tq1_0,
    .quantize_ref = ref_tq1_0,
    .vec_dot = dot_tq1_0,
    .vec_dot_type = SMELT_TYPE_Q8_K,
};

/* tq1_0.c — TQ1_0: 256 trits packed five to a byte in base 3, one f16 scale (layout in
 * ternary.h): the packing, and the type's descriptor over the shared decoder, reference
 * encoder, encoder and dot (tq_common.c). Includes quant/ only. */
#include <stddef.h>

#include "ternary_int.h"

_Static_assert(offsetof(smelt_block_tq1_0, qh) == 48, "qh follows qs");

/* The block's bytes (qs then qh) in three runs: bytes first .. first + count - 1 hold
 * `digits` trits each, byte first + m holding elements elem + m + stride * n (n = 0 ..
 * digits - 1, the first most significant). */
static const struct {
    int first, count, elem, stride, digits;
} k_runs[3] = {{0, 32, 0, 32, 5}, {32, 16, 160, 16, 5}, {48, 4, 240, 4, 4}};

static float block_codes(const void *blk, int *t)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const smelt_block_tq1_0 *b = blk;
    const uint8_t *bytes = blk; /* the block as bytes: qs, then qh */
    for (int r = 0; r < 3; r++)
        for (int n = 0; n < k_runs[r].digits; n++) {
            int *out = t + k_runs[r].elem + k_runs[r].stride * n;
            const uint8_t *in = bytes + k_runs[r].first;
            for (int m = 0; m < k_runs[r].count; m++) out[m] = ((uint8_t)(in[m] * pow3[n]) * 3) >> 8;
        }
    return q_f16(&b->d);
}

/* t[i] in 0..2 → the 52 bytes (a 4-trit byte gets a fifth trit 0) */
static void pack(const int *t, uint16_t d, void *blk)
{
    smelt_block_tq1_0 *b = blk;
    uint8_t *bytes = blk;
    for (int r = 0; r < 3; r++)
        for (int m = 0; m < k_runs[r].count; m++) {
            int v = 0;
            for (int n = 0; n < 5; n++) v = 3 * v + (n < k_runs[r].digits ? t[k_runs[r].elem + m + k_runs[r].stride * n] : 0);
            bytes[k_runs[r].first + m] = (uint8_t)((v * 256 + 242) / 243);
        }
    b->d = d;
}

static const tq_format k_format = {sizeof(smelt_block_tq1_0), 1, block_codes, pack};

static void deq_tq1_0(const void *src, float *y, size_t n) { tq_dequantize(&k_format, src, y, n); }
static void ref_tq1_0(const float *x, void *dst, int64_t n) { tq_ref(&k_format, x, dst, n); }

static void quant_tq1_0(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    smelt_block_rows(tq_encode_block, &k_format, TQ_BLOCK, k_format.bytes, src, dst, n_rows, row_len, imx);
}

const smelt_qtype_ops smelt_tq1_0_ops = {
    .type = SMELT_TYPE_TQ1_0,
    .dequantize = deq_tq1_0,
    .quantize = quant_tq1_0,
    .quantize_ref = ref_tq1_0,
};

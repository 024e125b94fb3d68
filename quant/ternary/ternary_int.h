/* ternary_int.h — private to quant/ternary/: the scale search both ternary types share,
 * their dot with Q8_K, and the rows loop glue. Layer: quant. Includes quant/ only. */
#ifndef SMELT_QUANT_TERNARY_INT_H
#define SMELT_QUANT_TERNARY_INT_H

#include <stdint.h>

#include "quant/block_rows.h"
#include "quant/kquant/kquant.h"
#include "quant/quant_int.h"
#include "ternary.h"

#define TQ_BLOCK 256


/* What the shared code needs of a ternary type: block bytes, the highest level (1 for
 * TQ1_0, 2 for TQ2_0), a block's codes (level + 1, element order) and scale d, and the
 * packing of 256 codes and an f16 d into a block. */
typedef struct tq_format {
    size_t bytes;
    int hi;
    float (*codes)(const void *blk, int *c);
    void (*pack)(const int *c, uint16_t d, void *blk);
} tq_format;

/* Decode n elements: x = (float)(code - 1) * d, as ggml computes it. */
void tq_dequantize(const tq_format *f, const void *src, float *y, size_t n);
/* llama.cpp's reference encoder: d = the largest |x| (f16), each level the rounding
 * (halves away from 0) of x / d in f32. */
void tq_ref(const tq_format *f, const float *x, void *dst, int64_t n);
/* smelt's encoder of one block (a smelt_block_rows encoder; ctx is the tq_format). */
void tq_encode_block(const void *ctx, const float *x, const float *w, void *blk);

#endif

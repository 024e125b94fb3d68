/* block_rows.h — the rows loop of block types whose encoder works one block at a time (the
 * ternary types and MXFP4). Private to quant/. Layer: quant. Includes quant/ only. */
#ifndef SMELT_QUANT_BLOCK_ROWS_H
#define SMELT_QUANT_BLOCK_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/quant_int.h"

/* Encode n_rows rows of row_len values, blocks of blck (<= 256) values to `bytes` bytes
 * each by `encode(ctx, x, w, block)`: per block the non-finite values are read as 0 and the
 * weights w are the imatrix with a small floor (ones without one). */
void smelt_block_rows(void (*encode)(const void *ctx, const float *x, const float *w, void *blk), const void *ctx,
                      int blck, size_t bytes,
                      const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx);

#endif

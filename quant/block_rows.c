/* block_rows.c — the rows loop shared by the ternary types and MXFP4 (block_rows.h).
 * Includes quant/ only. */
#include "block_rows.h"

#include "quant/search.h"

void smelt_block_rows(void (*encode)(const void *ctx, const float *x, const float *w, void *blk), const void *ctx,
                      int blck, size_t bytes,
                      const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    const int64_t nb = row_len / blck;
    uint8_t *y = dst;
    float xs[SMELT_QS_MAX_GROUP], w[SMELT_QS_MAX_GROUP];
    float fl = imx ? smelt_qs_weight_floor(imx, row_len) : 0;
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t ib = 0; ib < nb; ib++, y += bytes) {
            smelt_qs_sanitize(src + r * row_len + ib * blck, blck, xs);
            smelt_qs_block_weights(imx ? imx + ib * blck : NULL, fl, blck, w);
            encode(ctx, xs, w, y);
        }
}

/* fp8src.h — block-scaled FP8 checkpoints as a tensor source. Layer: formats. Includes
 * base/, tsrc.h, jansson.
 *
 * DeepSeek-V3 and the Qwen3 FP8 releases store each linear weight W (rows × cols) as
 * F8_E4M3 and beside it `W_scale_inv` (named `….weight_scale_inv`), a 2-D tensor of
 * ceil(rows/128) × ceil(cols/128) block scales; the value of element (r, c) is
 * fp8(r, c) × scale_inv[r / 128][c / 128]. config.json declares the layout:
 *   "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
 *                           "weight_block_size": [128, 128], "activation_scheme": …}
 * The wrapper source below presents such a weight as an F32 tensor (the product rounded
 * once to f32) and hides the scale tensors, so every reader of a smelt_tsrc (convert,
 * merge, one-pass quantization) takes FP8 checkpoints without a BF16 copy on disk. */
#ifndef SMELT_FP8SRC_H
#define SMELT_FP8SRC_H

#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "tsrc.h"

typedef struct smelt_fp8_cfg {
    int on;                 /* quantization_config declares block-scaled fp8 */
    uint32_t block_rows;    /* weight_block_size[0] */
    uint32_t block_cols;    /* weight_block_size[1] */
} smelt_fp8_cfg;

/* Read config.json's `quantization_config` (config is the parsed file, cfg_path names it
 * in errors). Absent or null: out->on = 0. A quantization method other than fp8, an fp8
 * format other than e4m3, no weight_block_size (per-tensor or per-channel scales) or a
 * block size other than [128, 128] is refused (EUNSUPPORTED naming the key). */
int smelt_fp8_cfg_read(const json_t *config, const char *cfg_path, smelt_fp8_cfg *out, smelt_err *e);

/* Replace *src by a source that dequantizes its block-scaled FP8 weights, taking
 * ownership of the old one (closed with the wrapper). Leaves *src as it was, and returns
 * 0, when cfg is off and no tensor is a block scale; on an error *src is also left as it
 * was (the caller still owns and closes it). Errors name the tensor and its file:
 * scales without a quantization_config, scales whose weight is missing, not F8_E4M3
 * (F8_E5M2 is EUNSUPPORTED) or not 2-D, a scale whose dtype is not F32/BF16/F16 or whose
 * shape is not [ceil(rows/br), ceil(cols/bc)], an F8 tensor without scales, and the
 * per-tensor scale names of other FP8 layouts (`….weight_scale`, `….input_scale`).
 * Reads go through one internal buffer: one reader at a time. */
int smelt_tsrc_wrap_fp8(smelt_tsrc *src, const smelt_fp8_cfg *cfg, smelt_err *e);

#endif

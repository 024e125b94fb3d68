/* torchbin.h — PyTorch checkpoints (torch.save zip archives: pytorch_model.bin, sharded
 * pytorch_model-0000i-of-0000N.bin + index, adapter_model.bin) as tensor sources.
 * Layer: formats. Includes base/, tsrc.h. The pickle inside is read by an allow-listed
 * interpreter (pickle.h) that builds a tensor index and never executes code. */
#ifndef SMELT_TORCHBIN_H
#define SMELT_TORCHBIN_H

#include "base/err.h"
#include "tsrc.h"

/* Open a directory's pytorch_model.bin.index.json (+ every shard it names, which must
 * exist and hold the tensors the index assigns them) or its pytorch_model.bin. Tensors
 * come shard by shard in shard-name order, each shard in pickle (state dict) order; bytes
 * are zero-copy views into the mapped files, CRC-checked on first read. Errors name the
 * file, the tensor or archive record, and the byte offset (inside data.pkl for pickle
 * errors). Close with smelt_tsrc_close(). */
int smelt_torchbin_open_dir(const char *dir, smelt_tsrc *out, smelt_err *e);
/* Open one .bin file (e.g. a PEFT adapter_model.bin). */
int smelt_torchbin_open_file(const char *path, smelt_tsrc *out, smelt_err *e);

#endif

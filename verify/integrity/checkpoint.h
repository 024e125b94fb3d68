/* vmodel.h — one read-only view over the tensors of a GGUF file or a safetensors checkpoint
 * (a .safetensors file, an index json, or a Hugging Face directory, sharded or not), for the
 * tools that check and compare models. Values decode to f32 a row range at a time.
 * Layer: verify. Includes formats/ and quant/. */
#ifndef SMELT_CHECKPOINT_H
#define SMELT_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/gguf.h"
#include "formats/model_check.h"
#include "formats/safetensors.h"

typedef enum smelt_checkpoint_kind {
    SMELT_CHECKPOINT_GGUF = 0,
    SMELT_CHECKPOINT_SAFETENSORS = 1,
} smelt_checkpoint_kind;

#define SMELT_CHECKPOINT_MAX_DIMS 8

typedef struct smelt_checkpoint_tensor {
    const char *name;
    int type;              /* GGUF: ggml type id; safetensors: -1 */
    int dtype;             /* safetensors: smelt_dtype; GGUF: -1 */
    const char *type_name; /* "q8_0", "f16" (GGUF) or "BF16", "F32" (safetensors) */
    uint32_t n_dims;
    /* As the file stores it: GGUF ne[] (row length first, unused dims 1);
     * safetensors outermost first. */
    uint64_t shape[SMELT_CHECKPOINT_MAX_DIMS];
    uint64_t nelements, nbytes;
    uint64_t row_len;      /* elements per row: ne[0], or the last safetensors dim (1 for scalars) */
    uint64_t n_rows;       /* nelements / row_len (0 for an empty tensor) */
    uint64_t row_bytes;
    const uint8_t *data;   /* mapped bytes; NULL when nbytes == 0 */
    const char *file;      /* file holding the bytes */
    uint64_t file_offset;  /* absolute offset of data in that file */
} smelt_checkpoint_tensor;

typedef struct smelt_checkpoint smelt_checkpoint;

/* Open `path`: a GGUF file (recognised by its magic), a .safetensors file, a
 * model.safetensors.index.json, or a directory holding model.safetensors, its index, or a
 * PEFT adapter_model.safetensors. Everything is validated and mapped; no tensor data is
 * read yet. Errors: EIO, EFORMAT (from the readers), EUNSUPPORTED for a directory with
 * only PyTorch .bin weights. *out is NULL on error. */
int smelt_checkpoint_open(const char *path, smelt_checkpoint **out, smelt_err *e);
void smelt_checkpoint_close(smelt_checkpoint *m); /* NULL is a no-op */

smelt_checkpoint_kind smelt_checkpoint_kind_of(const smelt_checkpoint *m);
const char *smelt_checkpoint_path(const smelt_checkpoint *m);
/* "GGUF v3", "safetensors (2 shards)". */
const char *smelt_checkpoint_describe(const smelt_checkpoint *m);
const smelt_gguf *smelt_checkpoint_gguf(const smelt_checkpoint *m);   /* NULL for safetensors */
const smelt_stset *smelt_checkpoint_stset(const smelt_checkpoint *m); /* NULL for GGUF */
/* Sum of the files' sizes. */
uint64_t smelt_checkpoint_file_bytes(const smelt_checkpoint *m);

uint64_t smelt_checkpoint_n_tensors(const smelt_checkpoint *m);
/* Tensors in file order (GGUF: declaration order; safetensors: shard by shard, data order).
 * Borrowed until smelt_checkpoint_close(). */
const smelt_checkpoint_tensor *smelt_checkpoint_tensor_at(const smelt_checkpoint *m, uint64_t i);
/* Index of a tensor by name, or -1. */
int64_t smelt_checkpoint_find(const smelt_checkpoint *m, const char *name);
/* Drop a tensor's pages from RSS after use. */
void smelt_checkpoint_release(const smelt_checkpoint *m, uint64_t i);

/* True when smelt can decode the tensor's values to f32 (float types, and every quant type
 * quant/ dequantizes). Integer tensors are not "values" here and return false. */
bool smelt_checkpoint_can_decode(const smelt_checkpoint_tensor *t);
/* Elements per block (1 for plain types): decode ranges start and end on block bounds. */
uint64_t smelt_checkpoint_block(const smelt_checkpoint_tensor *t);
/* Decode elements [first, first + n) (flat order, both multiples of the block size) to f32.
 * Thread-safe. Errors: EUNSUPPORTED for a type smelt cannot decode. */
int smelt_checkpoint_decode(const smelt_checkpoint_tensor *t, uint64_t first, uint64_t n, float *dst, smelt_err *e);
/* Shape as text: GGUF "[4096, 32000]" (ne order), safetensors "[32000, 4096]". */
void smelt_checkpoint_shape_str(const smelt_checkpoint_tensor *t, char *buf, size_t n);

/* The model check every tool shares (formats/model_check.h) on a GGUF: 0 valid (*hp
 * filled), SMELT_MC_SKIPPED when there is nothing to check (hp->skipped says why: a
 * safetensors checkpoint, a LoRA adapter, no general.architecture, another
 * architecture), or the check's error (EFORMAT, EUNSUPPORTED). */
int smelt_checkpoint_check_model(const smelt_checkpoint *m, smelt_mc_hparams *hp, smelt_err *e);

#endif

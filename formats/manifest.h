/* manifest.h — per-tensor hash manifests in llama-gguf-hash's line format, written by
 * smelt-verify --manifest, smelt-merge (beside every output) and read back by
 * smelt-verify --check (verify/integrity/integrity.h) and `llama-gguf-hash --check`:
 *
 *     xxh64     <16 hex digits>  <label>:<tensor>     one line per tensor, in file order
 *     xxh64     <16 hex digits>  <label>              the whole model (all tensor data)
 *
 * Layer: formats. Includes formats/base. */
#ifndef SMELT_MANIFEST_H
#define SMELT_MANIFEST_H

#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/strbuf.h"

/* Append one line to b: a tensor's (label:tensor), or the model's when tensor is NULL. */
void smelt_manifest_line(smelt_strbuf *b, uint64_t xxh64, const char *label, const char *tensor);

/* Write the manifest of the GGUF model at gguf_path (the first shard of a split: every shard
 * is hashed) to manifest_path, atomically: each tensor labelled with the file that holds it,
 * then the model line labelled gguf_path. */
int smelt_manifest_write_gguf(const char *gguf_path, const char *manifest_path, smelt_err *e);

#endif

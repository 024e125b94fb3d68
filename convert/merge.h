/* merge.h — PEFT LoRA adapters merged into base weights exactly as PEFT's
 * merge_and_unload() computes them, streaming one tensor at a time; the merged model is a
 * tensor source (for a one-pass HF+LoRA → GGUF conversion) and can be written as a
 * Hugging Face directory with the base's layout.
 * Layer: convert. Includes formats/ (tsrc, peft, hfdir), base/.
 *
 * Per base tensor W, for each adapter in order (weight w, scaling s of the module):
 *   Linear:    ΔW = (lora_B @ lora_A) * fl32(s·w)            [out, in]
 *   fan_in_fan_out (Conv1D, W stored [in, out]): ΔW transposed
 *   Embedding: ΔW = (lora_embedding_B @ lora_embedding_A)ᵀ * fl32(s·w)   [vocab, dim]
 *   DoRA:      W ← (m / ‖W + ΔW‖) · (W + ΔW), norm per output feature (Linear: over each
 *              row of [out, in]; Embedding: over each column of [vocab, dim])
 *   otherwise  W ← W + ΔW
 *   lora_B.bias: bias ← bias + lora_B.bias * fl32(s·w)
 * with W held in f32 throughout and rounded once (RNE) to the output dtype at the end.
 * B @ A is summed in the order of the reference BLAS (merge_int.h), so a single adapter
 * with weight 1 reproduces PEFT bit for bit. Tensors replaced by the adapter
 * (modules_to_save, saved biases/embeddings) are taken verbatim, cast to the output dtype;
 * LoRA deltas of the same adapter apply on top of them.
 *
 * Several adapters: the deltas add up in f32 in the order given — the exact linear
 * combination Σ wᵢ·sᵢ·Bᵢ·Aᵢ that PEFT's add_weighted_adapter(combination_type="cat")
 * builds (its "linear" type mixes the factors and adds cross terms unless there is one
 * adapter); PEFT merging several adapters one after another would round to the base dtype
 * after each, smelt rounds once. A later replacement of a tensor discards earlier changes
 * to it. */
#ifndef SMELT_MERGE_H
#define SMELT_MERGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/progress.h"
#include "formats/hfdir.h"
#include "formats/peft.h"
#include "formats/tsrc.h"

typedef struct smelt_merge_adapter {
    const smelt_peft *peft; /* borrowed; must outlive the merge */
    double weight;          /* 1.0: the adapter as trained; must be finite (EUSAGE). It scales the
                             * LoRA pairs only: replacement tensors (modules_to_save) are taken
                             * at full weight, as PEFT does, with a report warning when weight != 1 */
} smelt_merge_adapter;

typedef struct smelt_merge_opts {
    int out_dtype;         /* -1: each tensor keeps its base dtype; else SMELT_DT_F32/F16/BF16 */
    bool allow_unused;     /* adapter keys that match nothing: skipped with a warning, not an error */
    bool force;            /* merge even if config.json records this adapter as already merged */
    bool allow_nonfinite;  /* write NaN/±Inf (counted in the report) instead of refusing them */
    int n_threads;         /* <= 0: one per CPU */
    int isa;               /* kernel set (formats/base/cpu.h): -1, the fastest this CPU runs;
                            * SMELT_ISA_PORTABLE for the portable kernels (same bits, slower) */
    json_t *base_config;   /* the base's config.json (borrowed; may be NULL) */
    const char *base_dir;  /* for messages and the base_model_name_or_path check (may be NULL) */
} smelt_merge_opts;

void smelt_merge_opts_default(smelt_merge_opts *o);

typedef struct smelt_merge_count {
    char *kind;  /* module kind: last path component ("q_proj", "w1", "embed_tokens") */
    uint64_t n;
} smelt_merge_count;

typedef struct smelt_merge_report {
    smelt_merge_count *pairs; /* LoRA pairs merged, per module kind, in first-seen order */
    size_t n_kinds;
    uint64_t pairs_total, dora_total, bias_total;
    char **replaced;          /* "model.embed_tokens.weight (modules_to_save)" */
    size_t n_replaced;
    char **unused;            /* adapter keys that matched nothing (only with allow_unused) */
    size_t n_unused;
    char **warnings;          /* human-readable, one line each */
    size_t n_warnings;
    int64_t vocab_old, vocab_new; /* -1 when the vocabulary is unchanged */
    uint64_t tensors_total, tensors_changed;
    uint64_t f16_overflow;    /* values beyond ±65504 that became ±inf (grows while reading) */
    uint64_t nonfinite, nonfinite_tensors; /* NaN/±Inf in the tensors read (allow_nonfinite only) */
} smelt_merge_report;

typedef struct smelt_merge smelt_merge;

/* Plan the merge of `n` adapters into `base` (borrowed; must outlive the merge). Checks
 * everything before any weight is touched: shapes (EMISMATCH naming the tensor and both
 * shapes), keys that match no base tensor or are not targeted by their config (EMISMATCH
 * unless allow_unused), an adapter none of whose keys exist in the base (EMISMATCH: wrong
 * architecture), a vocabulary resize without a replaced lm_head, an adapter already
 * recorded as merged in base_config (EMISMATCH unless force). */
int smelt_merge_open(smelt_merge **out, const smelt_tsrc *base, const smelt_merge_adapter *ads, size_t n,
                     const smelt_merge_opts *o, smelt_err *e);
void smelt_merge_close(smelt_merge *m); /* NULL is a no-op */

/* The merged model: the base's tensors in the base's order, with merged values, output
 * dtypes and replaced shapes. Reads compute a whole tensor (multithreaded, row blocks) into
 * the caller's scratch; unchanged tensors come straight from the base. Borrowed; one
 * reader at a time. Byte-identical results for any thread count.
 * Every read checks for NaN/±Inf — in an unchanged base tensor, in the base or replacement
 * values a merged tensor starts from, in each adapter factor it uses, and in the merged
 * f32 result (a delta can overflow) — and, unless opts.allow_nonfinite, fails with
 * EFORMAT naming the file (the base shard or the adapter's weights file), the tensor and
 * the flat index of the first one. A finite merged value that only overflows f16 on
 * output is counted in f16_overflow instead. */
const smelt_tsrc *smelt_merge_source(smelt_merge *m);
const smelt_merge_report *smelt_merge_get_report(const smelt_merge *m);
/* The base source the merge was opened on (borrowed). */
const smelt_tsrc *smelt_merge_base(const smelt_merge *m);
/* Whether tensor i of the source differs from the base tensor (values, dtype or shape). */
bool smelt_merge_changed(const smelt_merge *m, uint64_t i);

/* ==== Hugging Face directory output (merge_out.c) ==== */

typedef struct smelt_merge_write_opts {
    uint64_t max_shard_size; /* 0: the base's shard split */
    bool force;              /* replace an existing output directory */
    const char *tool;        /* recorded in config.json, e.g. "smelt-merge 0.1.0" */
} smelt_merge_write_opts;

/* Write the merged model as an HF directory: safetensors shards named and split like the
 * base's (or by max_shard_size), the index json, config.json (vocab_size updated, and a
 * "smelt_merge" record: base and adapter hashes, weights; earlier records kept), tokenizer
 * files (from the first adapter that has its own, else the base) and the other small files
 * of the base. Built in a hidden directory beside `out_dir` and renamed into place at the
 * end; writes the per-tensor manifest "<out_dir>.xxh64" (llama-gguf-hash style lines
 * "xxh64  <16 hex>  <shard>:<tensor>"). */
int smelt_merge_write_hf(smelt_merge *m, const smelt_hf *base, const smelt_merge_adapter *ads, size_t n,
                         const char *out_dir, const smelt_merge_write_opts *wo, const smelt_progress *prog,
                         smelt_err *e);

/* EUSAGE unless the outputs may be written: `out_dir` (may be NULL), its manifest
 * "<out_dir>.xxh64", and `gguf` with "<gguf>.xxh64" (may be NULL) are none of the inputs
 * (the base and the adapter directories), hold none and lie inside none. An existing
 * `out_dir` is refused without `force`, and with it unless it is an earlier smelt-merge
 * output: a config.json with a "smelt_merge" record and no file a merge does not write. */
int smelt_merge_check_outputs(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, const char *out_dir,
                              const char *gguf, bool force, smelt_err *e);
/* The guard those checks use (formats/base/guard.h): the base and the adapter directories
 * as inputs. NULL with *e set on ENOMEM. */
struct smelt_guard *smelt_merge_guard_new(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, smelt_err *e);

/* The xxh64 fingerprint smelt records for a base model: over its tensor names, dtypes,
 * shapes and bytes, in order (16 hex digits into buf[17]). */
int smelt_merge_base_hash(const smelt_tsrc *base, char *buf, smelt_err *e);

#endif

/* convert.h — Hugging Face Llama/Mistral/Mixtral checkpoints → GGUF, the way llama.cpp's
 * convert_hf_to_gguf.py writes them, streaming one output tensor at a time.
 * Layer: convert. Includes formats/ (tsrc.h, gguf), quant/ (qtypes.h for Q8_0), kvs.h.
 *
 * The seam is a tensor source. smelt_convert_run() takes
 *   - weights:  any const smelt_tsrc * (safetensors or .bin via formats/hfdir.h, or a
 *               source that merges a LoRA adapter on the fly: it only has to present the
 *               base checkpoint's tensor names, shapes and float dtypes, and `file` set as
 *               the base's shard path so the output keeps the base's tensor order);
 *   - config:   the parsed config.json (json_t *) and its path (for messages);
 *   - tok_dir:  the directory holding tokenizer.model / tokenizer_config.json / … ;
 *   - opts:     output type, threads, progress, warnings, and the name inputs below;
 *   - out_path: written atomically (temporary file + rename; nothing is left on error).
 * A merging source passed here with the base model's config and tokenizer gives the same
 * GGUF, byte for byte, as smelt-convert of the merged directory — set opts.name_path (or
 * opts.name) to the merged directory's name, because general.name and the other
 * provenance keys follow llama.cpp's heuristics on the directory name, README.md model
 * card and config.json's _name_or_path.
 *
 * Two steps are available separately: smelt_convert_plan_new() decides everything (every
 * KV, every output tensor with its type, shape and the source rows it is made of) and
 * reads no tensor data; smelt_convert_plan_write() streams the bytes. --dry-run prints the
 * plan. Tensor order, KV order, types and bytes follow llama.cpp's converter; the
 * intentional differences are listed in docs/convert.md.
 *
 * Errors (smelt_err codes): EUNSUPPORTED for another architecture or a non-SentencePiece
 * tokenizer, EFORMAT for a missing/mistyped config key or a tensor whose shape contradicts
 * config.json, EMISMATCH for a tokenizer larger than vocab_size, EIO/EFORMAT from the
 * readers, EFORMAT for a NaN/±Inf weight (naming the source file, the source tensor and the
 * flat index of its first one; unless opts.allow_nonfinite). The values are checked as
 * they are converted (after widening to f32, so an F64 value beyond the f32 range counts
 * too); a finite value that only overflows f16 on output is not one of them but the
 * separate f16_overflow count. Library code never prints: warnings go to opts.notes. Not
 * thread-safe per plan. */
#ifndef SMELT_CONVERT_H
#define SMELT_CONVERT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convert/kvs.h"
#include "formats/base/notes.h"
#include "formats/base/err.h"
#include "formats/base/progress.h"
#include "formats/ggml_types.h"
#include "formats/tsrc.h"
#include "quant/quantize.h"

/* opts.outtype: a ggml type id (F32, F16, BF16, Q8_0) or AUTO (the weights' own dtype). */
#define SMELT_OUTTYPE_AUTO (-1)

typedef struct smelt_convert_opts {
    int outtype;              /* SMELT_TYPE_F32/F16/BF16/Q8_0 or SMELT_OUTTYPE_AUTO */
    bool vocab_only;          /* metadata and vocabulary, no tensors */
    int n_threads;            /* <= 0: one per CPU */
    const char *name;         /* general.name (NULL: llama.cpp's heuristics) */
    const char *name_path;    /* path whose last component feeds the name heuristics (NULL: tok_dir) */
    const char *card_dir;     /* directory with README.md for the model card (NULL: tok_dir) */
    smelt_progress progress;  /* one step per output tensor */
    smelt_notes notes;        /* warnings (mixed dtypes, f16 overflow, padding, …) */
    bool allow_nonfinite;     /* write NaN/±Inf weights (counted, one note per tensor) instead of refusing */
    /* Write the output as llama-gguf-split --split would (smelt_gguf_writer_set_split):
     * OUT-0000i-of-0000N.gguf, limits 0 = none. */
    bool split;
    uint64_t split_max_bytes, split_max_tensors;
    const struct smelt_guard *guard; /* every output file is checked against it (NULL: not) */
    /* smelt_convert_run quantizes in one pass with these options (smelt_convert_plan_quantize,
     * the model named by tok_dir in messages) instead of writing outtype; NULL: it does not. */
    const smelt_quantize_opts *quantize;
    const smelt_progress *quantize_progress; /* the quantizer's progress (one step per tensor) */
} smelt_convert_opts;

void smelt_convert_opts_default(smelt_convert_opts *o);
/* One pass to the quantized ftype `ftype` (a smelt-quantize name): the quantizer's options
 * from co's (threads, notes, allow_nonfinite, and the split, which becomes the quantizer's),
 * co then plans the f16 file smelt-quantize would read and quantizes it with qo
 * (co->quantize). qo's on_done and user are left to the caller. */
void smelt_convert_opts_one_pass(smelt_convert_opts *co, smelt_quantize_opts *qo, const char *ftype, const char *imatrix);
/* "f32", "f16", "bf16", "q8_0", "auto" → outtype; -2 if unknown. */
int smelt_convert_outtype_from_name(const char *s);
const char *smelt_convert_outtype_name(int outtype);

/* One contiguous run of rows of a source tensor: rows [row0, row0 + nrows), a row being
 * the innermost dimension (one element for 1-D tensors). */
typedef struct smelt_cv_part {
    uint64_t src;   /* index in the tensor source */
    uint64_t row0, nrows;
} smelt_cv_part;

typedef struct smelt_cv_tensor {
    char name[64];          /* GGUF name */
    int type;               /* ggml type written */
    uint32_t n_dims;
    uint64_t ne[4];         /* ggml order (ne[0] innermost) */
    uint64_t nbytes;
    uint64_t row_len;       /* elements per row of the parts */
    int64_t perm_heads;     /* Q/K RoPE permutation over this many heads (0: none) */
    smelt_cv_part *parts;   /* concatenated in order (stacked experts: one per expert) */
    size_t n_parts;
    bool q8_fallback;       /* asked for Q8_0, row not a multiple of 32: written as F16 */
    const float *data;      /* computed F32 values instead of parts (rope_freqs); owned by the plan */
} smelt_cv_tensor;

typedef struct smelt_convert_plan smelt_convert_plan;

/* Decide the whole output: validates config.json, the tokenizer files and every tensor
 * name, dtype and shape; reads no tensor data. weights and config are borrowed and must
 * outlive the plan. */
int smelt_convert_plan_new(const smelt_tsrc *weights, json_t *config, const char *config_path, const char *tok_dir,
                           const smelt_convert_opts *opts, smelt_convert_plan **out, smelt_err *e);
void smelt_convert_plan_free(smelt_convert_plan *p); /* NULL is a no-op */

const smelt_kvs *smelt_convert_plan_kvs(const smelt_convert_plan *p);
size_t smelt_convert_plan_n_tensors(const smelt_convert_plan *p);
const smelt_cv_tensor *smelt_convert_plan_tensor(const smelt_convert_plan *p, size_t i);
int smelt_convert_plan_outtype(const smelt_convert_plan *p); /* resolved (never AUTO) */
uint64_t smelt_convert_plan_file_size(const smelt_convert_plan *p);
/* The plan as JSON: architecture, outtype, file size, every KV (arrays in full) and every
 * tensor with its sources. Caller decrefs; NULL on ENOMEM. */
json_t *smelt_convert_plan_json(const smelt_convert_plan *p);

typedef struct smelt_convert_result {
    uint64_t n_tensors;
    uint64_t bytes;              /* size of the written file (all files of a split) */
    uint64_t n_files;            /* files written: 1, or the shards of a split */
    uint64_t f16_overflow;       /* finite values beyond ±65504 that became ±inf in f16 */
    uint64_t f16_overflow_tensors;
    uint64_t nonfinite;          /* NaN/±Inf values read (and written: allow_nonfinite only) */
    uint64_t nonfinite_tensors;
    double seconds;
} smelt_convert_result;

/* Stream the plan's tensors into out_path (atomic). res may be NULL. */
int smelt_convert_plan_write(smelt_convert_plan *p, const char *out_path, smelt_convert_result *res, smelt_err *e);

/* One pass to a quantized GGUF: the file plan_write would write (header and every tensor's
 * bytes, made as plan_write makes them) handed to smelt_quantize_run() as its model source
 * (quant/quantize.h), tensor by tensor and row range by row range, so nothing but the output
 * is written and memory stays bounded by one source tensor plus the quantizer's slabs. The
 * output equals smelt_quantize_run() of plan_write's file (unsplit) with the same options,
 * byte for byte; smelt-convert and smelt-merge plan with outtype F16, so one pass equals
 * "convert --outtype f16, then quantize". qo: the quantizer's options (source and keep_split
 * unset; the split options are the quantizer's, not p's); in_name names the model in
 * messages; every output is checked against p's opts.guard, which must list the imatrix
 * (and a plan file) too. res (may be NULL): f16_overflow and nonfinite counts of the
 * conversion, n_tensors, seconds; bytes and n_files are left 0 (the quantizer's on_done
 * has them). */
int smelt_convert_plan_quantize(smelt_convert_plan *p, const smelt_quantize_opts *qo, const char *in_name, const char *out_path,
                                const smelt_progress *progress, smelt_convert_result *res, smelt_err *e);

/* plan_new + plan_write (or plan_quantize, with opts.quantize). */
int smelt_convert_run(const smelt_tsrc *weights, json_t *config, const char *config_path, const char *tok_dir,
                      const smelt_convert_opts *opts, const char *out_path, smelt_convert_result *res, smelt_err *e);

#endif

/* quantize.h — smelt_quantize_run(): a GGUF model (one file or llama.cpp split shards)
 * → per-tensor type plan (policy.h) → quantized GGUF, streaming one tensor at a time
 * (row ranges spread over threads), with llama-quantize's options and metadata.
 * Layer: quant. Includes formats/ and quant/ only. */
#ifndef SMELT_QUANTIZE_H
#define SMELT_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/notes.h"
#include "formats/base/progress.h"
#include "formats/gguf.h"
#include "quant/policy.h"
#include "quant/qtypes.h"
#include "quant/target.h"

/* --override-kv KEY=TYPE:VALUE, TYPE one of int, float, bool, str. As in llama-quantize
 * the value is written as u32 (int), f32 (float), bool or string. */
typedef struct smelt_kv_override {
    char key[128];
    int vtype; /* SMELT_GGUF_U32, SMELT_GGUF_F32, SMELT_GGUF_BOOL or SMELT_GGUF_STRING */
    uint32_t u32;
    float f32;
    bool b;
    char str[128];
} smelt_kv_override;

/* Parse "KEY=TYPE:VALUE". EUSAGE with the reason on a malformed spec. */
int smelt_kv_override_parse(const char *spec, smelt_kv_override *out, smelt_err *e);

/* One tensor of a plan. */
typedef struct smelt_qplan_tensor {
    const char *name;   /* borrowed from the input (valid until the run returns) */
    uint32_t n_dims;
    uint64_t ne[4];
    int type, new_type;
    uint64_t bytes, new_bytes;
    unsigned flags;     /* SMELT_PT_* (policy.h) */
    const char *rule;   /* mix rule that changed the type, or NULL */
    uint16_t shard;     /* input shard; also the output shard with keep_split */
    bool imatrix;       /* importance weights will be / were used */
    uint64_t nonfinite; /* NaN/Inf values written (allow_nonfinite only; 0 for a dry run) */
    /* a size-budget plan (smelt_quantize_opts.target): the tensor's type was chosen from the
     * candidates of target.h, whose estimated relative errors are in rel_err (NaN for a
     * candidate whose block does not divide the rows), weighed by `sensitivity` */
    bool planned;
    smelt_target_class tclass;
    double sensitivity;
    double rel_err[SMELT_TARGET_MAX_TYPES];
} smelt_qplan_tensor;

typedef struct smelt_qplan {
    const char *input;
    const char *ftype_name; /* e.g. "Q4_K_M" */
    uint32_t file_type;     /* value of general.file_type in the output */
    int default_type;
    size_t n;
    smelt_qplan_tensor *t;  /* in output order */
    uint64_t bytes, new_bytes, n_elements; /* tensor data totals (bpw = bytes·8/n_elements) */
    uint64_t out_bytes;     /* size of the output file(s), headers included */
    uint16_t n_shards_in, n_shards_out;
    size_t n_changed, n_fallback, n_imatrix, n_needs_imatrix, n_requant;
    const char *imatrix;    /* path, or NULL */
    size_t imatrix_entries; /* entries after --include/--exclude-weights */
    uint32_t imatrix_chunks;
    bool can_run;           /* smelt can produce every planned type */
    /* size-budget and replayed plans: what smelt.quantize.plan.method / .budget record
     * ("target-bpw" "4.5", "target-size" "5600000"), NULL otherwise; the budget in the
     * unit that counts (tensor data bytes for target-bpw, file bytes for target-size) and
     * the predicted cost (sum of sensitivity × relative error of the chosen types) */
    const char *plan_method, *plan_budget;
    uint64_t budget_bytes;
    double predicted_cost;
} smelt_qplan;

/* One tensor's type in a plan to replay (smelt_quantize_opts.replay). */
typedef struct smelt_plan_entry {
    const char *tensor;
    int type;
} smelt_plan_entry;

/* What a size-budget plan aims at. */
typedef enum smelt_target_kind { SMELT_TARGET_NONE, SMELT_TARGET_BPW, SMELT_TARGET_SIZE } smelt_target_kind;

/* One block type's error model, set on the command line (for reproducing the tuning of the
 * defaults, docs/quantize.md "Error models"). `plain` = the plain squared error. */
typedef struct smelt_qerr_override {
    int type;              /* ggml type id of the block type */
    smelt_qerr_role when;  /* which tensors of that block type */
    bool plain;
    smelt_qerr model;
} smelt_qerr_override;

/* A model that is not a GGUF file (smelt_quantize_opts.source), e.g. the converter's plan
 * (convert.h smelt_convert_plan_quantize): its KVs and tensor infos as a metadata-only GGUF
 * handle, and the tensor data made on request. The quantizer treats it exactly as the GGUF
 * file with that metadata and data, so the output is the same, byte for byte. */
typedef struct smelt_quantize_source {
    const smelt_gguf *meta;   /* KVs and tensor infos (tensors have data == NULL); borrowed */
    /* Rows [row0, row0 + nrows) of meta's tensor i (a row: ne[0] values), in the tensor's
     * type, into dst. Asked for one tensor at a time in increasing rows (the fast case);
     * other orders are allowed. */
    int (*read_rows)(void *user, uint64_t i, uint64_t row0, uint64_t nrows, void *dst, smelt_err *e);
    void *user;
    /* Every input of the source and of the options (the imatrix, a plan file): each output
     * file is checked against it. Borrowed; NULL: no check. */
    const struct smelt_guard *guard;
} smelt_quantize_source;

typedef struct smelt_quantize_opts {
    const char *ftype;      /* llama-quantize name ("Q4_K_M", "q4_k", "COPY") or number */
    int n_threads;          /* <= 0: one per CPU */
    const char *imatrix;    /* --imatrix FILE (GGUF or legacy .dat), or NULL */
    const char *const *include_weights; /* --include-weights: use the imatrix only for entries */
    size_t n_include;                   /*   whose name contains one of these */
    const char *const *exclude_weights; /* --exclude-weights: drop entries containing these */
    size_t n_exclude;
    int output_tensor_type;   /* --output-tensor-type, -1 = by the mix */
    int token_embedding_type; /* --token-embedding-type, -1 = by the mix */
    const smelt_policy_override *tensor_types; /* --tensor-type / --tensor-type-file */
    size_t n_tensor_types;
    const smelt_kv_override *kv_overrides;     /* --override-kv */
    size_t n_kv_overrides;
    bool pure, leave_output, keep_split, allow_requantize, dry_run;
    /* --split-max-size / --split-max-tensors: the output laid out as llama-gguf-split --split
     * lays out the single-file output (formats/gguf.h smelt_gguf_writer_set_split); 0 = no
     * limit. Not with keep_split. */
    bool split;
    uint64_t split_max_bytes, split_max_tensors;
    /* --shard I/N (with split): write only file I (from 1) of the N the split makes; N must
     * be that number. Processes given 1/N … N/N write the files of the one-process split,
     * byte for byte. 0/0: every file. */
    uint32_t shard_index, shard_count;
    /* Write NaN/Inf weights (quantized types get 0 in their place, float types keep them),
     * with a warning per tensor and a total, instead of refusing them. */
    bool allow_nonfinite;
    /* --error-model plain: minimize the plain (importance-weighted) squared error instead of
     * the per-type error models of smelt_q_tuned_err(). */
    bool plain_error;
    /* --error-model TYPE[/imatrix|/noimatrix]=MODEL: the model for one block type, used in
     * place of smelt_q_tuned_err()'s (and of plain_error) where it applies. */
    const smelt_qerr_override *err_overrides;
    size_t n_err_overrides;
    /* Per-tensor types chosen for the least expected error under a budget (quant/target.h)
     * instead of an ftype mix (ftype is not used): target_bpw bits per weight over all
     * tensor data, or target_bytes for the whole (single-file) output. Needs an imatrix.
     * sensitivity: SMELT_TC_COUNT weights per tensor class, NULL = the defaults. Tensors an
     * option names (--tensor-type, --output-tensor-type, --token-embedding-type) keep that
     * type and count against the budget. */
    smelt_target_kind target;
    double target_bpw;
    uint64_t target_bytes;
    const double *sensitivity;
    /* Replay a plan (--plan FILE, e.g. a --dry-run --json output): the type of every tensor
     * that is not kept as it is; method and budget are recorded as the plan had them (so the
     * output equals the planned run's, byte for byte). plan_file names the plan in errors. */
    const smelt_plan_entry *replay;
    size_t n_replay;
    const char *plan_file, *replay_method, *replay_budget;
    /* Progress of the error estimates of a size-budget plan: one step per tensor. */
    const smelt_progress *plan_progress;
    /* Warnings (formats/base/notes.h). */
    smelt_notes notes;
    /* Callbacks (may be NULL): the plan, once it is complete and checked — before any
     * output is written, or as the result of a dry run. After the run returns successfully
     * on_done receives the same plan with nonfinite counts filled in. */
    void (*on_plan)(void *user, const smelt_qplan *plan);
    void (*on_done)(void *user, const smelt_qplan *plan);
    void *user;
    /* Tests only: pretend the output filesystem has this many free bytes (0: ask it). */
    uint64_t assume_free_bytes;
    /* Read the model from this source instead of a file; in_path then only names it in
     * messages. Not with keep_split. */
    const smelt_quantize_source *source;
    /* Benchmarks only: skip the model check (formats/model_check.h), so that a file of a few
     * large tensors — which llama_model_quantize takes too — can be timed. */
    bool skip_model_check;
} smelt_quantize_opts;

void smelt_quantize_opts_default(smelt_quantize_opts *o);

/* Quantize in_path (a GGUF, or the first shard "NAME-00001-of-0000N.gguf" of a split
 * model, whose other shards are read too) into out_path (with keep_split: out_path
 * minus ".gguf" + "-0000i-of-0000N.gguf" per shard). Nothing is written for a dry run.
 * Outputs are atomic; on any error none is left behind.
 * The output carries every input KV, general.quantization_version = 2,
 * general.file_type, the --override-kv values and, with an imatrix, quantize.imatrix.file
 * / .dataset / .entries_count / .chunks_count; tensors in llama.cpp's order.
 * Errors: EUSAGE (unknown ftype — the message lists the valid ones —, output = input, bad
 * option), EIO (incl. not enough free space, with the numbers), EFORMAT (malformed input
 * or imatrix), EMISMATCH (imatrix entries that do not fit the model, named),
 * EUNSUPPORTED (a type smelt cannot produce yet, requantizing without allow_requantize,
 * a type that needs an imatrix without one), EFORMAT for a NaN/Inf among the values read
 * (every tensor decoded to f32, and F32/F16/BF16 tensors copied as they are; naming the
 * input file, the tensor and the flat index of the first one) unless allow_nonfinite.
 * Size-budget plans (target): EUSAGE without an imatrix (naming the smelt-imatrix command)
 * or for a budget below the smallest plan (its size given). Replayed plans (replay):
 * EMISMATCH naming plan_file and the tensor for a tensor the model lacks or the plan
 * lacks, a kept tensor given another type, a type whose block does not divide the rows;
 * EFORMAT for a tensor given twice.
 * Progress: one step per tensor, bytes = input bytes processed. Not thread-safe with
 * respect to the same output path. */
int smelt_quantize_run(const smelt_quantize_opts *o, const char *in_path, const char *out_path,
                       const smelt_progress *progress, smelt_err *e);

#endif

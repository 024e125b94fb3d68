/* policy.h — ftype mixes: the names llama-quantize accepts, and the type each tensor of a
 * model gets under a mix. The per-tensor choice reproduces llama.cpp's rules for the
 * llama architecture (dense and MoE: attn_v/attn_k/ffn_down/attn_output/output/
 * token_embd adjustments, layer-position rules, expert-count and GQA rules, fallbacks for
 * rows that are not a multiple of the block size, tensors never quantized), written as a
 * rule table in policy.c. Layer: quant. Includes formats/ only. */
#ifndef SMELT_POLICY_H
#define SMELT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"

/* llama.cpp's enum llama_ftype: the value stored in general.file_type. */
enum smelt_ftype {
    SMELT_FTYPE_F32 = 0,
    SMELT_FTYPE_F16 = 1,
    SMELT_FTYPE_Q4_0 = 2,
    SMELT_FTYPE_Q4_1 = 3,
    SMELT_FTYPE_Q8_0 = 7,
    SMELT_FTYPE_Q5_0 = 8,
    SMELT_FTYPE_Q5_1 = 9,
    SMELT_FTYPE_Q2_K = 10,
    SMELT_FTYPE_Q3_K_S = 11,
    SMELT_FTYPE_Q3_K_M = 12,
    SMELT_FTYPE_Q3_K_L = 13,
    SMELT_FTYPE_Q4_K_S = 14,
    SMELT_FTYPE_Q4_K_M = 15,
    SMELT_FTYPE_Q5_K_S = 16,
    SMELT_FTYPE_Q5_K_M = 17,
    SMELT_FTYPE_Q6_K = 18,
    SMELT_FTYPE_IQ2_XXS = 19,
    SMELT_FTYPE_IQ2_XS = 20,
    SMELT_FTYPE_Q2_K_S = 21,
    SMELT_FTYPE_IQ3_XS = 22,
    SMELT_FTYPE_IQ3_XXS = 23,
    SMELT_FTYPE_IQ1_S = 24,
    SMELT_FTYPE_IQ4_NL = 25,
    SMELT_FTYPE_IQ3_S = 26,
    SMELT_FTYPE_IQ3_M = 27,
    SMELT_FTYPE_IQ2_S = 28,
    SMELT_FTYPE_IQ2_M = 29,
    SMELT_FTYPE_IQ4_XS = 30,
    SMELT_FTYPE_IQ1_M = 31,
    SMELT_FTYPE_BF16 = 32,
    SMELT_FTYPE_TQ1_0 = 36,
    SMELT_FTYPE_TQ2_0 = 37,
    SMELT_FTYPE_MXFP4_MOE = 38,
    SMELT_FTYPE_GUESSED = 1024, /* flag: not stored in the file, guessed from tensor types */
};

typedef struct smelt_ftype_info {
    const char *name;     /* as llama-quantize spells it, e.g. "Q4_K_M" */
    int ftype;            /* enum smelt_ftype */
    int default_type;     /* the type most weights get (ggml type id) */
    bool copy;            /* COPY: every tensor keeps its type */
    const char *alias_of; /* "Q4_K_M" for "Q4_K"; NULL otherwise */
    const char *desc;     /* one line for --help */
} smelt_ftype_info;

/* The ftype table in llama-quantize's order (aliases included). */
size_t smelt_ftype_count(void);
const smelt_ftype_info *smelt_ftype_at(size_t i);
/* By name, case-insensitive (aliases included), or by number ("15" → Q4_K_M); NULL if
 * unknown. */
const smelt_ftype_info *smelt_ftype_find(const char *name);
/* Canonical entry of an ftype id (never an alias, never COPY); NULL if unknown. */
const smelt_ftype_info *smelt_ftype_by_id(int ftype);
/* ftype llama.cpp guesses for a file without general.file_type from its most frequent
 * tensor type (ties: the type reached first in `types` order), with the GUESSED flag. */
int smelt_ftype_guess(const int *types, size_t n);

/* ==== per-tensor plan ==== */

/* The hyperparameters the rules look at. */
typedef struct smelt_policy_model {
    uint32_t n_layer;   /* <arch>.block_count */
    uint32_t n_head;    /* of layer 0 */
    uint32_t n_head_kv; /* of layer 0 */
    uint32_t n_expert;  /* 0 or 1 for a dense model */
    bool is_70b;        /* llama arch, 80 layers, GQA: llama.cpp's "70B" model type */
} smelt_policy_model;

/* --tensor-type REGEX=TYPE: first matching pattern (regex search) wins. */
typedef struct smelt_policy_override {
    const char *pattern; /* POSIX extended regex, matched against the tensor name */
    int type;
} smelt_policy_override;

typedef struct smelt_policy_opts {
    int ftype;                /* enum smelt_ftype */
    bool copy;                /* COPY: keep every type */
    int output_tensor_type;   /* --output-tensor-type, -1 = by the mix */
    int token_embedding_type; /* --token-embedding-type, -1 = by the mix */
    bool pure;                /* --pure: the default type everywhere (fallbacks apply) */
    bool leave_output;        /* --leave-output-tensor */
    bool has_imatrix;         /* some rules depend on it */
    const smelt_policy_override *overrides;
    size_t n_overrides;
} smelt_policy_opts;

enum {
    SMELT_PT_KEPT = 1u << 0,     /* never quantized (norm, 1-D, router, …): type unchanged */
    SMELT_PT_MANUAL = 1u << 1,   /* chosen by --tensor-type / --output-tensor-type / --token-embedding-type */
    SMELT_PT_FALLBACK = 1u << 2, /* row length not a multiple of the block size: fell back */
    SMELT_PT_NEEDS_IMX = 1u << 3,/* the chosen type gives garbage without importance weights */
    SMELT_PT_MIX = 1u << 4,      /* a mix rule changed the type from the default */
};

typedef struct smelt_policy_tensor {
    /* in */
    const char *name;
    uint64_t ne[4]; /* unused dims are 1 */
    int type;       /* current type */
    /* out */
    int new_type;
    unsigned flags;
    const char *rule; /* static text: the mix rule that chose new_type, or NULL */
} smelt_policy_tensor;

/* Choose new_type for every tensor, in the order given. The order matters as it does in
 * llama.cpp (attn_v and dense ffn_* rules count tensors): pass tensors sorted with
 * smelt_policy_cmp(), or in shard order for --keep-split. Errors: EUSAGE for a bad
 * regex, or an explicit type whose block does not divide a row; EFORMAT for a layered
 * MoE tensor whose name carries no valid block number. */
int smelt_policy_plan(const smelt_policy_model *m, const smelt_policy_opts *o, smelt_policy_tensor *t,
                      size_t n, smelt_err *e);

/* llama.cpp's tensor order: by block number ("blk.N."; others first), then by name. */
int smelt_policy_cmp(const char *a, const char *b);
/* True if the tensor may be quantized at all (name rules, at least 2 dimensions). */
bool smelt_policy_quantizable(const char *name, const uint64_t ne[4], bool leave_output);
/* True if quantizing this tensor to `type` under `ftype` needs importance weights
 * (never for token_embd/output). */
bool smelt_policy_needs_imatrix(const char *name, int type, int ftype);

#endif

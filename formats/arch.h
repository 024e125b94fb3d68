/* arch.h — one description per model architecture, shared by the converter (which writes
 * it), the model check every tool applies (formats/model_check.h) and the forward pass
 * (verify/eval/model.h), which read it. Layer: formats. Includes nothing above base/.
 *
 * An architecture is: the GGUF name (general.architecture, also the prefix of its keys:
 * "qwen3.block_count"), the Hugging Face class names and model_type values it converts
 * from, which tensors it has (per tensor kind: required, optional or absent, for the
 * weight and for the bias), how RoPE pairs the head elements, whether the converter
 * permutes the Q/K rows, whether experts have their own feed-forward length, and in
 * which order the converter stacks the experts. Everything else (key names, tensor names,
 * shapes) is the same for every architecture and lives once in arch.c.
 *
 * Adding an architecture is one entry in arch.c's table plus, when its computation
 * differs, the forward-pass difference in verify/eval/forward.c (docs/architecture.md,
 * "Adding an architecture"). */
#ifndef SMELT_ARCH_H
#define SMELT_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum smelt_arch_id {
    SMELT_ARCH_LLAMA,    /* Llama 1-3, Mistral, Mixtral */
    SMELT_ARCH_QWEN2,    /* Qwen2, Qwen2.5 */
    SMELT_ARCH_QWEN3,    /* Qwen3 dense */
    SMELT_ARCH_QWEN3MOE, /* Qwen3 mixture of experts */
    SMELT_ARCH_COUNT
} smelt_arch_id;

/* GGUF tensor kinds, in the order the model check visits a layer. */
typedef enum smelt_tk {
    SMELT_TK_TOKEN_EMBD,
    SMELT_TK_OUTPUT_NORM,
    SMELT_TK_OUTPUT,
    SMELT_TK_ROPE_FREQS,
    SMELT_TK_ATTN_NORM, /* first per-layer kind */
    SMELT_TK_ATTN_QKV,
    SMELT_TK_ATTN_Q,
    SMELT_TK_ATTN_K,
    SMELT_TK_ATTN_V,
    SMELT_TK_ATTN_Q_NORM,
    SMELT_TK_ATTN_K_NORM,
    SMELT_TK_ATTN_OUT,
    SMELT_TK_FFN_NORM,
    SMELT_TK_FFN_GATE,
    SMELT_TK_FFN_DOWN,
    SMELT_TK_FFN_UP,
    SMELT_TK_FFN_GATE_INP,
    SMELT_TK_FFN_GATE_EXPS,
    SMELT_TK_FFN_DOWN_EXPS,
    SMELT_TK_FFN_UP_EXPS,
    SMELT_TK_FFN_GATE_SHEXP,
    SMELT_TK_FFN_UP_SHEXP,
    SMELT_TK_FFN_DOWN_SHEXP,
    SMELT_TK_COUNT
} smelt_tk;

#define SMELT_TK_FIRST_LAYER SMELT_TK_ATTN_NORM

/* presence of a tensor in an architecture */
enum { SMELT_TP_NO = 0, SMELT_TP_OPT = 1, SMELT_TP_REQ = 2 };

/* feed-forward kinds an architecture allows */
enum { SMELT_FFN_DENSE = 1, SMELT_FFN_MOE = 2 };

typedef struct smelt_arch {
    smelt_arch_id id;
    const char *name;               /* general.architecture, the key prefix */
    const char *family;             /* for messages: "Llama, Mistral, Mixtral" */
    const char *hf[6];              /* config.json architectures[0] values (NULL-ended) */
    const char *model_type[4];      /* model_type values, when architectures is absent */
    bool rope_neox;                 /* RoPE rotates (x[i], x[i + n_rot/2]), else (x[2i], x[2i+1]) */
    bool permute_qk;                /* the converter permutes HF's Q/K rows (for the adjacent-pair RoPE) */
    bool llama_keys;                /* the converter writes vocab_size and rope.dimension_count */
    bool expert_ff;                 /* experts have their own width: expert_feed_forward_length */
    unsigned ffn;                   /* SMELT_FFN_DENSE | SMELT_FFN_MOE */
    smelt_tk expert_order[3];       /* the converter's order of the stacked expert tensors */
    const char *hf_moe;             /* HF module of the router and experts: "<hf_moe>.gate", … */
    const char *hf_expert[3];       /* HF names of one expert's gate, down and up matrices */
    uint8_t weight[SMELT_TK_COUNT]; /* SMELT_TP_* for "<kind>.weight" */
    uint8_t bias[SMELT_TK_COUNT];   /* SMELT_TP_* for "<kind>.bias" */
} smelt_arch;

/* The architecture with this general.architecture name (n bytes), or NULL. */
const smelt_arch *smelt_arch_by_name(const char *name, size_t n);
/* The architecture of a config.json: by architectures[0] when cls is not NULL, else by
 * model_type; NULL when unknown. */
const smelt_arch *smelt_arch_by_hf(const char *cls, const char *model_type);
const smelt_arch *smelt_arch_at(smelt_arch_id id);
/* "llama, qwen2, qwen3, qwen3moe" and "LlamaForCausalLM, …": the supported lists, for
 * messages. */
extern const char *const smelt_arch_names;
extern const char *const smelt_arch_hf_names;

/* "<arch>.<suffix>" into buf (the GGUF key of an architecture hyperparameter). */
const char *smelt_arch_key(const smelt_arch *a, const char *suffix, char *buf, size_t n);

/* The GGUF stem of a tensor kind ("attn_q") and its full name: "blk.<bid>.attn_q.weight",
 * or "token_embd.weight" for a global kind (bid ignored). */
const char *smelt_tk_stem(smelt_tk k);
/* The Hugging Face module of a kind inside "model.layers.<bid>." (or the whole name prefix
 * of a global kind: "model.embed_tokens"), without ".weight"; NULL for kinds HF has no
 * single tensor for (fused attention, stacked experts, rope_freqs, the router). */
const char *smelt_tk_hf(smelt_tk k);
void smelt_tk_name(smelt_tk k, int64_t bid, bool bias, char *buf, size_t n);
static inline bool smelt_tk_per_layer(smelt_tk k) { return k >= SMELT_TK_FIRST_LAYER; }

/* The hyperparameters of a model, one struct for every stage: the converter fills it from
 * config.json, the model check from GGUF keys (defaults applied), and the forward pass
 * adds what it derives. Fields a stage does not know stay 0. */
typedef struct smelt_hparams {
    const smelt_arch *arch;
    uint32_t n_layer, n_ctx_train, n_embd, n_ff, n_head, n_head_kv;
    uint32_t head_dim, head_dim_v, n_rot; /* key_length, value_length, rope.dimension_count */
    uint32_t n_expert, n_expert_used;
    uint32_t n_ff_exp;   /* width of one expert: expert_feed_forward_length, else n_ff */
    uint32_t n_ff_shexp; /* shared experts' width (0: none) */
    uint64_t n_vocab;    /* token_embd rows (without tensors: tokens or vocab_size, else 0) */
    uint64_t n_tokens;   /* entries of tokenizer.ggml.tokens (0: no vocabulary) */
    float rms_eps, rope_base;
    bool tied_output;    /* no output.weight: token_embd is the output head */
    /* the model check: why a file was skipped (SMELT_MC_SKIPPED) */
    char skipped[96];
    /* the converter: the config.json class name (or model_type) */
    char hf_arch[96];
    /* the forward pass */
    float rope_freq_scale;      /* 1 / rope.scaling.factor for linear scaling, else 1 */
    float expert_weights_scale; /* expert_weights_scale, 0 = none */
    float attn_scale;           /* 1 / sqrt(head_dim) */
} smelt_hparams;

#endif

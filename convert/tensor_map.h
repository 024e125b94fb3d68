/* tensor_map.h — Hugging Face tensor names → GGUF names (the names themselves are in
 * formats/arch.c), and the shape each one must have given config.json. Layer: convert.
 * Includes config.h.
 *
 *   model.embed_tokens.weight                          token_embd.weight
 *   model.norm.weight / lm_head.weight                 output_norm.weight / output.weight
 *   model.layers.N.input_layernorm.weight              blk.N.attn_norm.weight
 *   model.layers.N.self_attn.{q,k,v,o}_proj.*          blk.N.attn_{q,k,v,output}.*   (q, k permuted)
 *   model.layers.N.post_attention_layernorm.weight     blk.N.ffn_norm.weight
 *   model.layers.N.mlp.{gate,up,down}_proj.*           blk.N.ffn_{gate,up,down}.*
 *   Qwen3:
 *   model.layers.N.self_attn.{q,k}_norm.weight         blk.N.attn_{q,k}_norm.weight
 *   Qwen3-MoE (like Mixtral, other module names; stacked down, gate, up):
 *   model.layers.N.mlp.experts.E.{gate,up,down}_proj   blk.N.ffn_{gate,up,down}_exps.weight [E stacked]
 *   Mixtral, transformers v4:
 *   model.layers.N.block_sparse_moe.gate.weight        blk.N.ffn_gate_inp.weight
 *   model.layers.N.block_sparse_moe.experts.E.w1/w3/w2 blk.N.ffn_{gate,up,down}_exps.weight [E stacked]
 *   Mixtral, transformers v5:
 *   model.layers.N.mlp.gate.weight                     blk.N.ffn_gate_inp.weight
 *   model.layers.N.mlp.experts.gate_up_proj [E,2I,H]   blk.N.ffn_gate_exps (rows 0..I) + ffn_up_exps (I..2I)
 *   model.layers.N.mlp.experts.down_proj    [E,H,I]    blk.N.ffn_down_exps */
#ifndef SMELT_TENSOR_MAP_H
#define SMELT_TENSOR_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convert/config.h"

typedef enum smelt_role {
    SMELT_R_TOKEN_EMBD,
    SMELT_R_OUTPUT_NORM,
    SMELT_R_OUTPUT,
    SMELT_R_ATTN_NORM,
    SMELT_R_ATTN_Q,
    SMELT_R_ATTN_K,
    SMELT_R_ATTN_V,
    SMELT_R_ATTN_OUT,
    SMELT_R_FFN_NORM,
    SMELT_R_FFN_GATE,
    SMELT_R_FFN_UP,
    SMELT_R_FFN_DOWN,
    SMELT_R_FFN_GATE_INP,
    SMELT_R_ATTN_Q_NORM,
    SMELT_R_ATTN_K_NORM,
    SMELT_R_EXP_W1,      /* v4: one expert's gate (w1) */
    SMELT_R_EXP_W2,      /* v4: one expert's down (w2) */
    SMELT_R_EXP_W3,      /* v4: one expert's up (w3) */
    SMELT_R_EXP_GATE_UP, /* v5: all experts' gate and up, fused */
    SMELT_R_EXP_DOWN,    /* v5: all experts' down */
    /* output-only roles: the stacked expert tensors */
    SMELT_R_GATE_EXPS,
    SMELT_R_UP_EXPS,
    SMELT_R_DOWN_EXPS,
    SMELT_R_ROPE_FREQS,  /* computed (Llama 3 RoPE scaling) */
    SMELT_R_SKIP,        /* known and dropped (rotary inv_freq, attention masks) */
    SMELT_R_COUNT
} smelt_role;

typedef struct smelt_tmap {
    smelt_role role;
    int64_t bid;    /* layer, -1 for global tensors */
    int64_t expert; /* v4 expert index, else -1 */
    bool bias;      /* ".bias" rather than ".weight" */
} smelt_tmap;

/* Classify a checkpoint tensor name. Returns 0 when mapped (role may be SMELT_R_SKIP),
 * -1 when the name means nothing to the llama architecture. */
int smelt_tmap_parse(const char *name, smelt_tmap *m);
/* The GGUF tensor kind of an output role (SMELT_TK_COUNT for source-only roles). */
smelt_tk smelt_tmap_kind(smelt_role role);
/* GGUF tensor name of an output role ("blk.3.attn_q.weight"). */
void smelt_tmap_gguf_name(smelt_role role, int64_t bid, bool bias, char *buf, size_t n);
/* The Hugging Face name a role has in v4/plain checkpoints of arch (for "missing"
 * messages). */
void smelt_tmap_hf_name(const smelt_arch *arch, smelt_role role, int64_t bid, char *buf, size_t n);
/* Expected PyTorch shape of a source tensor; returns the number of dims and writes a
 * short explanation ("[num_key_value_heads × head_dim, hidden_size]") into why. */
uint32_t smelt_tmap_expected(const smelt_hparams *hp, const smelt_tmap *m, uint64_t shape[3], char *why, size_t n);
/* Q/K RoPE permutation heads for a role (num_attention_heads for q, num_key_value_heads
 * for k), 0 for tensors that are not permuted (every tensor of an architecture whose RoPE
 * rotates halves: the converter leaves HF's order). */
int64_t smelt_tmap_permute_heads(const smelt_hparams *hp, smelt_role role);

#endif

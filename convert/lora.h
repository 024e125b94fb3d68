/* lora.h — a PEFT LoRA adapter written as a llama.cpp LoRA adapter GGUF, the layout
 * llama.cpp's convert_lora_to_gguf.py writes and src/llama-adapter.cpp loads:
 * general.type "adapter", adapter.type "lora", adapter.lora.alpha, tensors
 * "<gguf name>.lora_a" (ne [in, r]) / ".lora_b" (ne [r, out]), Mixtral experts stacked into
 * ffn_{gate,down,up}_exps (ne [in, r, n_expert] / [r, out, n_expert]), lora_b rows of
 * attn_q / attn_k permuted like the weights' rows, token_embd's lora_a transposed.
 * Layer: convert. Includes formats/ (peft, hfdir), base/.
 *
 * Beyond llama.cpp's converter (which refuses them or gets them wrong):
 *   - use_rslora, alpha_pattern and per-expert ranks: llama.cpp scales every pair by
 *     adapter.lora.alpha / rank; when that is not the module's PEFT scaling, smelt writes
 *     adapter.lora.alpha = 0 (llama.cpp then applies scale 1) and multiplies lora_b by the
 *     module's scaling;
 *   - full tensors (modules_to_save, e.g. Chinese-LLaMA/Mixtral's embed_tokens and lm_head)
 *     are carried as exact full-rank pairs llama.cpp applies like any LoRA:
 *       output (and any Linear weight): lora_a = I [in x in], lora_b = D = W_new - W_base
 *       token_embd: lora_a = D (one row per token), lora_b = I [dim x dim]
 *     D and I are always F32 (D = W_new - W_base is exact in f32 for bf16/f16 weights);
 *     cost: 4 bytes per element of the replaced tensor plus in² (or dim²) for I.
 * Refused with a message pointing to `smelt-merge --gguf`: DoRA, lora_B biases, replaced
 * biases/norms, a vocabulary resize, embedding changes on a model with tied embeddings. */
#ifndef SMELT_LORA_H
#define SMELT_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/progress.h"
#include "formats/hfdir.h"
#include "formats/peft.h"

typedef struct smelt_lora_gguf_opts {
    int out_type;      /* lora_a / lora_b type: SMELT_TYPE_F32 (default, as llama.cpp), F16 or BF16 */
    bool full_delta;   /* carry full replacements as full-rank pairs (default true); false: refuse */
    const char *name;  /* general.name; NULL: from the adapter directory's name */
    bool allow_nonfinite; /* write NaN/±Inf (counted in the report) instead of refusing them */
} smelt_lora_gguf_opts;

void smelt_lora_gguf_opts_default(smelt_lora_gguf_opts *o);

typedef struct smelt_lora_gguf_report {
    uint64_t pairs;        /* lora_a/lora_b pairs written (a stacked expert group counts once) */
    uint64_t modules;      /* PEFT modules they hold */
    uint64_t full_pairs;   /* full-rank pairs carrying replaced tensors */
    uint64_t full_bytes;   /* bytes those take */
    uint64_t bytes;        /* tensor bytes in the file */
    float alpha;           /* adapter.lora.alpha written (0: scaling baked into lora_b) */
    bool baked;            /* scaling baked into lora_b */
    uint64_t nonfinite;    /* NaN/±Inf values written (allow_nonfinite only) */
    uint64_t nonfinite_tensors;
} smelt_lora_gguf_report;

/* Write `p` (applied to the base model in `base`: config.json for the architecture and
 * head counts, weights for full replacements' deltas) to out_path as a LoRA adapter GGUF.
 * Atomic output. Errors: EUNSUPPORTED (architecture other than llama/mistral/mixtral, or
 * an adapter llama.cpp cannot apply — the message says to use smelt-merge --gguf),
 * EMISMATCH (shapes that do not fit the base), EFORMAT for NaN/±Inf in an adapter tensor
 * or a replaced tensor's base (naming the file, the tensor and the flat index of the first
 * one) or in a value to be written (naming the output tensor), unless
 * o->allow_nonfinite. rep may be NULL. */
int smelt_lora_to_gguf(const smelt_peft *p, const smelt_hf *base, const char *out_path,
                       const smelt_lora_gguf_opts *o, smelt_lora_gguf_report *rep, const smelt_progress *prog,
                       smelt_err *e);

/* The GGUF name of an HF llama/mistral/mixtral weight ("model.layers.3.self_attn.q_proj.weight"
 * → "blk.3.attn_q.weight"; experts map to their stacked tensor, *expert receives the
 * expert index, else -1). Returns false for names it does not know. */
bool smelt_lora_gguf_name(const char *hf, char *out, size_t n, int *expert);

#endif

/* forward.h — the reference forward pass over a GGUF of an architecture of formats/arch.h
 * (llama: Llama, Mistral, Mixtral MoE; qwen2, qwen3, qwen3moe), evaluating whole batches of
 * tokens at once.
 * Layer: verify. Includes formats/, quant/, verify/eval/model.h and verify/eval/ops.h.
 *
 * A smelt_fwd holds the scratch buffers and the key/value cache for up to n_seq
 * independent sequences of up to n_ctx positions. Each call evaluates the same number of
 * new tokens for every sequence (a "batch"): all matrix products of a layer run as
 * matrix x matrix over every token of every sequence, spread over the ops' thread pool.
 * Results are deterministic: they do not depend on the thread count or the ISA.
 *
 * Matmul hook (for the importance-matrix tool): when set, the hook is called on the
 * evaluating thread just before every matrix product, in graph order, with the name of
 * the weight tensor and the exact activation rows that will multiply it:
 *   - attn_q/attn_k/attn_v (or attn_qkv), attn_output, ffn_gate_inp, ffn_up, ffn_gate,
 *     ffn_down, output — one call each, all tokens of the batch (n_seq x n_tok rows;
 *     in the last block and for output only the rows whose logits are requested, as
 *     llama.cpp prunes them);
 *   - MoE experts (ffn_up_exps, ffn_gate_exps, ffn_down_exps): one call per expert that
 *     received at least one token, `expert` set, with exactly the rows routed to it (a
 *     token appears once per expert that selected it), in token order.
 * Row r of `x` is at x + r * ldx and has n_cols floats (= the weight's ne[0]). The rows are
 * borrowed for the duration of the call only. The hook must not call back into smelt_fwd. */
#ifndef SMELT_FORWARD_H
#define SMELT_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "verify/eval/model.h"
#include "verify/eval/ops.h"

typedef struct smelt_fwd_mm_info {
    const char *weight; /* GGUF name of the weight, e.g. "blk.3.ffn_down_exps.weight" */
    int layer;          /* block index; -1 for output.weight */
    int expert;         /* expert index for *_exps weights, -1 for dense weights */
    int n_expert;       /* experts in that weight (ne[2]); 0 for dense weights */
    const float *x;     /* activations: n_rows rows of n_cols floats */
    size_t n_rows, n_cols, ldx;
} smelt_fwd_mm_info;

typedef void (*smelt_fwd_hook)(void *user, const smelt_fwd_mm_info *mm);

typedef struct smelt_fwd smelt_fwd;

/* Allocate a forward pass for model m (borrowed; so is ops): the KV cache holds n_seq
 * sequences of n_ctx positions, and one call evaluates at most n_tok_max tokens per
 * sequence. Errors: EUSAGE when n_ctx exceeds the model's training context
 * (<arch>.context_length) or a size is 0; ENOMEM (the message gives the bytes needed). */
int smelt_fwd_new(const smelt_model *m, smelt_fwd_ops *ops, uint32_t n_ctx, uint32_t n_seq, uint32_t n_tok_max,
                  smelt_fwd **out, smelt_err *e);
void smelt_fwd_free(smelt_fwd *f); /* NULL is a no-op */
/* Install (or with fn == NULL remove) the matmul hook. */
void smelt_fwd_set_hook(smelt_fwd *f, smelt_fwd_hook fn, void *user);
/* Bytes allocated for the cache and scratch buffers. */
uint64_t smelt_fwd_memory(const smelt_fwd *f);

/* Evaluate n_seq sequences of n_tok tokens each: sequence s reads
 * tokens[s*n_tok .. s*n_tok + n_tok) at positions pos0 .. pos0 + n_tok - 1 and attends to
 * its own cache (positions < pos0 from earlier calls with the same s; pos0 = 0 starts
 * it afresh). Logits are produced for the positions >= logits_from only: for each
 * sequence in order, for each such position in order, n_vocab floats into `logits`
 * (which may be NULL when none are requested). Errors: EMISMATCH for a token id outside
 * the vocabulary (naming its sequence and position); EUSAGE for sizes beyond those given
 * to smelt_fwd_new(). */
int smelt_fwd_eval(smelt_fwd *f, const int32_t *tokens, uint32_t n_seq, uint32_t n_tok, uint32_t pos0,
                   uint32_t logits_from, float *logits, smelt_err *e);

#endif

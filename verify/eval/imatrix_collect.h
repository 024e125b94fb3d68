/* imatrix_collect.h — importance matrices as llama-imatrix computes them: the sums of x²
 * per input column of every matrix product of a model, gathered through the forward pass's
 * matmul hook over llama-perplexity's chunks, and written with formats/imatrix.h.
 * Layer: verify. Includes formats/, verify/eval/forward.h and verify/eval/ppl.h.
 *
 * What is collected (tools/imatrix/imatrix.cpp, collect_imatrix()):
 *   - every product whose weight is named "blk.*" — attn_q/k/v (or attn_qkv),
 *     attn_output, ffn_gate_inp (the MoE router), ffn_up/gate/down, and the expert weights
 *     *_exps (ggml's mul_mat_id); "output.weight" only with process_output; token_embd
 *     never (a row lookup, not a product — also when it doubles as the tied output);
 *   - dense weight: sums[j] += x[j]² over every activation row, counts[0] += rows;
 *   - expert weight: one row of sums and one count per expert: a token routed to expert e
 *     adds its row to sums[e] and 1 to counts[e] (counts are tokens per expert; with top-k
 *     routing they add up to k × tokens);
 *   - entries are created for every expert of a weight at its first product, so an expert
 *     that no token reached is stored with count 0 ("partial data");
 *   - chunk_size = n_ctx; chunk_count = largest count / chunk_size (= chunks evaluated).
 * smelt adds the squares exactly, in fixed point (formats/imatrix.h; llama.cpp in f32), and
 * rounds once when writing; sums do not depend on the thread count, the ISA, the batch
 * size or how the chunks were split into slices. llama.cpp skips dense
 * products of fewer than 16 rows (never the case with n_ctx >= 16 and whole-chunk
 * batches, the defaults); smelt collects every row. */
#ifndef SMELT_IMATRIX_COLLECT_H
#define SMELT_IMATRIX_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/notes.h"
#include "formats/imatrix.h"
#include "verify/eval/forward.h"
#include "verify/eval/ppl.h"

/* ==== the collector (a matmul hook) ==== */

typedef struct smelt_imxc smelt_imxc;

/* A collector; with process_output, output.weight is collected too. ENOMEM. */
int smelt_imxc_new(bool process_output, smelt_imxc **out, smelt_err *e);
void smelt_imxc_free(smelt_imxc *c); /* NULL is a no-op */
/* The hook: install with smelt_fwd_set_hook(f, smelt_imxc_hook, c) or through
 * smelt_ppl_opts.hook. Single-threaded (the forward pass calls it on its evaluating
 * thread). Allocation failures and inconsistent shapes are remembered and reported by
 * smelt_imxc_build(). */
void smelt_imxc_hook(void *collector, const smelt_fwd_mm_info *mm);
/* Products seen and entries collected so far. */
size_t smelt_imxc_n_entries(const smelt_imxc *c);

/* The collected sums and counts as an imatrix (GGUF semantics; entries sorted by name),
 * with chunk_size and chunk_count = largest count / chunk_size and the given datasets.
 * Errors: what the hook met (ENOMEM; EMISMATCH when a weight appeared with two different
 * shapes), EFORMAT naming the entry (and expert) whose sums are not finite, EUSAGE when
 * nothing was collected. Caller frees *out. */
int smelt_imxc_build(const smelt_imxc *c, uint32_t chunk_size, const char *const *datasets, size_t n_datasets,
                     smelt_imx **out, smelt_err *e);

/* ==== the run (smelt-imatrix) ==== */

typedef struct smelt_imatrix_opts {
    const char *model;    /* GGUF path (any type the forward pass decodes) */
    const char *text;     /* calibration text; stored in imatrix.datasets as given */
    const char *output;   /* imatrix path */
    int format;           /* SMELT_IMX_GGUF (default) or SMELT_IMX_LEGACY */
    uint32_t n_ctx;       /* tokens per chunk; 0: 512 (llama-imatrix's default) */
    int64_t n_chunks;     /* < 0: every complete chunk */
    uint32_t n_batch;     /* tokens per forward call; 0: 2048 */
    int n_threads;        /* <= 0: one per CPU */
    int isa;              /* -1: best available */
    bool process_output;  /* also collect output.weight (llama-imatrix --process-output) */
    /* Only chunks chunk_begin <= i < chunk_end of the text (chunk_end 0: to the last):
     * a slice of a run, for smelt_imx_combine(). */
    size_t chunk_begin, chunk_end;
    /* Checkpoint: with save_every > 0, the sums so far and the chunks done are written
     * atomically to `checkpoint` after every save_every chunks (at the end of a batch). When
     * `checkpoint` exists at the start, the run resumes from it if it was made by the same
     * model (size and a hash of samples of the file), text (hash), n_ctx, n_chunks, chunk
     * range and process_output, and is refused (EMISMATCH naming what differs) otherwise.
     * A resumed run writes the same imatrix as an uninterrupted one, bit for bit. The
     * checkpoint is removed once the imatrix is written. */
    uint32_t save_every;
    const char *checkpoint;
    /* Warnings (formats/base/notes.h): entries with partial data. */
    smelt_notes notes;
} smelt_imatrix_opts;

void smelt_imatrix_opts_default(smelt_imatrix_opts *o);

typedef struct smelt_imatrix_result {
    smelt_ppl_result ppl;   /* the chunk loop's figures (running PPL of the text, timings) */
    size_t n_entries;       /* weights written */
    size_t n_partial;       /* entries with at least one expert that received no token */
    uint32_t chunk_count, chunk_size;
    size_t resumed_chunks;  /* chunks restored from the checkpoint (0: fresh start) */
    size_t checkpoints;     /* checkpoints written */
    smelt_imx *imx;         /* what was written (owned; freed by _result_free) */
} smelt_imatrix_result;

/* Evaluate the model on the text's chunks exactly as llama-imatrix does (BOS-led chunks
 * of n_ctx tokens, every position through every layer and the output head), collect, and
 * write the imatrix atomically. `fn` is called after every chunk.
 * Errors: EUSAGE for an output or checkpoint path that is the model or the text (checked on
 * the files, not the spellings), a chunk range outside the text's chunks, a text shorter than 2·n_ctx tokens and the other smelt_ppl_run()
 * usage errors; those of smelt_model_open() (a file that is not a complete model names
 * the first missing tensor), the tokenizer, smelt_imxc_build() and smelt_imx_write(); for
 * the checkpoint EFORMAT (file, byte offset) and EMISMATCH (made for another run).
 * Nothing is written on error. */
int smelt_imatrix_run(const smelt_imatrix_opts *o, smelt_imatrix_result *r, smelt_ppl_chunk_fn fn, void *user,
                      smelt_err *e);
void smelt_imatrix_result_free(smelt_imatrix_result *r);

#endif

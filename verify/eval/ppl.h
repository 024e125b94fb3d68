/* ppl.h — perplexity exactly as llama-perplexity computes it, and KL-divergence against a
 * base model's stored distributions (verify/eval/kld.h).
 * Layer: verify. Includes formats/, verify/eval/forward.h, verify/eval/kld.h.
 *
 * Method (tools/perplexity/perplexity.cpp, perplexity()):
 *   1. The text file is read as bytes and one trailing '\n' is dropped (common -f).
 *   2. It is tokenized with the vocabulary's special tokens (BOS first when
 *      tokenizer.ggml.add_bos_token), without parsing special-token texts.
 *   3. n_chunks = tokens / n_ctx (the BOS counts; the remainder is dropped), or fewer with
 *      --chunks. Chunk c is tokens[c·n_ctx, (c+1)·n_ctx) with its first token replaced by
 *      BOS (when the vocabulary adds BOS), evaluated from an empty cache.
 *   4. With first = n_ctx/2, the logits at positions first .. n_ctx-2 score the tokens at
 *      first+1 .. n_ctx-1: n_ctx - 1 - first tokens per chunk (127 for n_ctx 256).
 *      NLL = −log softmax(logits)[next token], in double.
 *   5. PPL = exp(mean NLL), printed after every chunk; the final ± is
 *      PPL · sqrt((mean NLL² − mean NLL²) / (count − 1)).
 * Several chunks are evaluated side by side when n_batch >= 2·n_ctx (n_batch / n_ctx of
 * them), and a chunk is fed in n_batch-token pieces when n_batch < n_ctx — as llama.cpp does;
 * neither changes the result. */
#ifndef SMELT_PPL_H
#define SMELT_PPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "verify/eval/forward.h"
#include "verify/eval/kld.h"

typedef struct smelt_ppl_opts {
    const char *model;    /* GGUF path */
    const char *text;     /* evaluation text; not read with kld_in (tokens come from the file) */
    uint32_t n_ctx;       /* 0: 512 (llama-perplexity's default), or the base file's with kld_in */
    int64_t n_chunks;     /* < 0: every complete chunk */
    /* Evaluate only chunks chunk_begin <= i < chunk_end of the n_chunks above (chunk_end 0:
     * up to the last). Chunk i is the same tokens whatever the range. Not with KLD. */
    size_t chunk_begin, chunk_end;
    uint32_t n_batch;     /* tokens per forward call; 0: 2048 */
    int n_threads;        /* <= 0: one per CPU */
    int isa;              /* -1: best available (see ops.h) */
    const char *kld_base; /* write the base distributions to this .kld file */
    const char *kld_in;   /* compare with this .kld file (KL-divergence mode) */
    const char *kld_tokens; /* with kld_in: write every scored token's KL-divergence to this
                             * text file (smelt_ppl_write_token_kld's format) */
    /* For tools built on this chunk loop (the importance matrix): a matmul hook installed
     * on the forward pass (see forward.h), and all_logits to take every position through
     * the last block's FFN and the output head, as llama-imatrix does (so output.weight and
     * the last block see every token). Neither changes the perplexity. */
    smelt_fwd_hook hook;
    void *hook_user;
    bool all_logits;
    const char *purpose;  /* names the computation in the too-short-text error; NULL: "perplexity" */
} smelt_ppl_opts;

void smelt_ppl_opts_default(smelt_ppl_opts *o);

typedef struct smelt_ppl_result {
    /* set up before the first chunk */
    uint32_t n_ctx, n_batch, n_seq, n_vocab;
    int n_threads;
    const char *isa;            /* static string */
    char model_types[64];       /* e.g. "f16", "q8_0+f32" */
    size_t n_tokens;            /* tokens of the text (BOS included) or of the base file */
    size_t n_chunks, n_scored_per_chunk; /* n_chunks: evaluated by this run (the range) */
    size_t chunk_begin, n_chunks_text;  /* first chunk evaluated; complete chunks of the text */
    uint64_t memory;            /* forward-pass buffers, bytes */
    double load_seconds;        /* open + tokenize */
    /* filled as chunks complete */
    size_t chunks_done, n_scored;
    size_t chunks_evaluated;    /* chunks through the forward pass (>= chunks_done: a batch
                                 * of several chunks is evaluated before they are scored) */
    double ppl, ppl_err;        /* running, then final */
    double *running;            /* n_chunks running PPL values (owned) */
    double seconds;             /* evaluation + scoring time */
    double tokens_per_s;        /* n_chunks · n_ctx / seconds */
    bool has_kld;
    smelt_kld_stats kld;        /* running figures; complete (percentiles) at the end */
} smelt_ppl_result;

/* Called after every chunk (chunks_done is its 1-based index). */
typedef void (*smelt_ppl_chunk_fn)(void *user, const smelt_ppl_result *r);

/* Run. Errors: those of smelt_model_open() and the tokenizer; EIO for the text; EUSAGE for
 * a chunk range that is empty or runs past the text's chunks, a text shorter than 2·n_ctx tokens, n_ctx beyond the model's context, or an n_batch that
 * is neither below n_ctx nor a multiple of it; EMISMATCH when the base file's vocabulary
 * size differs from the model's or holds a token outside it; EUNSUPPORTED for a vocabulary
 * that appends EOS. On error the .kld output (if any) is not created. */
int smelt_ppl_run(const smelt_ppl_opts *o, smelt_ppl_result *r, smelt_ppl_chunk_fn fn, void *user, smelt_err *e);
void smelt_ppl_result_free(smelt_ppl_result *r);

/* The per-token file of opts.kld_tokens: a header line, then one tab-separated line per
 * scored token in evaluation order: chunk (0-based), position of the scored token in its
 * chunk, its token id, its KL-divergence (%.9g). Two files of the same base line up row by
 * row, which is how two quants are compared token by token (a paired difference). */

/* Read a text file the way llama.cpp's -f does: all bytes, one trailing '\n' removed.
 * *text is malloc'd and NUL-terminated (caller frees). */
int smelt_ppl_read_text(const char *path, char **text, size_t *len, smelt_err *e);

#endif

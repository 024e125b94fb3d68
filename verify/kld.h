/* kld.h — KL-divergence against a base model: llama.cpp's .kld file of per-token base
 * log-probabilities (read and written byte-compatibly), the per-token comparison and the
 * statistics llama-perplexity --kl-divergence reports.
 * Layer: verify. Includes formats/ and verify/ops.h.
 *
 * File layout (tools/perplexity/perplexity.cpp; all little-endian):
 *
 *   0   "_logits_"                      8 bytes
 *   8   n_ctx                           u32
 *   12  n_vocab                         i32
 *   16  n_chunk                         i32
 *   20  tokens[n_ctx * n_chunk]         i32, the evaluation text as tokenized (the first
 *                                       token of each chunk as in the text, not BOS)
 *   ..  for each chunk, for each of the n_ctx - 1 - n_ctx/2 scored positions, one record
 *       of nv = 2*((n_vocab + 1)/2) + 4 u16:
 *         f32 scale, f32 min_log_prob   (the first 4 u16)
 *         u16 q[n_vocab] (+ one pad u16 when n_vocab is odd)
 *       log p_i ≈ scale * q_i + min_log_prob; logits more than 16 below the maximum are
 *       clamped to that floor (q = 0).
 *
 * Per token (llama.cpp's definitions): with p the base distribution (decoded) and q the
 * model's, KLD = Σ_{log p_i > -16} p_i (log p_i − log q_i); Δp = q(tok) − p(tok); "same top"
 * when both argmaxes agree. One rule of smelt's own: when the model's distribution encodes
 * to exactly the base record (same scale, floor and every q_i), the two are equal at the
 * file's resolution and the token counts as KLD 0, Δp 0 and base NLL = model NLL — so a
 * model compared with itself gives exactly 0, where llama.cpp reports ±5e-5 of rounding
 * noise. */
#ifndef SMELT_KLD_H
#define SMELT_KLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/file.h"
#include "verify/ops.h"

#define SMELT_KLD_MAGIC "_logits_"

/* u16 per record for a vocabulary of n_vocab tokens. */
static inline size_t smelt_kld_record_u16(uint32_t n_vocab) { return 2 * (((size_t)n_vocab + 1) / 2) + 4; }

/* ==== reading ==== */

typedef struct smelt_kld_file smelt_kld_file;

/* Map and validate a .kld file: magic, sizes, and that the file holds exactly the
 * records its header announces. Errors: EIO; EFORMAT naming the byte offset (bad magic,
 * truncated or over-long file, impossible sizes). */
int smelt_kld_open(const char *path, smelt_kld_file **out, smelt_err *e);
void smelt_kld_close(smelt_kld_file *f); /* NULL is a no-op */
uint32_t smelt_kld_n_ctx(const smelt_kld_file *f);
uint32_t smelt_kld_n_vocab(const smelt_kld_file *f);
uint32_t smelt_kld_n_chunk(const smelt_kld_file *f);
/* n_ctx * n_chunk tokens, borrowed until close. */
const int32_t *smelt_kld_tokens(const smelt_kld_file *f);
/* Record `i` (0 .. n_ctx-2-n_ctx/2) of chunk c, borrowed until close. */
const uint16_t *smelt_kld_record(const smelt_kld_file *f, uint32_t c, uint32_t i);
const char *smelt_kld_path(const smelt_kld_file *f);

/* ==== writing ==== */

typedef struct smelt_kld_writer smelt_kld_writer;

/* Start an atomic output (nothing appears at path until commit) and write the header and
 * the n_ctx * n_chunk tokens. */
int smelt_kld_writer_open(const char *path, uint32_t n_ctx, uint32_t n_vocab, uint32_t n_chunk,
                          const int32_t *tokens, smelt_kld_writer **out, smelt_err *e);
/* Append n records (record_u16 each). */
int smelt_kld_writer_write(smelt_kld_writer *w, const uint16_t *records, size_t n, smelt_err *e);
/* Check every record arrived, then fsync and rename; frees w. */
int smelt_kld_writer_commit(smelt_kld_writer *w, smelt_err *e);
void smelt_kld_writer_abort(smelt_kld_writer *w); /* NULL is a no-op */

/* ==== per token ==== */

/* Encode a row of logits as a record (llama.cpp's log_softmax to u16). scratch: n_vocab
 * floats. Returns the token's negative log-likelihood, -log softmax(logits)[tok]. */
double smelt_kld_encode(const smelt_ops *o, const float *logits, uint32_t n_vocab, int32_t tok, uint16_t *rec,
                        float *scratch);

typedef struct smelt_kld_tok {
    float nll, nll_base; /* -log q(tok), -log p(tok) */
    double kld;
    float p_diff;        /* q(tok) - p(tok) */
    bool same_top;
} smelt_kld_tok;

/* Compare a row of logits with a base record. scratch: 3 * n_vocab floats +
 * record_u16(n_vocab) u16 (as floats: n_vocab / 2 + 4 more). */
void smelt_kld_compare(const smelt_ops *o, const float *logits, uint32_t n_vocab, const uint16_t *base,
                       int32_t tok, float *scratch, smelt_kld_tok *out);
/* Floats of scratch smelt_kld_compare() needs. */
size_t smelt_kld_scratch_floats(uint32_t n_vocab);

/* ==== statistics ==== */

typedef struct smelt_kld_acc {
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    float max_p_diff;
    size_t n_same_top, count, cap;
    float *kld_values, *p_diff_values; /* one per token, for percentiles */
} smelt_kld_acc;

/* Reserve room for n tokens. ENOMEM. */
int smelt_kld_acc_init(smelt_kld_acc *a, size_t n, smelt_err *e);
void smelt_kld_acc_free(smelt_kld_acc *a);
void smelt_kld_acc_add(smelt_kld_acc *a, const smelt_kld_tok *t);

typedef struct smelt_kld_stats {
    size_t count;
    double ppl, ppl_err, ppl_base, ppl_base_err, log_ppl_cor;
    double ln_ratio, ln_ratio_err, ratio, ratio_err, diff, diff_err; /* PPL(Q) vs PPL(base) */
    double kld, kld_err;
    /* KLD: max, 99.9, 99, 95, 90, median, 10, 5, 1, 0.1 %, min */
    double kld_max, kld_p999, kld_p99, kld_p95, kld_p90, kld_median, kld_p10, kld_p5, kld_p1, kld_p01, kld_min;
    double dp_mean, dp_err; /* Δp as fractions (multiply by 100 for %) */
    double dp_max, dp_p999, dp_p99, dp_p95, dp_p90, dp_p75, dp_median, dp_p25, dp_p10, dp_p5, dp_p1, dp_p01, dp_min;
    double dp_rms, dp_rms_err, same_top, same_top_err;
} smelt_kld_stats;

/* Running figures (cheap: no percentiles) — what llama.cpp prints after every chunk. */
void smelt_kld_acc_running(const smelt_kld_acc *a, smelt_kld_stats *s);
/* Everything, with llama.cpp's percentile interpolation (sorts copies of the values). */
int smelt_kld_acc_stats(const smelt_kld_acc *a, smelt_kld_stats *s, smelt_err *e);

#endif

/* kld.h — KL-divergence against a base model: the per-token comparison with a record of
 * llama.cpp's .kld file (formats/kld_file.h) and the statistics llama-perplexity
 * --kl-divergence reports.
 * Layer: verify. Includes formats/ and verify/eval/ops.h.
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
#include "formats/kld_file.h"
#include "verify/eval/ops.h"

/* ==== per token ==== */

/* Encode a row of logits as a record (llama.cpp's log_softmax to u16). scratch: n_vocab
 * floats. Returns the token's negative log-likelihood, -log softmax(logits)[tok]. */
double smelt_kld_encode(const smelt_fwd_ops *o, const float *logits, uint32_t n_vocab, int32_t tok, uint16_t *rec,
                        float *scratch);

typedef struct smelt_kld_tok {
    float nll, nll_base; /* -log q(tok), -log p(tok) */
    double kld;
    float p_diff;        /* q(tok) - p(tok) */
    bool same_top;
} smelt_kld_tok;

/* Compare a row of logits with a base record. scratch: 3 * n_vocab floats +
 * record_u16(n_vocab) u16 (as floats: n_vocab / 2 + 4 more). */
void smelt_kld_compare(const smelt_fwd_ops *o, const float *logits, uint32_t n_vocab, const uint16_t *base,
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

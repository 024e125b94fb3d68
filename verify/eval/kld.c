/* kld.c — the per-token comparison against a base record of a .kld file
 * (formats/kld_file.h) and the statistics of llama-perplexity --kl-divergence.
 * Includes formats/, verify/eval/ops.h, verify/eval/kld.h. */
#include "kld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== per token ==== */

/* Round to nearest, ties to even, for |x| < 2^22. */
static inline int round_even(float x) { return (int)((x + 12582912.0f) - 12582912.0f); }

double smelt_kld_encode(const smelt_fwd_ops *o, const float *logits, uint32_t n_vocab, int32_t tok, uint16_t *rec,
                        float *scratch)
{
    float mx = logits[0], mn = logits[0];
    for (uint32_t i = 1; i < n_vocab; i++) {
        if (logits[i] > mx) mx = logits[i];
        if (logits[i] < mn) mn = logits[i];
    }
    if (mn < mx - 16) mn = mx - 16;
    const double se = smelt_fwd_ops_sum_exp(o, logits, mx, n_vocab, scratch);
    const float lse = (float)log(se);
    const float min_log_prob = mn - mx - lse;
    const float scale = (mx - mn) / 65535.0f;
    memcpy(rec, &scale, 4);
    memcpy(rec + 2, &min_log_prob, 4);
    uint16_t *q = rec + 4;
    if (scale != 0.0f) {
        const float inv = 1.0f / scale;
        for (uint32_t i = 0; i < n_vocab; i++) q[i] = logits[i] > mn ? (uint16_t)round_even(inv * (logits[i] - mn)) : 0;
    } else {
        memset(q, 0, n_vocab * sizeof(uint16_t));
    }
    if (n_vocab % 2) q[n_vocab] = 0;
    return (double)mx + log(se) - (double)logits[tok];
}

size_t smelt_kld_scratch_floats(uint32_t n_vocab) { return 3 * (size_t)n_vocab + smelt_kld_record_u16(n_vocab) / 2 + 8; }

void smelt_kld_compare(const smelt_fwd_ops *o, const float *logits, uint32_t n_vocab, const uint16_t *base, int32_t tok,
                       float *scratch, smelt_kld_tok *out)
{
    float *lpb = scratch, *pb = scratch + n_vocab, *tmp = scratch + 2 * (size_t)n_vocab;
    uint16_t *mine = (uint16_t *)(void *)(scratch + 3 * (size_t)n_vocab);
    size_t imax = 0;
    float mx = logits[0];
    for (uint32_t i = 1; i < n_vocab; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            imax = i;
        }
    const float lse = (float)log(smelt_fwd_ops_sum_exp(o, logits, mx, n_vocab, tmp));
    const float nll = mx + lse - logits[tok];
    float scale, min_log_prob;
    memcpy(&scale, base, 4);
    memcpy(&min_log_prob, base + 2, 4);
    const uint16_t *q = base + 4;
    const float nll_base = -(scale * (float)q[tok] + min_log_prob);
    out->nll = nll;

    /* equal at the file's resolution? */
    smelt_kld_encode(o, logits, n_vocab, tok, mine, tmp);
    if (memcmp(mine, base, ((size_t)n_vocab + 4) * 2) == 0) {
        out->nll_base = nll;
        out->kld = 0.0;
        out->p_diff = 0.0f;
        out->same_top = true;
        return;
    }
    out->nll_base = nll_base;

    const float shift = mx + lse; /* log q_i = logits_i - shift */
    size_t imax_base = 0;
    float lmax = 0;
    for (uint32_t i = 0; i < n_vocab; i++) {
        lpb[i] = scale * (float)q[i] + min_log_prob;
        if (i == 0 || lpb[i] > lmax) {
            lmax = lpb[i];
            imax_base = i;
        }
    }
    smelt_fwd_ops_exp_sub(o, lpb, 0.0f, pb, n_vocab);
    double sum = 0;
    for (uint32_t i = 0; i < n_vocab; i++)
        if (lpb[i] > -16.0f) sum += (double)(pb[i] * (lpb[i] - logits[i] + shift));
    out->kld = sum;
    out->same_top = imax == imax_base;
    const float p_base = expf(-nll_base), p = expf(-nll);
    out->p_diff = p - p_base;
}

/* ==== statistics ==== */

int smelt_kld_acc_init(smelt_kld_acc *a, size_t n, smelt_err *e)
{
    memset(a, 0, sizeof *a);
    a->kld_values = malloc((n ? n : 1) * sizeof(float));
    a->p_diff_values = malloc((n ? n : 1) * sizeof(float));
    if (!a->kld_values || !a->p_diff_values) {
        smelt_kld_acc_free(a);
        return SMELT_NOMEM(e, "the KLD statistics");
    }
    a->cap = n;
    return 0;
}

void smelt_kld_acc_free(smelt_kld_acc *a)
{
    free(a->kld_values);
    free(a->p_diff_values);
    a->kld_values = a->p_diff_values = NULL;
}

void smelt_kld_acc_add(smelt_kld_acc *a, const smelt_kld_tok *t)
{
    a->sum_nll += t->nll;
    a->sum_nll2 += t->nll * t->nll;
    a->sum_nll_base += t->nll_base;
    a->sum_nll_base2 += t->nll_base * t->nll_base;
    a->sum_nll_nll_base += t->nll * t->nll_base;
    a->sum_kld += t->kld;
    a->sum_kld2 += t->kld * t->kld;
    a->sum_p_diff += t->p_diff;
    const double d2 = t->p_diff * t->p_diff;
    a->sum_p_diff2 += d2;
    a->sum_p_diff4 += d2 * d2;
    if (fabsf(t->p_diff) > a->max_p_diff) a->max_p_diff = fabsf(t->p_diff);
    a->n_same_top += t->same_top;
    if (a->count < a->cap) {
        a->kld_values[a->count] = (float)t->kld;
        a->p_diff_values[a->count] = t->p_diff;
    }
    a->count++;
}

/* mean and its standard error, as llama.cpp computes them */
static void mean_unc(double sum, double sum2, size_t n, double *m, double *u)
{
    if (n < 1) {
        *m = *u = 0;
        return;
    }
    double f = sum / (double)n, df = sum2 / (double)n - f * f;
    *m = f;
    *u = df > 0 && n > 10 ? sqrt(df / (double)(n - 1)) : 0.0;
}

static double covariance(double sa, double sb, double sab, size_t n)
{
    if (n < 10) return 0.0;
    double var = sab / (double)n - (sa / (double)n) * (sb / (double)n);
    return var / (double)(n - 1);
}

void smelt_kld_acc_running(const smelt_kld_acc *a, smelt_kld_stats *s)
{
    memset(s, 0, sizeof *s);
    size_t n = a->count;
    s->count = n;
    double lp, lpu, lb, lbu;
    mean_unc(a->sum_nll, a->sum_nll2, n, &lp, &lpu);
    mean_unc(a->sum_nll_base, a->sum_nll_base2, n, &lb, &lbu);
    s->ppl = exp(lp);
    s->ppl_err = s->ppl * lpu;
    s->ppl_base = exp(lb);
    s->ppl_base_err = s->ppl_base * lbu;
    const double cov = covariance(a->sum_nll, a->sum_nll_base, a->sum_nll_nll_base, n);
    s->log_ppl_cor = lpu > 0 && lbu > 0 ? cov / (lpu * lbu) : 1.0;
    s->ln_ratio = lp - lb;
    double v = lpu * lpu + lbu * lbu - 2.0 * cov;
    s->ln_ratio_err = v > 0 ? sqrt(v) : 0.0;
    s->ratio = exp(s->ln_ratio);
    s->ratio_err = s->ratio * s->ln_ratio_err;
    const double pcov = s->ppl * s->ppl_base * cov;
    s->diff = s->ppl - s->ppl_base;
    v = s->ppl_err * s->ppl_err + s->ppl_base_err * s->ppl_base_err - 2.0 * pcov;
    s->diff_err = v > 0 ? sqrt(v) : 0.0;
    mean_unc(a->sum_kld, a->sum_kld2, n, &s->kld, &s->kld_err);
    mean_unc(a->sum_p_diff, a->sum_p_diff2, n, &s->dp_mean, &s->dp_err);
    double mse, mse_u;
    mean_unc(a->sum_p_diff2, a->sum_p_diff4, n, &mse, &mse_u);
    s->dp_rms = sqrt(mse);
    s->dp_rms_err = s->dp_rms > 0 ? 0.5 / s->dp_rms * mse_u : 0.0;
    s->same_top = n ? (double)a->n_same_top / (double)n : 0.0;
    s->same_top_err = n > 1 ? sqrt(s->same_top * (1 - s->same_top) / (double)(n - 1)) : 0.0;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama.cpp's interpolation: p = f·(n−1) in f32, linear between neighbours */
static double percentile(const float *v, size_t n, float fraction)
{
    if (fraction <= 0) return v[0];
    if (fraction >= 1) return v[n - 1];
    float p = fraction * (float)(n - 1);
    size_t ip = (size_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static double median(const float *v, size_t n)
{
    return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

int smelt_kld_acc_stats(const smelt_kld_acc *a, smelt_kld_stats *s, smelt_err *e)
{
    smelt_kld_acc_running(a, s);
    size_t n = a->count < a->cap ? a->count : a->cap;
    if (!n) return 0;
    float *k = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float));
    if (!k || !d) {
        free(k);
        free(d);
        return SMELT_NOMEM(e, "the KLD percentiles");
    }
    memcpy(k, a->kld_values, n * sizeof(float));
    memcpy(d, a->p_diff_values, n * sizeof(float));
    qsort(k, n, sizeof(float), cmp_float);
    qsort(d, n, sizeof(float), cmp_float);
    s->kld_max = k[n - 1];
    s->kld_p999 = percentile(k, n, 0.999f);
    s->kld_p99 = percentile(k, n, 0.990f);
    s->kld_p95 = percentile(k, n, 0.950f);
    s->kld_p90 = percentile(k, n, 0.900f);
    s->kld_median = median(k, n);
    s->kld_p10 = percentile(k, n, 0.100f);
    s->kld_p5 = percentile(k, n, 0.050f);
    s->kld_p1 = percentile(k, n, 0.010f);
    s->kld_p01 = percentile(k, n, 0.001f);
    s->kld_min = k[0];
    s->dp_max = d[n - 1];
    s->dp_p999 = percentile(d, n, 0.999f);
    s->dp_p99 = percentile(d, n, 0.990f);
    s->dp_p95 = percentile(d, n, 0.950f);
    s->dp_p90 = percentile(d, n, 0.900f);
    s->dp_p75 = percentile(d, n, 0.750f);
    s->dp_median = median(d, n);
    s->dp_p25 = percentile(d, n, 0.250f);
    s->dp_p10 = percentile(d, n, 0.100f);
    s->dp_p5 = percentile(d, n, 0.050f);
    s->dp_p1 = percentile(d, n, 0.010f);
    s->dp_p01 = percentile(d, n, 0.001f);
    s->dp_min = d[0];
    free(k);
    free(d);
    return 0;
}

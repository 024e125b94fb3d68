/* kld.c — llama.cpp's .kld base files (read, write), the per-token comparison against a
 * base record, and the statistics of llama-perplexity --kl-divergence.
 * Includes formats/base/, verify/ops.h, verify/kld.h. */
#include "kld.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/ckd.h"

#define HEADER_BYTES 20u

/* ==== reading ==== */

struct smelt_kld_file {
    smelt_map map;
    uint32_t n_ctx, n_vocab, n_chunk, n_rec;
    size_t rec_u16;
    uint64_t rec_off; /* byte offset of the first record */
};

static uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int smelt_kld_open(const char *path, smelt_kld_file **out, smelt_err *e)
{
    *out = NULL;
    smelt_kld_file *f = calloc(1, sizeof *f);
    if (!f) return SMELT_NOMEM(e, "the KLD file reader");
    int rc = smelt_map_open(&f->map, path, e);
    if (rc) {
        free(f);
        return rc;
    }
    const uint8_t *p = f->map.data;
    uint64_t size = f->map.size;
    if (size < HEADER_BYTES || memcmp(p, SMELT_KLD_MAGIC, 8) != 0) {
        rc = SMELT_CORRUPT(e, path, 0, NULL,
                           "not a KLD base file: expected the magic \"_logits_\" and a 20-byte header "
                           "(file of %" PRIu64 " bytes)", size);
        goto fail;
    }
    f->n_ctx = rd_u32(p + 8);
    uint32_t nv = rd_u32(p + 12), nc = rd_u32(p + 16);
    if (f->n_ctx < 3 || f->n_ctx > (1u << 24)) {
        rc = SMELT_CORRUPT(e, path, 8, "n_ctx", "context %u is impossible (expected 3 .. 2^24)", f->n_ctx);
        goto fail;
    }
    if (nv == 0 || nv > INT32_MAX) {
        rc = SMELT_CORRUPT(e, path, 12, "n_vocab", "vocabulary size %d is impossible", (int32_t)nv);
        goto fail;
    }
    if (nc == 0 || nc > INT32_MAX) {
        rc = SMELT_CORRUPT(e, path, 16, "n_chunk", "chunk count %d is impossible", (int32_t)nc);
        goto fail;
    }
    f->n_vocab = nv;
    f->n_chunk = nc;
    f->n_rec = f->n_ctx - 1 - f->n_ctx / 2;
    f->rec_u16 = smelt_kld_record_u16(nv);
    uint64_t ntok, tok_bytes, recs, rec_bytes, want;
    if (!smelt_mul_u64(f->n_ctx, nc, &ntok) || !smelt_mul_u64(ntok, 4, &tok_bytes) ||
        !smelt_mul_u64((uint64_t)nc, f->n_rec, &recs) || !smelt_mul_u64(recs, f->rec_u16 * 2, &rec_bytes) ||
        !smelt_add_u64(HEADER_BYTES + tok_bytes, rec_bytes, &want)) {
        rc = SMELT_CORRUPT(e, path, 8, NULL, "header sizes overflow (n_ctx %u, n_vocab %u, n_chunk %u)", f->n_ctx, nv, nc);
        goto fail;
    }
    f->rec_off = HEADER_BYTES + tok_bytes;
    if (size < want) {
        uint64_t have_recs = size > f->rec_off ? (size - f->rec_off) / (f->rec_u16 * 2) : 0;
        rc = SMELT_CORRUPT(e, path, size, NULL,
                           "truncated: the header announces %u chunks x %u records of %zu bytes (%" PRIu64
                           " bytes in all) but the file ends after %" PRIu64 " bytes (%" PRIu64 " complete records)",
                           nc, f->n_rec, f->rec_u16 * 2, want, size, have_recs);
        goto fail;
    }
    if (size > want) {
        rc = SMELT_CORRUPT(e, path, want, NULL, "%" PRIu64 " unexpected bytes after the last record", size - want);
        goto fail;
    }
    *out = f;
    return 0;
fail:
    smelt_map_close(&f->map);
    free(f);
    return rc;
}

void smelt_kld_close(smelt_kld_file *f)
{
    if (!f) return;
    smelt_map_close(&f->map);
    free(f);
}

uint32_t smelt_kld_n_ctx(const smelt_kld_file *f) { return f->n_ctx; }
uint32_t smelt_kld_n_vocab(const smelt_kld_file *f) { return f->n_vocab; }
uint32_t smelt_kld_n_chunk(const smelt_kld_file *f) { return f->n_chunk; }
const char *smelt_kld_path(const smelt_kld_file *f) { return f->map.path; }

const int32_t *smelt_kld_tokens(const smelt_kld_file *f)
{
    return (const int32_t *)(const void *)(f->map.data + HEADER_BYTES);
}

const uint16_t *smelt_kld_record(const smelt_kld_file *f, uint32_t c, uint32_t i)
{
    uint64_t idx = (uint64_t)c * f->n_rec + i;
    return (const uint16_t *)(const void *)(f->map.data + f->rec_off + idx * f->rec_u16 * 2);
}

/* ==== writing ==== */

struct smelt_kld_writer {
    smelt_outfile *out;
    size_t rec_u16;
    uint64_t want, have;
};

int smelt_kld_writer_open(const char *path, uint32_t n_ctx, uint32_t n_vocab, uint32_t n_chunk,
                          const int32_t *tokens, smelt_kld_writer **out, smelt_err *e)
{
    *out = NULL;
    smelt_kld_writer *w = calloc(1, sizeof *w);
    if (!w) return SMELT_NOMEM(e, "the KLD writer");
    w->rec_u16 = smelt_kld_record_u16(n_vocab);
    w->want = (uint64_t)n_chunk * (n_ctx - 1 - n_ctx / 2);
    int rc = smelt_outfile_open(&w->out, path, e);
    if (rc) {
        free(w);
        return rc;
    }
    uint32_t hdr[3] = {n_ctx, n_vocab, n_chunk};
    if ((rc = smelt_outfile_write(w->out, SMELT_KLD_MAGIC, 8, e)) || (rc = smelt_outfile_write(w->out, hdr, 12, e)) ||
        (rc = smelt_outfile_write(w->out, tokens, (size_t)n_ctx * n_chunk * 4, e))) {
        smelt_kld_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int smelt_kld_writer_write(smelt_kld_writer *w, const uint16_t *records, size_t n, smelt_err *e)
{
    w->have += n;
    return smelt_outfile_write(w->out, records, n * w->rec_u16 * 2, e);
}

int smelt_kld_writer_commit(smelt_kld_writer *w, smelt_err *e)
{
    int rc;
    if (w->have != w->want) {
        rc = SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), NULL,
                       "%" PRIu64 " records written, %" PRIu64 " expected", w->have, w->want);
        smelt_kld_writer_abort(w);
        return rc;
    }
    rc = smelt_outfile_commit(w->out, e);
    free(w);
    return rc;
}

void smelt_kld_writer_abort(smelt_kld_writer *w)
{
    if (!w) return;
    smelt_outfile_abort(w->out);
    free(w);
}

/* ==== per token ==== */

/* Round to nearest, ties to even, for |x| < 2^22. */
static inline int round_even(float x) { return (int)((x + 12582912.0f) - 12582912.0f); }

/* sum_i exp(x_i - mx) in double, fixed order */
static double sum_exp(const smelt_ops *o, const float *x, float mx, size_t n, float *scratch)
{
    smelt_ops_exp_sub(o, x, mx, scratch, n);
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += scratch[i];
        s1 += scratch[i + 1];
        s2 += scratch[i + 2];
        s3 += scratch[i + 3];
    }
    for (; i < n; i++) s0 += scratch[i];
    return (s0 + s1) + (s2 + s3);
}

double smelt_kld_encode(const smelt_ops *o, const float *logits, uint32_t n_vocab, int32_t tok, uint16_t *rec,
                        float *scratch)
{
    float mx = logits[0], mn = logits[0];
    for (uint32_t i = 1; i < n_vocab; i++) {
        if (logits[i] > mx) mx = logits[i];
        if (logits[i] < mn) mn = logits[i];
    }
    if (mn < mx - 16) mn = mx - 16;
    const double se = sum_exp(o, logits, mx, n_vocab, scratch);
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

void smelt_kld_compare(const smelt_ops *o, const float *logits, uint32_t n_vocab, const uint16_t *base, int32_t tok,
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
    const float lse = (float)log(sum_exp(o, logits, mx, n_vocab, tmp));
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
    smelt_ops_exp_sub(o, lpb, 0.0f, pb, n_vocab);
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

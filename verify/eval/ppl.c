/* ppl.c — llama-perplexity's perplexity and KL-divergence runs over smelt's forward pass.
 * Includes formats/, verify/{model,ops,forward,tokenize,kld,ppl}.h. */
#include "ppl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/pool.h"
#include "formats/base/progress.h"
#include "verify/eval/forward.h"
#include "verify/eval/model.h"
#include "verify/eval/ops.h"
#include "verify/eval/tokenize.h"

#define TEXT_MAX (1ull << 31)

void smelt_ppl_opts_default(smelt_ppl_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_chunks = -1;
    o->isa = -1;
}

void smelt_ppl_result_free(smelt_ppl_result *r)
{
    if (!r) return;
    free(r->running);
    r->running = NULL;
}

int smelt_ppl_read_text(const char *path, char **text, size_t *len, smelt_err *e)
{
    int rc = smelt_read_file(path, TEXT_MAX, text, len, e);
    if (rc) return rc;
    if (*len && (*text)[*len - 1] == '\n') (*text)[--*len] = 0;
    return 0;
}

/* ==== scoring: one task per scored position ==== */

enum { MODE_PPL, MODE_BASE, MODE_KLD };

typedef struct {
    int mode;
    const smelt_fwd_ops *ops;
    uint32_t n_vocab, n_ctx, first, n_rec;
    uint32_t n_out, lfrom;     /* logit rows per sequence, position of the first */
    const float *logits;       /* n_seq x n_out rows of n_vocab */
    const int32_t *tokens;     /* chunk group start: n_seq x n_ctx */
    const smelt_kld_file *base;
    uint32_t chunk0;           /* chunk index of the group's first sequence */
    float *scratch;            /* per thread */
    size_t scratch_per_thread;
    double *nll;               /* MODE_PPL / MODE_BASE: per row */
    uint16_t *records;         /* MODE_BASE: per row */
    smelt_kld_tok *kt;         /* MODE_KLD: per row */
} scorejob;

static void score_task(void *ctx, size_t row, int thread)
{
    scorejob *j = ctx;
    size_t seq = row / j->n_rec, i = row % j->n_rec;
    const float *lg = j->logits + (seq * j->n_out + (j->first - j->lfrom) + i) * j->n_vocab;
    int32_t next = j->tokens[seq * j->n_ctx + j->first + i + 1];
    float *s = j->scratch + (size_t)thread * j->scratch_per_thread;
    switch (j->mode) {
    case MODE_PPL:
        j->nll[row] = smelt_fwd_ops_logsumexp(j->ops, lg, j->n_vocab, s, NULL) - (double)lg[next];
        break;
    case MODE_BASE:
        j->nll[row] = smelt_kld_encode(j->ops, lg, j->n_vocab, next, j->records + row * smelt_kld_record_u16(j->n_vocab), s);
        break;
    default:
        smelt_kld_compare(j->ops, lg, j->n_vocab, smelt_kld_record(j->base, j->chunk0 + (uint32_t)seq, (uint32_t)i), next, s,
                          &j->kt[row]);
    }
}

/* ==== the run ==== */

typedef struct {
    smelt_model *model;
    smelt_vocab *vocab;
    smelt_pool *pool;
    smelt_fwd_ops *ops;
    smelt_fwd *fwd;
    smelt_kld_file *base;
    smelt_kld_writer *writer;
    int32_t *tokens;
    float *logits, *scratch;
    int32_t *batch;
    double *nll;
    uint16_t *records;
    smelt_kld_tok *kt;
    smelt_kld_acc acc;
} run_state;

static void cleanup(run_state *s)
{
    smelt_kld_writer_abort(s->writer);
    smelt_kld_close(s->base);
    smelt_fwd_free(s->fwd);
    smelt_fwd_ops_free(s->ops);
    smelt_pool_free(s->pool);
    smelt_vocab_free(s->vocab);
    smelt_model_close(s->model);
    free(s->tokens);
    free(s->logits);
    free(s->scratch);
    free(s->batch);
    free(s->nll);
    free(s->records);
    free(s->kt);
    smelt_kld_acc_free(&s->acc);
}

static int load_tokens(const smelt_ppl_opts *o, run_state *s, size_t *n, smelt_err *e)
{
    int rc = smelt_vocab_from_gguf(s->model->gguf, &s->vocab, e);
    if (rc) return rc;
    if (smelt_vocab_add_eos(s->vocab))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, o->model, "tokenizer.ggml.add_eos_token",
                         "the vocabulary appends EOS to every text; llama-perplexity refuses such models too");
    char *text;
    size_t len;
    if ((rc = smelt_ppl_read_text(o->text, &text, &len, e))) return rc;
    rc = smelt_tokenize(s->vocab, text, len, true, false, &s->tokens, n, e);
    free(text);
    if (rc) smelt_err_prefix(e, "while tokenizing %s", o->text);
    return rc;
}

static int open_base(const smelt_ppl_opts *o, run_state *s, uint32_t *n_ctx, size_t *n_tokens, smelt_err *e)
{
    int rc = smelt_kld_open(o->kld_in, &s->base, e);
    if (rc) return rc;
    uint32_t nv = smelt_kld_n_vocab(s->base), fc = smelt_kld_n_ctx(s->base);
    if (nv != s->model->hp.n_vocab)
        return SMELT_ERR(e, SMELT_EMISMATCH, o->kld_in, "n_vocab",
                         "the base distributions are over %u tokens but %s has a vocabulary of %u: not the same "
                         "tokenizer", nv, o->model, (uint32_t)s->model->hp.n_vocab);
    if (o->n_ctx && o->n_ctx != fc)
        return SMELT_ERR(e, SMELT_EUSAGE, o->kld_in, "n_ctx",
                         "the base file was computed with a context of %u; -c %u differs (omit -c)", fc, o->n_ctx);
    *n_ctx = fc;
    *n_tokens = (size_t)fc * smelt_kld_n_chunk(s->base);
    const int32_t *t = smelt_kld_tokens(s->base);
    for (size_t i = 0; i < *n_tokens; i++)
        if (t[i] < 0 || (uint32_t)t[i] >= nv)
            return SMELT_ERR_AT(e, SMELT_EMISMATCH, o->kld_in, 20 + 4 * (uint64_t)i, "tokens",
                                "token %zu is %" PRId32 ", outside the vocabulary of %u", i, t[i], nv);
    return 0;
}

/* An output file (base distributions or per-token values) may be none of the inputs. */
static int check_output_path(const smelt_ppl_opts *o, const char *out, smelt_err *e)
{
    const smelt_guard_input in[] = {{o->model, "the model"}, {o->text, "the text"}, {o->kld_in, "the base distributions"}};
    return smelt_guard_check_file_against(out, in, 3, e);
}

/* opts.kld_tokens: values[i] is scored token i (chunk i / n_rec); tokens are the base's. */
static int write_token_kld(const char *path, const float *values, size_t n, const int32_t *tokens, uint32_t n_ctx,
                           uint32_t first, uint32_t n_rec, smelt_err *e)
{
    smelt_outfile *f;
    int rc = smelt_outfile_open(&f, path, e);
    if (rc) return rc;
    static const char head[] = "chunk\tposition\ttoken\tkld\n";
    rc = smelt_outfile_write(f, head, sizeof head - 1, e);
    char line[96];
    for (size_t i = 0; i < n && !rc; i++) {
        size_t c = i / n_rec, pos = first + 1 + i % n_rec;
        int k = snprintf(line, sizeof line, "%zu\t%zu\t%" PRId32 "\t%.9g\n", c, pos, tokens[c * n_ctx + pos],
                         (double)values[i]);
        rc = smelt_outfile_write(f, line, (size_t)k, e);
    }
    if (rc) {
        smelt_outfile_abort(f);
        return rc;
    }
    return smelt_outfile_commit(f, e);
}

int smelt_ppl_run(const smelt_ppl_opts *o, smelt_ppl_result *r, smelt_ppl_chunk_fn fn, void *user, smelt_err *e)
{
    memset(r, 0, sizeof *r);
    run_state s;
    memset(&s, 0, sizeof s);
    const double t_load = smelt_now();
    int mode = o->kld_in ? MODE_KLD : o->kld_base ? MODE_BASE : MODE_PPL;
    int rc;
    if (o->kld_in && o->kld_base)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--kld-base and --kld cannot be used together");
    if (!o->kld_in && !o->text) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no text file given (-f)");
    if (o->kld_tokens && !o->kld_in)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "per-token KL-divergence needs the base distributions (--kld)");
    if (o->kld_base && (rc = check_output_path(o, o->kld_base, e))) return rc;
    if (o->kld_tokens && (rc = check_output_path(o, o->kld_tokens, e))) return rc;
    if ((rc = smelt_model_open(o->model, &s.model, e))) goto done;
    const smelt_hparams *hp = &s.model->hp;
    uint32_t n_ctx = o->n_ctx ? o->n_ctx : 512;
    size_t n_tokens = 0;
    const int32_t *tokens;
    if (mode == MODE_KLD) {
        if ((rc = open_base(o, &s, &n_ctx, &n_tokens, e))) goto done;
        tokens = smelt_kld_tokens(s.base);
        if ((rc = smelt_vocab_from_gguf(s.model->gguf, &s.vocab, e))) goto done;
    } else {
        if ((rc = load_tokens(o, &s, &n_tokens, e))) goto done;
        tokens = s.tokens;
    }
    if (n_ctx < 4) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "context of %u tokens is too small (at least 4)", n_ctx);
        goto done;
    }
    if (mode != MODE_KLD && n_tokens < 2 * (size_t)n_ctx) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, o->text, NULL,
                       "the text tokenizes to only %zu tokens; %s with a context of %u needs at least "
                       "%zu (2 x n_ctx)",
                       n_tokens, o->purpose ? o->purpose : "perplexity", n_ctx, 2 * (size_t)n_ctx);
        goto done;
    }
    const uint32_t n_batch = o->n_batch ? o->n_batch : 2048;
    if (n_batch >= n_ctx && n_batch % n_ctx) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL,
                       "batch size %u must be smaller than the context (%u) or a multiple of it", n_batch, n_ctx);
        goto done;
    }
    size_t n_chunk = n_tokens / n_ctx;
    if (o->n_chunks >= 0 && (size_t)o->n_chunks < n_chunk) n_chunk = (size_t)o->n_chunks;
    if (n_chunk == 0) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no chunk to evaluate (--chunks 0)");
        goto done;
    }
    const size_t n_chunk_text = n_chunk, c_begin = o->chunk_begin;
    if (o->chunk_end || c_begin) {
        size_t c_end = o->chunk_end ? o->chunk_end : n_chunk;
        if (mode != MODE_PPL || c_begin >= c_end || c_end > n_chunk) {
            const bool limited = n_chunk < n_tokens / n_ctx;
            rc = mode != MODE_PPL ? SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "a chunk range is not possible with KLD")
                                  : SMELT_ERR(e, SMELT_EUSAGE, o->text, NULL,
                                              "chunk range %zu:%zu is outside the %s%zu chunks of %u tokens%s "
                                              "(0 <= A < B <= %zu)",
                                              c_begin, c_end, limited ? "first " : "text's ", n_chunk, n_ctx,
                                              limited ? " kept by --chunks" : "", n_chunk);
            goto done;
        }
        n_chunk = c_end - c_begin;
        tokens += c_begin * n_ctx;
    }
    uint32_t n_seq = n_batch >= n_ctx ? n_batch / n_ctx : 1;
    if (n_seq > n_chunk) n_seq = (uint32_t)n_chunk;
    const uint32_t n_tok_call = n_batch < n_ctx ? n_batch : n_ctx;
    const uint32_t first = n_ctx / 2, n_rec = n_ctx - 1 - first;
    const uint32_t lfrom = o->all_logits ? 0 : first, n_out = n_ctx - lfrom;
    const uint32_t V = (uint32_t)hp->n_vocab;
    const bool add_bos = smelt_vocab_add_bos(s.vocab);
    const int32_t bos = smelt_vocab_bos(s.vocab);

    s.pool = smelt_pool_new(o->n_threads);
    s.ops = s.pool ? smelt_fwd_ops_new(s.pool, o->isa) : NULL;
    if (!s.ops) {
        rc = SMELT_NOMEM(e, "the thread pool");
        goto done;
    }
    if ((rc = smelt_fwd_new(s.model, s.ops, n_ctx, n_seq, n_tok_call, &s.fwd, e))) goto done;
    if (o->hook) smelt_fwd_set_hook(s.fwd, o->hook, o->hook_user);
    const int nth = smelt_fwd_ops_threads(s.ops);
    const size_t rows = (size_t)n_seq * n_rec, per_thread = smelt_kld_scratch_floats(V);
    s.logits = malloc(sizeof(float) * (size_t)n_seq * n_out * V);
    s.scratch = malloc(sizeof(float) * per_thread * (size_t)nth);
    s.batch = malloc(sizeof(int32_t) * (size_t)n_seq * n_tok_call);
    s.nll = malloc(sizeof(double) * rows);
    r->running = calloc(n_chunk, sizeof(double));
    if (!s.logits || !s.scratch || !s.batch || !s.nll || !r->running) {
        rc = SMELT_NOMEM(e, "the logits of a batch");
        goto done;
    }
    if (mode == MODE_BASE) {
        s.records = malloc(sizeof(uint16_t) * smelt_kld_record_u16(V) * rows);
        if (!s.records) {
            rc = SMELT_NOMEM(e, "the KLD records");
            goto done;
        }
        if ((rc = smelt_kld_writer_open(o->kld_base, n_ctx, V, (uint32_t)n_chunk, tokens, &s.writer, e))) goto done;
    }
    if (mode == MODE_KLD) {
        s.kt = malloc(sizeof(smelt_kld_tok) * rows);
        if (!s.kt) {
            rc = SMELT_NOMEM(e, "the KLD values");
            goto done;
        }
        if ((rc = smelt_kld_acc_init(&s.acc, n_chunk * n_rec, e))) goto done;
        r->has_kld = true;
    }

    r->n_ctx = n_ctx;
    r->n_batch = n_batch;
    r->n_seq = n_seq;
    r->n_vocab = V;
    r->n_threads = nth;
    r->isa = smelt_fwd_ops_isa_name(s.ops);
    smelt_model_type_summary(s.model, r->model_types, sizeof r->model_types);
    r->n_tokens = n_tokens;
    r->n_chunks = n_chunk;
    r->chunk_begin = c_begin;
    r->n_chunks_text = n_chunk_text;
    r->n_scored_per_chunk = n_rec;
    r->memory = smelt_fwd_memory(s.fwd);
    r->load_seconds = smelt_now() - t_load;

    double nll = 0, nll2 = 0;
    size_t count = 0;
    const double t0 = smelt_now();
    for (size_t c0 = 0; c0 < n_chunk; c0 += n_seq) {
        uint32_t ns = n_chunk - c0 < n_seq ? (uint32_t)(n_chunk - c0) : n_seq;
        const int32_t *group = tokens + c0 * n_ctx;
        for (uint32_t pos0 = 0; pos0 < n_ctx; pos0 += n_tok_call) {
            uint32_t nt = n_ctx - pos0 < n_tok_call ? n_ctx - pos0 : n_tok_call;
            for (uint32_t q = 0; q < ns; q++) {
                memcpy(s.batch + (size_t)q * nt, group + (size_t)q * n_ctx + pos0, nt * sizeof(int32_t));
                if (add_bos && pos0 == 0) s.batch[(size_t)q * nt] = bos;
            }
            /* rows of this call: positions max(lfrom, pos0) .. pos0+nt-1 (one sequence when nt < n_ctx) */
            uint32_t from = lfrom > pos0 ? lfrom : pos0;
            float *dst = s.logits + (size_t)(from - lfrom) * V;
            if ((rc = smelt_fwd_eval(s.fwd, s.batch, ns, nt, pos0, lfrom, from < pos0 + nt ? dst : NULL, e)))
                goto done;
        }
        r->chunks_evaluated = c0 + ns;
        scorejob j = {mode, s.ops, V, n_ctx, first, n_rec, n_out, lfrom, s.logits, group, s.base, (uint32_t)c0,
                      s.scratch, per_thread, s.nll, s.records, s.kt};
        smelt_pool_run(s.pool, (size_t)ns * n_rec, score_task, &j);
        if (mode == MODE_BASE && (rc = smelt_kld_writer_write(s.writer, s.records, (size_t)ns * n_rec, e))) goto done;
        for (uint32_t q = 0; q < ns; q++) {
            for (uint32_t i = 0; i < n_rec; i++) {
                size_t row = (size_t)q * n_rec + i;
                if (mode == MODE_KLD) {
                    smelt_kld_acc_add(&s.acc, &s.kt[row]);
                } else {
                    nll += s.nll[row];
                    nll2 += s.nll[row] * s.nll[row];
                }
            }
            count += n_rec;
            r->chunks_done = c0 + q + 1;
            r->n_scored = count;
            if (mode == MODE_KLD) {
                smelt_kld_acc_running(&s.acc, &r->kld);
                r->ppl = r->kld.ppl;
                r->ppl_err = r->kld.ppl_err;
            } else {
                r->ppl = exp(nll / (double)count);
            }
            r->running[r->chunks_done - 1] = r->ppl;
            r->seconds = smelt_now() - t0;
            r->tokens_per_s = r->seconds > 0 ? (double)r->chunks_done * n_ctx / r->seconds : 0;
            if (fn) fn(user, r);
        }
    }
    if (mode == MODE_KLD) {
        if ((rc = smelt_kld_acc_stats(&s.acc, &r->kld, e))) goto done;
        if (o->kld_tokens &&
            (rc = write_token_kld(o->kld_tokens, s.acc.kld_values, s.acc.count, tokens, n_ctx, first, n_rec, e)))
            goto done;
    } else {
        double m = nll / (double)count, v = nll2 / (double)count - m * m;
        r->ppl = exp(m);
        r->ppl_err = v > 0 && count > 1 ? sqrt(v / (double)(count - 1)) * r->ppl : 0.0;
    }
    if (mode == MODE_BASE) {
        rc = smelt_kld_writer_commit(s.writer, e);
        s.writer = NULL;
        if (rc) goto done;
    }
    r->seconds = smelt_now() - t0;
    r->tokens_per_s = r->seconds > 0 ? (double)n_chunk * n_ctx / r->seconds : 0;
done:
    cleanup(&s);
    if (rc) smelt_ppl_result_free(r);
    return rc;
}

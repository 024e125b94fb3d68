/* test_imatrix_collect.c — the importance-matrix collector and smelt_imatrix_run():
 * exact sums and counts on hand-fed products (dense, experts, filters, partial experts);
 * tiny-mixtral (f32 GGUF made by bin/smelt-convert) on calib.txt at n_ctx 256 against
 * llama-imatrix's file (tests/fixtures/imatrix), reference.json's PyTorch routing counts,
 * exact identities of the model (q = k = v, Σ experts = top-k × router input) and an
 * independent double-precision computation of layer 0's input; independence from threads
 * and batch size; the legacy output; and the error cases with their exact messages. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/base/file.h"
#include "formats/imatrix.h"
#include "tests/common/testutil.h"
#include "tests/verify/vfix.h"
#include "verify/eval/imatrix_collect.h"
#include "verify/eval/model.h"
#include "verify/eval/tokenize.h"

/* ==== fixtures ==== */

static void tiny_f32(char *out, size_t n) { vf_tiny_smelt("f32", out, n); }

static void text_path(const char *name, char *out, size_t n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "samples/text/%s.txt", name);
    tu_path(out, n, rel);
}

static int run(const char *model, const char *text, const char *output, int format, uint32_t n_ctx, int64_t chunks,
               int threads, uint32_t n_batch, smelt_imatrix_result *r, smelt_err *e)
{
    smelt_imatrix_opts o;
    smelt_imatrix_opts_default(&o);
    o.model = model;
    o.text = text;
    o.output = output;
    o.format = format;
    o.n_ctx = n_ctx;
    o.n_chunks = chunks;
    o.n_threads = threads;
    o.n_batch = n_batch;
    smelt_err_clear(e);
    return smelt_imatrix_run(&o, r, NULL, NULL, e);
}

static void run_ok(const char *model, const char *text, const char *output, int format, uint32_t n_ctx,
                   int64_t chunks, int threads, uint32_t n_batch, smelt_imatrix_result *r)
{
    smelt_err e;
    int rc = run(model, text, output, format, n_ctx, chunks, threads, n_batch, r, &e);
    char msg[1200];
    smelt_err_format(&e, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
}

static smelt_imx *read_imx(const char *path)
{
    smelt_imx *m;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_imx_read(path, &m, &e);
    char msg[1200];
    smelt_err_format(&e, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
    return m;
}

/* ==== hand-fed products ==== */

static void feed(smelt_imxc *c, const char *w, int expert, int n_expert, const float *x, size_t rows, size_t cols,
                 size_t ldx)
{
    smelt_fwd_mm_info mi = {w, 0, expert, n_expert, x, rows, cols, ldx};
    smelt_imxc_hook(c, &mi);
}

Test(imatrix_collect, sums_counts_and_filters)
{
    smelt_imxc *c;
    smelt_err e;
    cr_assert_eq(smelt_imxc_new(false, &c, &e), 0);
    /* a dense weight: 3 rows of 2 columns (stride 3: the third float is not part of a row) */
    const float xd[] = {1, 2, 99, 3, -4, 99, 0.5f, 0, 99};
    feed(c, "blk.0.attn_q.weight", -1, 0, xd, 3, 2, 3);
    feed(c, "blk.0.attn_q.weight", -1, 0, xd, 1, 2, 3); /* a second batch */
    /* experts 2 and 0 of 4; expert 1 and 3 never receive a token */
    const float xe[] = {2, 1, 1, 1, 3, 0};
    feed(c, "blk.0.ffn_up_exps.weight", 2, 4, xe, 2, 2, 2);
    feed(c, "blk.0.ffn_up_exps.weight", 0, 4, xe + 4, 1, 2, 2);
    /* not collected: the output head (no process_output), token_embd as a tied output,
     * zero rows */
    feed(c, "output.weight", -1, 0, xd, 3, 2, 3);
    feed(c, "token_embd.weight", -1, 0, xd, 3, 2, 3);
    feed(c, "blk.1.attn_k.weight", -1, 0, xd, 0, 2, 3);
    cr_assert_eq(smelt_imxc_n_entries(c), 2);

    const char *ds[] = {"calib.txt"};
    smelt_imx *m;
    cr_assert_eq(smelt_imxc_build(c, 2, ds, 1, &m, &e), 0);
    cr_assert_eq(m->n_entries, 2);
    cr_assert_eq(m->format, SMELT_IMX_GGUF);
    cr_assert(m->has_metadata);
    cr_assert_eq(m->chunk_size, 2);
    cr_assert_eq(m->chunk_count, 2); /* largest count 4 / chunk size 2 */
    cr_assert_eq(m->n_datasets, 1);
    cr_assert_str_eq(m->datasets[0], "calib.txt");
    const smelt_imx_entry *q = smelt_imx_find(m, "blk.0.attn_q.weight");
    cr_assert_not_null(q);
    cr_assert_eq(q->n_mat, 1);
    cr_assert_eq(q->n_values, 2);
    cr_assert_eq(q->counts[0], 4);
    cr_assert_float_eq(q->sums[0], 1 + 9 + 0.25 + 1, 0);
    cr_assert_float_eq(q->sums[1], 4 + 16 + 0 + 4, 0);
    const smelt_imx_entry *u = smelt_imx_find(m, "blk.0.ffn_up_exps.weight");
    cr_assert_not_null(u);
    cr_assert_eq(u->n_mat, 4);
    cr_assert_eq(u->n_values, 8);
    const int64_t want_c[4] = {1, 0, 2, 0};
    const float want_s[8] = {9, 0, 0, 0, 4 + 1, 1 + 1, 0, 0};
    for (int k = 0; k < 4; k++) cr_assert_eq(u->counts[k], want_c[k], "expert %d", k);
    for (int k = 0; k < 8; k++) cr_assert_float_eq(u->sums[k], want_s[k], 0, "value %d", k);
    smelt_imx_free(m);
    smelt_imxc_free(c);

    /* with process_output the head is collected; token_embd still is not */
    cr_assert_eq(smelt_imxc_new(true, &c, &e), 0);
    feed(c, "output.weight", -1, 0, xd, 3, 2, 3);
    feed(c, "token_embd.weight", -1, 0, xd, 3, 2, 3);
    cr_assert_eq(smelt_imxc_build(c, 3, ds, 1, &m, &e), 0);
    cr_assert_eq(m->n_entries, 1);
    cr_assert_not_null(smelt_imx_find(m, "output.weight"));
    cr_assert_eq(m->chunk_count, 1);
    smelt_imx_free(m);
    smelt_imxc_free(c);
}

Test(imatrix_collect, errors)
{
    smelt_imxc *c;
    smelt_err e;
    smelt_imx *m;
    char msg[1200];
    /* nothing collected */
    cr_assert_eq(smelt_imxc_new(false, &c, &e), 0);
    cr_assert_eq(smelt_imxc_build(c, 256, NULL, 0, &m, &e), SMELT_EUSAGE);
    cr_assert_null(m);
    smelt_err_format(&e, msg, sizeof msg);
    cr_assert_str_eq(msg, "no matrix product was collected (the model has no blk.* weights)");
    smelt_imxc_free(c);
    /* one weight seen with two shapes */
    const float x[] = {1, 2, 3, 4};
    cr_assert_eq(smelt_imxc_new(false, &c, &e), 0);
    feed(c, "blk.0.attn_q.weight", -1, 0, x, 1, 4, 4);
    feed(c, "blk.0.attn_q.weight", -1, 0, x, 2, 2, 2);
    cr_assert_eq(smelt_imxc_build(c, 256, NULL, 0, &m, &e), SMELT_EMISMATCH);
    smelt_err_format(&e, msg, sizeof msg);
    cr_assert_str_eq(msg, "'blk.0.attn_q.weight': product with 2 columns x 1 matrices after 4 x 1");
    smelt_imxc_free(c);
    /* non-finite activations, named with the expert */
    const float bad[] = {1, INFINITY};
    cr_assert_eq(smelt_imxc_new(false, &c, &e), 0);
    feed(c, "blk.2.ffn_down_exps.weight", 3, 4, bad, 1, 2, 2);
    cr_assert_eq(smelt_imxc_build(c, 256, NULL, 0, &m, &e), SMELT_EFORMAT);
    smelt_err_format(&e, msg, sizeof msg);
    cr_assert_str_eq(msg, "'blk.2.ffn_down_exps.weight': the activations reaching expert 3 are not finite (column 1 "
                          "sums to inf): the model produces NaN/Inf on this text");
    smelt_imxc_free(c);
}

/* ==== tiny-mixtral against llama-imatrix ==== */

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Measured on calib.txt, n_ctx 256, 93 chunks (docs/imatrix.md): llama-imatrix runs the
 * f32 model with an f16 K/V cache and f16 flash attention, so the activations it squares
 * differ from smelt's f32 ones by ~1e-4 relative after attention; and the router's top-2
 * choice flips for a few near-tied tokens (±2 per expert), each moving one token's whole
 * row of squares between two experts. Bounds, with the measured values:
 *   - dense weights (attention, router): max 4.0e-4 → bound 1e-3;
 *   - experts with the same count as llama.cpp's: max 3.8e-3 → bound 1e-2;
 *   - experts whose count differs: max 2.4e-2 (one token in ffn_down's sparse columns) →
 *     bound 5e-2, median over their columns 6.4e-5 → bound 5e-4;
 *   - median over all 21,504 values: 3.1e-5 → bound 1e-4. */
Test(imatrix_collect, tiny_mixtral_vs_llama_imatrix, .timeout = 300)
{
    char model[4200], text[4200], ref[4200], dir[4096], out[4200];
    tiny_f32(model, sizeof model);
    text_path("calib", text, sizeof text);
    tu_path(ref, sizeof ref, "tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf");
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/smelt.imatrix.gguf", dir);
    smelt_imatrix_result r;
    run_ok(model, text, out, SMELT_IMX_GGUF, 256, -1, 2, 0, &r);
    /* the chunk loop: llama-imatrix prints PPL = 136.1775 +/- 3.18657 on this text */
    cr_assert_eq(r.ppl.n_chunks, 93);
    cr_assert(rel(r.ppl.ppl, 136.1775) < 1e-5, "PPL %.6f", r.ppl.ppl);
    cr_assert_eq(r.n_entries, 32);
    cr_assert_eq(r.n_partial, 0);
    smelt_imatrix_result_free(&r);

    smelt_imx *s = read_imx(out), *l = read_imx(ref);
    cr_assert_eq(s->n_entries, l->n_entries);
    cr_assert_eq(s->chunk_count, 93);
    cr_assert_eq(s->chunk_size, 256);
    cr_assert_eq(s->n_datasets, 1);
    cr_assert_str_eq(s->datasets[0], text);
    cr_assert(s->has_metadata);

    /* PyTorch's routing counts per layer (reference.json expert_token_counts.calib.base) */
    char refjson[4200];
    tu_path(refjson, sizeof refjson, "samples/reference.json");
    json_error_t je;
    json_t *rj = json_load_file(refjson, 0, &je);
    cr_assert_not_null(rj, "%s", je.text);
    json_t *pt = json_object_get(json_object_get(json_object_get(rj, "expert_token_counts"), "calib"), "base");
    cr_assert(json_is_array(pt));

    size_t n_all = 0, n_diff_vals = 0;
    double *all = malloc(sizeof(double) * 64 * 1024), *dv = malloc(sizeof(double) * 64 * 1024);
    double max_dense = 0, max_same = 0, max_diff = 0;
    int max_count_dev = 0;
    for (size_t i = 0; i < s->n_entries; i++) {
        const smelt_imx_entry *a = &s->entries[i], *b = &l->entries[i];
        cr_assert_str_eq(a->name, b->name);
        cr_assert_eq(a->n_mat, b->n_mat, "%s", a->name);
        cr_assert_eq(a->n_values, b->n_values, "%s", a->name);
        uint64_t cols = a->n_values / a->n_mat;
        int layer = atoi(a->name + 4);
        for (uint64_t k = 0; k < a->n_mat; k++) {
            if (a->n_mat == 1) {
                cr_assert_eq(a->counts[0], 93 * 256, "%s", a->name);
                cr_assert_eq(b->counts[0], 93 * 256);
            } else {
                json_int_t want = json_integer_value(json_array_get(json_array_get(pt, (size_t)layer), k));
                cr_assert_eq(a->counts[k], want, "%s expert %lu: %ld, PyTorch %ld", a->name, (unsigned long)k,
                             (long)a->counts[k], (long)want);
                int dev = (int)llabs(a->counts[k] - b->counts[k]);
                cr_assert_leq(dev, 2, "%s expert %lu: %ld vs llama.cpp %ld", a->name, (unsigned long)k,
                              (long)a->counts[k], (long)b->counts[k]);
                if (dev > max_count_dev) max_count_dev = dev;
            }
            for (uint64_t j = 0; j < cols; j++) {
                double d = rel(a->sums[k * cols + j], b->sums[k * cols + j]);
                all[n_all++] = d;
                if (a->n_mat == 1) max_dense = fmax(max_dense, d);
                else if (a->counts[k] == b->counts[k]) max_same = fmax(max_same, d);
                else {
                    max_diff = fmax(max_diff, d);
                    dv[n_diff_vals++] = d;
                }
            }
        }
    }
    json_decref(rj);
    cr_assert_eq(n_all, 21504);
    cr_assert_gt(max_count_dev, 0, "llama.cpp's counts are known to differ by 1-2 tokens here");
    qsort(all, n_all, sizeof *all, cmp_dbl);
    qsort(dv, n_diff_vals, sizeof *dv, cmp_dbl);
    double med = all[n_all / 2], med_diff = dv[n_diff_vals / 2];
    cr_log_info("in_sum2 vs llama-imatrix: median rel %.3g, max dense %.3g, max experts same count %.3g, "
                "max experts count differs %.3g (median %.3g)",
                med, max_dense, max_same, max_diff, med_diff);
    cr_assert_lt(max_dense, 1e-3, "%g", max_dense);
    cr_assert_lt(max_same, 1e-2, "%g", max_same);
    cr_assert_lt(max_diff, 5e-2, "%g", max_diff);
    cr_assert_lt(med_diff, 5e-4, "%g", med_diff);
    cr_assert_lt(med, 1e-4, "%g", med);
    cr_assert_gt(med, 0, "identical to llama.cpp's f32-accumulated, f16-cache sums? impossible");
    free(all);
    free(dv);

    /* exact identities: q, k, v share their input; each token reaches top-k = 2 experts,
     * so the experts' up (and gate) sums add up to twice the router's input sums */
    for (int L = 0; L < 4; L++) {
        char nq[64], nk[64], nv[64], nr[64], nu[64], ng[64];
        snprintf(nq, sizeof nq, "blk.%d.attn_q.weight", L);
        snprintf(nk, sizeof nk, "blk.%d.attn_k.weight", L);
        snprintf(nv, sizeof nv, "blk.%d.attn_v.weight", L);
        snprintf(nr, sizeof nr, "blk.%d.ffn_gate_inp.weight", L);
        snprintf(nu, sizeof nu, "blk.%d.ffn_up_exps.weight", L);
        snprintf(ng, sizeof ng, "blk.%d.ffn_gate_exps.weight", L);
        const smelt_imx_entry *q = smelt_imx_find(s, nq), *k = smelt_imx_find(s, nk), *v = smelt_imx_find(s, nv),
                              *rt = smelt_imx_find(s, nr), *u = smelt_imx_find(s, nu), *g = smelt_imx_find(s, ng);
        cr_assert(q && k && v && rt && u && g);
        cr_assert_eq(memcmp(q->sums, k->sums, 256 * 4), 0);
        cr_assert_eq(memcmp(q->sums, v->sums, 256 * 4), 0);
        cr_assert_eq(memcmp(u->sums, g->sums, 1024 * 4), 0);
        cr_assert_eq(memcmp(u->counts, g->counts, 4 * sizeof(int64_t)), 0);
        cr_assert_eq(u->counts[0] + u->counts[1] + u->counts[2] + u->counts[3], 2 * 93 * 256);
        for (int j = 0; j < 256; j++) {
            double t = (double)u->sums[j] + u->sums[256 + j] + u->sums[512 + j] + u->sums[768 + j];
            cr_assert(rel(t, 2.0 * rt->sums[j]) < 2e-6, "layer %d column %d: %.9g vs 2 x %.9g", L, j, t,
                      (double)rt->sums[j]);
        }
    }
    smelt_imx_free(l);

    /* layer 0's attention input computed independently in double: rmsnorm(token_embd[t])
     * · attn_norm for every token of the 93 chunks, each chunk's first token being BOS */
    smelt_model *mdl;
    smelt_err e;
    smelt_err_clear(&e);
    cr_assert_eq(smelt_model_open(model, &mdl, &e), 0);
    smelt_vocab *voc;
    cr_assert_eq(smelt_vocab_from_gguf(mdl->gguf, &voc, &e), 0);
    char *t;
    size_t tl, nt;
    int32_t *toks;
    cr_assert_eq(smelt_ppl_read_text(text, &t, &tl, &e), 0);
    cr_assert_eq(smelt_tokenize(voc, t, tl, true, false, &toks, &nt, &e), 0);
    cr_assert_eq(nt / 256, 93);
    const smelt_hparams *hp = &mdl->hp;
    cr_assert_eq(mdl->tok_embd.type, SMELT_TYPE_F32);
    double want[256] = {0};
    for (size_t i = 0; i < 93 * 256; i++) {
        int32_t id = i % 256 ? toks[i] : smelt_vocab_bos(voc);
        const float *x = (const float *)(mdl->tok_embd.data + (size_t)id * mdl->tok_embd.row_bytes);
        double ss = 0;
        for (int j = 0; j < 256; j++) ss += (double)x[j] * x[j];
        double inv = 1.0 / sqrt(ss / 256 + hp->rms_eps);
        for (int j = 0; j < 256; j++) {
            double y = x[j] * inv * mdl->layers[0].attn_norm[j];
            want[j] += y * y;
        }
    }
    const smelt_imx_entry *q0 = smelt_imx_find(s, "blk.0.attn_q.weight");
    double worst = 0;
    for (int j = 0; j < 256; j++) worst = fmax(worst, rel(q0->sums[j], want[j]));
    cr_assert_lt(worst, 2e-6, "layer 0 input sums vs double-precision recomputation: %g", worst);
    free(t);
    free(toks);
    smelt_vocab_free(voc);
    smelt_model_close(mdl);
    smelt_imx_free(s);
    tu_rmtree(dir);
}

/* ==== determinism and the legacy format ==== */

Test(imatrix_collect, threads_batch_and_legacy, .timeout = 300)
{
    char model[4200], text[4200], dir[4096], a[4200], b[4200], c[4200], d[4200];
    tiny_f32(model, sizeof model);
    text_path("calib", text, sizeof text);
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(a, sizeof a, "%s/t1.gguf", dir);
    snprintf(b, sizeof b, "%s/t2.gguf", dir);
    snprintf(c, sizeof c, "%s/t2.dat", dir);
    snprintf(d, sizeof d, "%s/conv.dat", dir);
    smelt_imatrix_result r;
    /* 6 chunks, one thread, one chunk per call; two threads, 4 chunks per call; and
     * pieces of 100 tokens that continue the cache */
    run_ok(model, text, a, SMELT_IMX_GGUF, 256, 6, 1, 256, &r);
    cr_assert_eq(r.chunk_count, 6);
    smelt_imatrix_result_free(&r);
    run_ok(model, text, b, SMELT_IMX_GGUF, 256, 6, 2, 1024, &r);
    smelt_imatrix_result_free(&r);
    cr_assert_eq(tu_cmp_files(a, b), 0, "-t 1 -b 256 and -t 2 -b 1024 differ");
    run_ok(model, text, b, SMELT_IMX_GGUF, 256, 6, 2, 100, &r);
    smelt_imatrix_result_free(&r);
    cr_assert_eq(tu_cmp_files(a, b), 0, "-b 100 differs");
    /* the legacy output is the GGUF result converted as llama-imatrix converts it */
    run_ok(model, text, c, SMELT_IMX_LEGACY, 256, 6, 2, 0, &r);
    smelt_imatrix_result_free(&r);
    smelt_imx *m = read_imx(a);
    smelt_err e;
    cr_assert_eq(smelt_imx_write(m, d, SMELT_IMX_LEGACY, &e), 0);
    smelt_imx_free(m);
    cr_assert_eq(tu_cmp_files(c, d), 0);
    m = read_imx(c);
    cr_assert_eq(m->format, SMELT_IMX_LEGACY);
    cr_assert_eq(m->n_entries, 32);
    cr_assert_eq(m->chunk_count, 6);
    smelt_imx_free(m);
    tu_rmtree(dir);
}

/* ==== errors ==== */

static void expect_err(int rc, int want, const smelt_err *e, const char *msg)
{
    char got[1200];
    smelt_err_format(e, got, sizeof got);
    cr_assert_eq(rc, want, "rc %d: %s", rc, got);
    cr_assert_str_eq(got, msg);
}

Test(imatrix_collect, error_cases, .timeout = 120)
{
    char model[1024], text[1024], dir[1024], out[1100], shortt[1100], msg[16384], alias[2100];
    tiny_f32(model, sizeof model);
    text_path("calib", text, sizeof text);
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/o.gguf", dir);
    smelt_imatrix_result r;
    smelt_err e;

    /* a text shorter than 2 x n_ctx tokens; no output is left */
    snprintf(shortt, sizeof shortt, "%s/short.txt", dir);
    cr_assert_eq(tu_write(shortt, "Once upon a time.\n", 18), 0);
    int rc = run(model, shortt, out, SMELT_IMX_GGUF, 256, -1, 2, 0, &r, &e);
    snprintf(msg, sizeof msg,
             "%s: the text tokenizes to only 8 tokens; an importance matrix with a context of 256 needs at least 512 "
             "(2 x n_ctx)",
             shortt);
    expect_err(rc, SMELT_EUSAGE, &e, msg);
    cr_assert_eq(smelt_file_exists(out), 0);

    /* the output is the model, or the text, by another spelling of the path */
    snprintf(alias, sizeof alias, "%s/../%s", dir, strrchr(dir, '/') + 1);
    char mcopy[1100], alias_model[2200];
    snprintf(mcopy, sizeof mcopy, "%s/m.gguf", dir);
    size_t n;
    uint8_t *bytes = tu_read(model, &n);
    cr_assert_not_null(bytes);
    cr_assert_eq(tu_write(mcopy, bytes, n), 0);
    free(bytes);
    snprintf(alias_model, sizeof alias_model, "%s/./m.gguf", alias);
    rc = run(mcopy, text, alias_model, SMELT_IMX_GGUF, 256, -1, 2, 0, &r, &e);
    snprintf(msg, sizeof msg, "%s: output is the same file as the input %s (the model); choose another output name", alias_model, mcopy);
    expect_err(rc, SMELT_EUSAGE, &e, msg);
    rc = run(mcopy, text, text, SMELT_IMX_GGUF, 256, -1, 2, 0, &r, &e);
    snprintf(msg, sizeof msg, "%s: output is the same file as the input %s (the calibration text); choose another output name", text, text);
    expect_err(rc, SMELT_EUSAGE, &e, msg);

    /* a GGUF that is not a model (the reference imatrix itself): the first missing key */
    char notmodel[1024];
    tu_path(notmodel, sizeof notmodel, "tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf");
    rc = run(notmodel, text, out, SMELT_IMX_GGUF, 256, -1, 2, 0, &r, &e);
    snprintf(msg, sizeof msg, "%s: 'general.architecture': required key is missing (llama.cpp's loader needs it)", notmodel);
    expect_err(rc, SMELT_EFORMAT, &e, msg);

    /* a model missing a tensor: the copy with one tensor renamed */
    bytes = tu_read(mcopy, &n);
    uint8_t *p = memmem(bytes, n, "blk.3.ffn_down_exps.weight", 26);
    cr_assert_not_null(p);
    memcpy(p, "blk.3.ffn_dowX", 14);
    char broken[1100];
    snprintf(broken, sizeof broken, "%s/broken.gguf", dir);
    cr_assert_eq(tu_write(broken, bytes, n), 0);
    free(bytes);
    rc = run(broken, text, out, SMELT_IMX_GGUF, 256, -1, 2, 0, &r, &e);
    snprintf(msg, sizeof msg,
             "%s: 'blk.3.ffn_down_exps.weight': required tensor is missing (llama.cpp's loader needs it: "
             "[512, 256, 4] = [n_ff, n_embd, n_expert])",
             broken);
    expect_err(rc, SMELT_EFORMAT, &e, msg);
    cr_assert_eq(smelt_file_exists(out), 0);

    /* a context beyond the model's */
    rc = run(mcopy, text, out, SMELT_IMX_GGUF, 1u << 20, -1, 2, 0, &r, &e);
    cr_assert_eq(rc, SMELT_EUSAGE);
    /* a missing text */
    snprintf(shortt, sizeof shortt, "%s/none.txt", dir);
    rc = run(mcopy, shortt, out, SMELT_IMX_GGUF, 256, -1, 2, 0, &r, &e);
    cr_assert_eq(rc, SMELT_EIO);
    cr_assert_eq(smelt_file_exists(out), 0);
    tu_rmtree(dir);
}

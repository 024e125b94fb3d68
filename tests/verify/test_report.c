/* test_report.c — smelt-report's library: the SVG plot (escaping, axes, hollow points), the
 * Markdown and JSON renderings of a hand-made report (exact lines), and a run on quants of
 * tiny-mixtral (made with smelt_quantize_run) whose numbers equal smelt_ppl_run's exactly,
 * with and without the cache; directory expansion and the error cases. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/base/file.h"
#include "quant/quantize.h"
#include "tests/common/testutil.h"
#include "tests/verify/vfix.h"
#include "verify/eval/ppl.h"
#include "verify/eval/report.h"
#include "verify/eval/svg.h"

/* ==== the plot ==== */

Test(report, svg_escaping_and_axes)
{
    smelt_svg_point pts[] = {
        {5.0, 0.002, "Q4_K_M", false},
        {3.3, 0.03, "a<b>&\"c\" 'd'", false},
        {8.5, 0.0, "zero", false},              /* not on a log axis: hollow, bottom edge */
        {6.5, 0.0005, "bad\x01\xff utf8", true},
    };
    smelt_svg_plot p = {"Model & co: <KLD>", "sub \xc3\xa9t\xc3\xa9", "bits per weight", "KLD", pts, 4, true};
    char *s;
    size_t n;
    smelt_err e;
    cr_assert_eq(smelt_svg_render(&p, &s, &n, &e), 0);
    cr_assert_eq(strlen(s), n);
    cr_assert(strstr(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"") == s);
    cr_assert_not_null(strstr(s, ">Model &amp; co: &lt;KLD&gt;</text>"));
    cr_assert_not_null(strstr(s, ">sub \xc3\xa9t\xc3\xa9</text>"), "valid UTF-8 is kept");
    cr_assert_not_null(strstr(s, ">a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;</text>"));
    cr_assert_not_null(strstr(s, ">bad?? utf8</text>"), "control and invalid bytes replaced");
    /* decades 1e-4 .. 0.1 (0.0005 .. 0.03): labels 1e-4, 0.001, 0.01, 0.1 */
    cr_assert_not_null(strstr(s, ">1e-4</text>"));
    cr_assert_not_null(strstr(s, ">0.001</text>"));
    cr_assert_not_null(strstr(s, ">0.1</text>"));
    cr_assert_null(strstr(s, ">1</text>"));
    /* x from 3 to 9 by 1 */
    cr_assert_not_null(strstr(s, ">3</text>"));
    cr_assert_not_null(strstr(s, ">9</text>"));
    /* three filled circles, one hollow, one square */
    size_t filled = 0, hollow = 0;
    for (const char *q = s; (q = strstr(q, "<circle")); q++) {
        const char *end = strchr(q, '>');
        if (memmem(q, (size_t)(end - q), "fill=\"#1f77b4\"", 14)) filled++;
        if (memmem(q, (size_t)(end - q), "fill=\"#ffffff\"", 14)) hollow++;
    }
    cr_assert_eq(filled, 2);
    cr_assert_eq(hollow, 1);
    cr_assert_not_null(strstr(s, "<rect x=\"") );
    cr_assert_not_null(strstr(s, "<polyline"));
    cr_assert(strstr(s, "</svg>\n") == s + n - 7);
    /* deterministic */
    char *s2;
    cr_assert_eq(smelt_svg_render(&p, &s2, &n, &e), 0);
    cr_assert_str_eq(s, s2);
    free(s);
    free(s2);
    /* no point with a positive value: still a valid document */
    smelt_svg_plot empty = {"t", NULL, "x", "y", NULL, 0, true};
    cr_assert_eq(smelt_svg_render(&empty, &s, &n, &e), 0);
    cr_assert_not_null(strstr(s, ">1e-6</text>"), "%s", s);
    free(s);
}

/* ==== renderings of a hand-made report ==== */

static void fill_row(smelt_report_row *w, const char *path, const char *type, int ft, uint64_t fb, uint64_t tb,
                     uint64_t np, double ppl, double err)
{
    memset(w, 0, sizeof *w);
    w->path = strdup(path);
    w->file = strdup(strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    snprintf(w->type, sizeof w->type, "%s", type);
    w->file_type = ft;
    w->file_bytes = fb;
    w->tensor_bytes = tb;
    w->n_params = np;
    w->bpw = (double)tb * 8 / (double)np;
    w->ppl = ppl;
    w->ppl_err = err;
}

static smelt_report *handmade(void)
{
    smelt_report *r = calloc(1, sizeof *r);
    r->model = strdup("Tiny | Mixtral");
    r->text = strdup("samples/text/eval-zh.txt");
    r->n_ctx = 256;
    r->n_chunks = 20;
    r->n_scored = 2540;
    fill_row(&r->base, "out/m-bf16.gguf", "BF16", 32, 18203168, 18113536, 9050368, 63.12176599, 1.7321);
    r->rows = calloc(1, sizeof *r->rows);
    r->n = 1;
    smelt_report_row *w = &r->rows[0];
    fill_row(w, "out/m-Q4_K_M.gguf", "Q4_K_M", 15, 5751552, 5661952, 9050368, 63.5, 1.74);
    w->ppl_ratio = 1.006;
    w->ppl_ratio_err = 0.0012;
    w->kld = 0.002069;
    w->kld_err = 0.000089;
    w->kld_p99 = 0.01453;
    w->same_top = 0.958;
    w->same_top_err = 0.004;
    return r;
}

Test(report, markdown_and_json)
{
    smelt_report *r = handmade();
    char *s;
    size_t n;
    smelt_err e;
    cr_assert_eq(smelt_report_markdown(r, &s, &n, &e), 0);
    cr_assert(strstr(s, "## Quantization quality: Tiny _ Mixtral\n") == s, "%s", s);
    cr_assert_not_null(strstr(s, "\n| BF16 (base) | `m-bf16.gguf` | 18.20 MB | 16.01 | 63.1218 ± 1.7321 | — | — | — | — |\n"), "%s", s);
    cr_assert_not_null(strstr(s, "\n| Q4_K_M | `m-Q4_K_M.gguf` | 5.75 MB | 5.00 | 63.5000 ± 1.7400 | +0.60 ± 0.12 % | "
                                 "0.002069 ± 0.000089 | 0.014530 | 95.80 ± 0.40 % |\n"), "%s", s);
    cr_assert_not_null(strstr(s, "20 chunks of 256 tokens (2540 tokens scored)"));
    free(s);

    cr_assert_eq(smelt_report_json(r, &s, &n, &e), 0);
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "schema")), "smelt-report/1");
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), "Tiny | Mixtral");
    json_t *q = json_array_get(json_object_get(j, "quants"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(q, "type")), "Q4_K_M");
    cr_assert_eq(json_integer_value(json_object_get(q, "file_type")), 15);
    cr_assert_float_eq(json_real_value(json_object_get(q, "delta_ppl_pct")), 0.6, 1e-9);
    cr_assert_float_eq(json_real_value(json_object_get(json_object_get(q, "kld"), "p99")), 0.01453, 1e-12);
    cr_assert_null(json_object_get(json_object_get(j, "base"), "kld"), "the base has no KLD");
    json_decref(j);
    free(s);

    cr_assert_eq(smelt_report_svg(r, &s, &n, &e), 0);
    cr_assert_not_null(strstr(s, ">Tiny | Mixtral: KL-divergence vs size (base BF16, PPL 63.1218)</text>"), "%s", s);
    cr_assert_not_null(strstr(s, ">Q4_K_M</text>"));
    free(s);
    smelt_report_free(r);
}

/* ==== a run on real files ==== */

static void quantize(const char *in, const char *out, const char *type)
{
    smelt_quantize_opts o;
    smelt_quantize_opts_default(&o);
    o.ftype = type;
    o.n_threads = 2;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_quantize_run(&o, in, out, NULL, &e);
    char msg[1200];
    smelt_err_format(&e, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s", msg);
}

static smelt_report *report(const char *base, const char *text, const char *const *q, size_t nq, const char *cache,
                            int *rc_out, smelt_err *e)
{
    smelt_report_opts o;
    smelt_report_opts_default(&o);
    o.base = base;
    o.text = text;
    o.quants = q;
    o.n_quants = nq;
    o.n_ctx = 256;
    o.n_chunks = 4;
    o.n_threads = 2;
    o.cache_dir = cache;
    smelt_report *r = NULL;
    smelt_err_clear(e);
    *rc_out = smelt_report_run(&o, &r, e);
    return r;
}

Test(report, equals_perplexity_and_cache, .timeout = 300)
{
    char base[4200], text[4200], dir[1024], q8[1100], q4[1100], cache[1100], kld[1100];
    vf_tiny_smelt("f16", base, sizeof base);
    tu_path(text, sizeof text, "samples/text/eval-en.txt");
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(q8, sizeof q8, "%s/m-Q8_0.gguf", dir);
    snprintf(q4, sizeof q4, "%s/m-Q4_K_M.gguf", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(kld, sizeof kld, "%s/base.kld", dir);
    quantize(base, q8, "Q8_0");
    quantize(base, q4, "Q4_K_M");

    /* the same measurements by smelt_ppl_run */
    smelt_ppl_opts po;
    smelt_ppl_result pb, pq[2];
    smelt_err e;
    smelt_ppl_opts_default(&po);
    po.model = base;
    po.text = text;
    po.n_ctx = 256;
    po.n_chunks = 4;
    po.n_threads = 1;
    po.kld_base = kld;
    cr_assert_eq(smelt_ppl_run(&po, &pb, NULL, NULL, &e), 0);
    const char *qs[2] = {q4, q8};
    for (int i = 0; i < 2; i++) {
        smelt_ppl_opts_default(&po);
        po.model = qs[i];
        po.kld_in = kld;
        po.n_threads = 1;
        cr_assert_eq(smelt_ppl_run(&po, &pq[i], NULL, NULL, &e), 0);
    }

    int rc;
    char *md[3], *js[3];
    size_t n;
    for (int pass = 0; pass < 3; pass++) { /* measured, cached, no cache */
        smelt_report *r = report(base, text, qs, 2, pass < 2 ? cache : NULL, &rc, &e);
        char msg[1200];
        smelt_err_format(&e, msg, sizeof msg);
        cr_assert_eq(rc, 0, "%s", msg);
        cr_assert_eq(r->n, 2);
        cr_assert_eq(r->base.cached, pass == 1);
        cr_assert_eq(r->base.ppl, pb.ppl);
        cr_assert_eq(r->base.ppl_err, pb.ppl_err);
        cr_assert_eq(r->n_chunks, 4);
        cr_assert_eq(r->n_scored, 4 * 127);
        cr_assert_str_eq(r->rows[0].type, "Q8_0"); /* higher bpw first */
        cr_assert_str_eq(r->rows[1].type, "Q4_K_M");
        for (int i = 0; i < 2; i++) {
            const smelt_report_row *w = &r->rows[1 - i];
            const smelt_kld_stats *k = &pq[i].kld;
            cr_assert_eq(w->cached, pass == 1);
            cr_assert_eq(w->ppl, k->ppl);
            cr_assert_eq(w->ppl_err, k->ppl_err);
            cr_assert_eq(w->ppl_ratio, k->ratio);
            cr_assert_eq(w->ppl_ratio_err, k->ratio_err);
            cr_assert_eq(w->kld, k->kld);
            cr_assert_eq(w->kld_err, k->kld_err);
            cr_assert_eq(w->kld_p99, k->kld_p99);
            cr_assert_eq(w->kld_max, k->kld_max);
            cr_assert_eq(w->same_top, k->same_top);
            cr_assert_eq(w->dp_rms, k->dp_rms);
            cr_assert_gt(w->kld, 0);
        }
        cr_assert_eq(smelt_report_markdown(r, &md[pass], &n, &e), 0);
        cr_assert_eq(smelt_report_json(r, &js[pass], &n, &e), 0);
        smelt_report_free(r);
    }
    for (int pass = 1; pass < 3; pass++) {
        cr_assert_str_eq(md[pass], md[0]);
        cr_assert_str_eq(js[pass], js[0]);
    }
    for (int pass = 0; pass < 3; pass++) free(md[pass]), free(js[pass]);
    smelt_ppl_result_free(&pb);
    smelt_ppl_result_free(&pq[0]);
    smelt_ppl_result_free(&pq[1]);

    /* a directory: its *.gguf (not the base, not an imatrix) */
    char dq[1100], imx[1200], bcopy[1200], ref[4200];
    snprintf(dq, sizeof dq, "%s/d", dir);
    cr_assert_eq(mkdir(dq, 0777), 0);
    snprintf(imx, sizeof imx, "%s/m.imatrix.gguf", dq);
    tu_path(ref, sizeof ref, "tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf");
    size_t len;
    uint8_t *bytes = tu_read(ref, &len);
    cr_assert_eq(tu_write(imx, bytes, len), 0);
    free(bytes);
    snprintf(bcopy, sizeof bcopy, "%s/m-Q8_0.gguf", dq);
    cr_assert_eq(link(q8, bcopy), 0);
    const char *dirs[1] = {dq};
    smelt_report *r = report(base, text, dirs, 1, cache, &rc, &e);
    cr_assert_eq(rc, 0);
    cr_assert_eq(r->n, 1);
    cr_assert_str_eq(r->rows[0].file, "m-Q8_0.gguf");
    cr_assert(r->rows[0].cached, "a hard link is the same file");
    smelt_report_free(r);

    /* errors: nothing to report on; a file twice (a hard link); a quant of another vocabulary */
    char msg[2400];
    r = report(base, text, dirs, 0, cache, &rc, &e);
    cr_assert_eq(rc, SMELT_EUSAGE);
    cr_assert_null(r);
    const char *twice[2] = {q8, bcopy};
    r = report(base, text, twice, 2, cache, &rc, &e);
    cr_assert_eq(rc, SMELT_EUSAGE);
    smelt_err_format(&e, msg, sizeof msg);
    char want[2400];
    snprintf(want, sizeof want, "%s: listed twice (also as %s)", bcopy, q8);
    cr_assert_str_eq(msg, want);
    char other[4200];
    tu_path(other, sizeof other, STORIES_GGUF);
    const char *oq[1] = {other};
    r = report(base, text, oq, 1, cache, &rc, &e);
    cr_assert_eq(rc, SMELT_EMISMATCH);
    smelt_err_format(&e, msg, sizeof msg);
    snprintf(want, sizeof want, "has a vocabulary of 512: not the same tokenizer");
    cr_assert_not_null(strstr(msg, want), "%s", msg);
    cr_assert_not_null(strstr(msg, other), "the quant is named: %s", msg);
    tu_rmtree(dir);
}

/* test_imatrix.c — importance matrices: llama-imatrix's reference files (GGUF and legacy
 * .dat, tests/fixtures/imatrix) read, rewritten byte for byte and converted exactly as
 * llama-imatrix converts them; llama-quantize's weights (sums / counts, uniform for
 * experts with no tokens); and malformed files with their exact error lines. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/file.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "tests/common/bytes.h"
#include "tests/common/testutil.h"

#define FIX_GGUF "tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf"
#define FIX_DAT "tests/fixtures/imatrix/tiny-mixtral-calib-c256.dat"

static smelt_imx *read_fixture(const char *rel)
{
    char p[4096];
    tu_path(p, sizeof p, rel);
    if (!smelt_file_exists(p)) return NULL;
    smelt_imx *m;
    smelt_err e;
    cr_assert_eq(smelt_imx_read(p, &m, &e), 0, "%s", e.msg);
    return m;
}

static char *err_line(const smelt_err *e)
{
    static char line[1200];
    smelt_err_format(e, line, sizeof line);
    return line;
}

Test(imatrix, reads_llama_gguf)
{
    smelt_imx *m = read_fixture(FIX_GGUF);
    if (!m) cr_skip_test("fixture %s not present", FIX_GGUF);
    cr_assert_eq(m->format, SMELT_IMX_GGUF);
    cr_assert_eq(m->n_entries, 32);
    cr_assert(m->has_metadata);
    cr_assert_eq(m->n_datasets, 1);
    cr_assert_str_eq(m->datasets[0], "samples/text/calib.txt");
    cr_assert_eq(m->chunk_count, 93);
    cr_assert_eq(m->chunk_size, 256);
    const smelt_imx_entry *d = smelt_imx_find(m, "blk.0.ffn_down_exps.weight");
    cr_assert(d);
    cr_assert_eq(d->n_values, 2048);
    cr_assert_eq(d->n_mat, 4);
    int64_t want[4] = {13762, 11475, 6673, 15706};
    for (int j = 0; j < 4; j++) cr_assert_eq(d->counts[j], want[j]);
    const smelt_imx_entry *q = smelt_imx_find(m, "blk.3.attn_q.weight");
    cr_assert_eq(q->n_mat, 1);
    cr_assert_eq(q->counts[0], 23808);
    cr_assert_null(smelt_imx_find(m, "output.weight"), "not collected without --process-output");
    cr_assert_null(smelt_imx_find(m, "blk.0.ffn_down_exps.weight.in_sum2"));
    /* weights: sums / count per expert */
    float *w = malloc(d->n_values * sizeof *w);
    uint64_t zero = 9;
    cr_assert_eq(smelt_imx_weights(m, d, w, &zero, NULL), 0);
    cr_assert_eq(zero, 0);
    cr_assert_eq(w[600], d->sums[600] / 11475.0f, "column 88 of expert 1");
    free(w);
    smelt_imx_free(m);
}

Test(imatrix, reads_llama_legacy_dat)
{
    smelt_imx *m = read_fixture(FIX_DAT);
    if (!m) cr_skip_test("fixture %s not present", FIX_DAT);
    cr_assert_eq(m->format, SMELT_IMX_LEGACY);
    cr_assert_eq(m->n_entries, 32);
    cr_assert_eq(m->chunk_count, 93);
    cr_assert_eq(m->n_datasets, 1);
    cr_assert_str_eq(m->datasets[0], "samples/text/calib.txt");
    static const char *exps[4] = {"blk.0.ffn_down_exps.weight", "blk.1.ffn_up_exps.weight",
                                  "blk.2.ffn_gate_exps.weight", "blk.3.ffn_down_exps.weight"};
    static const int64_t ncall[4] = {62, 55, 87, 90};
    for (int i = 0; i < 4; i++) cr_assert_eq(smelt_imx_find(m, exps[i])->counts[0], ncall[i], "%s", exps[i]);
    cr_assert_eq(smelt_imx_find(m, "blk.2.attn_v.weight")->counts[0], 93);
    smelt_imx_free(m);
}

/* The two files hold the same statistics: their weights agree to f32 rounding. */
Test(imatrix, gguf_and_legacy_weights_agree)
{
    smelt_imx *g = read_fixture(FIX_GGUF), *l = read_fixture(FIX_DAT);
    if (!g || !l) cr_skip_test("imatrix fixtures not present");
    float *a = malloc(2048 * 4), *b = malloc(2048 * 4);
    double worst = 0;
    for (size_t i = 0; i < g->n_entries; i++) {
        const smelt_imx_entry *x = &g->entries[i], *y = smelt_imx_find(l, x->name);
        cr_assert(y, "%s", x->name);
        cr_assert_eq(x->n_values, y->n_values);
        cr_assert_eq(smelt_imx_weights(g, x, a, NULL, NULL), 0);
        cr_assert_eq(smelt_imx_weights(l, y, b, NULL, NULL), 0);
        for (uint64_t k = 0; k < x->n_values; k++) {
            double r = fabs((double)a[k] - b[k]) / fmax(fabs(a[k]), 1e-30);
            if (r > worst) worst = r;
        }
    }
    cr_assert_lt(worst, 2.5e-7, "worst relative difference %g", worst);
    free(a);
    free(b);
    smelt_imx_free(g);
    smelt_imx_free(l);
}

/* Rewriting gives llama-imatrix's bytes back; GGUF → legacy is llama-imatrix's conversion. */
Test(imatrix, writes_byte_identical)
{
    smelt_imx *g = read_fixture(FIX_GGUF), *l = read_fixture(FIX_DAT);
    if (!g || !l) cr_skip_test("imatrix fixtures not present");
    char dir[4096], p[4200], fg[4096], fd[4096];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    tu_path(fg, sizeof fg, FIX_GGUF);
    tu_path(fd, sizeof fd, FIX_DAT);
    smelt_err e;
    snprintf(p, sizeof p, "%s/a.gguf", dir);
    cr_assert_eq(smelt_imx_write(g, p, SMELT_IMX_GGUF, &e), 0, "%s", e.msg);
    cr_assert_eq(tu_cmp_files(p, fg), 0, "GGUF rewrite differs");
    snprintf(p, sizeof p, "%s/b.dat", dir);
    cr_assert_eq(smelt_imx_write(l, p, SMELT_IMX_LEGACY, &e), 0, "%s", e.msg);
    cr_assert_eq(tu_cmp_files(p, fd), 0, "legacy rewrite differs");
    snprintf(p, sizeof p, "%s/c.dat", dir);
    cr_assert_eq(smelt_imx_write(g, p, SMELT_IMX_LEGACY, &e), 0, "%s", e.msg);
    cr_assert_eq(tu_cmp_files(p, fd), 0, "GGUF → legacy differs from llama-imatrix's conversion");
    /* legacy → GGUF: one count per entry (the format has no per-expert counts) */
    snprintf(p, sizeof p, "%s/d.gguf", dir);
    smelt_imx *l2 = l;
    l2->chunk_size = 256;
    cr_assert_eq(smelt_imx_write(l2, p, SMELT_IMX_GGUF, &e), 0, "%s", e.msg);
    smelt_imx *back;
    cr_assert_eq(smelt_imx_read(p, &back, &e), 0, "%s", e.msg);
    const smelt_imx_entry *x = smelt_imx_find(back, "blk.0.ffn_down_exps.weight");
    cr_assert_eq(x->n_mat, 1);
    cr_assert_eq(x->counts[0], 62 * 256);
    smelt_imx_free(back);
    l2->chunk_size = 0;
    cr_assert_eq(smelt_imx_write(l2, p, SMELT_IMX_GGUF, &e), SMELT_EUSAGE);
    cr_assert_str_eq(e.msg, "converting a legacy imatrix to the GGUF format needs its chunk size (tokens per chunk)");
    tu_rmtree(dir);
    smelt_imx_free(g);
    smelt_imx_free(l);
}

Test(imatrix, built_accumulated_and_zero_count_experts)
{
    smelt_imx *m = smelt_imx_new();
    smelt_err e;
    float s[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t c[4] = {2, 0, 4, 0};
    cr_assert_eq(smelt_imx_add(m, "blk.0.ffn_up_exps.weight", 8, 4, s, c, &e), 0);
    cr_assert_eq(smelt_imx_add(m, "blk.0.ffn_up_exps.weight", 8, 4, s, c, &e), 0);
    cr_assert_eq(smelt_imx_add(m, "a.weight", 8, 2, s, c, &e), 0);
    cr_assert_str_eq(m->entries[0].name, "a.weight", "kept sorted");
    cr_assert_eq(smelt_imx_add(m, "blk.0.ffn_up_exps.weight", 8, 2, s, c, &e), SMELT_EMISMATCH);
    cr_assert_str_eq(err_line(&e), "'blk.0.ffn_up_exps.weight': has 8 values in 4 matrices, cannot add 8 in 2");
    const smelt_imx_entry *en = smelt_imx_find(m, "blk.0.ffn_up_exps.weight");
    float w[8];
    uint64_t zero;
    cr_assert_eq(smelt_imx_weights(m, en, w, &zero, &e), 0);
    cr_assert_eq(zero, 2);
    float want[8] = {2.0f / 4, 4.0f / 4, 1, 1, 10.0f / 8, 12.0f / 8, 1, 1};
    for (int i = 0; i < 8; i++) cr_assert_eq(w[i], want[i], "w[%d] = %g", i, (double)w[i]);
    /* a GGUF → legacy write skips entries with no data, like llama-imatrix */
    int64_t z[1] = {0};
    cr_assert_eq(smelt_imx_add(m, "dead.weight", 2, 1, s, z, &e), 0);
    m->chunk_size = 4;
    cr_assert_eq(smelt_imx_add_dataset(m, "calib.txt", &e), 0);
    char dir[4096], p[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/x.dat", dir);
    cr_assert_eq(smelt_imx_write(m, p, SMELT_IMX_LEGACY, &e), 0, "%s", e.msg);
    smelt_imx *l;
    cr_assert_eq(smelt_imx_read(p, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l->n_entries, 2);
    cr_assert_null(smelt_imx_find(l, "dead.weight"));
    const smelt_imx_entry *le = smelt_imx_find(l, "blk.0.ffn_up_exps.weight");
    cr_assert_eq(le->counts[0], 2, "ncall = ceil(max count 8 / chunk 4)");
    cr_assert_eq(le->sums[2], 2.0f, "an expert with no tokens is stored as 1 x ncall");
    cr_assert_eq(le->sums[4], 10.0f / 8 * 2);
    cr_assert_str_eq(l->datasets[0], "calib.txt");
    smelt_imx_free(l);
    /* a non-finite sum is refused when weights are made */
    float bad[2] = {NAN, 1};
    int64_t one[1] = {1};
    cr_assert_eq(smelt_imx_add(m, "nan.weight", 2, 1, bad, one, &e), 0);
    cr_assert_eq(smelt_imx_weights(m, smelt_imx_find(m, "nan.weight"), w, NULL, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "'nan.weight': importance weight 0 is nan (expected a finite value >= 0)");
    tu_rmtree(dir);
    smelt_imx_free(m);
}

/* Exact sums: 128-bit fixed point with 2^-64 units; the carry between the words; what is
 * refused; and the same sum whatever the order and grouping of the additions. */
Test(imatrix, exact_fixed_point_sums)
{
    uint64_t a[2] = {0, 0};
    cr_assert(smelt_imx_fixed_add_double(a, 0.0));
    cr_assert(smelt_imx_fixed_add_double(a, 0.5));
    cr_assert(a[0] == 1ull << 63 && a[1] == 0);
    cr_assert(smelt_imx_fixed_add_double(a, 0.5));
    cr_assert(a[0] == 0 && a[1] == 1, "carry into the integer word");
    cr_assert(smelt_imx_fixed_add_double(a, 0x1p-64));
    cr_assert(smelt_imx_fixed_add_double(a, 0x1p-70), "below the unit: truncated, not refused");
    cr_assert(a[0] == 1 && a[1] == 1);
    cr_assert(smelt_imx_fixed_add_double(a, 0x1p63 + 0x1p11));
    cr_assert(a[1] == 1 + (1ull << 63) + (1ull << 11));
    cr_assert_not(smelt_imx_fixed_add_double(a, 0x1p64));
    cr_assert_not(smelt_imx_fixed_add_double(a, -1.0));
    cr_assert_not(smelt_imx_fixed_add_double(a, INFINITY));
    cr_assert_not(smelt_imx_fixed_add_double(a, NAN));
    uint64_t big[2] = {0, UINT64_MAX}, one[2] = {0, 1};
    cr_assert_not(smelt_imx_fixed_add(big, one), "integer overflow is reported");
    uint64_t x[2] = {0, 3};
    cr_assert_eq(smelt_imx_fixed_f32(x), 3.0f);
    /* 1000 squares: one chain vs three groups added in another order */
    uint64_t all[2] = {0, 0}, g[3][2] = {{0, 0}, {0, 0}, {0, 0}};
    uint32_t r = 12345;
    for (int i = 0; i < 1000; i++) {
        r = r * 1664525u + 1013904223u;
        float v = (float)((double)r / 4294967296.0 * 200.0 - 100.0) * (i % 7 ? 1.0f : 1e-9f);
        double sq = (double)v * v;
        cr_assert(smelt_imx_fixed_add_double(all, sq));
        cr_assert(smelt_imx_fixed_add_double(g[i % 3], sq));
    }
    cr_assert(smelt_imx_fixed_add(g[2], g[0]) && smelt_imx_fixed_add(g[2], g[1]));
    cr_assert(g[2][0] == all[0] && g[2][1] == all[1]);
}

/* A slice's exact sums: written beside the f32 ones, read back; a wrong tensor is refused. */
Test(imatrix, exact_sums_written_and_read)
{
    char dir[4096], p[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/s.gguf", dir);
    smelt_imx *m = smelt_imx_new();
    smelt_err e;
    float s[2] = {1.5f, 2};
    int64_t c[1] = {3};
    cr_assert_eq(smelt_imx_add(m, "a.weight", 2, 1, s, c, &e), 0);
    smelt_imx_entry *en = (smelt_imx_entry *)smelt_imx_find(m, "a.weight");
    en->exact = calloc(4, sizeof(uint64_t));
    en->exact[0] = 1ull << 63, en->exact[1] = 1, en->exact[3] = 2;
    m->chunk_size = 3;
    m->write_exact = true;
    cr_assert_eq(smelt_imx_write(m, p, SMELT_IMX_GGUF, &e), 0, "%s", e.msg);
    smelt_imx *r;
    cr_assert_eq(smelt_imx_read(p, &r, &e), 0, "%s", e.msg);
    cr_assert_not_null(r->entries[0].exact);
    cr_assert_eq(memcmp(r->entries[0].exact, en->exact, 4 * sizeof(uint64_t)), 0);
    smelt_imx_free(r);
    smelt_imx_free(m);
    /* an exact tensor of the wrong type */
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    uint64_t n2[1] = {2}, n1[1] = {1}, n4[1] = {4};
    const float z[4] = {1, 1, 1, 1};
    cr_assert_eq(smelt_gguf_writer_add_tensor(w, "a.weight.in_sum2", 1, n2, SMELT_TYPE_F32, &e), 0);
    cr_assert_eq(smelt_gguf_writer_add_tensor(w, "a.weight.counts", 1, n1, SMELT_TYPE_F32, &e), 0);
    cr_assert_eq(smelt_gguf_writer_add_tensor(w, "a.weight.in_sum2.exact", 1, n4, SMELT_TYPE_F32, &e), 0);
    cr_assert_eq(smelt_gguf_writer_begin(w, p, &e), 0);
    cr_assert_eq(smelt_gguf_writer_write(w, z, 8, &e), 0);
    cr_assert_eq(smelt_gguf_writer_write(w, z, 4, &e), 0);
    cr_assert_eq(smelt_gguf_writer_write(w, z, 16, &e), 0);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0);
    smelt_gguf_writer_free(w);
    cr_assert_eq(smelt_imx_read(p, &r, &e), SMELT_EFORMAT);
    const char *line = err_line(&e), *msg = strstr(line, "s.gguf: ");
    cr_assert_not_null(msg, "%s", line);
    cr_assert_str_eq(msg + 8, "'a.weight.in_sum2.exact' @ byte 119 (0x77): expected an i64 tensor of 4 elements (2 per "
                              "value of 'a.weight.in_sum2'), found f32 x 4");
    tu_rmtree(dir);
}

/* Combining: llama-imatrix's GGUF and its own .dat of the same run add up to twice the
 * sums (the .dat converted with the chunk size of the GGUF); a legacy entry's one ncall is
 * spread over the experts of a GGUF entry; shapes and chunk sizes must agree. */
Test(imatrix, combine_gguf_legacy_and_mismatches)
{
    smelt_imx *g = read_fixture(FIX_GGUF), *d = read_fixture(FIX_DAT);
    if (!g || !d) cr_skip_test("fixtures missing");
    smelt_imx *in[2] = {g, d}, *out;
    const char *paths[2] = {"a.gguf", "b.dat"};
    smelt_err e;
    cr_assert_eq(smelt_imx_combine(in, paths, 2, 0, &out, &e), 0, "%s", e.msg);
    cr_assert_eq(out->n_entries, g->n_entries);
    cr_assert_eq(out->chunk_size, 256);
    cr_assert_eq(out->n_datasets, 1, "the same text once");
    const smelt_imx_entry *a = smelt_imx_find(out, "blk.0.attn_q.weight"), *x = smelt_imx_find(g, "blk.0.attn_q.weight");
    cr_assert_eq(a->counts[0], 2 * x->counts[0]);
    for (uint64_t j = 0; j < a->n_values; j++)
        cr_assert(fabsf(a->sums[j] - 2 * x->sums[j]) <= 1e-5f * a->sums[j], "sum %llu", (unsigned long long)j);
    const smelt_imx_entry *ex = smelt_imx_find(out, "blk.1.ffn_up_exps.weight");
    cr_assert_eq(ex->n_mat, 4, "the .dat's single ncall spread over the GGUF's experts");
    smelt_imx_free(out);

    smelt_imx *t = smelt_imx_new();
    float s[4] = {1, 2, 3, 4};
    int64_t c[1] = {4};
    cr_assert_eq(smelt_imx_add(t, "blk.0.attn_q.weight", 4, 1, s, c, &e), 0);
    t->chunk_size = 256;
    in[1] = t;
    cr_assert_eq(smelt_imx_combine(in, paths, 2, 0, &out, &e), SMELT_EMISMATCH);
    cr_assert_str_eq(err_line(&e), "b.dat: 'blk.0.attn_q.weight': 4 values in 1 matrices, but a.gguf has 256 in 1 "
                                   "(imatrices of different models?)");
    t->chunk_size = 128;
    cr_assert_eq(smelt_imx_combine(in, paths, 2, 0, &out, &e), SMELT_EMISMATCH);
    cr_assert_str_eq(err_line(&e), "b.dat: collected over chunks of 128 tokens, but a.gguf over chunks of 256: combine "
                                   "imatrices made with the same context size");
    /* statistics of the toy: a = sums / 4 = .25 .5 .75 1 */
    smelt_imx_stat *st;
    cr_assert_eq(smelt_imx_stats(t, &st, &e), 0);
    cr_assert_eq(st[0].n_values, 4);
    cr_assert_float_eq(st[0].sum, 2.5, 1e-12);
    cr_assert_float_eq(st[0].mean, 0.625, 1e-12);
    cr_assert_float_eq(st[0].stddev, sqrt(0.078125), 1e-12);
    cr_assert_float_eq(st[0].z_above_1, 0.25, 1e-12, "1 is 1.34 stddev above the mean");
    cr_assert_eq(st[0].layer, 0);
    cr_assert(isnan(st[0].cossim), "no block before block 0");
    free(st);
    smelt_imx_free(t);
    smelt_imx_free(g);
    smelt_imx_free(d);
}

/* ==== malformed files: each with its exact error line ==== */

static int read_bytes(const tb_buf *b, smelt_err *e)
{
    smelt_imx *m = NULL;
    int rc = smelt_imx_read_mem(b->p, b->len, "x.imatrix", &m, e);
    cr_assert(rc ? m == NULL : m != NULL);
    smelt_imx_free(m);
    return rc;
}

static void legacy_entry(tb_buf *b, const char *name, int32_t ncall, int32_t nval, int write_vals)
{
    tb_u32(b, (uint32_t)strlen(name));
    tb_put(b, name, strlen(name));
    tb_u32(b, (uint32_t)ncall);
    tb_u32(b, (uint32_t)nval);
    for (int i = 0; i < write_vals; i++) tb_f32(b, 1.0f);
}

Test(imatrix, malformed_legacy)
{
    smelt_err e;
    tb_buf b = {0};
    tb_u16(&b, 7);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: @ byte 0 (0x0): file of 2 bytes is neither a GGUF imatrix nor a legacy imatrix");
    tb_free(&b);

    tb_u32(&b, 0);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: @ byte 0 (0x0): legacy imatrix: entry count 0, expected at least 1");
    tb_free(&b);

    tb_u32(&b, 1000000);
    legacy_entry(&b, "a.weight", 1, 2, 2);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: @ byte 0 (0x0): legacy imatrix: 1000000 entries cannot fit in 32 bytes");
    tb_free(&b);

    tb_u32(&b, 2);
    legacy_entry(&b, "a.weight", 1, 2, 2);
    tb_u32(&b, (uint32_t)-5);
    tb_zeros(&b, 20);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: @ byte 32 (0x20): legacy imatrix: entry 2 name length -5 (expected 1..4096 within the file)");
    tb_free(&b);

    tb_u32(&b, 1);
    legacy_entry(&b, "a.weight", 1, 4, 2);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: 'a.weight' @ byte 20 (0x14): legacy imatrix: 4 values (expected 1..2 that fit in the file)");
    tb_free(&b);

    tb_u32(&b, 2);
    legacy_entry(&b, "a.weight", 1, 1, 1);
    legacy_entry(&b, "a.weight", 1, 1, 1);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: 'a.weight' @ byte 40 (0x28): legacy imatrix: duplicate entry");
    tb_free(&b);

    tb_u32(&b, 1);
    legacy_entry(&b, "a.weight", 1, 1, 1);
    tb_u32(&b, 3);
    tb_u32(&b, 50);
    tb_put(&b, "short", 5);
    cr_assert_eq(read_bytes(&b, &e), SMELT_EFORMAT);
    cr_assert_str_eq(err_line(&e), "x.imatrix: @ byte 32 (0x20): legacy imatrix: dataset name of 50 bytes exceeds the 5 bytes left");
    tb_free(&b);

    /* valid, without the optional trailer */
    tb_u32(&b, 1);
    legacy_entry(&b, "a.weight", 3, 2, 2);
    smelt_imx *m;
    cr_assert_eq(smelt_imx_read_mem(b.p, b.len, "ok", &m, &e), 0, "%s", e.msg);
    cr_assert_eq(m->chunk_count, 0);
    cr_assert_eq(m->n_datasets, 0);
    float w[2];
    cr_assert_eq(smelt_imx_weights(m, &m->entries[0], w, NULL, &e), 0);
    cr_assert_eq(w[0], 1.0f / 3);
    smelt_imx_free(m);
    tb_free(&b);
}

/* GGUF imatrix files with one fault each, written with the GGUF writer. */
typedef struct gspec {
    int sums_type, counts_type;
    uint64_t sums_ne1, counts_ne1;
    float count;
    int no_counts, no_sums, extra_only, no_meta;
} gspec;

static int write_gguf_imx(const char *path, const gspec *s)
{
    smelt_err e;
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    if (!s->no_meta) {
        const char *ds[1] = {"calib.txt"};
        smelt_gguf_writer_set_str(w, "general.type", "imatrix", &e);
        smelt_gguf_writer_set_arr_str(w, "imatrix.datasets", ds, NULL, 1, &e);
        smelt_gguf_writer_set_u32(w, "imatrix.chunk_count", 3, &e);
        smelt_gguf_writer_set_u32(w, "imatrix.chunk_size", 8, &e);
    }
    uint64_t ne_s[2] = {4, s->sums_ne1}, ne_c[2] = {1, s->counts_ne1}, ne_x[1] = {4};
    if (s->extra_only) smelt_gguf_writer_add_tensor(w, "something.else", 1, ne_x, SMELT_TYPE_F32, &e);
    if (!s->no_sums) smelt_gguf_writer_add_tensor(w, "a.weight.in_sum2", 2, ne_s, s->sums_type, &e);
    if (!s->no_counts) smelt_gguf_writer_add_tensor(w, "a.weight.counts", 2, ne_c, s->counts_type, &e);
    int rc = smelt_gguf_writer_begin(w, path, &e);
    uint8_t zeros[64] = {0};
    float cnt[8];
    for (int i = 0; i < 8; i++) cnt[i] = s->count;
    if (s->extra_only) rc |= smelt_gguf_writer_write(w, zeros, 16, &e);
    if (!s->no_sums) {
        uint64_t n = 4 * s->sums_ne1 * (s->sums_type == SMELT_TYPE_F32 ? 4 : 2);
        rc |= smelt_gguf_writer_write(w, zeros, n, &e);
    }
    if (!s->no_counts) rc |= smelt_gguf_writer_write(w, cnt, s->counts_ne1 * (s->counts_type == SMELT_TYPE_F32 ? 4 : 2), &e);
    rc |= smelt_gguf_writer_commit(w, &e);
    if (rc) cr_log_error("writing the test imatrix: %s", e.msg);
    smelt_gguf_writer_free(w);
    return rc;
}

Test(imatrix, malformed_gguf)
{
    char dir[4096], p[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p, sizeof p, "%s/m.gguf", dir);
    const gspec ok = {SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 2, 5.0f, 0, 0, 0, 0};
    struct { gspec s; int code; const char *want; } cases[] = {
        {{SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 2, 5.0f, 1, 0, 0, 0}, SMELT_EFORMAT,
         "'a.weight.in_sum2' @ byte 189 (0xbd): has no matching 'a.weight.counts' tensor"},
        {{SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 2, 5.0f, 0, 1, 0, 0}, SMELT_EFORMAT,
         "'a.weight.counts' @ byte 189 (0xbd): has no matching 'a.weight.in_sum2' tensor"},
        {{SMELT_TYPE_F16, SMELT_TYPE_F32, 2, 2, 5.0f, 0, 0, 0, 0}, SMELT_EFORMAT,
         "'a.weight.in_sum2' @ byte 189 (0xbd): type is f16, expected f32"},
        {{SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 3, 5.0f, 0, 0, 0, 0}, SMELT_EFORMAT,
         "'a.weight.in_sum2' @ byte 189 (0xbd): shape [4, 2] does not fit 3 counts in 'a.weight.counts'"},
        {{SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 2, -1.0f, 0, 0, 0, 0}, SMELT_EFORMAT,
         "'a.weight.counts' @ byte 352 (0x160): count 0 is -1 (expected a finite value >= 0)"},
        {{SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 2, NAN, 0, 0, 0, 0}, SMELT_EFORMAT,
         "'a.weight.counts' @ byte 352 (0x160): count 0 is nan (expected a finite value >= 0)"},
        {{SMELT_TYPE_F32, SMELT_TYPE_F32, 2, 2, 5.0f, 1, 1, 1, 0}, SMELT_EFORMAT,
         "no imatrix entries: none of the 1 tensors is named <weight>.in_sum2"},
    };
    char line[1500];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(write_gguf_imx(p, &cases[i].s), 0, "case %zu", i);
        smelt_imx *m;
        smelt_err e;
        cr_assert_eq(smelt_imx_read(p, &m, &e), cases[i].code, "case %zu", i);
        smelt_err_format(&e, line, sizeof line);
        const char *msg = strstr(line, "m.gguf: ") ? strstr(line, "m.gguf: ") + 8 : line;
        cr_assert_str_eq(msg, cases[i].want, "case %zu", i);
    }
    /* no tensors at all */
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    smelt_err e;
    smelt_gguf_writer_set_str(w, "general.type", "imatrix", &e);
    cr_assert_eq(smelt_gguf_writer_begin(w, p, &e), 0);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0);
    smelt_gguf_writer_free(w);
    smelt_imx *m;
    cr_assert_eq(smelt_imx_read(p, &m, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    cr_assert(strstr(line, "m.gguf: GGUF imatrix has no tensors (expected <weight>.in_sum2 and <weight>.counts pairs)"), "%s", line);
    /* valid without metadata: readable, flagged (smelt-quantize refuses it, as llama-quantize) */
    gspec nm = ok;
    nm.no_meta = 1;
    cr_assert_eq(write_gguf_imx(p, &nm), 0);
    cr_assert_eq(smelt_imx_read(p, &m, &e), 0, "%s", e.msg);
    cr_assert_not(m->has_metadata);
    cr_assert_eq(m->entries[0].n_mat, 2);
    cr_assert_eq(m->entries[0].counts[1], 5);
    smelt_imx_free(m);
    tu_rmtree(dir);
}

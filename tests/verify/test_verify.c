/* test_verify.c — integrity scans (hashes against llama-gguf-hash and libggml's reader,
 * NaN/Inf counts), manifests written and checked, and tensor-wise diffs. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "formats/base/half.h"
#include "formats/gguf.h"
#include "tests/common/testutil.h"
#include "verify/integrity/diff.h"
#include "verify/integrity/integrity.h"

static const char *TINY_RANDOM = "tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf";
static const char *BABY_GGUF = "tests/fixtures/external/llama2c-babyllama-tok105/validation/reference_f32_from_bin_gguf-py.gguf";

static smelt_checkpoint *vm(const char *rel)
{
    char p[4200];
    if (rel[0] == '/') snprintf(p, sizeof p, "%s", rel);
    else tu_path(p, sizeof p, rel);
    smelt_checkpoint *m = NULL;
    smelt_err e = {0};
    cr_assert_eq(smelt_checkpoint_open(p, &m, &e), 0, "%s: %s", p, e.msg);
    return m;
}

static void scan(const smelt_checkpoint *m, int threads, smelt_verify_result *r)
{
    smelt_verify_opts o;
    smelt_verify_opts_default(&o);
    o.n_threads = threads;
    smelt_err e = {0};
    cr_assert_eq(smelt_verify_scan(m, &o, r, &e), 0, "%s", e.msg);
}

/* ==== crafted GGUF files ==== */

typedef struct {
    const char *name;
    int type;
    uint64_t ne0, ne1;
    const void *data;
} tdesc;

static void write_gguf(const char *path, const tdesc *t, size_t n, const char *gname, const char *extra_key)
{
    smelt_err e = {0};
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    cr_assert_eq(smelt_gguf_writer_set_str(w, "general.architecture", "llama", &e), 0);
    cr_assert_eq(smelt_gguf_writer_set_str(w, "general.name", gname, &e), 0);
    if (extra_key) cr_assert_eq(smelt_gguf_writer_set_u32(w, extra_key, 7, &e), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t ne[2] = {t[i].ne0, t[i].ne1};
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, t[i].name, t[i].ne1 > 1 ? 2 : 1, ne, t[i].type, &e), 0, "%s", e.msg);
    }
    cr_assert_eq(smelt_gguf_writer_begin(w, path, &e), 0, "%s", e.msg);
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes;
        cr_assert_eq(smelt_type_row_bytes(t[i].type, t[i].ne0, &bytes, &e), 0);
        cr_assert_eq(smelt_gguf_writer_write(w, t[i].data, (size_t)(bytes * t[i].ne1), &e), 0, "%s", e.msg);
    }
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
}

/* ==== hashes ==== */

Test(verify, hashes_match_llama_gguf_hash_figures)
{
    /* model and tensor hashes printed by llama-gguf-hash --xxh64 (llama.cpp 80fb11a) */
    smelt_checkpoint *m = vm(TINY_RANDOM);
    smelt_verify_result r;
    scan(m, 2, &r);
    cr_assert_eq(r.n_tensors, 12);
    cr_assert_eq(r.model_xxh64, 0x3d83ed08b93846cbull);
    cr_assert_eq(r.t[0].xxh64, 0x39cd019f4143653bull);  /* token_embd.weight */
    cr_assert_eq(r.t[11].xxh64, 0xaf57143794a1d010ull); /* output.weight */
    cr_assert_eq(r.n_nan + r.n_inf, 0);
    for (uint64_t i = 0; i < r.n_tensors; i++) cr_assert_eq(r.t[i].values, SMELT_VALUES_CHECKED);
    cr_assert_float_eq(r.t[8].max_abs, 1.0f, 0); /* attn_norm: all ones */
    smelt_verify_result_free(&r);
    smelt_checkpoint_close(m);
}

/* libggml's own reader locates each tensor's bytes; our hashes must be over the same bytes. */
Test(verify, hashes_cover_the_bytes_libggml_reads)
{
    void *h = tu_oracle_ggml();
    if (!h) cr_skip_test("libggml-base not installed (make oracle)");
    struct gip {
        bool no_alloc;
        void **ctx;
    };
    void *(*init)(const char *, struct gip) = (void *(*)(const char *, struct gip))dlsym(h, "gguf_init_from_file");
    size_t (*data_off)(const void *) = (size_t(*)(const void *))dlsym(h, "gguf_get_data_offset");
    int64_t (*n_t)(const void *) = (int64_t(*)(const void *))dlsym(h, "gguf_get_n_tensors");
    size_t (*t_off)(const void *, int64_t) = (size_t(*)(const void *, int64_t))dlsym(h, "gguf_get_tensor_offset");
    size_t (*t_size)(const void *, int64_t) = (size_t(*)(const void *, int64_t))dlsym(h, "gguf_get_tensor_size");
    const char *(*t_name)(const void *, int64_t) = (const char *(*)(const void *, int64_t))dlsym(h, "gguf_get_tensor_name");
    void (*gfree)(void *) = (void (*)(void *))dlsym(h, "gguf_free");
    cr_assert(init && data_off && n_t && t_off && t_size && t_name && gfree);
    const char *files[] = {TINY_RANDOM, BABY_GGUF};
    for (int f = 0; f < 2; f++) {
        char p[4200];
        tu_path(p, sizeof p, files[f]);
        void *ctx = init(p, (struct gip){true, NULL});
        cr_assert(ctx);
        size_t len;
        uint8_t *bytes = tu_read(p, &len);
        smelt_checkpoint *m = vm(files[f]);
        smelt_verify_result r;
        scan(m, 1, &r);
        cr_assert_eq((int64_t)r.n_tensors, n_t(ctx));
        XXH64_state_t *s = XXH64_createState();
        XXH64_reset(s, 0);
        for (int64_t i = 0; i < n_t(ctx); i++) {
            size_t off = data_off(ctx) + t_off(ctx, i), sz = t_size(ctx, i);
            cr_assert_leq(off + sz, len);
            cr_assert_str_eq(smelt_checkpoint_tensor_at(m, (uint64_t)i)->name, t_name(ctx, i));
            cr_assert_eq(r.t[i].xxh64, XXH64(bytes + off, sz, 0), "%s", t_name(ctx, i));
            XXH64_update(s, bytes + off, sz);
        }
        cr_assert_eq(r.model_xxh64, XXH64_digest(s));
        XXH64_freeState(s);
        smelt_verify_result_free(&r);
        smelt_checkpoint_close(m);
        gfree(ctx);
        free(bytes);
    }
}

/* The manifest smelt writes is byte-identical to llama-gguf-hash --xxh64's output, and each
 * tool accepts the other's. */
Test(verify, manifests_interoperate_with_llama_gguf_hash)
{
    char tool[4200];
    tu_path(tool, sizeof tool, ".oracle/build/bin/llama-gguf-hash");
    if (access(tool, X_OK) != 0) cr_skip_test("llama-gguf-hash not built (make oracle)");
    char dir[512];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    const char *files[] = {TINY_RANDOM, BABY_GGUF};
    for (int f = 0; f < 2; f++) {
        char p[4200], theirs[700], ours[700], cmd[10000];
        tu_path(p, sizeof p, files[f]);
        snprintf(theirs, sizeof theirs, "%s/theirs%d", dir, f);
        snprintf(ours, sizeof ours, "%s/ours%d", dir, f);
        snprintf(cmd, sizeof cmd, "'%s' --xxh64 '%s' > '%s' 2>/dev/null", tool, p, theirs);
        cr_assert_eq(tu_run(cmd, NULL), 0);
        smelt_checkpoint *m = vm(p);
        smelt_verify_result r;
        scan(m, 2, &r);
        smelt_err e = {0};
        cr_assert_eq(smelt_manifest_write(m, &r, p, ours, &e), 0, "%s", e.msg);
        cr_assert_eq(tu_cmp_files(theirs, ours), 0, "manifest differs from llama-gguf-hash's for %s", p);
        smelt_manifest_check c;
        cr_assert_eq(smelt_manifest_check_run(theirs, m, &r, &c, &e), 0, "%s", e.msg);
        cr_assert(c.ok && c.n_ok == r.n_tensors && c.model == SMELT_MF_OK);
        smelt_manifest_check_free(&c);
        char *out = NULL;
        snprintf(cmd, sizeof cmd, "'%s' --check '%s' '%s'", tool, ours, p);
        cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
        cr_assert(strstr(out, "Success"), "%s", out);
        free(out);
        smelt_verify_result_free(&r);
        smelt_checkpoint_close(m);
    }
    tu_rmtree(dir);
}

Test(verify, safetensors_hashes_and_thread_independence)
{
    smelt_checkpoint *m = vm("samples/tiny-mixtral");
    cr_assert_eq(smelt_checkpoint_kind_of(m), SMELT_CHECKPOINT_SAFETENSORS);
    cr_assert_str_eq(smelt_checkpoint_describe(m), "safetensors (2 shards)");
    smelt_verify_result r1, r2;
    scan(m, 1, &r1);
    scan(m, 2, &r2);
    cr_assert_eq(r1.n_tensors, 79);
    XXH64_state_t *s = XXH64_createState();
    XXH64_reset(s, 0);
    for (uint64_t i = 0; i < r1.n_tensors; i++) {
        const smelt_checkpoint_tensor *t = smelt_checkpoint_tensor_at(m, i);
        cr_assert_eq(r1.t[i].xxh64, XXH64(t->data, (size_t)t->nbytes, 0));
        XXH64_update(s, t->data, (size_t)t->nbytes);
        cr_assert_eq(r1.t[i].xxh64, r2.t[i].xxh64);
        cr_assert_eq(r1.t[i].max_abs, r2.t[i].max_abs);
        cr_assert_eq(r1.t[i].values, SMELT_VALUES_CHECKED);
    }
    cr_assert_eq(r1.model_xxh64, XXH64_digest(s));
    cr_assert_eq(r1.model_xxh64, r2.model_xxh64);
    cr_assert_eq(r1.data_bytes, 9909504 + 8200480 - smelt_st_data_offset(smelt_stset_file(smelt_checkpoint_stset(m), 0)) -
                                    smelt_st_data_offset(smelt_stset_file(smelt_checkpoint_stset(m), 1)));
    XXH64_freeState(s);
    smelt_verify_result_free(&r1);
    smelt_verify_result_free(&r2);
    smelt_checkpoint_close(m);
}

/* ==== NaN / Inf ==== */

Test(verify, counts_nan_and_inf_in_every_decodable_type)
{
    float f32[64];
    for (int i = 0; i < 64; i++) f32[i] = (float)i - 10.5f;
    f32[3] = NAN;
    f32[40] = NAN;
    f32[41] = -INFINITY;
    uint16_t f16[32], bf16[32];
    for (int i = 0; i < 32; i++) {
        f16[i] = smelt_f32_to_f16((float)i);
        bf16[i] = smelt_f32_to_bf16(-(float)i);
    }
    f16[7] = 0x7c00;  /* +inf */
    bf16[9] = 0x7fc1; /* NaN */
    uint8_t q8[2 * 34] = {0};
    uint16_t dinf = 0x7c00, done = smelt_f32_to_f16(0.5f);
    memcpy(q8, &dinf, 2); /* block 0: scale inf, quants 0 (→ NaN) and 1,2 (→ inf) */
    q8[2 + 5] = 1;
    q8[2 + 6] = 2;
    memcpy(q8 + 34, &done, 2);
    for (int j = 0; j < 32; j++) q8[34 + 2 + j] = (uint8_t)(int8_t)(j - 16);
    int32_t i32[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t q8k[292] = {0}; /* one Q8_K block (256 elements): an activation-only type smelt does not decode */
    tdesc T[] = {
        {"f32", SMELT_TYPE_F32, 32, 2, f32},  {"f16", SMELT_TYPE_F16, 32, 1, f16},
        {"bf16", SMELT_TYPE_BF16, 32, 1, bf16}, {"q8", SMELT_TYPE_Q8_0, 64, 1, q8},
        {"ints", SMELT_TYPE_I32, 8, 1, i32},  {"q8k", SMELT_TYPE_Q8_K, 256, 1, q8k},
    };
    char dir[512], path[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/nan.gguf", dir);
    write_gguf(path, T, 6, "nan", NULL);
    smelt_checkpoint *m = vm(path);
    smelt_verify_result r;
    scan(m, 2, &r);
    cr_assert(r.t[0].n_nan == 2 && r.t[0].n_inf == 1 && r.t[0].values == SMELT_VALUES_CHECKED);
    cr_assert_eq(r.t[0].max_abs, 52.5f);
    cr_assert(r.t[1].n_nan == 0 && r.t[1].n_inf == 1 && r.t[1].max_abs == 31.0f);
    cr_assert(r.t[2].n_nan == 1 && r.t[2].n_inf == 0 && r.t[2].max_abs == 31.0f);
    cr_assert(r.t[3].n_nan == 30 && r.t[3].n_inf == 2, "q8_0: %lu NaN %lu Inf", (unsigned long)r.t[3].n_nan,
              (unsigned long)r.t[3].n_inf);
    cr_assert_eq(r.t[3].max_abs, 8.0f);
    cr_assert_eq(r.t[4].values, SMELT_VALUES_INTEGER);
    cr_assert_eq(r.t[5].values, SMELT_VALUES_UNSUPPORTED);
    cr_assert_eq(r.t[5].xxh64, XXH64(q8k, sizeof q8k, 0));
    cr_assert_eq(r.n_nonfinite_tensors, 4);
    cr_assert_eq(r.n_unchecked, 1);
    cr_assert(r.n_nan == 33 && r.n_inf == 4);
    smelt_verify_result_free(&r);
    /* values off: hashes only */
    smelt_verify_opts o;
    smelt_verify_opts_default(&o);
    o.values = false;
    smelt_err e = {0};
    cr_assert_eq(smelt_verify_scan(m, &o, &r, &e), 0);
    cr_assert(r.n_nan == 0 && r.t[0].values == SMELT_VALUES_SKIPPED && r.t[0].xxh64 == XXH64(f32, sizeof f32, 0));
    smelt_verify_result_free(&r);
    smelt_checkpoint_close(m);
    tu_rmtree(dir);
}

/* ==== manifests ==== */

static char *slurp(const char *p)
{
    size_t n;
    char *s = (char *)tu_read(p, &n);
    cr_assert(s);
    s[n] = 0;
    return s;
}

Test(verify, manifest_check_findings)
{
    char dir[512], mf[600], bad[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(mf, sizeof mf, "%s/m", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    smelt_checkpoint *m = vm(TINY_RANDOM);
    smelt_verify_result r;
    scan(m, 2, &r);
    smelt_err e = {0};
    smelt_manifest_check c;
    cr_assert_eq(smelt_manifest_write(m, &r, "moved/elsewhere.gguf", mf, &e), 0, "%s", e.msg);
    char *text = slurp(mf);
    cr_assert(strstr(text, "xxh64     3d83ed08b93846cb  moved/elsewhere.gguf\n"));

    /* another label (the file was moved): still matches */
    cr_assert_eq(smelt_manifest_check_run(mf, m, &r, &c, &e), 0, "%s", e.msg);
    cr_assert(c.ok && c.n_ok == 12 && c.model == SMELT_MF_OK && c.n_other_lines == 0);
    cr_assert_str_eq(c.label, "moved/elsewhere.gguf");
    smelt_manifest_check_free(&c);

    /* one tensor hash changed (and so the model line is stale too) */
    char *t2 = strdup(text);
    char *hit = strstr(t2, "372344e1aa5da666");
    hit[0] = '4';
    tu_write(bad, t2, strlen(t2));
    cr_assert_eq(smelt_manifest_check_run(bad, m, &r, &c, &e), 0);
    cr_assert(!c.ok && c.n_mismatch == 1 && c.tensor[1] == SMELT_MF_MISMATCH && c.expect[1] == 0x472344e1aa5da666ull);
    cr_assert_eq(c.model, SMELT_MF_OK);
    smelt_manifest_check_free(&c);
    free(t2);

    /* a line removed, with the model line still matching: ok; without it: not ok */
    t2 = strdup(text);
    char *l1 = strstr(t2, "\n") + 1, *l2 = strstr(l1, "\n") + 1;
    memmove(l1, l2, strlen(l2) + 1);
    tu_write(bad, t2, strlen(t2));
    cr_assert_eq(smelt_manifest_check_run(bad, m, &r, &c, &e), 0);
    cr_assert(c.ok && c.n_absent == 1 && c.tensor[1] == SMELT_MF_ABSENT);
    smelt_manifest_check_free(&c);
    char *last = strstr(t2, "xxh64     3d83ed08b93846cb  moved/elsewhere.gguf\n");
    *last = 0;
    tu_write(bad, t2, strlen(t2));
    cr_assert_eq(smelt_manifest_check_run(bad, m, &r, &c, &e), 0);
    cr_assert(!c.ok && c.model == SMELT_MF_ABSENT && c.n_absent == 1);
    smelt_manifest_check_free(&c);
    free(t2);

    /* a tensor the model lacks; other hash kinds are skipped */
    size_t n = strlen(text);
    t2 = malloc(n + 400);
    snprintf(t2, n + 400, "sha256    00ff  moved/elsewhere.gguf:x\n%sxxh64     0000000000000001  moved/elsewhere.gguf:ghost.weight\n", text);
    tu_write(bad, t2, strlen(t2));
    cr_assert_eq(smelt_manifest_check_run(bad, m, &r, &c, &e), 0);
    cr_assert(!c.ok && c.n_extra == 1 && c.n_other_lines == 1);
    cr_assert_str_eq(c.extra[0], "ghost.weight");
    smelt_manifest_check_free(&c);
    free(t2);

    /* malformed */
    tu_write(bad, "xxh64 12345 a.gguf\n", 19);
    cr_assert_eq(smelt_manifest_check_run(bad, m, &r, &c, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.msg, "line 1: expected 'xxh64 <16 hex digits> <name>', found 'xxh64 12345 a.gguf'");
    tu_write(bad, "sha1 abc f\n", 11);
    cr_assert_eq(smelt_manifest_check_run(bad, m, &r, &c, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.msg, "no xxh64 lines (found 1 sha1/sha256/uuid lines)");
    cr_assert_eq(smelt_manifest_write(m, &r, "has space", bad, &e), SMELT_EUSAGE);
    free(text);
    smelt_verify_result_free(&r);
    smelt_checkpoint_close(m);
    tu_rmtree(dir);
}

/* ==== opening ==== */

Test(verify, open_errors_and_layouts)
{
    smelt_checkpoint *m = NULL;
    smelt_err e = {0};
    char p[4200];
    tu_path(p, sizeof p, "samples/no-such-model");
    cr_assert_eq(smelt_checkpoint_open(p, &m, &e), SMELT_EIO);
    cr_assert_str_eq(e.msg, "no such file or directory");
    tu_path(p, sizeof p, "samples/tiny-mixtral-zh-lora-bin");
    cr_assert_eq(smelt_checkpoint_open(p, &m, &e), SMELT_EUNSUPPORTED);
    cr_assert_str_eq(e.msg, "only PyTorch .bin weights here; smelt-verify reads GGUF and safetensors");
    cr_assert_null(m);
    m = vm("samples/tiny-mixtral-zh-lora"); /* PEFT adapter directory */
    cr_assert_gt(smelt_checkpoint_n_tensors(m), 100);
    cr_assert_geq(smelt_checkpoint_find(m, "base_model.model.lm_head.weight"), 0);
    smelt_checkpoint_close(m);
    m = vm("samples/tiny-mixtral/model-00002-of-00002.safetensors");
    cr_assert_str_eq(smelt_checkpoint_describe(m), "safetensors");
    smelt_checkpoint_close(m);
}

/* ==== diff ==== */

static void diff(const smelt_checkpoint *a, const smelt_checkpoint *b, int threads, smelt_diff_result *r)
{
    smelt_diff_opts o;
    smelt_diff_opts_default(&o);
    o.n_threads = threads;
    smelt_err e = {0};
    cr_assert_eq(smelt_diff_run(a, b, &o, r, &e), 0, "%s", e.msg);
}

Test(verify, diff_of_a_model_with_itself_is_identical)
{
    smelt_checkpoint *a = vm(TINY_RANDOM), *b = vm(TINY_RANDOM);
    smelt_diff_result r;
    diff(a, b, 2, &r);
    cr_assert(r.identical && r.n_identical == 12 && r.n_kv == 0);
    smelt_diff_result_free(&r);
    smelt_checkpoint_close(a);
    smelt_checkpoint_close(b);
}

Test(verify, diff_reports_every_kind_of_change)
{
    float fa[64], fb[64], fc[64];
    uint16_t ha[32], hb[32], hc[32];
    for (int i = 0; i < 64; i++) fa[i] = fb[i] = sinf((float)i) * 3.0f;
    fb[5] += 0.25f;
    fb[60] -= 1.0f;
    for (int i = 0; i < 32; i++) ha[i] = hb[i] = smelt_f32_to_f16((float)i / 7.0f + 0.5f);
    hb[3] = (uint16_t)(ha[3] + 1); /* 1 ulp */
    hb[9] = (uint16_t)(ha[9] + 3); /* 3 ulps */
    for (int i = 0; i < 32; i++) hc[i] = smelt_f32_to_f16(fa[i]);
    for (int i = 0; i < 64; i++) fc[i] = fa[i];
    tdesc A[] = {{"same", SMELT_TYPE_F32, 32, 2, fa}, {"f32", SMELT_TYPE_F32, 32, 2, fa},
                 {"f16", SMELT_TYPE_F16, 32, 1, ha}, {"retyped", SMELT_TYPE_F32, 32, 1, fc},
                 {"reshaped", SMELT_TYPE_F32, 32, 2, fa}, {"gone", SMELT_TYPE_F32, 32, 1, fa}};
    tdesc B[] = {{"same", SMELT_TYPE_F32, 32, 2, fa}, {"f32", SMELT_TYPE_F32, 32, 2, fb},
                 {"f16", SMELT_TYPE_F16, 32, 1, hb}, {"retyped", SMELT_TYPE_F16, 32, 1, hc},
                 {"reshaped", SMELT_TYPE_F32, 64, 1, fa}, {"new", SMELT_TYPE_F32, 32, 1, fa}};
    char dir[512], pa[600], pb[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(pa, sizeof pa, "%s/a.gguf", dir);
    snprintf(pb, sizeof pb, "%s/b.gguf", dir);
    write_gguf(pa, A, 6, "model A", "only.in_a");
    write_gguf(pb, B, 6, "model B", NULL);
    smelt_checkpoint *a = vm(pa), *b = vm(pb);
    smelt_diff_result r, r1;
    diff(a, b, 2, &r);
    diff(a, b, 1, &r1);
    cr_assert(!r.identical);
    cr_assert_eq(r.n, 7);
    cr_assert(r.n_identical == 1 && r.n_different == 3 && r.n_shape == 1 && r.n_only_a == 1 && r.n_only_b == 1);
    const smelt_tensor_diff *d = &r.t[1]; /* f32: two elements moved by 0.25 and 1.0 */
    cr_assert(d->status == SMELT_TD_DIFFERENT && d->compared && d->same_type && !d->ulp_counted);
    cr_assert_eq(d->n_diff, 2);
    double e5 = fabs((double)fb[5] - (double)fa[5]), e60 = fabs((double)fb[60] - (double)fa[60]);
    cr_assert_eq(d->max_abs, e60);
    cr_assert_float_eq(d->rmse, sqrt((e5 * e5 + e60 * e60) / 64.0), 1e-15);
    d = &r.t[2]; /* f16: one element 1 ulp away, one 3 ulps */
    cr_assert(d->ulp_counted && !strcmp(d->ulp_type, "f16"));
    cr_assert(d->n_diff == 2 && d->n_over_1ulp == 1 && d->max_ulp == 3);
    d = &r.t[3]; /* f32 → f16: rounding differences, all within 1 ulp of f16 */
    cr_assert(d->status == SMELT_TD_DIFFERENT && !d->same_type && d->compared && d->ulp_counted);
    cr_assert(d->n_over_1ulp == 0 && d->max_ulp <= 1 && d->n_diff > 0 && d->max_abs < 2e-3);
    cr_assert_eq(r.t[4].status, SMELT_TD_SHAPE);
    cr_assert(r.t[5].status == SMELT_TD_ONLY_A && r.t[5].ib == -1);
    cr_assert(r.t[6].status == SMELT_TD_ONLY_B && !strcmp(r.t[6].name, "new"));
    /* metadata: general.name differs, only.in_a is only in A */
    cr_assert_eq(r.n_kv, 2);
    cr_assert_str_eq(r.kv[0].key, "general.name");
    cr_assert_eq(r.kv[0].status, SMELT_KD_DIFFERENT);
    cr_assert_str_eq(r.kv[0].a, "\"model A\"");
    cr_assert_str_eq(r.kv[0].b, "\"model B\"");
    cr_assert(!strcmp(r.kv[1].key, "only.in_a") && r.kv[1].status == SMELT_KD_ONLY_A && r.kv[1].b == NULL);
    /* same figures with one thread */
    for (size_t i = 0; i < r.n; i++)
        cr_assert(r.t[i].n_diff == r1.t[i].n_diff && r.t[i].max_abs == r1.t[i].max_abs && r.t[i].rmse == r1.t[i].rmse);
    smelt_diff_result_free(&r);
    smelt_diff_result_free(&r1);
    smelt_checkpoint_close(a);
    smelt_checkpoint_close(b);
    tu_rmtree(dir);
}

Test(verify, diff_of_base_and_merged_checkpoints)
{
    /* the merge touches the 64 LoRA-targeted modules and the two modules_to_save, nothing else */
    smelt_checkpoint *a = vm("samples/tiny-mixtral"), *b = vm("tests/fixtures/tiny-mixtral-zh-merged");
    smelt_diff_result r;
    diff(a, b, 2, &r);
    cr_assert(!r.identical && r.n == 79 && r.n_kv == 0);
    cr_assert_eq(r.n_different, 66);
    cr_assert_eq(r.n_identical, 13);
    static const char *const TARGETS[] = {"q_proj", "k_proj", "v_proj", "o_proj", ".w1.", ".w2.", ".w3.",
                                          "embed_tokens", "lm_head", NULL};
    for (size_t i = 0; i < r.n; i++) {
        bool target = false;
        for (const char *const *t = TARGETS; *t; t++) target |= strstr(r.t[i].name, *t) != NULL;
        cr_assert_eq(r.t[i].status, target ? SMELT_TD_DIFFERENT : SMELT_TD_IDENTICAL, "%s", r.t[i].name);
        if (target) {
            cr_assert(r.t[i].compared && r.t[i].ulp_counted && !strcmp(r.t[i].ulp_type, "bf16"));
            cr_assert(r.t[i].n_diff > 0 && r.t[i].max_abs > 0 && r.t[i].max_abs < 1.0 && r.t[i].n_nonfinite == 0);
        }
    }
    smelt_diff_result_free(&r);
    smelt_checkpoint_close(a);
    smelt_checkpoint_close(b);
}

Test(verify, diff_refuses_mixed_formats)
{
    smelt_checkpoint *a = vm(TINY_RANDOM), *b = vm("samples/tiny-mixtral");
    smelt_diff_result r;
    smelt_err e = {0};
    cr_assert_eq(smelt_diff_run(a, b, NULL, &r, &e), SMELT_EUNSUPPORTED);
    cr_assert_str_eq(e.msg, "cannot compare a GGUF v3 with a safetensors (2 shards): tensor names differ between the "
                            "formats (compare GGUF with GGUF, or safetensors with safetensors)");
    smelt_checkpoint_close(a);
    smelt_checkpoint_close(b);
}

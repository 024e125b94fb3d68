/* smelt-verify — integrity check and hashes of a model (GGUF, safetensors, HF directory),
 * hash manifests (llama-gguf-hash's format), and a tensor-wise diff of two models.
 * Thin main over verify/integrity/integrity.h and verify/integrity/diff.h. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/progress.h"
#include "verify/integrity/diff.h"
#include "verify/integrity/integrity.h"

static const char *TOOL = "smelt-verify";

/* Exit statuses as every smelt tool (docs/errors.md); a finding — NaN/Inf, a manifest
 * mismatch, two models that differ — is 5, "inputs that do not match". */
enum { EXIT_FINDING = 5 };

static void usage(void)
{
    printf("Usage: smelt-verify [options] MODEL\n"
           "       smelt-verify --diff [options] A B\n"
           "\n"
           "MODEL is a GGUF file, a .safetensors file, a safetensors index json or a Hugging Face\n"
           "directory (sharded or not, or a PEFT adapter directory).\n"
           "\n"
           "Check: reads every tensor in full, prints its xxh64 (the hash llama-gguf-hash --xxh64\n"
           "prints), counts NaN/Inf in every tensor smelt can decode, and prints the model hash\n"
           "(xxh64 of all tensor data in file order). A llama GGUF is first validated as every\n"
           "smelt tool validates a model (hyperparameters, vocabulary, tensors and shapes); an\n"
           "invalid one is refused (exit 3). Fails (exit 5) on NaN/Inf or a manifest mismatch.\n"
           "\n"
           "Diff: compares two GGUF files or two safetensors checkpoints tensor by tensor: missing\n"
           "and extra tensors, shape and type changes, bit-identity, and for tensors that differ\n"
           "the number of differing elements, max |delta|, RMSE and (16-bit types) elements more\n"
           "than 1 ulp apart; plus metadata (KV) differences. Exit 0 identical, 5 different.\n"
           "Any two files can be compared (no model check).\n"
           "\n"
           "Options:\n"
           "  --diff              compare two models (A B)\n"
           "  --manifest FILE     write a per-tensor xxh64 manifest (llama-gguf-hash format)\n"
           "  --label NAME        name written in manifest lines (default: MODEL as given)\n"
           "  --check FILE        verify against a manifest (smelt's or llama-gguf-hash's)\n"
           "  --no-values         hash only (check) / compare bytes only (diff); no decoding\n"
           "  --allow-nonfinite   report NaN/Inf without failing the check\n"
           "  --all               diff: list identical tensors too\n"
           "  -t, --threads N     threads (default: all CPUs)\n"
           "  --json              machine-readable output (one JSON object)\n"
           "  -q, --quiet         summary only, no progress\n"
           "  -h, --help          this help\n"
           "  --version           version\n"
           "\n"
           "Exit status: 0 ok or identical, 1 I/O error, 2 usage, 3 malformed input (an invalid\n"
           "model too), 4 unsupported input, 5 check failed or models different, 6 out of memory.\n");
}

typedef struct {
    smelt_tool t; /* -q, --json, progress, the error tail */
    int diff, values, allow_nonfinite, all;
    long threads;
    const char *manifest, *label, *check;
} opts;

static const char *values_name(int v)
{
    switch (v) {
    case SMELT_VALUES_CHECKED: return "checked";
    case SMELT_VALUES_INTEGER: return "integer";
    case SMELT_VALUES_UNSUPPORTED: return "not decodable";
    default: return "skipped";
    }
}

static const char *mf_name(int s) { return s == SMELT_MF_OK ? "ok" : s == SMELT_MF_MISMATCH ? "mismatch" : "absent"; }

static json_t *shape_json(const smelt_checkpoint_tensor *t)
{
    json_t *a = json_array();
    uint32_t nd = t->type >= 0 && t->n_dims == 0 ? 1 : t->n_dims;
    for (uint32_t d = 0; d < nd && d < SMELT_CHECKPOINT_MAX_DIMS; d++) json_array_append_new(a, json_integer((json_int_t)t->shape[d]));
    return a;
}

static json_t *hex_json(uint64_t h)
{
    char hex[17];
    smelt_hex64(h, hex);
    return json_string(hex);
}

/* ==== check ==== */

/* The manifest may be none of the inputs: the model (its directory, or the directory of the
 * shards an index names) and the manifest checked against. */
static int check_manifest_path(const char *path, const opts *o, smelt_err *e)
{
    smelt_guard *g = smelt_guard_new();
    if (!g) return SMELT_NOMEM(e, "the list of inputs");
    int rc = smelt_guard_add(g, path, "the model", smelt_guard_reads_model_dir, e);
    size_t l = strlen(path);
    if (!rc && l > 5 && !strcmp(path + l - 5, ".json")) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        rc = smelt_guard_add(g, dir, "the model's directory", smelt_guard_reads_model_dir, e);
    }
    if (!rc && o->check) rc = smelt_guard_add(g, o->check, "the manifest to check against", NULL, e);
    if (!rc) rc = smelt_guard_check_file(g, o->manifest, e);
    smelt_guard_free(g);
    return rc;
}

static int run_check(const char *path, opts *o)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_checkpoint *m;
    int rc = o->manifest ? check_manifest_path(path, o, &e) : 0;
    if (rc) return smelt_tool_fail(&o->t, rc, &e);
    rc = smelt_checkpoint_open(path, &m, &e);
    if (rc) return smelt_tool_fail(&o->t, rc, &e);
    smelt_mc_hparams mh; /* the model check every tool shares, before reading the data */
    int mchk = smelt_checkpoint_check_model(m, &mh, &e);
    if (mchk < 0) {
        smelt_checkpoint_close(m);
        return smelt_tool_fail(&o->t, mchk, &e);
    }
    char mcline[160];
    if (mchk) snprintf(mcline, sizeof mcline, "skipped (%s)", mh.skipped);
    else
        snprintf(mcline, sizeof mcline, "ok (llama, %u layers, %u heads, %u experts, %llu tokens)", mh.n_layer, mh.n_head,
                 mh.n_expert, (unsigned long long)mh.n_vocab);
    smelt_verify_opts vo;
    smelt_verify_opts_default(&vo);
    vo.n_threads = (int)o->threads;
    vo.values = o->values;
    vo.progress = &o->t.progress;
    smelt_verify_result r;
    rc = smelt_verify_scan(m, &vo, &r, &e);
    if (rc) {
        smelt_checkpoint_close(m);
        return smelt_tool_fail(&o->t, rc, &e);
    }
    smelt_progress_term_done(&o->t.term, r.data_bytes);
    if (o->manifest && (rc = smelt_manifest_write(m, &r, o->label ? o->label : path, o->manifest, &e))) {
        smelt_verify_result_free(&r);
        smelt_checkpoint_close(m);
        return smelt_tool_fail(&o->t, rc, &e);
    }
    smelt_manifest_check mc = {0};
    if (o->check && (rc = smelt_manifest_check_run(o->check, m, &r, &mc, &e))) {
        smelt_verify_result_free(&r);
        smelt_checkpoint_close(m);
        return smelt_tool_fail(&o->t, rc, &e);
    }
    bool nonfinite_fail = r.n_nonfinite_tensors && !o->allow_nonfinite;
    bool ok = !nonfinite_fail && (!o->check || mc.ok);
    uint64_t n = r.n_tensors;
    char hex[17], shape[96], bytes[32];

    if (o->t.json) {
        json_t *root = json_object();
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string(smelt_checkpoint_kind_of(m) == SMELT_CHECKPOINT_GGUF ? "gguf" : "safetensors"));
        json_object_set_new(root, "describe", json_string(smelt_checkpoint_describe(m)));
        json_object_set_new(root, "model_check", json_string(mcline));
        json_object_set_new(root, "file_bytes", json_integer((json_int_t)smelt_checkpoint_file_bytes(m)));
        json_object_set_new(root, "data_bytes", json_integer((json_int_t)r.data_bytes));
        json_object_set_new(root, "n_tensors", json_integer((json_int_t)n));
        json_object_set_new(root, "model_xxh64", hex_json(r.model_xxh64));
        json_object_set_new(root, "nan", json_integer((json_int_t)r.n_nan));
        json_object_set_new(root, "inf", json_integer((json_int_t)r.n_inf));
        json_object_set_new(root, "nonfinite_tensors", json_integer((json_int_t)r.n_nonfinite_tensors));
        json_object_set_new(root, "undecodable_tensors", json_integer((json_int_t)r.n_unchecked));
        json_t *ts = json_array();
        for (uint64_t i = 0; i < n; i++) {
            const smelt_checkpoint_tensor *t = smelt_checkpoint_tensor_at(m, i);
            const smelt_tensor_check *c = &r.t[i];
            json_t *j = json_object();
            json_object_set_new(j, "name", json_string(t->name));
            json_object_set_new(j, "type", json_string(t->type_name));
            json_object_set_new(j, "shape", shape_json(t));
            json_object_set_new(j, "bytes", json_integer((json_int_t)t->nbytes));
            json_object_set_new(j, "offset", json_integer((json_int_t)t->file_offset));
            json_object_set_new(j, "xxh64", hex_json(c->xxh64));
            json_object_set_new(j, "values", json_string(values_name(c->values)));
            if (c->values == SMELT_VALUES_CHECKED) {
                json_object_set_new(j, "nan", json_integer((json_int_t)c->n_nan));
                json_object_set_new(j, "inf", json_integer((json_int_t)c->n_inf));
                json_object_set_new(j, "max_abs", json_real(c->max_abs));
            }
            if (o->check) json_object_set_new(j, "manifest", json_string(mf_name(mc.tensor[i])));
            json_array_append_new(ts, j);
        }
        json_object_set_new(root, "tensors", ts);
        if (o->check) {
            json_t *mj = json_object();
            json_object_set_new(mj, "file", json_string(o->check));
            json_object_set_new(mj, "label", json_string(mc.label));
            json_object_set_new(mj, "model", json_string(mf_name(mc.model)));
            json_object_set_new(mj, "ok_tensors", json_integer((json_int_t)mc.n_ok));
            json_object_set_new(mj, "mismatched_tensors", json_integer((json_int_t)mc.n_mismatch));
            json_object_set_new(mj, "absent_tensors", json_integer((json_int_t)mc.n_absent));
            json_t *ex = json_array();
            for (size_t i = 0; i < mc.n_extra; i++) json_array_append_new(ex, json_string(mc.extra[i]));
            json_object_set_new(mj, "missing_from_model", ex);
            json_object_set_new(mj, "ok", json_boolean(mc.ok));
            json_object_set_new(root, "manifest_check", mj);
        }
        if (o->manifest) json_object_set_new(root, "manifest_written", json_string(o->manifest));
        json_object_set_new(root, "ok", json_boolean(ok));
        smelt_tool_print_json(&o->t, root, JSON_INDENT(2));
        json_decref(root);
    } else {
        printf("%s: %s, %" PRIu64 " tensors, %s of tensor data\n", path, smelt_checkpoint_describe(m), n,
               smelt_cli_bytes(bytes, sizeof bytes, r.data_bytes));
        printf("model check: %s\n", mcline);
        if (!o->t.quiet) {
            if (n) printf("  %-16s  %-8s %8s %8s %11s  %-22s %s\n", "xxh64", "type", "nan", "inf", "max|x|", "shape", "name");
            for (uint64_t i = 0; i < n; i++) {
                const smelt_checkpoint_tensor *t = smelt_checkpoint_tensor_at(m, i);
                const smelt_tensor_check *c = &r.t[i];
                smelt_hex64(c->xxh64, hex);
                smelt_checkpoint_shape_str(t, shape, sizeof shape);
                if (c->values == SMELT_VALUES_CHECKED)
                    printf("  %s  %-8s %8" PRIu64 " %8" PRIu64 " %11.4g  %-22s %s", hex, t->type_name, c->n_nan,
                           c->n_inf, (double)c->max_abs, shape, t->name);
                else
                    printf("  %s  %-8s %8s %8s %11s  %-22s %s", hex, t->type_name, "-", "-", "-", shape, t->name);
                if (o->check && mc.tensor[i] != SMELT_MF_OK) {
                    if (mc.tensor[i] == SMELT_MF_MISMATCH) {
                        smelt_hex64(mc.expect[i], hex);
                        printf("  MISMATCH (manifest %s)", hex);
                    } else {
                        printf("  (not in manifest)");
                    }
                }
                printf("\n");
            }
        }
        smelt_hex64(r.model_xxh64, hex);
        printf("model xxh64 %s (all tensor data in file order, as llama-gguf-hash)\n", hex);
        if (r.n_unchecked) {
            printf("note: %" PRIu64 " tensor(s) of types smelt cannot decode yet were hashed only:", r.n_unchecked);
            for (uint64_t i = 0, k = 0; i < n && k < 8; i++)
                if (r.t[i].values == SMELT_VALUES_UNSUPPORTED) {
                    printf(" %s (%s)", smelt_checkpoint_tensor_at(m, i)->name, smelt_checkpoint_tensor_at(m, i)->type_name);
                    k++;
                }
            printf("\n");
        }
        if (o->check) {
            printf("manifest %s: %" PRIu64 " of %" PRIu64 " tensors match, %" PRIu64 " mismatch, %" PRIu64
                   " not listed; model hash %s",
                   o->check, mc.n_ok, n, mc.n_mismatch, mc.n_absent,
                   mc.model == SMELT_MF_OK ? "matches" : mc.model == SMELT_MF_MISMATCH ? "MISMATCH" : "not listed");
            if (mc.model == SMELT_MF_MISMATCH) {
                smelt_hex64(mc.model_expect, hex);
                printf(" (manifest %s)", hex);
            }
            printf("\n");
            for (size_t i = 0; i < mc.n_extra; i++) printf("  MISSING  %s (listed in the manifest)\n", mc.extra[i]);
        }
        if (o->manifest) printf("manifest written: %s\n", o->manifest);
        if (r.n_nonfinite_tensors)
            printf("%s: %" PRIu64 " tensor(s) hold non-finite values (%" PRIu64 " NaN, %" PRIu64 " Inf)\n",
                   o->allow_nonfinite ? "warning" : "FAILED", r.n_nonfinite_tensors, r.n_nan, r.n_inf);
        if (o->check && !mc.ok) printf("FAILED: the model does not match the manifest\n");
        if (ok)
            printf("ok: %" PRIu64 " tensors read in full%s\n", n,
                   !o->values ? " (values not decoded)" : r.n_nonfinite_tensors ? "" : ", no NaN or Inf");
    }
    smelt_manifest_check_free(&mc);
    smelt_verify_result_free(&r);
    smelt_checkpoint_close(m);
    return ok ? 0 : EXIT_FINDING;
}

/* ==== diff ==== */

static const char *td_name(int s)
{
    static const char *const N[] = {"identical", "different", "shape", "only-A", "only-B"};
    return s >= 0 && s <= 4 ? N[s] : "?";
}

static const char *kd_name(int s) { return s == SMELT_KD_ONLY_A ? "only-A" : s == SMELT_KD_ONLY_B ? "only-B" : "different"; }

static int run_diff(const char *pa, const char *pb, opts *o)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_checkpoint *a, *b;
    int rc = smelt_checkpoint_open(pa, &a, &e);
    if (rc) return smelt_tool_fail(&o->t, rc, &e);
    if ((rc = smelt_checkpoint_open(pb, &b, &e))) {
        smelt_checkpoint_close(a);
        return smelt_tool_fail(&o->t, rc, &e);
    }
    smelt_progress prog = {0};
    smelt_progress_term pt;
    smelt_progress_term_init(&pt, &prog, "comparing", o->t.quiet || !isatty(2));
    smelt_diff_opts dop;
    smelt_diff_opts_default(&dop);
    dop.n_threads = (int)o->threads;
    dop.values = o->values;
    dop.progress = &prog;
    smelt_diff_result r;
    if ((rc = smelt_diff_run(a, b, &dop, &r, &e))) {
        smelt_checkpoint_close(a);
        smelt_checkpoint_close(b);
        return smelt_tool_fail(&o->t, rc, &e);
    }
    smelt_progress_term_done(&pt, 0);
    char sa[96], sb[96];
    if (o->t.json) {
        json_t *root = json_object();
        json_object_set_new(root, "a", json_string(pa));
        json_object_set_new(root, "b", json_string(pb));
        json_object_set_new(root, "identical", json_boolean(r.identical));
        json_t *ts = json_array();
        for (size_t i = 0; i < r.n; i++) {
            const smelt_tensor_diff *d = &r.t[i];
            const smelt_checkpoint_tensor *x = d->ia >= 0 ? smelt_checkpoint_tensor_at(a, (uint64_t)d->ia) : NULL;
            const smelt_checkpoint_tensor *y = d->ib >= 0 ? smelt_checkpoint_tensor_at(b, (uint64_t)d->ib) : NULL;
            json_t *j = json_object();
            json_object_set_new(j, "name", json_string(d->name));
            json_object_set_new(j, "status", json_string(td_name(d->status)));
            if (x) json_object_set_new(j, "type_a", json_string(x->type_name));
            if (y) json_object_set_new(j, "type_b", json_string(y->type_name));
            if (x) json_object_set_new(j, "shape_a", shape_json(x));
            if (y) json_object_set_new(j, "shape_b", shape_json(y));
            json_object_set_new(j, "n_elements", json_integer((json_int_t)d->n_elements));
            if (d->compared) {
                json_object_set_new(j, "n_diff", json_integer((json_int_t)d->n_diff));
                json_object_set_new(j, "max_abs", json_real(d->max_abs));
                json_object_set_new(j, "rmse", json_real(d->rmse));
                json_object_set_new(j, "n_nonfinite", json_integer((json_int_t)d->n_nonfinite));
                if (d->ulp_counted) {
                    json_object_set_new(j, "ulp_type", json_string(d->ulp_type));
                    json_object_set_new(j, "n_over_1ulp", json_integer((json_int_t)d->n_over_1ulp));
                    json_object_set_new(j, "max_ulp", json_integer((json_int_t)d->max_ulp));
                }
            }
            json_array_append_new(ts, j);
        }
        json_object_set_new(root, "tensors", ts);
        json_t *kv = json_array();
        for (size_t i = 0; i < r.n_kv; i++) {
            json_t *j = json_object();
            json_object_set_new(j, "key", json_string(r.kv[i].key));
            json_object_set_new(j, "status", json_string(kd_name(r.kv[i].status)));
            json_object_set_new(j, "a", r.kv[i].a ? json_string(r.kv[i].a) : json_null());
            json_object_set_new(j, "b", r.kv[i].b ? json_string(r.kv[i].b) : json_null());
            json_array_append_new(kv, j);
        }
        json_object_set_new(root, "kv", kv);
        json_t *s = json_object();
        json_object_set_new(s, "identical", json_integer((json_int_t)r.n_identical));
        json_object_set_new(s, "different", json_integer((json_int_t)r.n_different));
        json_object_set_new(s, "shape", json_integer((json_int_t)r.n_shape));
        json_object_set_new(s, "only_a", json_integer((json_int_t)r.n_only_a));
        json_object_set_new(s, "only_b", json_integer((json_int_t)r.n_only_b));
        json_object_set_new(s, "kv", json_integer((json_int_t)r.n_kv));
        json_object_set_new(root, "summary", s);
        smelt_tool_print_json(&o->t, root, JSON_INDENT(2));
        json_decref(root);
    } else {
        printf("A: %s (%s, %" PRIu64 " tensors)\nB: %s (%s, %" PRIu64 " tensors)\n", pa, smelt_checkpoint_describe(a),
               smelt_checkpoint_n_tensors(a), pb, smelt_checkpoint_describe(b), smelt_checkpoint_n_tensors(b));
        bool header = false;
        for (size_t i = 0; i < r.n && !o->t.quiet; i++) {
            const smelt_tensor_diff *d = &r.t[i];
            if (d->status == SMELT_TD_IDENTICAL && !o->all) continue;
            if (!header) {
                printf("  %-10s %-12s %-26s %12s %11s %11s %12s  %s\n", "status", "type", "shape", "differing",
                       "max|delta|", "rmse", ">1ulp", "name");
                header = true;
            }
            const smelt_checkpoint_tensor *x = d->ia >= 0 ? smelt_checkpoint_tensor_at(a, (uint64_t)d->ia) : NULL;
            const smelt_checkpoint_tensor *y = d->ib >= 0 ? smelt_checkpoint_tensor_at(b, (uint64_t)d->ib) : NULL;
            char type[40], shape[200], cnt[40] = "", mx[24] = "", rm[24] = "", ulp[40] = "";
            if (x && y && !d->same_type) snprintf(type, sizeof type, "%s>%s", x->type_name, y->type_name);
            else snprintf(type, sizeof type, "%s", (x ? x : y)->type_name);
            if (x) smelt_checkpoint_shape_str(x, sa, sizeof sa);
            if (y) smelt_checkpoint_shape_str(y, sb, sizeof sb);
            if (x && y && d->status == SMELT_TD_SHAPE) snprintf(shape, sizeof shape, "%s>%s", sa, sb);
            else snprintf(shape, sizeof shape, "%s", x ? sa : sb);
            if (d->compared) {
                snprintf(cnt, sizeof cnt, "%" PRIu64, d->n_diff);
                snprintf(mx, sizeof mx, "%.4g", d->max_abs);
                snprintf(rm, sizeof rm, "%.4g", d->rmse);
                if (d->ulp_counted) snprintf(ulp, sizeof ulp, "%" PRIu64 " %s", d->n_over_1ulp, d->ulp_type);
            } else if (d->status == SMELT_TD_DIFFERENT) {
                snprintf(cnt, sizeof cnt, "bytes");
            }
            printf("  %-10s %-12s %-26s %12s %11s %11s %12s  %s", td_name(d->status), type, shape, cnt, mx, rm, ulp,
                   d->name);
            if (d->compared && d->n_nonfinite) printf("  (%" PRIu64 " NaN/Inf differences)", d->n_nonfinite);
            printf("\n");
        }
        for (size_t i = 0; i < r.n_kv && !o->t.quiet; i++) {
            const smelt_kv_diff *k = &r.kv[i];
            printf("  kv %-9s %s: ", kd_name(k->status), k->key);
            if (k->status == SMELT_KD_DIFFERENT) printf("%s -> %s\n", k->a, k->b);
            else printf("%s\n", k->a ? k->a : k->b);
        }
        printf("%" PRIu64 " identical, %" PRIu64 " different, %" PRIu64 " reshaped, %" PRIu64 " only in A, %" PRIu64
               " only in B; %zu metadata difference(s): %s\n",
               r.n_identical, r.n_different, r.n_shape, r.n_only_a, r.n_only_b, r.n_kv,
               r.identical ? "IDENTICAL" : "DIFFERENT");
    }
    int st = r.identical ? 0 : EXIT_FINDING;
    smelt_diff_result_free(&r);
    smelt_checkpoint_close(a);
    smelt_checkpoint_close(b);
    return st;
}

int main(int argc, char **argv)
{
    opts o = {0};
    o.values = 1;
    smelt_tool_init(&o.t, TOOL, usage);
    static const struct option lo[] = {
        {"diff", no_argument, 0, 'D'},          {"manifest", required_argument, 0, 'M'},
        {"label", required_argument, 0, 'L'},   {"check", required_argument, 0, 'C'},
        {"no-values", no_argument, 0, 'N'},     {"allow-nonfinite", no_argument, 0, 'A'},
        {"all", no_argument, 0, 'a'},           {"threads", required_argument, 0, 't'},
        SMELT_TOOL_OPTIONS,                     {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "hqt:", lo, NULL)) != -1) {
        int st = smelt_tool_option(&o.t, c, optarg);
        if (st == SMELT_TOOL_OPTION_TAKEN) continue;
        if (st != SMELT_TOOL_OPTION_OTHER) return st;
        switch (c) {
        case 'D': o.diff = 1; break;
        case 'M': o.manifest = optarg; break;
        case 'L': o.label = optarg; break;
        case 'C': o.check = optarg; break;
        case 'N': o.values = 0; break;
        case 'A': o.allow_nonfinite = 1; break;
        case 'a': o.all = 1; break;
        case 't':
            if (smelt_cli_int(optarg, 1, 4096, &o.threads)) return smelt_cli_usage_error(TOOL, "-t needs a thread count (1-4096)");
            break;
        }
    }
    smelt_tool_start(&o.t, "verifying");
    if (!isatty(2)) o.t.term.quiet = 1; /* a log gets the summary, not progress lines */
    if (o.diff) {
        if (optind != argc - 2) return smelt_cli_usage_error(TOOL, "--diff expects two models, A and B");
        if (o.manifest || o.check || o.label) return smelt_cli_usage_error(TOOL, "--manifest/--check/--label do not apply to --diff");
        return run_diff(argv[optind], argv[optind + 1], &o);
    }
    if (optind != argc - 1) return smelt_cli_usage_error(TOOL, "expected exactly one MODEL (or --diff A B)");
    if (o.all) return smelt_cli_usage_error(TOOL, "--all applies to --diff only");
    return run_check(argv[optind], &o);
}

/* smelt-quantize — quantize a GGUF model with llama-quantize's command line:
 *   smelt-quantize [options] IN.gguf [OUT.gguf] TYPE [NTHREADS]
 * Parses arguments, calls smelt_quantize_run(), renders the plan, warnings and progress. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/ggml_types.h"
#include "quant/qtypes.h"
#include "quant/quantize.h"

static const char *TOOL = "smelt-quantize";

static void usage(void)
{
    printf("Usage: smelt-quantize [options] IN.gguf [OUT.gguf] TYPE [NTHREADS]\n"
           "\n"
           "Quantize a GGUF model (F32/F16/BF16; already-quantized tensors with --allow-requantize)\n"
           "to the ftype mix TYPE, with llama-quantize's per-tensor rules, names and options.\n"
           "Without OUT.gguf the output is ggml-model-TYPE.gguf beside the input. A split model\n"
           "is given by its first shard (NAME-00001-of-0000N.gguf).\n"
           "\n"
           "Options:\n"
           "  --imatrix FILE              importance matrix (GGUF from llama-imatrix/smelt-imatrix,\n"
           "                              or legacy .dat) used to weight the quantization error\n"
           "  --include-weights NAME      use the imatrix only for tensors whose name contains NAME\n"
           "  --exclude-weights NAME      do not use the imatrix for tensors containing NAME\n"
           "                              (both repeatable; not together)\n"
           "  --output-tensor-type TYPE   ggml type for output.weight (e.g. q8_0)\n"
           "  --token-embedding-type TYPE ggml type for token_embd.weight\n"
           "  --tensor-type REGEX=TYPE    tensors whose name matches REGEX (POSIX extended,\n"
           "                              searched) get TYPE; repeatable, first match wins\n"
           "  --tensor-type-file FILE     REGEX=TYPE entries separated by spaces or newlines\n"
           "  --pure                      no mix: every quantizable tensor gets the default type\n"
           "  --error-model tuned|plain   weigh errors by the per-type models chosen on\n"
           "                              KL-divergence, with unbiased rows at <= 4.5 bpw\n"
           "                              (default), or minimize the plain (imatrix-weighted)\n"
           "                              squared error\n"
           "  --error-model BLOCK[/imatrix|/noimatrix|/embedding]=MODEL\n"
           "                              one block type's model for its tensors with an\n"
           "                              imatrix entry, without one, the token embedding, or\n"
           "                              all (repeatable, last wins):\n"
           "                              plain, reference, or P,C,A[,unbias][,norms] (see\n"
           "                              docs/quantize.md, \"Error models\"), e.g.\n"
           "                              q5_K/imatrix=1,1,0\n"
           "  --leave-output-tensor       keep output.weight as it is\n"
           "  --override-kv KEY=TYPE:VAL  set metadata in the output; TYPE int|float|bool|str\n"
           "  --keep-split                a split input gives a split output with the same shards\n"
           SMELT_CLI_SPLIT_HELP
           "  --shard I/N                 with --split-max-*: write only file I of the N files\n"
           "                              of the split (N processes, one file each, give the\n"
           "                              files of the one-process run, byte for byte)\n"
           "  --allow-requantize          allow quantizing tensors that are already quantized\n"
           "                              (quality is lower than quantizing from F16/F32)\n"
           "  --allow-nonfinite           write NaN/Inf weights anyway (quantized types get 0 in\n"
           "                              their place), with warnings counting them (default:\n"
           "                              refuse, naming the tensor and the first index; exit 3)\n"
           "  --dry-run                   print each tensor's type, size and bits per weight;\n"
           "                              write nothing (metadata-only GGUFs are accepted)\n"
           "  -t, --threads N             threads (default: all CPUs; NTHREADS does the same)\n"
           "  --json                      print the plan and totals as JSON on stdout\n"
           "  -q, --quiet                 no progress, no summary (warnings and errors still)\n"
           "  -h, --help                  this help;  --version  version\n"
           "\n"
           "TYPE (llama-quantize's names; case-insensitive; or the ftype number):\n");
    for (size_t i = 0; i < smelt_ftype_count(); i++) {
        const smelt_ftype_info *f = smelt_ftype_at(i);
        bool can = f->copy || smelt_q_can_quantize(f->default_type);
        if (f->copy) printf("          %-9s %s\n", f->name, f->desc);
        else printf("  %2d  or  %-9s %s%s\n", f->ftype, f->name, f->desc, can ? "" : "  [plan only for now]");
    }
    printf("\nExit status: 0 ok, 1 I/O error (incl. not enough disk space), 2 usage, 3 malformed\n"
           "input or imatrix, 4 unsupported (type not available, requantizing, missing imatrix),\n"
           "5 imatrix does not fit the model.\n");
}

typedef struct app {
    int json, quiet;
    const smelt_qplan *plan;
    json_t *warnings;
} app;

static void on_warn(void *user, const char *msg)
{
    app *a = user;
    fprintf(stderr, "%s: warning: %s\n", TOOL, msg);
    if (a->warnings) json_array_append_new(a->warnings, json_string(msg));
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static void shape_str(char *buf, size_t n, const smelt_qplan_tensor *t)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%llu", d ? ", " : "", (unsigned long long)t->ne[d]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

static uint64_t nelem(const smelt_qplan_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

static void print_plan_text(const smelt_qplan *p, int dry)
{
    if (dry) {
        printf("%s: plan for %s as %s (default type %s)\n", TOOL, p->input, p->ftype_name,
               smelt_type_name(p->default_type));
        for (size_t i = 0; i < p->n; i++) {
            const smelt_qplan_tensor *t = &p->t[i];
            char sh[96];
            shape_str(sh, sizeof sh, t);
            printf("[%4zu/%4zu] %-40s %-22s %6s", i + 1, p->n, t->name, sh, smelt_type_name(t->type));
            if (t->new_type != t->type)
                printf(" -> %-7s %9.3f -> %9.3f MiB %6.2f bpw", smelt_type_name(t->new_type), mib(t->bytes),
                       mib(t->new_bytes), (double)t->new_bytes * 8.0 / (double)nelem(t));
            else
                printf("    %-7s %9.3f MiB", "(kept)", mib(t->bytes));
            if (t->flags & SMELT_PT_MANUAL) printf("  (option)");
            else if (t->rule) printf("  (%s)", t->rule);
            if (t->flags & SMELT_PT_FALLBACK) printf("  [fallback]");
            if (t->imatrix) printf("  [imatrix]");
            printf("\n");
        }
    }
    printf("%s: model size = %9.2f MiB (%.2f BPW)\n", TOOL, mib(p->bytes), (double)p->bytes * 8.0 / (double)p->n_elements);
    printf("%s: quant size = %9.2f MiB (%.2f BPW)%s\n", TOOL, mib(p->new_bytes),
           (double)p->new_bytes * 8.0 / (double)p->n_elements, dry ? "" : "");
    printf("%s: %zu of %zu tensors change type; output file%s %.2f MiB\n", TOOL, p->n_changed, p->n,
           p->n_shards_out > 1 ? "s" : "", mib(p->out_bytes));
}

static json_t *plan_json(const smelt_qplan *p, int dry, json_t *warnings)
{
    json_t *r = json_object();
    json_object_set_new(r, "input", json_string(p->input));
    json_object_set_new(r, "ftype", json_string(p->ftype_name));
    json_object_set_new(r, "file_type", json_integer(p->file_type));
    json_object_set_new(r, "default_type", json_string(smelt_type_name(p->default_type)));
    json_object_set_new(r, "dry_run", json_boolean(dry));
    json_t *ts = json_array();
    for (size_t i = 0; i < p->n; i++) {
        const smelt_qplan_tensor *t = &p->t[i];
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(t->name));
        json_t *sh = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(sh, json_integer((json_int_t)t->ne[d]));
        json_object_set_new(j, "shape", sh);
        json_object_set_new(j, "type", json_string(smelt_type_name(t->type)));
        json_object_set_new(j, "new_type", json_string(smelt_type_name(t->new_type)));
        json_object_set_new(j, "bytes", json_integer((json_int_t)t->bytes));
        json_object_set_new(j, "new_bytes", json_integer((json_int_t)t->new_bytes));
        json_object_set_new(j, "bpw", json_real((double)t->new_bytes * 8.0 / (double)nelem(t)));
        json_object_set_new(j, "quantizable", json_boolean(!(t->flags & SMELT_PT_KEPT)));
        json_object_set_new(j, "rule", t->rule ? json_string(t->rule) : json_null());
        json_object_set_new(j, "manual", json_boolean(t->flags & SMELT_PT_MANUAL));
        json_object_set_new(j, "fallback", json_boolean(t->flags & SMELT_PT_FALLBACK));
        json_object_set_new(j, "imatrix", json_boolean(t->imatrix));
        json_object_set_new(j, "needs_imatrix", json_boolean(t->flags & SMELT_PT_NEEDS_IMX));
        json_object_set_new(j, "shard", json_integer(t->shard));
        if (!dry) json_object_set_new(j, "nonfinite", json_integer((json_int_t)t->nonfinite));
        json_array_append_new(ts, j);
    }
    json_object_set_new(r, "tensors", ts);
    json_t *tot = json_object();
    json_object_set_new(tot, "tensors", json_integer((json_int_t)p->n));
    json_object_set_new(tot, "changed", json_integer((json_int_t)p->n_changed));
    json_object_set_new(tot, "fallback", json_integer((json_int_t)p->n_fallback));
    json_object_set_new(tot, "elements", json_integer((json_int_t)p->n_elements));
    json_object_set_new(tot, "bytes", json_integer((json_int_t)p->bytes));
    json_object_set_new(tot, "new_bytes", json_integer((json_int_t)p->new_bytes));
    json_object_set_new(tot, "bpw", json_real((double)p->bytes * 8.0 / (double)p->n_elements));
    json_object_set_new(tot, "new_bpw", json_real((double)p->new_bytes * 8.0 / (double)p->n_elements));
    json_object_set_new(tot, "output_bytes", json_integer((json_int_t)p->out_bytes));
    json_object_set_new(tot, "shards_in", json_integer(p->n_shards_in));
    json_object_set_new(tot, "shards_out", json_integer(p->n_shards_out));
    json_object_set_new(r, "totals", tot);
    json_t *im = json_object();
    json_object_set_new(im, "file", p->imatrix ? json_string(p->imatrix) : json_null());
    json_object_set_new(im, "entries", json_integer((json_int_t)p->imatrix_entries));
    json_object_set_new(im, "chunks", json_integer(p->imatrix_chunks));
    json_object_set_new(im, "tensors_weighted", json_integer((json_int_t)p->n_imatrix));
    json_object_set_new(im, "tensors_needing", json_integer((json_int_t)p->n_needs_imatrix));
    json_object_set_new(r, "imatrix", im);
    json_object_set_new(r, "can_run", json_boolean(p->can_run));
    json_object_set_new(r, "warnings", json_incref(warnings));
    return r;
}

typedef struct run_ctx {
    app *a;
    smelt_quantize_opts *o;
    json_t *out;
    smelt_progress_term *term; /* finished (its summary line) before the result is printed */
} run_ctx;

static void on_plan(void *user, const smelt_qplan *p)
{
    run_ctx *c = user;
    if (c->o->dry_run) {
        if (c->a->json) c->out = plan_json(p, 1, c->a->warnings);
        else print_plan_text(p, 1);
    } else if (!c->a->quiet && !c->a->json) {
        fprintf(stderr, "%s: quantizing %s as %s: %zu tensors, %zu change type, output %.2f MiB\n", TOOL, p->input,
                p->ftype_name, p->n, p->n_changed, mib(p->out_bytes));
    }
}

static void on_done(void *user, const smelt_qplan *p)
{
    run_ctx *c = user;
    smelt_progress_term_done(c->term, p->bytes);
    fflush(stderr);
    if (c->a->json) c->out = plan_json(p, 0, c->a->warnings);
    else if (!c->a->quiet) print_plan_text(p, 0);
}

/* ==== argument parsing ==== */

typedef struct strv {
    const char **v;
    size_t n;
} strv;

static int strv_push(strv *s, const char *x)
{
    const char **nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    if (!nv) return -1;
    s->v = nv;
    s->v[s->n++] = x;
    return 0;
}

typedef struct ttv {
    smelt_policy_override *v;
    size_t n;
    char **owned;
    size_t n_owned;
} ttv;

static int parse_type(const char *s, const char *opt)
{
    int t = smelt_type_from_name(s);
    if (t < 0 || !smelt_type_valid(t)) {
        smelt_cli_usage_error(TOOL, "%s: unknown ggml type '%s' (e.g. q4_K, q6_K, q8_0, f16)", opt, s);
        return -1;
    }
    return t;
}

/* --error-model BLOCK[/imatrix|/noimatrix|/embedding]=plain|reference|P,C,A[,unbias][,norms] */
static int parse_error_model(const char *spec, smelt_qerr_override *v)
{
    char name[32];
    const char *eq = strchr(spec, '=');
    size_t n = eq ? (size_t)(eq - spec) : 0;
    const char *why = "expected tuned, plain or BLOCK[/imatrix|/noimatrix|/embedding]=MODEL";
    if (!eq || n == 0 || n >= sizeof name) goto bad;
    memcpy(name, spec, n);
    name[n] = 0;
    *v = (smelt_qerr_override){0};
    char *slash = strchr(name, '/');
    if (slash) {
        *slash++ = 0;
        if (!strcmp(slash, "imatrix")) v->when = SMELT_QERR_IMATRIX;
        else if (!strcmp(slash, "noimatrix")) v->when = SMELT_QERR_NOIMATRIX;
        else if (!strcmp(slash, "embedding")) v->when = SMELT_QERR_EMBEDDING;
        else { why = "the qualifier after '/' is imatrix, noimatrix or embedding"; goto bad; }
    }
    v->type = smelt_type_from_name(name);
    if (v->type < 0 || !smelt_q_can_quantize(v->type)) { why = "unknown block type (e.g. q4_K, q5_K, q4_0)"; goto bad; }
    const char *m = eq + 1;
    if (!strcmp(m, "plain")) { v->plain = true; return 0; }
    if (!strcmp(m, "reference")) { v->model.ref = true; return 0; }
    char tail[16] = "";
    int used = 0;
    if (sscanf(m, "%f,%f,%f%n", &v->model.p, &v->model.c, &v->model.a, &used) != 3) {
        why = "the model is plain, reference or P,C,A[,unbias][,norms]";
        goto bad;
    }
    if (m[used] == ',') snprintf(tail, sizeof tail, "%s", m + used + 1);
    else if (m[used]) { why = "the model is plain, reference or P,C,A[,unbias][,norms]"; goto bad; }
    for (char *f = tail[0] ? strtok(tail, ",") : NULL; f; f = strtok(NULL, ",")) {
        if (!strcmp(f, "unbias")) v->model.unbias = true;
        else if (!strcmp(f, "norms")) v->model.norms = true;
        else { why = "only 'unbias' and 'norms' may follow P,C,A"; goto bad; }
    }
    if (!(v->model.p >= 0 && v->model.p <= 8 && v->model.c >= 0 && v->model.c <= 1e6 && v->model.a >= 0 && v->model.a <= 1e6)) {
        why = "P must be in [0, 8], C and A >= 0";
        goto bad;
    }
    return 0;
bad:
    smelt_cli_usage_error(TOOL, "--error-model: '%s': %s", spec, why);
    return -1;
}

static int add_tensor_type(ttv *tt, const char *spec, const char *where)
{
    const char *eq = strchr(spec, '=');
    if (!eq) return smelt_cli_usage_error(TOOL, "%s: malformed tensor type '%s' (expected NAME=TYPE)", where, spec), -1;
    if (eq == spec) return smelt_cli_usage_error(TOOL, "%s: '%s': missing tensor name", where, spec), -1;
    if (!eq[1]) return smelt_cli_usage_error(TOOL, "%s: '%s': missing type", where, spec), -1;
    int t = parse_type(eq + 1, where);
    if (t < 0) return -1;
    char *pat = strndup(spec, (size_t)(eq - spec));
    char **no = realloc(tt->owned, (tt->n_owned + 1) * sizeof *no);
    smelt_policy_override *nv = realloc(tt->v, (tt->n + 1) * sizeof *nv);
    if (no) tt->owned = no;
    if (nv) tt->v = nv;
    if (!pat || !no || !nv) {
        free(pat);
        fprintf(stderr, "%s: error: out of memory\n", TOOL);
        return -1;
    }
    tt->owned[tt->n_owned++] = pat;
    tt->v[tt->n++] = (smelt_policy_override){pat, t};
    return 0;
}

static int add_tensor_type_file(ttv *tt, const char *path)
{
    char *text;
    size_t len;
    smelt_err e;
    smelt_err_clear(&e);
    if (smelt_read_file(path, 64u << 20, &text, &len, &e)) {
        smelt_err_print(&e, TOOL, stderr);
        return -1;
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(text, " \t\r\n", &save); tok && !rc; tok = strtok_r(NULL, " \t\r\n", &save))
        rc = add_tensor_type(tt, tok, path);
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    enum {
        O_IMATRIX = 256, O_INCLUDE, O_EXCLUDE, O_OUTTYPE, O_TOKTYPE, O_TTYPE, O_TTFILE, O_PURE, O_LEAVE, O_KV,
        O_SPLIT, O_REQ, O_DRY, O_JSON, O_VERSION, O_PRUNE, O_MAXBUF, O_ERRM, O_NONFINITE, O_SHARD
    };
    static const struct option lo[] = {
        {"imatrix", required_argument, 0, O_IMATRIX},      {"include-weights", required_argument, 0, O_INCLUDE},
        {"exclude-weights", required_argument, 0, O_EXCLUDE}, {"output-tensor-type", required_argument, 0, O_OUTTYPE},
        {"token-embedding-type", required_argument, 0, O_TOKTYPE}, {"tensor-type", required_argument, 0, O_TTYPE},
        {"tensor-type-file", required_argument, 0, O_TTFILE}, {"pure", no_argument, 0, O_PURE},
        {"leave-output-tensor", no_argument, 0, O_LEAVE},  {"override-kv", required_argument, 0, O_KV},
        {"keep-split", no_argument, 0, O_SPLIT},           {"allow-requantize", no_argument, 0, O_REQ},
        {"dry-run", no_argument, 0, O_DRY},                {"json", no_argument, 0, O_JSON},
        {"threads", required_argument, 0, 't'},            {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},                     {"version", no_argument, 0, O_VERSION},
        {"prune-layers", required_argument, 0, O_PRUNE},   {"max-buffer-size", required_argument, 0, O_MAXBUF},
        {"error-model", required_argument, 0, O_ERRM},     {"allow-nonfinite", no_argument, 0, O_NONFINITE},
        {"shard", required_argument, 0, O_SHARD},          SMELT_CLI_SPLIT_LONGOPTS,
        {0, 0, 0, 0}};
    smelt_cli_split split = {0};
    smelt_quantize_opts o;
    smelt_quantize_opts_default(&o);
    app a = {0};
    strv inc = {0}, exc = {0};
    ttv tt = {0};
    smelt_kv_override *kvs = NULL;
    smelt_qerr_override *errm = NULL;
    size_t n_errm = 0;
    size_t n_kvs = 0;
    long v;
    int c, status = 2;
    smelt_err e;
    smelt_err_clear(&e);
    while ((c = getopt_long(argc, argv, "t:qh", lo, NULL)) != -1) {
        int sr = smelt_cli_split_opt(TOOL, c, optarg, &split);
        if (sr > 1) goto done;
        if (sr) {
            o.split = true;
            o.split_max_bytes = split.max_bytes;
            o.split_max_tensors = split.max_tensors;
            continue;
        }
        switch (c) {
        case O_IMATRIX: o.imatrix = optarg; break;
        case O_INCLUDE: if (strv_push(&inc, optarg)) goto oom; break;
        case O_EXCLUDE: if (strv_push(&exc, optarg)) goto oom; break;
        case O_OUTTYPE: if ((o.output_tensor_type = parse_type(optarg, "--output-tensor-type")) < 0) goto done; break;
        case O_TOKTYPE: if ((o.token_embedding_type = parse_type(optarg, "--token-embedding-type")) < 0) goto done; break;
        case O_TTYPE: if (add_tensor_type(&tt, optarg, "--tensor-type")) goto done; break;
        case O_TTFILE: if (add_tensor_type_file(&tt, optarg)) goto done; break;
        case O_PURE: o.pure = true; break;
        case O_ERRM:
            if (!strcmp(optarg, "plain")) o.plain_error = true;
            else if (!strcmp(optarg, "tuned")) o.plain_error = false;
            else {
                smelt_qerr_override *nv = realloc(errm, (n_errm + 1) * sizeof *nv);
                if (!nv) goto oom;
                errm = nv;
                if (parse_error_model(optarg, &errm[n_errm])) goto done;
                n_errm++;
                o.err_overrides = errm;
                o.n_err_overrides = n_errm;
            }
            break;
        case O_LEAVE: o.leave_output = true; break;
        case O_KV: {
            smelt_kv_override *nk = realloc(kvs, (n_kvs + 1) * sizeof *nk);
            if (!nk) goto oom;
            kvs = nk;
            if (smelt_kv_override_parse(optarg, &kvs[n_kvs], &e)) {
                smelt_cli_usage_error(TOOL, "%s", e.msg);
                goto done;
            }
            n_kvs++;
            break;
        }
        case O_SPLIT: o.keep_split = true; break;
        case O_SHARD: {
            unsigned si, sn;
            char tail;
            if (sscanf(optarg, "%u/%u%c", &si, &sn, &tail) != 2 || si < 1 || si > sn || sn > 65535) {
                smelt_cli_usage_error(TOOL, "--shard: '%s' is not I/N with 1 <= I <= N (e.g. 2/4)", optarg);
                goto done;
            }
            o.shard_index = si;
            o.shard_count = sn;
            break;
        }
        case O_REQ: o.allow_requantize = true; break;
        case O_NONFINITE: o.allow_nonfinite = true; break;
        case O_DRY: o.dry_run = true; break;
        case O_JSON: a.json = 1; break;
        case 't':
            if (smelt_cli_int(optarg, 1, 4096, &v)) {
                smelt_cli_usage_error(TOOL, "-t: '%s' is not a thread count (1..4096)", optarg);
                goto done;
            }
            o.n_threads = (int)v;
            break;
        case 'q': a.quiet = 1; break;
        case 'h': usage(); status = 0; goto done;
        case O_VERSION: smelt_cli_version(TOOL); status = 0; goto done;
        case O_PRUNE: smelt_cli_usage_error(TOOL, "--prune-layers is not supported by smelt"); goto done;
        case O_MAXBUF:
            if (smelt_cli_int(optarg, 1, 1L << 30, &v)) {
                smelt_cli_usage_error(TOOL, "--max-buffer-size: '%s' is not a size in MiB", optarg);
                goto done;
            }
            break; /* accepted for compatibility: smelt always works in bounded slabs */
        default: smelt_cli_usage_error(TOOL, "unknown option"); goto done;
        }
    }
    int npos = argc - optind;
    if (npos < 2) {
        smelt_cli_usage_error(TOOL, "expected IN.gguf [OUT.gguf] TYPE [NTHREADS]");
        goto done;
    }
    const char *in = argv[optind], *out = NULL, *type, *nthr = NULL;
    char derived[4200];
    if (smelt_ftype_find(argv[optind + 1])) { /* IN TYPE [NTHREADS], as llama-quantize */
        type = argv[optind + 1];
        if (npos > 2) nthr = argv[optind + 2];
        if (npos > 3) {
            smelt_cli_usage_error(TOOL, "too many arguments");
            goto done;
        }
        if (!o.dry_run) {
            const char *slash = strrchr(in, '/');
            const smelt_ftype_info *fi = smelt_ftype_find(type);
            snprintf(derived, sizeof derived, "%.*sggml-model-%s%s", slash ? (int)(slash - in + 1) : 0, in, fi->name,
                     o.keep_split ? "" : ".gguf");
            out = derived;
        }
    } else {
        if (npos < 3) {
            smelt_cli_usage_error(TOOL, "missing TYPE after the output file '%s'", argv[optind + 1]);
            goto done;
        }
        out = argv[optind + 1];
        type = argv[optind + 2];
        if (npos > 3) nthr = argv[optind + 3];
        if (npos > 4) {
            smelt_cli_usage_error(TOOL, "too many arguments");
            goto done;
        }
    }
    if (nthr) {
        if (smelt_cli_int(nthr, 1, 4096, &v)) {
            smelt_cli_usage_error(TOOL, "NTHREADS: '%s' is not a thread count (1..4096)", nthr);
            goto done;
        }
        o.n_threads = (int)v;
    }
    o.ftype = type;
    o.include_weights = inc.v;
    o.n_include = inc.n;
    o.exclude_weights = exc.v;
    o.n_exclude = exc.n;
    o.tensor_types = tt.v;
    o.n_tensor_types = tt.n;
    o.kv_overrides = kvs;
    o.n_kv_overrides = n_kvs;
    if (a.json) a.warnings = json_array();
    smelt_progress prog = {0};
    smelt_progress_term term;
    smelt_progress_term_init(&term, &prog, "quantizing", a.quiet || o.dry_run);
    run_ctx rc = {&a, &o, NULL, &term};
    o.notes = (smelt_notes){on_warn, &a};
    o.on_plan = on_plan;
    o.on_done = on_done;
    o.user = &rc;
    smelt_tool_install_file_safety(TOOL);
    int r = smelt_quantize_run(&o, in, out, &prog, &e);
    if (r) {
        smelt_err_print(&e, TOOL, stderr);
        status = smelt_err_exit_status(r);
    } else {
        status = 0;
        if (rc.out) {
            smelt_cli_print_json(rc.out, JSON_INDENT(1));
        }
    }
    json_decref(rc.out);
    json_decref(a.warnings);
    goto done;
oom:
    fprintf(stderr, "%s: error: out of memory\n", TOOL);
    status = 6;
done:
    free(inc.v);
    free(exc.v);
    for (size_t i = 0; i < tt.n_owned; i++) free(tt.owned[i]);
    free(tt.owned);
    free(tt.v);
    free(kvs);
    free(errm);
    return status;
}

/* smelt-imatrix — importance matrix of a GGUF model on a calibration text, as llama-imatrix
 * computes it (sums of x² per input column of every matrix product, per expert for MoE
 * weights), written as llama.cpp's GGUF imatrix or legacy .dat; slices of a run
 * (--chunk-range) with checkpoints (--save-every), combined with --combine; a summary of
 * an existing file with --show-statistics.
 * Thin main: options → smelt_imatrix_run() / smelt_imx_combine() / smelt_imx_stats() →
 * text or --json. */
#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/progress.h"
#include "verify/eval/imatrix_collect.h"

static const char *TOOL = "smelt-imatrix";

static void usage(void)
{
    printf("Usage: smelt-imatrix -m MODEL.gguf -f CALIB.txt [-o OUT.imatrix.gguf] [options]\n"
           "       smelt-imatrix --combine IMATRIX... -o OUT.imatrix.gguf [--output-format FMT] [-c N]\n"
           "       smelt-imatrix --show-statistics IMATRIX [--json]\n"
           "\n"
           "Importance matrix of a Llama/Mistral/Mixtral/Qwen GGUF on a calibration text, as llama-imatrix\n"
           "computes it: the text is cut into BOS-led chunks of N_CTX tokens, every chunk runs through\n"
           "the f32 reference forward pass, and for every matrix product of the blocks the squares of\n"
           "its input activations are summed per column (per expert for MoE expert weights, with the\n"
           "number of tokens each expert received). smelt-quantize and llama-quantize read the result\n"
           "with --imatrix.\n"
           "\n"
           "Options:\n"
           "  -m, --model FILE         model (GGUF, llama architecture; f32/f16/bf16 or quantized)\n"
           "  -f, --file FILE          calibration text (one trailing newline is dropped)\n"
           "  -o, --output FILE        output (default imatrix.gguf)\n"
           "      --output-format FMT  gguf (default) or dat (llama.cpp's legacy format)\n"
           "  -c, --ctx-size N         tokens per chunk (default 512)\n"
           "      --chunks N           use at most N chunks (default: all)\n"
           "  -b, --batch-size N       tokens per forward call (default 2048)\n"
           "  -t, --threads N          threads (default: one per CPU)\n"
           "      --process-output     also collect output.weight (llama-imatrix --process-output)\n"
           "      --chunk-range A:B    only chunks A <= i < B of the text (0-based; 0:h and h:n are\n"
           "                           the two halves of n chunks), for --combine\n"
           "      --save-every N       write a checkpoint every N chunks; a run started again with\n"
           "                           the same model, text and options resumes from it\n"
           "      --checkpoint FILE    checkpoint path (default OUTPUT.checkpoint; removed at the end)\n"
           "      --combine            add up the imatrices given as arguments (slices of a run, or\n"
           "                           runs on other texts; GGUF or legacy .dat, smelt's or\n"
           "                           llama-imatrix's) into -o; -c gives legacy files' chunk size\n"
           "      --show-statistics F  per-weight importance summary of the imatrix F\n"
           "      --json               print a summary as one JSON object (entries and counts)\n"
           "  -q, --quiet              no progress, no per-chunk perplexity\n"
           "  -h, --help               this help\n"
           "      --version            version\n"
           "\n"
           "The text must give at least 2 x N_CTX tokens. Results do not depend on -t or -b.\n"
           "Exit status: 0 ok, 1 I/O error, 2 usage, 3 malformed input, 4 unsupported model\n"
           "(another architecture, or a LoRA adapter: merge it first), 5 mismatch, 6 out of memory.\n");
}

typedef struct {
    smelt_tool t; /* -q, --json, warnings, progress, the error tail */
    int stream;
    long kill_after; /* tests: SIGKILL after this chunk (SMELT_IMATRIX_TEST_KILL_AFTER) */
} ui;

static void on_chunk(void *user, const smelt_ppl_result *r)
{
    ui *u = user;
    if (!u->t.quiet && !u->t.json && u->stream) {
        printf("[%zu]%.4f,", r->chunks_done, r->ppl);
        u->t.stdout_mid_line = 1;
        fflush(stdout);
    }
    char label[96];
    snprintf(label, sizeof label, "chunks  PPL %.4f  %.0f tokens/s", r->ppl, r->tokens_per_s);
    smelt_progress_step(&u->t.progress, r->chunks_done, r->n_chunks, 0, label);
    if (u->kill_after > 0 && r->chunk_begin + r->chunks_done == (size_t)u->kill_after) raise(SIGKILL);
}

static void print_text(const smelt_imatrix_opts *o, const smelt_imatrix_result *r, const ui *u)
{
    const smelt_ppl_result *p = &r->ppl;
    if (!u->t.quiet) {
        if (!u->stream)
            for (size_t i = 0; i < p->n_chunks; i++) printf("[%zu]%.4f,", i + 1, p->running[i]);
        printf("\n");
        if (p->ppl_err > 0) printf("Final estimate: PPL = %.4f +/- %.5f\n", p->ppl, p->ppl_err);
    }
    printf("%s: %zu entries from %u chunks of %u tokens written to %s (%s)\n", TOOL, r->n_entries, r->chunk_count,
           r->chunk_size, o->output, o->format == SMELT_IMX_LEGACY ? "legacy .dat" : "GGUF");
    if (!u->t.quiet && (r->resumed_chunks || r->checkpoints))
        printf("chunks %zu..%zu: %zu restored from the checkpoint, %zu evaluated; %zu checkpoints written\n",
               p->chunk_begin - r->resumed_chunks, p->chunk_begin + p->n_chunks - 1, r->resumed_chunks, p->n_chunks,
               r->checkpoints);
    if (!u->t.quiet)
        printf("%zu tokens in %.2f s: %.1f tokens/s, %d threads (%s); load %.2f s\n", p->n_chunks * p->n_ctx,
               p->seconds, p->tokens_per_s, p->n_threads, p->isa, p->load_seconds);
}

static void print_json(smelt_tool *t, const smelt_imatrix_opts *o, const smelt_imatrix_result *r)
{
    const smelt_ppl_result *p = &r->ppl;
    json_t *j = json_object();
    json_object_set_new(j, "tool", json_string(TOOL));
    json_object_set_new(j, "version", json_string(SMELT_VERSION));
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "text", json_string(o->text));
    json_object_set_new(j, "output", json_string(o->output));
    json_object_set_new(j, "format", json_string(o->format == SMELT_IMX_LEGACY ? "dat" : "gguf"));
    json_object_set_new(j, "model_types", json_string(p->model_types));
    json_object_set_new(j, "n_ctx", json_integer(p->n_ctx));
    json_object_set_new(j, "n_tokens", json_integer((json_int_t)p->n_tokens));
    json_object_set_new(j, "n_chunks", json_integer((json_int_t)p->n_chunks));
    json_object_set_new(j, "chunk_begin", json_integer((json_int_t)(p->chunk_begin - r->resumed_chunks)));
    json_object_set_new(j, "chunk_end", json_integer((json_int_t)(p->chunk_begin + p->n_chunks)));
    json_object_set_new(j, "n_chunks_text", json_integer((json_int_t)p->n_chunks_text));
    json_object_set_new(j, "resumed_chunks", json_integer((json_int_t)r->resumed_chunks));
    json_object_set_new(j, "checkpoints", json_integer((json_int_t)r->checkpoints));
    json_object_set_new(j, "chunk_count", json_integer(r->chunk_count));
    json_object_set_new(j, "chunk_size", json_integer(r->chunk_size));
    json_object_set_new(j, "n_entries", json_integer((json_int_t)r->n_entries));
    json_object_set_new(j, "n_partial", json_integer((json_int_t)r->n_partial));
    json_object_set_new(j, "ppl", json_real(p->ppl));
    json_object_set_new(j, "ppl_err", json_real(p->ppl_err));
    json_object_set_new(j, "threads", json_integer(p->n_threads));
    json_object_set_new(j, "isa", json_string(p->isa));
    json_object_set_new(j, "seconds", json_real(p->seconds));
    json_object_set_new(j, "tokens_per_second", json_real(p->tokens_per_s));
    json_t *ents = json_array();
    for (size_t i = 0; i < r->imx->n_entries; i++) {
        const smelt_imx_entry *en = &r->imx->entries[i];
        json_t *x = json_object(), *cnt = json_array();
        json_object_set_new(x, "name", json_string(en->name));
        json_object_set_new(x, "n_mat", json_integer((json_int_t)en->n_mat));
        json_object_set_new(x, "n_cols", json_integer((json_int_t)(en->n_values / en->n_mat)));
        for (uint64_t k = 0; k < en->n_mat; k++) json_array_append_new(cnt, json_integer(en->counts[k]));
        json_object_set_new(x, "counts", cnt);
        json_array_append_new(ents, x);
    }
    json_object_set_new(j, "entries", ents);
    smelt_tool_print_json(t, j, JSON_INDENT(1) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10));
    json_decref(j);
}

/* --chunk-range A:B with 0 <= A < B. */
static int parse_range(const char *arg, smelt_imatrix_opts *o)
{
    const char *colon = strchr(arg, ':');
    long lo = -1, hi = -1;
    if (colon && colon != arg) {
        char a[32];
        size_t n = (size_t)(colon - arg);
        if (n < sizeof a) {
            memcpy(a, arg, n);
            a[n] = '\0';
            if (smelt_cli_int(a, 0, INT32_MAX, &lo)) lo = -1;
            if (smelt_cli_int(colon + 1, 0, INT32_MAX, &hi)) hi = -1;
        }
    }
    if (lo < 0 || hi < 0 || lo >= hi)
        return smelt_cli_usage_error(TOOL, "--chunk-range: expected A:B with 0 <= A < B, got '%s'", arg);
    o->chunk_begin = (size_t)lo;
    o->chunk_end = (size_t)hi;
    return 0;
}

/* Block order (blk.2 before blk.10), then the name; weights outside blocks last. */
static int cmp_stat(const void *a, const void *b)
{
    const smelt_imx_stat *x = a, *y = b;
    unsigned lx = (unsigned)x->layer, ly = (unsigned)y->layer; /* -1 sorts last */
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Per block, the entries' figures averaged with their N as weights (as llama-imatrix's
 * per-layer table): Σa, the share above one stddev, and the cosine similarity (over the
 * entries that have one). st is in block order. */
typedef struct {
    int layer;
    uint64_t n_values;
    double sum, z_above_1, cossim; /* cossim NAN without any */
} layer_stat;

static size_t layer_stats(const smelt_imx_stat *st, size_t n, layer_stat *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (st[i].layer < 0) break; /* weights outside blocks sort last */
        layer_stat l = {st[i].layer, 0, 0, 0, 0};
        double n_cos = 0;
        for (; i < n && st[i].layer == l.layer; i++) {
            const double w = (double)st[i].n_values;
            l.n_values += st[i].n_values;
            l.sum += w * st[i].sum;
            l.z_above_1 += w * st[i].z_above_1;
            if (isfinite(st[i].cossim)) {
                l.cossim += w * st[i].cossim;
                n_cos += w;
            }
        }
        if (!l.n_values) continue;
        l.sum /= (double)l.n_values;
        l.z_above_1 /= (double)l.n_values;
        l.cossim = n_cos > 0 ? l.cossim / n_cos : NAN;
        out[k++] = l;
    }
    return k;
}

static json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int show_statistics(const char *path, int json)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_imx *m = NULL;
    smelt_imx_stat *st = NULL;
    int rc = smelt_imx_read(path, &m, &e);
    if (!rc) rc = smelt_imx_stats(m, &st, &e);
    if (rc) {
        smelt_err_print(&e, TOOL, stderr);
        smelt_imx_free(m);
        return smelt_err_exit_status(rc);
    }
    qsort(st, m->n_entries, sizeof *st, cmp_stat);
    layer_stat *ls = malloc((m->n_entries ? m->n_entries : 1) * sizeof *ls);
    if (!ls) {
        free(st);
        smelt_imx_free(m);
        fprintf(stderr, "%s: error: out of memory\n", TOOL);
        return smelt_err_exit_status(SMELT_ENOMEM);
    }
    const size_t n_layers = layer_stats(st, m->n_entries, ls);
    if (json) {
        json_t *j = json_object(), *ents = json_array();
        json_object_set_new(j, "tool", json_string(TOOL));
        json_object_set_new(j, "version", json_string(SMELT_VERSION));
        json_object_set_new(j, "imatrix", json_string(path));
        json_object_set_new(j, "format", json_string(m->format == SMELT_IMX_LEGACY ? "dat" : "gguf"));
        json_object_set_new(j, "chunk_count", json_integer(m->chunk_count));
        json_object_set_new(j, "chunk_size", json_integer(m->chunk_size));
        json_t *ds = json_array();
        for (size_t i = 0; i < m->n_datasets; i++) json_array_append_new(ds, json_string(m->datasets[i]));
        json_object_set_new(j, "datasets", ds);
        for (size_t i = 0; i < m->n_entries; i++) {
            const smelt_imx_stat *t = &st[i];
            json_t *x = json_object();
            json_object_set_new(x, "name", json_string(t->name));
            json_object_set_new(x, "layer", t->layer >= 0 ? json_integer(t->layer) : json_null());
            json_object_set_new(x, "n_mat", json_integer((json_int_t)t->n_mat));
            json_object_set_new(x, "n_mat_empty", json_integer((json_int_t)t->n_mat_empty));
            json_object_set_new(x, "n_values", json_integer((json_int_t)t->n_values));
            json_object_set_new(x, "sum", json_num(t->sum));
            json_object_set_new(x, "min", json_num(t->min));
            json_object_set_new(x, "max", json_num(t->max));
            json_object_set_new(x, "mean", json_num(t->mean));
            json_object_set_new(x, "stddev", json_num(t->stddev));
            json_object_set_new(x, "active", json_num(t->active));
            json_object_set_new(x, "entropy", json_num(t->entropy));
            json_object_set_new(x, "entropy_norm", json_num(t->entropy_norm));
            json_object_set_new(x, "z_above_1", json_num(t->z_above_1));
            json_object_set_new(x, "cossim", json_num(t->cossim));
            json_array_append_new(ents, x);
        }
        json_object_set_new(j, "entries", ents);
        json_t *layers = json_array();
        for (size_t i = 0; i < n_layers; i++) {
            json_t *x = json_object();
            json_object_set_new(x, "layer", json_integer(ls[i].layer));
            json_object_set_new(x, "n_values", json_integer((json_int_t)ls[i].n_values));
            json_object_set_new(x, "sum", json_num(ls[i].sum));
            json_object_set_new(x, "z_above_1", json_num(ls[i].z_above_1));
            json_object_set_new(x, "cossim", json_num(ls[i].cossim));
            json_array_append_new(layers, x);
        }
        json_object_set_new(j, "layers", layers);
        smelt_cli_print_json(j, JSON_INDENT(1) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10));
        json_decref(j);
    } else {
        printf("%s: %zu entries, %u chunks of %u tokens (%s)\n", path, m->n_entries, m->chunk_count, m->chunk_size,
               m->format == SMELT_IMX_LEGACY ? "legacy .dat" : "GGUF");
        printf("a = mean squared activation per input column (sums / count; experts with no token left out)\n\n");
        printf("%-36s %12s %10s %12s %10s %10s %8s %7s %9s %7s %7s %7s\n", "weight", "sum(a)", "min", "max", "mean",
               "stddev", "active", "N", "entropy", "E/max", "z>1", "cossim");
        for (size_t i = 0; i < m->n_entries; i++) {
            const smelt_imx_stat *t = &st[i];
            if (!t->n_values) {
                printf("%-36s (no data)\n", t->name);
                continue;
            }
            char cs[16] = "-";
            if (isfinite(t->cossim)) snprintf(cs, sizeof cs, "%.4f", t->cossim);
            printf("%-36s %12.4g %10.4g %12.4g %10.4g %10.4g %7.2f%% %7" PRIu64 " %9.4f %6.2f%% %6.2f%% %7s\n",
                   t->name, t->sum, t->min, t->max, t->mean, t->stddev, 100 * t->active, t->n_values, t->entropy,
                   100 * t->entropy_norm, 100 * t->z_above_1, cs);
        }
        printf("\nper block, weighted by N:\n%5s %12s %7s %7s\n", "block", "sum(a)", "z>1", "cossim");
        for (size_t i = 0; i < n_layers; i++) {
            char cs[16] = "-";
            if (isfinite(ls[i].cossim)) snprintf(cs, sizeof cs, "%.4f", ls[i].cossim);
            printf("%5d %12.4g %6.2f%% %7s\n", ls[i].layer, ls[i].sum, 100 * ls[i].z_above_1, cs);
        }
    }
    free(ls);
    free(st);
    smelt_imx_free(m);
    return 0;
}

static int combine(char *const *files, int n, const smelt_imatrix_opts *o, int json)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_imx **in = calloc((size_t)n, sizeof *in), *out = NULL;
    smelt_guard_input *gi = calloc((size_t)n, sizeof *gi);
    int rc = in && gi ? 0 : SMELT_NOMEM(&e, "the inputs");
    for (int i = 0; !rc && i < n; i++) gi[i] = (smelt_guard_input){files[i], "an imatrix to combine"};
    if (!rc) rc = smelt_guard_check_file_against(o->output, gi, (size_t)n, &e);
    for (int i = 0; !rc && i < n; i++) rc = smelt_imx_read(files[i], &in[i], &e);
    if (!rc) rc = smelt_imx_combine(in, (const char *const *)files, (size_t)n, o->n_ctx, &out, &e);
    if (!rc) rc = smelt_imx_write(out, o->output, o->format, &e);
    if (rc) {
        smelt_err_print(&e, TOOL, stderr);
    } else if (json) {
        json_t *j = json_object(), *ins = json_array();
        json_object_set_new(j, "tool", json_string(TOOL));
        json_object_set_new(j, "version", json_string(SMELT_VERSION));
        for (int i = 0; i < n; i++) json_array_append_new(ins, json_string(files[i]));
        json_object_set_new(j, "combined", ins);
        json_object_set_new(j, "output", json_string(o->output));
        json_object_set_new(j, "format", json_string(o->format == SMELT_IMX_LEGACY ? "dat" : "gguf"));
        json_object_set_new(j, "n_entries", json_integer((json_int_t)out->n_entries));
        json_object_set_new(j, "chunk_count", json_integer(out->chunk_count));
        json_object_set_new(j, "chunk_size", json_integer(out->chunk_size));
        smelt_cli_print_json(j, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        json_decref(j);
    } else {
        printf("%s: %d files combined: %zu entries from %u chunks of %u tokens written to %s (%s)\n", TOOL, n,
               out->n_entries, out->chunk_count, out->chunk_size, o->output,
               o->format == SMELT_IMX_LEGACY ? "legacy .dat" : "GGUF");
    }
    for (int i = 0; in && i < n; i++) smelt_imx_free(in[i]);
    free(in);
    free(gi);
    smelt_imx_free(out);
    return rc ? smelt_err_exit_status(rc) : 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

int main(int argc, char **argv)
{
    smelt_imatrix_opts o;
    smelt_imatrix_opts_default(&o);
    o.output = "imatrix.gguf";
    ui u;
    memset(&u, 0, sizeof u);
    smelt_tool_init(&u.t, TOOL, usage);
    int format_given = 0, combine_mode = 0;
    const char *checkpoint = NULL, *stats_file = NULL;
    static const struct option lo[] = {
        SMELT_CLI_EVAL_MODEL_LONGOPT,              SMELT_CLI_EVAL_LONGOPTS,
        {"output", required_argument, 0, 'o'},     {"output-file", required_argument, 0, 'o'},
        {"output-format", required_argument, 0, 'F'},
        {"process-output", no_argument, 0, 'P'},
        {"chunk-range", required_argument, 0, 'R'}, {"save-every", required_argument, 0, 'S'},
        {"checkpoint", required_argument, 0, 'K'},  {"combine", no_argument, 0, 'M'},
        {"show-statistics", required_argument, 0, 'Z'},
        SMELT_TOOL_OPTIONS,                        {0, 0, 0, 0}};
    int c;
    const smelt_cli_eval ev = {&o.model, &o.text, &o.n_ctx, &o.n_chunks, &o.n_batch, &o.n_threads};
    u.t.eval = &ev;
    while ((c = getopt_long(argc, argv, "m:f:o:c:b:t:qh", lo, NULL)) != -1) {
        int er = smelt_tool_option(&u.t, c, optarg);
        if (er == SMELT_TOOL_OPTION_TAKEN) continue;
        if (er != SMELT_TOOL_OPTION_OTHER) return er;
        switch (c) {
        case 'o': o.output = optarg; break;
        case 'F':
            if (!strcmp(optarg, "gguf")) o.format = SMELT_IMX_GGUF;
            else if (!strcmp(optarg, "dat")) o.format = SMELT_IMX_LEGACY;
            else return smelt_cli_usage_error(TOOL, "--output-format: expected gguf or dat, got '%s'", optarg);
            format_given = 1;
            break;
        case 'P': o.process_output = true; break;
        case 'R':
            if ((er = parse_range(optarg, &o))) return er;
            break;
        case 'S': {
            long v;
            if (smelt_cli_int(optarg, 1, INT32_MAX, &v))
                return smelt_cli_usage_error(TOOL, "--save-every: expected a number of chunks >= 1, got '%s'", optarg);
            o.save_every = (uint32_t)v;
            break;
        }
        case 'K': checkpoint = optarg; break;
        case 'M': combine_mode = 1; break;
        case 'Z': stats_file = optarg; break;
        }
    }
    if (stats_file) {
        if (combine_mode || o.model || optind < argc)
            return smelt_cli_usage_error(TOOL, "--show-statistics takes one imatrix and no model, text or --combine");
        return show_statistics(stats_file, u.t.json);
    }
    if (combine_mode) {
        if (o.model || o.text || o.chunk_begin || o.chunk_end || o.save_every || checkpoint || o.process_output)
            return smelt_cli_usage_error(TOOL, "--combine adds existing imatrices: no -m, -f, --chunk-range, "
                                               "--save-every, --checkpoint or --process-output");
        if (argc - optind < 1) return smelt_cli_usage_error(TOOL, "--combine: no imatrix given");
        if (!*o.output) return smelt_cli_usage_error(TOOL, "-o: empty output path");
        smelt_tool_install_file_safety(TOOL);
        return combine(argv + optind, argc - optind, &o, u.t.json);
    }
    if (optind < argc) return smelt_cli_usage_error(TOOL, "unexpected argument '%s'", argv[optind]);
    if (!o.model) return smelt_cli_usage_error(TOOL, "no model given (-m MODEL.gguf)");
    if (!o.text) return smelt_cli_usage_error(TOOL, "no calibration text given (-f CALIB.txt)");
    if (!*o.output) return smelt_cli_usage_error(TOOL, "-o: empty output path");
    char ckpt_default[4096];
    if (o.save_every) {
        if (!checkpoint) {
            if (snprintf(ckpt_default, sizeof ckpt_default, "%s.checkpoint", o.output) >= (int)sizeof ckpt_default)
                return smelt_cli_usage_error(TOOL, "-o: path too long");
            checkpoint = ckpt_default;
        }
        o.checkpoint = checkpoint;
    } else if (checkpoint) {
        return smelt_cli_usage_error(TOOL, "--checkpoint needs --save-every N");
    }
    const char *kill_after = getenv("SMELT_IMATRIX_TEST_KILL_AFTER");
    if (kill_after) u.kill_after = atol(kill_after);
    smelt_tool_start(&u.t, "imatrix");
    o.notes = smelt_tool_notes(&u.t);
    if (o.save_every && smelt_file_exists(o.checkpoint))
        smelt_tool_note(&u.t, "resuming from the checkpoint %s", o.checkpoint);

    u.stream = !isatty(1);
    smelt_err e;
    smelt_err_clear(&e);
    smelt_imatrix_result r;
    int rc = smelt_imatrix_run(&o, &r, on_chunk, &u, &e);
    if (rc) return smelt_tool_fail(&u.t, rc, &e);
    if (!format_given && o.format == SMELT_IMX_GGUF && !ends_with(o.output, ".gguf"))
        smelt_tool_warn(&u.t, "wrote the GGUF format to '%s' (no .gguf suffix); use --output-format dat "
                              "for llama.cpp's legacy format", o.output);
    smelt_tool_clear_line(&u.t);
    if (u.t.json) print_json(&u.t, &o, &r);
    else print_text(&o, &r, &u);
    smelt_imatrix_result_free(&r);
    smelt_tool_end(&u.t);
    return 0;
}

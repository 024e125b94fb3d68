/* smelt-imatrix — importance matrix of a GGUF model on a calibration text, as llama-imatrix
 * computes it (sums of x² per input column of every matrix product, per expert for MoE
 * weights), written as llama.cpp's GGUF imatrix or legacy .dat.
 * Thin main: options → smelt_imatrix_run() → text or --json. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/progress.h"
#include "verify/eval/imatrix_collect.h"

static const char *TOOL = "smelt-imatrix";

static void usage(void)
{
    printf("Usage: smelt-imatrix -m MODEL.gguf -f CALIB.txt [-o OUT.imatrix.gguf] [options]\n"
           "\n"
           "Importance matrix of a Llama/Mistral/Mixtral GGUF on a calibration text, as llama-imatrix\n"
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
    int json, quiet, stream, printed;
    smelt_progress prog;
    smelt_progress_term term;
} ui;

static void on_chunk(void *user, const smelt_ppl_result *r)
{
    ui *u = user;
    if (!u->quiet && !u->json && u->stream) {
        printf("[%zu]%.4f,", r->chunks_done, r->ppl);
        u->printed = 1;
        fflush(stdout);
    }
    char label[96];
    snprintf(label, sizeof label, "chunks  PPL %.4f  %.0f tokens/s", r->ppl, r->tokens_per_s);
    smelt_progress_step(&u->prog, r->chunks_done, r->n_chunks, 0, label);
}

static void on_warn(void *user, const char *msg)
{
    ui *u = user;
    if (u->quiet) return;
    if (u->term.tty) fputs("\r\033[K", stderr);
    fprintf(stderr, "%s: warning: %s\n", TOOL, msg);
}

static void print_text(const smelt_imatrix_opts *o, const smelt_imatrix_result *r, const ui *u)
{
    const smelt_ppl_result *p = &r->ppl;
    if (!u->quiet) {
        if (!u->stream)
            for (size_t i = 0; i < p->n_chunks; i++) printf("[%zu]%.4f,", i + 1, p->running[i]);
        printf("\n");
        if (p->ppl_err > 0) printf("Final estimate: PPL = %.4f +/- %.5f\n", p->ppl, p->ppl_err);
    }
    printf("%s: %zu entries from %u chunks of %u tokens written to %s (%s)\n", TOOL, r->n_entries, r->chunk_count,
           r->chunk_size, o->output, o->format == SMELT_IMX_LEGACY ? "legacy .dat" : "GGUF");
    if (!u->quiet)
        printf("%zu tokens in %.2f s: %.1f tokens/s, %d threads (%s); load %.2f s\n", p->n_chunks * p->n_ctx,
               p->seconds, p->tokens_per_s, p->n_threads, p->isa, p->load_seconds);
}

static void print_json(const smelt_imatrix_opts *o, const smelt_imatrix_result *r)
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
    smelt_cli_print_json(j, JSON_INDENT(1) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10));
    json_decref(j);
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
    int format_given = 0;
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},      {"file", required_argument, 0, 'f'},
        {"output", required_argument, 0, 'o'},     {"output-file", required_argument, 0, 'o'},
        {"output-format", required_argument, 0, 'F'},
        {"ctx-size", required_argument, 0, 'c'},   {"chunks", required_argument, 0, 'C'},
        {"batch-size", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"process-output", no_argument, 0, 'P'},   {"json", no_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},          {0, 0, 0, 0}};
    int c;
    const smelt_cli_eval ev = {&o.n_ctx, &o.n_chunks, &o.n_batch, &o.n_threads};
    while ((c = getopt_long(argc, argv, "m:f:o:c:b:t:qh", lo, NULL)) != -1) {
        int er = smelt_cli_eval_opt(TOOL, c, optarg, &ev);
        if (er == 1) continue;
        if (er) return er;
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'f': o.text = optarg; break;
        case 'o': o.output = optarg; break;
        case 'F':
            if (!strcmp(optarg, "gguf")) o.format = SMELT_IMX_GGUF;
            else if (!strcmp(optarg, "dat")) o.format = SMELT_IMX_LEGACY;
            else return smelt_cli_usage_error(TOOL, "--output-format: expected gguf or dat, got '%s'", optarg);
            format_given = 1;
            break;
        case 'P': o.process_output = true; break;
        case 'j': u.json = 1; break;
        case 'q': u.quiet = 1; break;
        case 'h': usage(); return 0;
        case 'V': smelt_cli_version(TOOL); return 0;
        default: return smelt_cli_usage_error(TOOL, "unknown option");
        }
    }
    if (optind < argc) return smelt_cli_usage_error(TOOL, "unexpected argument '%s'", argv[optind]);
    if (!o.model) return smelt_cli_usage_error(TOOL, "no model given (-m MODEL.gguf)");
    if (!o.text) return smelt_cli_usage_error(TOOL, "no calibration text given (-f CALIB.txt)");
    if (!*o.output) return smelt_cli_usage_error(TOOL, "-o: empty output path");
    if (!u.quiet && !format_given && o.format == SMELT_IMX_GGUF && !ends_with(o.output, ".gguf"))
        fprintf(stderr, "%s: warning: writing the GGUF format to '%s' (no .gguf suffix); use --output-format dat "
                        "for llama.cpp's legacy format\n", TOOL, o.output);
    smelt_tool_install_file_safety(TOOL);
    o.notes = (smelt_notes){on_warn, &u};

    u.stream = !isatty(1);
    smelt_progress_term_init(&u.term, &u.prog, "imatrix", u.quiet);
    smelt_err e;
    smelt_err_clear(&e);
    smelt_imatrix_result r;
    int rc = smelt_imatrix_run(&o, &r, on_chunk, &u, &e);
    if (!u.quiet && u.term.tty) fputs("\r\033[K", stderr);
    if (rc) {
        if (u.stream && u.printed) printf("\n");
        smelt_err_print(&e, TOOL, stderr);
        return smelt_err_exit_status(rc);
    }
    if (u.json) print_json(&o, &r);
    else print_text(&o, &r, &u);
    smelt_imatrix_result_free(&r);
    return 0;
}

/* smelt-perplexity — perplexity of a GGUF model on a text, exactly as llama-perplexity
 * computes it, and KL-divergence against a base model's stored distributions.
 * Thin main: options → smelt_ppl_run() → text or --json. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/progress.h"
#include "verify/eval/ppl.h"

static const char *TOOL = "smelt-perplexity";

static void usage(void)
{
    printf("Usage: smelt-perplexity -m MODEL.gguf -f TEXT [options]\n"
           "       smelt-perplexity -m MODEL.gguf -f TEXT --kld-base BASE.kld [options]\n"
           "       smelt-perplexity -m MODEL.gguf --kld BASE.kld [options]\n"
           "\n"
           "Perplexity of a Llama/Mistral/Mixtral/Qwen GGUF on a text, by llama-perplexity's method:\n"
           "BOS-led chunks of N_CTX tokens, the second half of each chunk scored. With --kld-base,\n"
           "also store the model's per-token distributions (llama.cpp's .kld format); with --kld,\n"
           "compare this model against such a file (KL-divergence, token probability statistics).\n"
           "\n"
           "Options:\n"
           "  -m, --model FILE    model (GGUF, llama architecture)\n"
           "  -f, --file FILE     evaluation text (one trailing newline is dropped)\n"
           "  -c, --ctx-size N    context per chunk (default 512; with --kld: the base file's)\n"
           "      --chunks N      evaluate at most N chunks (default: all)\n"
           "  -b, --batch-size N  tokens per forward call (default 2048: N/N_CTX chunks at once)\n"
           "  -t, --threads N     threads (default: one per CPU)\n"
           "      --kld-base FILE write the base distributions to FILE\n"
           "      --kld FILE      KL-divergence against the base distributions in FILE\n"
           "      --kld-tokens OUT  with --kld: write each scored token's KL-divergence to OUT\n"
           "                      (tab-separated: chunk, position, token, kld; two quants'\n"
           "                      files of one base line up row by row)\n"
           "      --json          print the results as one JSON object\n"
           "  -q, --quiet         no progress and no per-chunk values\n"
           "  -h, --help          this help\n"
           "      --version       version\n"
           "\n"
           "The text must give at least 2 x N_CTX tokens. Results do not depend on -t or -b.\n"
           "Exit status: 0 ok, 1 I/O error, 2 usage, 3 malformed input, 4 unsupported model\n"
           "(another architecture, or a LoRA adapter: merge it first), 5 mismatch (vocabulary\n"
           "vs base file), 6 out of memory.\n");
}

typedef struct {
    smelt_tool t;
    int stream; /* print per-chunk values as they come (stdout is not a terminal) */
    int header_done;
} ui;

static void kld_header(void)
{
    printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              \xce\x94p RMS"
           "            Same top p\n");
}

static void kld_line(const smelt_ppl_result *r)
{
    const smelt_kld_stats *k = &r->kld;
    printf("%4zu    %9.4f \xc2\xb1 %9.4f    %10.5f \xc2\xb1 %10.5f    %10.5f \xc2\xb1 %10.5f    %6.3f \xc2\xb1 %6.3f %%"
           "    %6.3f \xc2\xb1 %6.3f %%\n",
           r->chunks_done, k->ppl, k->ppl_err, k->ln_ratio, k->ln_ratio_err, k->kld, k->kld_err, 100.0 * k->dp_rms,
           100.0 * k->dp_rms_err, 100.0 * k->same_top, 100.0 * k->same_top_err);
}

static void on_chunk(void *user, const smelt_ppl_result *r)
{
    ui *u = user;
    if (!u->t.quiet && !u->t.json && u->stream) {
        if (r->has_kld) {
            if (!u->header_done) kld_header();
            kld_line(r);
        } else {
            printf("[%zu]%.4f,", r->chunks_done, r->ppl);
            u->t.stdout_mid_line = 1;
        }
        u->header_done = 1;
        fflush(stdout);
    }
    char label[96];
    snprintf(label, sizeof label, "chunks  PPL %.4f  %.0f tokens/s", r->ppl, r->tokens_per_s);
    smelt_progress_step(&u->t.progress, r->chunks_done, r->n_chunks, 0, label);
}

static void print_text(const smelt_ppl_opts *o, const smelt_ppl_result *r, const ui *u)
{
    if (!u->t.quiet && !u->stream) { /* deferred: stdout is the terminal the progress line used */
        if (!r->has_kld) {
            for (size_t i = 0; i < r->n_chunks; i++) printf("[%zu]%.4f,", i + 1, r->running[i]);
            printf("\n");
        }
    } else if (!u->t.quiet && !r->has_kld) {
        printf("\n");
    }
    if (!r->has_kld) {
        if (r->ppl_err > 0) printf("Final estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_err);
        else printf("Final estimate: PPL = %.4f\n", r->ppl);
    } else {
        const smelt_kld_stats *k = &r->kld;
        printf("\n====== Perplexity statistics ======\n");
        printf("Mean PPL(Q)                   : %10.6f \xc2\xb1 %10.6f\n", k->ppl, k->ppl_err);
        printf("Mean PPL(base)                : %10.6f \xc2\xb1 %10.6f\n", k->ppl_base, k->ppl_base_err);
        printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * k->log_ppl_cor);
        printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f \xc2\xb1 %10.6f\n", k->ln_ratio, k->ln_ratio_err);
        printf("Mean PPL(Q)/PPL(base)         : %10.6f \xc2\xb1 %10.6f\n", k->ratio, k->ratio_err);
        printf("Mean PPL(Q)-PPL(base)         : %10.6f \xc2\xb1 %10.6f\n", k->diff, k->diff_err);
        printf("\n====== KL divergence statistics ======\n");
        printf("Mean    KLD: %10.6f \xc2\xb1 %10.6f\n", k->kld, k->kld_err);
        printf("Maximum KLD: %10.6f\n", k->kld_max);
        printf("99.9%%   KLD: %10.6f\n", k->kld_p999);
        printf("99.0%%   KLD: %10.6f\n", k->kld_p99);
        printf("95.0%%   KLD: %10.6f\n", k->kld_p95);
        printf("90.0%%   KLD: %10.6f\n", k->kld_p90);
        printf("Median  KLD: %10.6f\n", k->kld_median);
        printf("10.0%%   KLD: %10.6f\n", k->kld_p10);
        printf(" 5.0%%   KLD: %10.6f\n", k->kld_p5);
        printf(" 1.0%%   KLD: %10.6f\n", k->kld_p1);
        printf(" 0.1%%   KLD: %10.6f\n", k->kld_p01);
        printf("Minimum KLD: %10.6f\n", k->kld_min);
        printf("\n====== Token probability statistics ======\n");
        printf("Mean    \xce\x94p: %6.3f \xc2\xb1 %5.3f %%\n", 100.0 * k->dp_mean, 100.0 * k->dp_err);
        printf("Maximum \xce\x94p: %6.3f%%\n", 100.0 * k->dp_max);
        printf("99.9%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p999);
        printf("99.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p99);
        printf("95.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p95);
        printf("90.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p90);
        printf("75.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p75);
        printf("Median  \xce\x94p: %6.3f%%\n", 100.0 * k->dp_median);
        printf("25.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p25);
        printf("10.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p10);
        printf(" 5.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p5);
        printf(" 1.0%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p1);
        printf(" 0.1%%   \xce\x94p: %6.3f%%\n", 100.0 * k->dp_p01);
        printf("Minimum \xce\x94p: %6.3f%%\n", 100.0 * k->dp_min);
        printf("RMS \xce\x94p    : %6.3f \xc2\xb1 %5.3f %%\n", 100.0 * k->dp_rms, 100.0 * k->dp_rms_err);
        printf("Same top p: %6.3f \xc2\xb1 %5.3f %%\n", 100.0 * k->same_top, 100.0 * k->same_top_err);
    }
    if (o->kld_base) printf("Base distributions written to %s\n", o->kld_base);
    if (!u->t.quiet)
        printf("%zu tokens (%zu chunks of %u) in %.2f s: %.1f tokens/s, %d threads (%s); load %.2f s\n",
               r->n_chunks * r->n_ctx, r->n_chunks, r->n_ctx, r->seconds, r->tokens_per_s, r->n_threads, r->isa,
               r->load_seconds);
}

static json_t *num(double v) { return json_real(v); }

static void print_json(smelt_tool *t, const smelt_ppl_opts *o, const smelt_ppl_result *r)
{
    json_t *j = json_object();
    json_object_set_new(j, "tool", json_string(TOOL));
    json_object_set_new(j, "version", json_string(SMELT_VERSION));
    json_object_set_new(j, "model", json_string(o->model));
    if (o->text && !o->kld_in) json_object_set_new(j, "text", json_string(o->text));
    json_object_set_new(j, "model_types", json_string(r->model_types));
    json_object_set_new(j, "n_ctx", json_integer(r->n_ctx));
    json_object_set_new(j, "n_batch", json_integer(r->n_batch));
    json_object_set_new(j, "n_seq", json_integer(r->n_seq));
    json_object_set_new(j, "n_vocab", json_integer(r->n_vocab));
    json_object_set_new(j, "threads", json_integer(r->n_threads));
    json_object_set_new(j, "isa", json_string(r->isa));
    json_object_set_new(j, "n_tokens", json_integer((json_int_t)r->n_tokens));
    json_object_set_new(j, "n_chunks", json_integer((json_int_t)r->n_chunks));
    json_object_set_new(j, "n_scored", json_integer((json_int_t)r->n_scored));
    json_object_set_new(j, "ppl", num(r->ppl));
    json_object_set_new(j, "ppl_err", num(r->ppl_err));
    json_t *run = json_array();
    for (size_t i = 0; i < r->n_chunks; i++) json_array_append_new(run, num(r->running[i]));
    json_object_set_new(j, "running_ppl", run);
    json_object_set_new(j, "seconds", num(r->seconds));
    json_object_set_new(j, "tokens_per_second", num(r->tokens_per_s));
    json_object_set_new(j, "load_seconds", num(r->load_seconds));
    if (o->kld_base) json_object_set_new(j, "kld_base_written", json_string(o->kld_base));
    if (r->has_kld) {
        const smelt_kld_stats *k = &r->kld;
        json_t *x = json_object();
        json_object_set_new(x, "base", json_string(o->kld_in));
        json_object_set_new(x, "count", json_integer((json_int_t)k->count));
        json_object_set_new(x, "mean", num(k->kld));
        json_object_set_new(x, "mean_err", num(k->kld_err));
        json_object_set_new(x, "median", num(k->kld_median));
        json_object_set_new(x, "p90", num(k->kld_p90));
        json_object_set_new(x, "p95", num(k->kld_p95));
        json_object_set_new(x, "p99", num(k->kld_p99));
        json_object_set_new(x, "p99_9", num(k->kld_p999));
        json_object_set_new(x, "max", num(k->kld_max));
        json_object_set_new(x, "p10", num(k->kld_p10));
        json_object_set_new(x, "p5", num(k->kld_p5));
        json_object_set_new(x, "p1", num(k->kld_p1));
        json_object_set_new(x, "p0_1", num(k->kld_p01));
        json_object_set_new(x, "min", num(k->kld_min));
        json_object_set_new(x, "ppl", num(k->ppl));
        json_object_set_new(x, "ppl_err", num(k->ppl_err));
        json_object_set_new(x, "ppl_base", num(k->ppl_base));
        json_object_set_new(x, "ppl_base_err", num(k->ppl_base_err));
        json_object_set_new(x, "ppl_correlation", num(k->log_ppl_cor));
        json_object_set_new(x, "ln_ppl_ratio", num(k->ln_ratio));
        json_object_set_new(x, "ln_ppl_ratio_err", num(k->ln_ratio_err));
        json_object_set_new(x, "ppl_ratio", num(k->ratio));
        json_object_set_new(x, "ppl_ratio_err", num(k->ratio_err));
        json_object_set_new(x, "ppl_diff", num(k->diff));
        json_object_set_new(x, "ppl_diff_err", num(k->diff_err));
        json_object_set_new(x, "delta_p_mean", num(k->dp_mean));
        json_object_set_new(x, "delta_p_mean_err", num(k->dp_err));
        json_object_set_new(x, "delta_p_rms", num(k->dp_rms));
        json_object_set_new(x, "delta_p_rms_err", num(k->dp_rms_err));
        json_t *dp = json_object();
        json_object_set_new(dp, "max", num(k->dp_max));
        json_object_set_new(dp, "p99_9", num(k->dp_p999));
        json_object_set_new(dp, "p99", num(k->dp_p99));
        json_object_set_new(dp, "p95", num(k->dp_p95));
        json_object_set_new(dp, "p90", num(k->dp_p90));
        json_object_set_new(dp, "p75", num(k->dp_p75));
        json_object_set_new(dp, "median", num(k->dp_median));
        json_object_set_new(dp, "p25", num(k->dp_p25));
        json_object_set_new(dp, "p10", num(k->dp_p10));
        json_object_set_new(dp, "p5", num(k->dp_p5));
        json_object_set_new(dp, "p1", num(k->dp_p1));
        json_object_set_new(dp, "p0_1", num(k->dp_p01));
        json_object_set_new(dp, "min", num(k->dp_min));
        json_object_set_new(x, "delta_p", dp);
        json_object_set_new(x, "same_top", num(k->same_top));
        json_object_set_new(x, "same_top_err", num(k->same_top_err));
        json_object_set_new(j, "kld", x);
    }
    smelt_tool_print_json(t, j, JSON_INDENT(1) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10));
    json_decref(j);
}

int main(int argc, char **argv)
{
    smelt_ppl_opts o;
    smelt_ppl_opts_default(&o);
    ui u;
    memset(&u, 0, sizeof u);
    smelt_tool_init(&u.t, TOOL, usage);
    static const struct option lo[] = {
        SMELT_CLI_EVAL_MODEL_LONGOPT,              SMELT_CLI_EVAL_LONGOPTS,
        {"kld-base", required_argument, 0, 'B'},   {"kld", required_argument, 0, 'K'},
        {"kld-tokens", required_argument, 0, 'T'}, SMELT_TOOL_OPTIONS,
        {0, 0, 0, 0}};
    int c;
    const smelt_cli_eval ev = {&o.model, &o.text, &o.n_ctx, &o.n_chunks, &o.n_batch, &o.n_threads};
    u.t.eval = &ev;
    while ((c = getopt_long(argc, argv, "m:f:c:b:t:qh", lo, NULL)) != -1) {
        int er = smelt_tool_option(&u.t, c, optarg);
        if (er == SMELT_TOOL_OPTION_TAKEN) continue;
        if (er != SMELT_TOOL_OPTION_OTHER) return er;
        switch (c) {
        case 'B': o.kld_base = optarg; break;
        case 'K': o.kld_in = optarg; break;
        case 'T': o.kld_tokens = optarg; break;
        }
    }
    if (optind < argc) return smelt_cli_usage_error(TOOL, "unexpected argument '%s'", argv[optind]);
    if (!o.model) return smelt_cli_usage_error(TOOL, "no model given (-m MODEL.gguf)");
    if (!o.text && !o.kld_in) return smelt_cli_usage_error(TOOL, "no text given (-f TEXT)");
    if (o.kld_in && o.kld_base) return smelt_cli_usage_error(TOOL, "--kld-base and --kld cannot be used together");
    if (o.kld_tokens && !o.kld_in) return smelt_cli_usage_error(TOOL, "--kld-tokens needs --kld BASE.kld");
    if (o.kld_in && o.text) smelt_tool_note(&u.t, "-f is not read with --kld; the tokens come from %s", o.kld_in);
    smelt_tool_start(&u.t, o.kld_in ? "kl-divergence" : "perplexity");
    u.stream = !isatty(1);
    smelt_err e;
    smelt_err_clear(&e);
    smelt_ppl_result r;
    int rc = smelt_ppl_run(&o, &r, on_chunk, &u, &e);
    if (rc) return smelt_tool_fail(&u.t, rc, &e);
    smelt_tool_clear_line(&u.t);
    if (u.t.json) print_json(&u.t, &o, &r);
    else print_text(&o, &r, &u);
    smelt_ppl_result_free(&r);
    smelt_tool_end(&u.t);
    return 0;
}

/* smelt-report — the quant quality table for a model card: perplexity and KL-divergence of
 * quantized GGUFs against their base on one text, as PREFIX.md, PREFIX.json, PREFIX.svg.
 * Thin main: options → smelt_report_run() → smelt_report_write() → Markdown on stdout. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/progress.h"
#include "verify/eval/report.h"

static const char *TOOL = "smelt-report";

static void usage(void)
{
    printf("Usage: smelt-report --base BASE.gguf -f TEXT -o PREFIX [options] QUANT.gguf|DIR...\n"
           "\n"
           "Quant quality report for a model card: the base model's perplexity on TEXT and its\n"
           "next-token distributions, then every quantized model's perplexity and KL-divergence\n"
           "against them (llama-perplexity's methods), with type, file size and bits per weight.\n"
           "Writes PREFIX.md (a Markdown table), PREFIX.json (the same data) and PREFIX.svg (mean\n"
           "KLD against bits per weight) and prints the table. A directory stands for its *.gguf\n"
           "models (the base and non-model GGUFs such as imatrices are skipped).\n"
           "\n"
           "Options:\n"
           "      --base FILE       the reference model (f16/bf16/f32 GGUF)\n"
           "  -f, --file FILE       evaluation text (one trailing newline is dropped)\n"
           "  -o, --output PREFIX   output prefix (PREFIX.md, PREFIX.json, PREFIX.svg)\n"
           "  -c, --ctx-size N      context per chunk (default 512)\n"
           "      --chunks N        evaluate at most N chunks (default: all)\n"
           "      --ctx-sweep LIST  also measure everything at each context length of LIST\n"
           "                        (e.g. 64,128,256): PPL and KLD by context length in\n"
           "                        PREFIX.md/.json and a plot in PREFIX-ctx.svg\n"
           "  -b, --batch-size N    tokens per forward call (default 2048)\n"
           "  -t, --threads N       threads (default: one per CPU)\n"
           "      --cache DIR       reuse and store measurements in DIR (default PREFIX.cache)\n"
           "      --no-cache        measure everything, keep nothing (base distributions in $TMPDIR)\n"
           "      --json            print the JSON report instead of the Markdown table\n"
           "  -q, --quiet           no progress and no notes\n"
           "  -h, --help            this help\n"
           "      --version         version\n"
           "\n"
           "The cache holds the base distributions (2 bytes per vocabulary entry per scored token)\n"
           "and one small file per measured quant; files are recognised by device, inode, size and\n"
           "modification time. The outputs hold no timings: the same inputs give the same bytes.\n"
           "Exit status: 0 ok, 1 I/O error, 2 usage, 3 malformed input, 4 unsupported model,\n"
           "5 mismatch (a quant's vocabulary differs from the base's), 6 out of memory.\n");
}

static void on_chunk(void *user, size_t i, size_t n, const smelt_ppl_result *r)
{
    smelt_tool *t = user;
    char label[96];
    snprintf(label, sizeof label, "model %zu/%zu, chunk %zu/%zu", i + 1, n, r->chunks_done, r->n_chunks);
    smelt_progress_step(&t->progress, i * r->n_chunks + r->chunks_done, n * r->n_chunks, 0, label);
}

int main(int argc, char **argv)
{
    smelt_report_opts o;
    smelt_report_opts_default(&o);
    smelt_tool t;
    smelt_tool_init(&t, TOOL, usage);
    const char *prefix = NULL, *cache = NULL;
    int no_cache = 0;
    static const struct option lo[] = {
        {"base", required_argument, 0, 'B'},       SMELT_CLI_EVAL_LONGOPTS,
        {"output", required_argument, 0, 'o'},     {"cache", required_argument, 0, 'K'},
        {"no-cache", no_argument, 0, 'N'},         {"ctx-sweep", required_argument, 0, 'S'},
        SMELT_TOOL_OPTIONS,                        {0, 0, 0, 0}};
    uint32_t sweep[32];
    size_t n_sweep = 0;
    int c;
    const smelt_cli_eval ev = {NULL, &o.text, &o.n_ctx, &o.n_chunks, &o.n_batch, &o.n_threads};
    t.eval = &ev;
    while ((c = getopt_long(argc, argv, "f:o:c:b:t:qh", lo, NULL)) != -1) {
        int er = smelt_tool_option(&t, c, optarg);
        if (er == SMELT_TOOL_OPTION_TAKEN) continue;
        if (er != SMELT_TOOL_OPTION_OTHER) return er;
        switch (c) {
        case 'B': o.base = optarg; break;
        case 'o': prefix = optarg; break;
        case 'K': cache = optarg; break;
        case 'S': {
            char item[32];
            for (const char *p = optarg; *p;) {
                size_t l = strcspn(p, ",");
                long v;
                if (l == 0 || l >= sizeof item || n_sweep == 32) {
                    return smelt_cli_usage_error(TOOL, "--ctx-sweep: expected up to 32 context lengths separated by "
                                                       "commas, got '%s'", optarg);
                }
                memcpy(item, p, l);
                item[l] = 0;
                if (smelt_cli_int(item, 4, 16777216, &v))
                    return smelt_cli_usage_error(TOOL, "--ctx-sweep: expected 4 .. 16777216, got '%s'", item);
                for (size_t k = 0; k < n_sweep; k++)
                    if (sweep[k] == (uint32_t)v)
                        return smelt_cli_usage_error(TOOL, "--ctx-sweep: %ld is listed twice", v);
                sweep[n_sweep++] = (uint32_t)v;
                p += l;
                if (*p == ',') p++;
            }
            break;
        }
        case 'N': no_cache = 1; break;
        }
    }
    if (!o.base) return smelt_cli_usage_error(TOOL, "no base model given (--base BASE.gguf)");
    if (!o.text) return smelt_cli_usage_error(TOOL, "no evaluation text given (-f TEXT)");
    if (!prefix || !*prefix) return smelt_cli_usage_error(TOOL, "no output prefix given (-o PREFIX)");
    if (optind >= argc) return smelt_cli_usage_error(TOOL, "no quantized model given (QUANT.gguf... or a directory)");
    if (cache && no_cache) return smelt_cli_usage_error(TOOL, "--cache and --no-cache cannot be used together");
    o.quants = (const char *const *)argv + optind;
    o.n_quants = (size_t)(argc - optind);
    char defcache[4200];
    if (!no_cache && !cache) {
        snprintf(defcache, sizeof defcache, "%s.cache", prefix);
        cache = defcache;
    }
    o.cache_dir = no_cache ? NULL : cache;
    o.ctx_sweep = sweep;
    o.n_ctx_sweep = n_sweep;
    o.notes = smelt_tool_status(&t);
    o.on_chunk = on_chunk;
    o.user = &t;
    smelt_tool_start(&t, "report");

    smelt_err e;
    smelt_err_clear(&e);
    smelt_report *r;
    int rc = smelt_report_check_outputs(&o, prefix, &e);
    if (!rc) rc = smelt_report_run(&o, &r, &e);
    smelt_tool_clear_line(&t);
    if (!rc) {
        rc = smelt_report_write(r, prefix, &e);
        char *s = NULL;
        size_t n;
        if (!rc) rc = t.json ? smelt_report_json(r, &s, &n, &e) : smelt_report_markdown(r, &s, &n, &e);
        if (!rc) fwrite(s, 1, n, stdout);
        free(s);
        if (!rc && !t.quiet)
            fprintf(stderr, "%s: wrote %s.md, %s.json, %s.svg%s%s%s\n", TOOL, prefix, prefix, prefix,
                    n_sweep ? ", " : "", n_sweep ? prefix : "", n_sweep ? "-ctx.svg" : "");
        smelt_report_free(r);
    }
    if (rc) return smelt_tool_fail(&t, rc, &e);
    smelt_tool_end(&t);
    return 0;
}

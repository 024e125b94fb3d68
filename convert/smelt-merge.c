/* smelt-merge — merge PEFT LoRA adapters into a Hugging Face base model exactly as PEFT's
 * merge_and_unload() does, streaming one tensor at a time; write a merged HF directory. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/merge.h"
#include "formats/manifest.h"
#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/hash.h"
#include "formats/dtype.h"
#include "formats/gguf.h"

static const char *TOOL = "smelt-merge";

static void usage(void)
{
    printf("Usage: smelt-merge --base BASE_DIR --lora ADAPTER_DIR[:WEIGHT] [--lora ...] -o OUT_DIR [options]\n"
           "\n"
           "Merge PEFT LoRA adapters into a Hugging Face base model, computing each merged weight\n"
           "exactly as PEFT's merge_and_unload() does (W + scaling * B @ A in f32, rounded once),\n"
           "one tensor at a time. The output is a Hugging Face directory with the base's layout:\n"
           "same shards, config.json (vocab_size updated if the adapter resizes it, plus a\n"
           "\"smelt_merge\" record), tokenizer files (the adapter's own when it has them), and a\n"
           "per-tensor xxh64 manifest OUT_DIR.xxh64 beside it.\n"
           "\n"
           "Options:\n"
           "  --base DIR            the base model (config.json + safetensors or .bin weights)\n"
           "  --lora DIR[:W]        a PEFT adapter (adapter_config.json + adapter_model.safetensors\n"
           "                        or .bin), optionally weighted; repeat to merge several, in order\n"
           "                        (their deltas add up: sum of W_i * scaling_i * B_i @ A_i);\n"
           "                        W is a finite number and scales the LoRA pairs only: the\n"
           "                        adapter's modules_to_save tensors replace the base whole\n"
           "  -o, --output DIR      the merged model directory\n"
           "  --dtype D             write every float tensor as f32, f16 or bf16 (default: each\n"
           "                        tensor keeps its base dtype, as PEFT does)\n"
           "  --max-shard-size S    re-shard (e.g. 5GB, 500MB) instead of the base's split\n"
           "  --gguf OUT.gguf       merge and convert to GGUF in one pass (needs smelt-convert)\n"
           "  --outtype T           with --gguf: f32, f16, bf16, q8_0 or auto as smelt-convert's, or\n"
           "                        any type smelt-quantize takes (Q4_K_M, IQ4_XS, …): quantized in the\n"
           "                        same pass, byte-identical to --outtype f16 then smelt-quantize\n"
           "  --imatrix FILE        with a quantized --outtype: the importance matrix\n"
           SMELT_CLI_SPLIT_HELP
           "  --allow-unused        skip adapter tensors that match no base tensor (default: error)\n"
           "  --allow-nonfinite     write NaN/Inf weights anyway, with a warning counting them\n"
           "                        (default: refuse NaN/Inf in the base, the adapters or the merged\n"
           "                        result, naming the file, the tensor and the first index; exit 3)\n"
           "  --force               replace OUT_DIR; merge an adapter the base records as merged\n"
           "  -t, --threads N       worker threads (default: all CPUs)\n"
           "  -q, --quiet           no progress, no summary\n"
           "  --json                print the report as JSON on stdout\n"
           "  -h, --help            this help\n"
           "  --version             version\n"
           "\n"
           "Exit status: 0 ok, 1 I/O error, 2 usage, 3 malformed input, 4 unsupported input,\n"
           "5 inputs do not fit together (shapes, vocabulary, wrong base), 6 out of memory.\n");
}

/* DIR[:WEIGHT]: 0, -1 out of memory, 1 a weight that is not finite ("nan", "inf", 1e999). A
 * suffix that is not a number belongs to the path. */
static int parse_lora(const char *arg, char **dir, double *w)
{
    *w = 1.0;
    *dir = NULL;
    const char *colon = strrchr(arg, ':');
    if (colon && colon[1]) {
        char *end;
        double v = strtod(colon + 1, &end);
        if (!*end && !isfinite(v)) return 1;
        if (!*end) {
            *dir = strndup(arg, (size_t)(colon - arg));
            *w = v;
            return *dir ? 0 : -1;
        }
    }
    *dir = strdup(arg);
    return *dir ? 0 : -1;
}

static json_t *report_json(const smelt_merge_report *r, const char *out, const smelt_merge_adapter *ads, size_t n)
{
    json_t *j = json_object(), *k = json_object(), *a;
    json_object_set_new(j, "output", json_string(out));
    a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "path", json_string(smelt_peft_dir(ads[i].peft)));
        json_object_set_new(o, "weight", json_real(ads[i].weight));
        json_object_set_new(o, "xxh64", json_string(smelt_peft_hash(ads[i].peft)));
        json_array_append_new(a, o);
    }
    json_object_set_new(j, "adapters", a);
    for (size_t i = 0; i < r->n_kinds; i++) json_object_set_new(k, r->pairs[i].kind, json_integer((json_int_t)r->pairs[i].n));
    json_object_set_new(j, "pairs_merged", k);
    json_object_set_new(j, "pairs_total", json_integer((json_int_t)r->pairs_total));
    json_object_set_new(j, "dora_pairs", json_integer((json_int_t)r->dora_total));
    json_object_set_new(j, "lora_bias_terms", json_integer((json_int_t)r->bias_total));
    const struct {
        const char *key;
        char **v;
        size_t n;
    } lists[] = {{"replaced", r->replaced, r->n_replaced}, {"unused", r->unused, r->n_unused},
                 {"warnings", r->warnings, r->n_warnings}};
    for (size_t l = 0; l < 3; l++) {
        a = json_array();
        for (size_t i = 0; i < lists[l].n; i++) json_array_append_new(a, json_string(lists[l].v[i]));
        json_object_set_new(j, lists[l].key, a);
    }
    json_object_set_new(j, "vocab_old", r->vocab_old >= 0 ? json_integer(r->vocab_old) : json_null());
    json_object_set_new(j, "vocab_new", r->vocab_new >= 0 ? json_integer(r->vocab_new) : json_null());
    json_object_set_new(j, "tensors_total", json_integer((json_int_t)r->tensors_total));
    json_object_set_new(j, "tensors_changed", json_integer((json_int_t)r->tensors_changed));
    json_object_set_new(j, "f16_overflow", json_integer((json_int_t)r->f16_overflow));
    json_object_set_new(j, "nonfinite", json_integer((json_int_t)r->nonfinite));
    return j;
}

static void report_text(const smelt_merge_report *r, const char *out)
{
    printf("merged %" PRIu64 " LoRA pair%s", r->pairs_total, r->pairs_total == 1 ? "" : "s");
    for (size_t i = 0; i < r->n_kinds; i++) printf("%s%s %" PRIu64, i ? ", " : " (", r->pairs[i].kind, r->pairs[i].n);
    printf("%s", r->n_kinds ? ")" : "");
    if (r->dora_total) printf(", %" PRIu64 " with DoRA", r->dora_total);
    if (r->bias_total) printf(", %" PRIu64 " lora_B biases", r->bias_total);
    printf("\n");
    for (size_t i = 0; i < r->n_replaced; i++) printf("replaced %s\n", r->replaced[i]);
    if (r->vocab_new >= 0) printf("vocabulary %" PRId64 " -> %" PRId64 " (config.json vocab_size updated)\n", r->vocab_old, r->vocab_new);
    for (size_t i = 0; i < r->n_unused; i++) printf("skipped %s\n", r->unused[i]);
    printf("%" PRIu64 " of %" PRIu64 " tensors changed; wrote %s\n", r->tensors_changed, r->tensors_total, out);
}

/* ==== --gguf: the merged source straight into the converter ==== */

/* The quantizer's plan once it is written: the files it made. */
typedef struct written {
    uint16_t files;
    uint64_t bytes;
} written;

static void keep_plan(void *user, const smelt_qplan *p) { *(written *)user = (written){p->n_shards_out, p->out_bytes}; }

static int write_gguf(smelt_merge *m, const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, const char *path,
                      int outtype, const char *qtype, const char *imatrix, int threads, smelt_tool *t, bool allow_nonfinite,
                      const smelt_cli_split *split, smelt_err *e)
{
    const smelt_merge_report *r = smelt_merge_get_report(m);
    json_t *cfg = json_deep_copy(smelt_hf_config(base));
    if (!cfg) return SMELT_NOMEM(e, "config");
    if (r->vocab_new >= 0) json_object_set_new(cfg, "vocab_size", json_integer(r->vocab_new));
    /* the tokenizer the merged directory would hold: the first adapter's own, else the base's */
    const char *tok = smelt_hf_dir(base);
    char p[4096], cfgp[4096], name[4096];
    for (size_t i = 0; i < n && tok == smelt_hf_dir(base); i++) {
        const char *d = smelt_peft_dir(ads[i].peft);
        if ((smelt_path_join(p, sizeof p, d, "tokenizer.model") && smelt_file_exists(p)) ||
            (smelt_path_join(p, sizeof p, d, "tokenizer.json") && smelt_file_exists(p)))
            tok = d;
    }
    smelt_path_join(cfgp, sizeof cfgp, smelt_hf_dir(base), "config.json");
    /* general.name as smelt-convert would derive it for a merged directory named like OUT.gguf */
    snprintf(name, sizeof name, "%s", path);
    size_t nl = strlen(name);
    if (nl > 5 && !strcmp(name + nl - 5, ".gguf")) name[nl - 5] = 0;
    smelt_convert_opts co;
    smelt_convert_opts_default(&co);
    co.outtype = outtype;
    co.n_threads = threads;
    co.name_path = name;
    co.card_dir = smelt_hf_dir(base);
    co.notes = smelt_tool_notes(t);
    co.allow_nonfinite = allow_nonfinite;
    co.split = split->on;
    co.split_max_bytes = split->max_bytes;
    co.split_max_tensors = split->max_tensors;
    smelt_quantize_opts qo;
    written wr = {1, 0};
    if (qtype) { /* one pass: the f16 file smelt-quantize would read, quantized as it is made */
        smelt_convert_opts_one_pass(&co, &qo, qtype, imatrix);
        qo.on_done = keep_plan;
        qo.user = &wr;
    }
    smelt_guard *guard = smelt_merge_guard_new(base, ads, n, e);
    int rc = guard ? 0 : e->code ? e->code : SMELT_ENOMEM;
    if (!rc && imatrix) rc = smelt_guard_add(guard, imatrix, "the importance matrix", NULL, e);
    if (rc) {
        smelt_guard_free(guard);
        json_decref(cfg);
        return rc;
    }
    co.guard = guard;
    smelt_progress_term term;
    smelt_progress_term_init(&term, &co.progress, qtype ? "merging+quantizing" : "merging+converting", t->quiet);
    co.quantize_progress = &co.progress;
    smelt_convert_result res;
    rc = smelt_convert_run(smelt_merge_source(m), cfg, cfgp, tok, &co, path, &res, e);
    json_decref(cfg);
    smelt_guard_free(guard);
    if (rc) return rc;
    if (!qtype) wr = (written){(uint16_t)res.n_files, res.bytes};
    smelt_progress_term_done(&term, wr.bytes);
    char first[4200];
    if (split->on) smelt_gguf_split_out_path(first, sizeof first, path, 0, wr.files);
    else snprintf(first, sizeof first, "%s", path);
    char manifest[4200];
    snprintf(manifest, sizeof manifest, "%s.xxh64", path);
    return smelt_manifest_write_gguf(first, manifest, e); /* of the whole model: the first shard opens all */
}

int main(int argc, char **argv)
{
    const char *base_dir = NULL, *out = NULL, *gguf = NULL, *outtype = NULL, *imatrix = NULL, *qtype = NULL;
    enum { MAX_LORA = 64 };
    const char *lora_args[MAX_LORA];
    char **lora_dirs = NULL;
    double *weights = NULL;
    size_t n_lora = 0;
    int status = 0;
    smelt_tool t;
    smelt_tool_init(&t, TOOL, usage);
    long threads = 0;
    smelt_merge_opts mo;
    smelt_merge_opts_default(&mo);
    smelt_merge_write_opts wo = {0};
    static const struct option lo[] = {{"base", required_argument, 0, 'b'},   {"lora", required_argument, 0, 'l'},
                                       {"output", required_argument, 0, 'o'}, {"dtype", required_argument, 0, 'd'},
                                       {"max-shard-size", required_argument, 0, 'S'},
                                       {"gguf", required_argument, 0, 'g'},   {"outtype", required_argument, 0, 'O'},
                                       {"allow-unused", no_argument, 0, 'U'}, {"force", no_argument, 0, 'F'},
                                       {"threads", required_argument, 0, 't'}, {"allow-nonfinite", no_argument, 0, 'N'},
                                       {"imatrix", required_argument, 0, 'I'},
                                       SMELT_CLI_SPLIT_LONGOPTS,              SMELT_TOOL_OPTIONS,
                                       {0, 0, 0, 0}};
    smelt_cli_split split = {0};
    t.split = &split;
    int c;
    while ((c = getopt_long(argc, argv, "o:t:qh", lo, NULL)) != -1) {
        int sr = smelt_tool_option(&t, c, optarg);
        if (sr == SMELT_TOOL_OPTION_TAKEN) continue;
        if (sr != SMELT_TOOL_OPTION_OTHER) return sr;
        switch (c) {
        case 'b': base_dir = optarg; break;
        case 'l':
            if (n_lora == MAX_LORA) return smelt_cli_usage_error(TOOL, "at most %d --lora adapters", MAX_LORA);
            lora_args[n_lora++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'd':
            if (!strcasecmp(optarg, "f32") || !strcasecmp(optarg, "float32")) mo.out_dtype = SMELT_DT_F32;
            else if (!strcasecmp(optarg, "f16") || !strcasecmp(optarg, "float16")) mo.out_dtype = SMELT_DT_F16;
            else if (!strcasecmp(optarg, "bf16") || !strcasecmp(optarg, "bfloat16")) mo.out_dtype = SMELT_DT_BF16;
            else return smelt_cli_usage_error(TOOL, "--dtype must be f32, f16 or bf16 (got '%s')", optarg);
            break;
        case 'S':
            if (smelt_cli_size(optarg, &wo.max_shard_size) || !wo.max_shard_size)
                return smelt_cli_usage_error(TOOL, "--max-shard-size needs a size such as 5GB or 500MB (got '%s')", optarg);
            break;
        case 'g': gguf = optarg; break;
        case 'O': outtype = optarg; break;
        case 'I': imatrix = optarg; break;
        case 'U': mo.allow_unused = true; break;
        case 'N': mo.allow_nonfinite = true; break;
        case 'F':
            mo.force = true;
            wo.force = true;
            break;
        case 't':
            if (smelt_cli_int(optarg, 1, 4096, &threads)) return smelt_cli_usage_error(TOOL, "--threads needs a number from 1");
            break;
        }
    }
    if (optind != argc) return smelt_cli_usage_error(TOOL, "unexpected argument '%s'", argv[optind]);
    if (!base_dir) return smelt_cli_usage_error(TOOL, "--base is required");
    if (!n_lora) return smelt_cli_usage_error(TOOL, "at least one --lora is required");
    if (!out && !gguf) return smelt_cli_usage_error(TOOL, "-o OUT_DIR (or --gguf OUT.gguf) is required");
    if (outtype && !gguf) return smelt_cli_usage_error(TOOL, "--outtype goes with --gguf");
    if (split.on && !gguf) return smelt_cli_usage_error(TOOL, "--split-max-size/--split-max-tensors go with --gguf");
    int gguf_type = SMELT_OUTTYPE_AUTO;
    if (outtype && (gguf_type = smelt_convert_outtype_from_name(outtype)) == -2 && smelt_ftype_find(outtype)) qtype = outtype;
    if (outtype && gguf_type == -2 && !qtype)
        return smelt_cli_usage_error(TOOL, "--outtype must be f32, f16, bf16, q8_0, auto or a smelt-quantize type such as Q4_K_M "
                                           "(got '%s')", outtype);
    if (imatrix && !qtype) return smelt_cli_usage_error(TOOL, "--imatrix goes with a quantized --outtype (e.g. Q4_K_M)");
    lora_dirs = calloc(n_lora, sizeof *lora_dirs);
    weights = calloc(n_lora, sizeof *weights);
    int pr = lora_dirs && weights ? 0 : -1;
    for (size_t i = 0; i < n_lora && !pr; i++) {
        pr = parse_lora(lora_args[i], &lora_dirs[i], &weights[i]);
        if (pr > 0)
            smelt_cli_usage_error(TOOL, "--lora %s: the adapter weight must be a finite number (e.g. DIR:0.5)", lora_args[i]);
    }
    if (pr) {
        for (size_t i = 0; lora_dirs && i < n_lora; i++) free(lora_dirs[i]);
        free(lora_dirs);
        free(weights);
        return pr > 0 ? 2 : 6;
    }
    mo.n_threads = (int)threads;
    smelt_tool_start(&t, "merging");

    smelt_err e = {0};
    smelt_hf *base = NULL;
    smelt_peft **pefts = calloc(n_lora, sizeof *pefts);
    smelt_merge_adapter *ads = calloc(n_lora, sizeof *ads);
    smelt_merge *m = NULL;
    int rc = 0;
    if (!pefts || !ads) return 6;
    if ((rc = smelt_hf_open(base_dir, &base, &e))) goto done;
    for (size_t i = 0; i < n_lora && !rc; i++) {
        rc = smelt_peft_open(lora_dirs[i], &pefts[i], &e);
        ads[i].peft = pefts[i];
        ads[i].weight = weights[i];
    }
    if (rc) goto done;
    if ((rc = smelt_merge_check_outputs(base, ads, n_lora, out, gguf, wo.force, &e))) goto done;
    mo.base_config = smelt_hf_config(base);
    mo.base_dir = base_dir;
    if ((rc = smelt_merge_open(&m, smelt_hf_tensors(base), ads, n_lora, &mo, &e))) goto done;
    const smelt_merge_report *r = smelt_merge_get_report(m);
    for (size_t i = 0; i < r->n_warnings; i++) smelt_tool_warn(&t, "%s", r->warnings[i]);
    char toolv[64];
    snprintf(toolv, sizeof toolv, "%s %s", TOOL, SMELT_VERSION);
    wo.tool = toolv;
    uint64_t bytes = 0;
    const smelt_tsrc *src = smelt_merge_source(m);
    for (uint64_t i = 0; i < smelt_tsrc_count(src); i++) bytes += smelt_tsrc_info(src, i)->nbytes;
    if (out) {
        if ((rc = smelt_merge_write_hf(m, base, ads, n_lora, out, &wo, &t.progress, &e))) goto done;
        smelt_progress_term_done(&t.term, bytes);
    }
    if (gguf && (rc = write_gguf(m, base, ads, n_lora, gguf, gguf_type, qtype, imatrix, (int)threads, &t, mo.allow_nonfinite, &split, &e))) goto done;
    if (r->f16_overflow)
        smelt_tool_warn(&t, "%" PRIu64 " merged values exceed the f16 range and became inf (as in PEFT)", r->f16_overflow);
    smelt_tool_warn_nonfinite(&t, r->nonfinite, r->nonfinite_tensors);
    if (t.json) {
        json_t *j = report_json(r, out ? out : gguf, ads, n_lora);
        smelt_tool_print_json(&t, j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(j);
    } else if (!t.quiet) {
        report_text(r, out ? out : gguf);
    }
done:
    if (rc) status = smelt_tool_fail(&t, rc, &e);
    smelt_tool_end(&t);
    smelt_merge_close(m);
    for (size_t i = 0; i < n_lora; i++) {
        smelt_peft_close(pefts[i]);
        free(lora_dirs[i]);
    }
    free(pefts);
    free(ads);
    free(lora_dirs);
    free(weights);
    smelt_hf_close(base);
    return status;
}

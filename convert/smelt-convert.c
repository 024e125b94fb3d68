/* smelt-convert — a Hugging Face Llama/Mistral/Mixtral/Qwen directory to GGUF, as llama.cpp's
 * convert_hf_to_gguf.py writes it. Thin main: options, smelt_hf_open, plan, write. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/lora.h"
#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/hfdir.h"

static const char *TOOL = "smelt-convert";

static void usage(void)
{
    printf("Usage: smelt-convert MODEL_DIR -o OUT.gguf [options]\n"
           "       smelt-convert --lora ADAPTER_DIR --base BASE_DIR -o ADAPTER.gguf [options]\n"
           "\n"
           "Convert a Hugging Face checkpoint (LlamaForCausalLM, MistralForCausalLM,\n"
           "MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM;\n"
           "safetensors or PyTorch .bin, single or sharded; SentencePiece tokenizer.model or\n"
           "byte-level BPE tokenizer.json: Llama 3, Qwen) into a GGUF file identical to what\n"
           "llama.cpp's convert_hf_to_gguf.py writes: same metadata, same tensor order, same\n"
           "bytes. Streams one tensor at a time.\n"
           "\n"
           "Options:\n"
           "  -o, --output FILE   output GGUF (written atomically; nothing is left on error)\n"
           "  --outtype T         f32, f16, bf16, q8_0 or auto (default: auto = the weights' own\n"
           "                      dtype; a checkpoint mixing dtypes gets the majority, with a warning).\n"
           "                      Norms, biases, 1-D tensors and the MoE router stay f32.\n"
           "                      Any other type smelt-quantize takes (Q4_K_M, IQ4_XS, Q6_K, and\n"
           "                      the uppercase Q8_0, F16, BF16, F32 of llama-quantize) quantizes in\n"
           "                      one pass: the output is byte-identical to --outtype f16 followed by\n"
           "                      smelt-quantize, and no f16 file is written.\n"
           "  --imatrix FILE      with a quantized --outtype: the importance matrix (as smelt-quantize's\n"
           "                      --imatrix; the i-quants of 2-3 bits need one)\n"
           "  --vocab-only        write the metadata and vocabulary only\n"
           "  --dry-run           print the plan (metadata and every tensor) and write nothing\n"
           "  --json              with --dry-run: the plan as JSON; otherwise a JSON summary\n"
           "  --model-name NAME   general.name (default: llama.cpp's heuristics)\n"
           "  -t, --threads N     conversion threads (default: all CPUs)\n"
           "  --allow-nonfinite   write NaN/Inf weights anyway, with a warning counting them (default:\n"
           "                      refuse, naming the file, the tensor and the first index; exit 3).\n"
           "                      Also in LoRA adapter mode. Finite values beyond the f16 range that\n"
           "                      become inf with --outtype f16 are a separate warning.\n"
           SMELT_CLI_SPLIT_HELP
           "  -q, --quiet         no progress or summary (warnings are still printed)\n"
           "  -h, --help          this help\n"
           "\n"
           "LoRA adapter mode (a PEFT adapter as a llama.cpp adapter GGUF, applied at run time\n"
           "with llama.cpp's --lora):\n"
           "  --lora DIR          the PEFT adapter (adapter_config.json + adapter_model.safetensors|.bin)\n"
           "  --base DIR          the base model it was trained on (HF directory)\n"
           "  --outtype T         f32 (default, as llama.cpp), f16 or bf16 for lora_a/lora_b\n"
           "  --no-full-delta     refuse modules_to_save (full embed/lm_head replacements) instead of\n"
           "                      carrying them as exact full-rank pairs (see docs/merge.md)\n"
           "  --version           version\n"
           "\n"
           "Exit status: 0 ok, 1 I/O error, 2 usage, 3 malformed input, 4 unsupported input,\n"
           "5 inputs that do not fit together (e.g. tokenizer larger than vocab_size), 6 out of memory.\n");
}

static void print_plan(const smelt_convert_plan *p, const smelt_tsrc *src, const char *dir)
{
    const smelt_kvs *kv = smelt_convert_plan_kvs(p);
    char sz[32];
    printf("%s → GGUF (llama), outtype %s, %zu tensors, %s\n", dir, smelt_convert_outtype_name(smelt_convert_plan_outtype(p)),
           smelt_convert_plan_n_tensors(p), smelt_cli_bytes(sz, sizeof sz, smelt_convert_plan_file_size(p)));
    printf("\nmetadata (%zu keys):\n", kv->n);
    char *buf = malloc(8192);
    for (size_t i = 0; buf && i < kv->n; i++) {
        const smelt_kv *k = &kv->kv[i];
        smelt_kv_format(k, buf, 8192, 8);
        char tn[24];
        if (k->type == SMELT_GGUF_ARRAY) snprintf(tn, sizeof tn, "[%s]", smelt_gguf_vtype_name(k->arr_type));
        else snprintf(tn, sizeof tn, "%s", smelt_gguf_vtype_name(k->type));
        printf("  %4zu: %-8s %-42s = %s\n", i, tn, k->key, buf);
    }
    free(buf);
    if (!smelt_convert_plan_n_tensors(p)) return;
    printf("\n  %4s  %-30s %-5s %-16s %10s  %s\n", "#", "name", "type", "shape (ne)", "bytes", "from");
    for (size_t i = 0; i < smelt_convert_plan_n_tensors(p); i++) {
        const smelt_cv_tensor *t = smelt_convert_plan_tensor(p, i);
        char shape[64];
        size_t u = (size_t)snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims && u < sizeof shape; d++)
            u += (size_t)snprintf(shape + u, sizeof shape - u, "%s%llu", d ? ", " : "", (unsigned long long)t->ne[d]);
        if (u < sizeof shape) snprintf(shape + u, sizeof shape - u, "]");
        printf("  %4zu  %-30s %-5s %-16s %10llu  ", i, t->name, smelt_type_name(t->type), shape, (unsigned long long)t->nbytes);
        const smelt_tinfo *s0 = smelt_tsrc_info(src, t->parts[0].src);
        printf("%s (%s)", s0->name, s0->block_scaled ? "F8_E4M3 × block scales" : smelt_dtype_name(s0->dtype));
        if (t->n_parts > 1) printf(" + %zu more, stacked", t->n_parts - 1);
        else if (t->parts[0].nrows * t->row_len != s0->nelements)
            printf(" rows %llu..%llu", (unsigned long long)t->parts[0].row0,
                   (unsigned long long)(t->parts[0].row0 + t->parts[0].nrows - 1));
        if (t->perm_heads) printf(", RoPE-permuted over %lld heads", (long long)t->perm_heads);
        if (t->q8_fallback) printf(", f16 (row not a multiple of 32)");
        printf("\n");
    }
}

/* The output GGUF may be none of the inputs: the model (or base) directory and the adapter.
 * With keep != NULL the guard is kept there, for the files of a split output. */
static int check_output_path(const char *out, const char *model_dir, const char *what, const char *adapter_dir,
                             const char *imatrix, smelt_guard **keep, smelt_err *e)
{
    smelt_guard *g = smelt_guard_new();
    if (!g) return SMELT_NOMEM(e, "the list of inputs");
    int rc = smelt_guard_add(g, model_dir, what, smelt_guard_reads_model_dir, e);
    if (!rc && adapter_dir) rc = smelt_guard_add(g, adapter_dir, "the adapter", smelt_guard_reads_model_dir, e);
    if (!rc && imatrix) rc = smelt_guard_add(g, imatrix, "the importance matrix", NULL, e);
    if (!rc) rc = smelt_guard_check_file(g, out, e);
    if (keep && !rc) *keep = g;
    else smelt_guard_free(g);
    return rc;
}

/* A number as printf's %g writes it: an integer when it is one, else the shortest real
 * that reads back as the %g text. */
static json_t *json_number_g(double v)
{
    char text[32];
    snprintf(text, sizeof text, "%g", v);
    double g = strtod(text, NULL);
    if (g == (double)(json_int_t)g && fabs(g) < 1e15) return json_integer((json_int_t)g);
    return json_real(g);
}

/* The --json line after a write (j is released; NULL when it could not be built); 0 or
 * ENOMEM. Reals get 10 significant digits: enough for %g's six and for seconds to the
 * millisecond. A path that is not UTF-8 cannot be a JSON string and becomes null. */
static int print_summary(const smelt_tool *t, json_t *j, smelt_err *e)
{
    int rc = smelt_tool_print_json(t, j, JSON_REAL_PRECISION(10));
    json_decref(j);
    return rc ? SMELT_NOMEM(e, "the JSON summary") : 0;
}

/* --lora/--base: the adapter as a llama.cpp LoRA GGUF (convert/lora.h). */
static int run_lora(const char *lora, const char *base, const char *out, const char *outtype, int no_full,
                    const char *name, bool allow_nonfinite, smelt_tool *t, int n_positional)
{
    if (!lora || !base) return smelt_cli_usage_error(TOOL, "--lora and --base go together");
    if (n_positional) return smelt_cli_usage_error(TOOL, "with --lora, give no MODEL_DIR (the base is --base)");
    if (!out) return smelt_cli_usage_error(TOOL, "-o ADAPTER.gguf is required");
    smelt_lora_gguf_opts lo;
    smelt_lora_gguf_opts_default(&lo);
    if (outtype) {
        int t = smelt_type_from_name(outtype);
        if (t != SMELT_TYPE_F32 && t != SMELT_TYPE_F16 && t != SMELT_TYPE_BF16)
            return smelt_cli_usage_error(TOOL, "with --lora, --outtype must be f32, f16 or bf16 (got '%s')", outtype);
        lo.out_type = t;
    }
    lo.full_delta = !no_full;
    lo.name = name;
    lo.allow_nonfinite = allow_nonfinite;
    smelt_tool_start(t, "writing adapter");
    if (t->json) t->term.quiet = 1;
    smelt_err e;
    smelt_err_clear(&e);
    smelt_hf *hf = NULL;
    smelt_peft *peft = NULL;
    smelt_lora_gguf_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = check_output_path(out, base, "the base model", lora, NULL, NULL, &e);
    if (!rc) rc = smelt_hf_open(base, &hf, &e);
    if (!rc) rc = smelt_peft_open(lora, &peft, &e);
    if (!rc) rc = smelt_lora_to_gguf(peft, hf, out, &lo, &rep, &t->progress, &e);
    smelt_peft_close(peft);
    smelt_hf_close(hf);
    if (rc) return smelt_tool_fail(t, rc, &e);
    smelt_progress_term_done(&t->term, rep.bytes);
    smelt_tool_warn_nonfinite(t, rep.nonfinite, rep.nonfinite_tensors);
    char sz[32], fsz[32];
    if (t->json) {
        json_t *j = json_pack("{s:o?, s:I, s:I, s:I, s:I, s:I, s:o, s:b, s:I}", "output", json_string(out), "pairs",
                              (json_int_t)rep.pairs, "modules", (json_int_t)rep.modules, "full_pairs",
                              (json_int_t)rep.full_pairs, "full_bytes", (json_int_t)rep.full_bytes, "bytes",
                              (json_int_t)rep.bytes, "alpha", json_number_g((double)rep.alpha), "scaling_in_lora_b",
                              (int)rep.baked, "nonfinite", (json_int_t)rep.nonfinite);
        if ((rc = print_summary(t, j, &e))) return smelt_tool_fail(t, rc, &e);
    } else if (!t->quiet) {
        fprintf(stderr, "%s: wrote %s: %llu LoRA pairs (%llu modules), %s, adapter.lora.alpha %g%s\n", TOOL, out,
                (unsigned long long)rep.pairs, (unsigned long long)rep.modules, smelt_cli_bytes(sz, sizeof sz, rep.bytes),
                (double)rep.alpha, rep.baked ? " (per-module scaling folded into lora_b)" : "");
        if (rep.full_pairs)
            fprintf(stderr, "%s: %llu replaced tensors (modules_to_save) carried as exact full-rank pairs (%s)\n", TOOL,
                    (unsigned long long)rep.full_pairs, smelt_cli_bytes(fsz, sizeof fsz, rep.full_bytes));
    }
    return 0;
}

/* The quantizer's plan once it is written: the summary's figures. */
static void keep_plan(void *user, const smelt_qplan *p)
{
    smelt_qplan *keep = user;
    *keep = *p;
}

int main(int argc, char **argv)
{
    smelt_convert_opts o;
    smelt_convert_opts_default(&o);
    const char *out = NULL;
    int dry = 0;
    smelt_tool t;
    smelt_tool_init(&t, TOOL, usage);
    static const struct option lo[] = {{"output", required_argument, 0, 'o'}, {"outtype", required_argument, 0, 'T'},
                                       {"vocab-only", no_argument, 0, 'v'},    {"dry-run", no_argument, 0, 'n'},
                                       {"model-name", required_argument, 0, 'm'}, {"threads", required_argument, 0, 't'},
                                       {"lora", required_argument, 0, 'L'},    {"base", required_argument, 0, 'B'},
                                       {"no-full-delta", no_argument, 0, 'F'}, {"allow-nonfinite", no_argument, 0, 'N'},
                                       {"imatrix", required_argument, 0, 'I'},
                                       SMELT_CLI_SPLIT_LONGOPTS,               SMELT_TOOL_OPTIONS,
                                       {0, 0, 0, 0}};
    smelt_cli_split split = {0};
    t.split = &split;
    const char *lora = NULL, *base = NULL, *outtype = NULL, *qtype = NULL, *imatrix = NULL;
    int no_full = 0;
    int c;
    long n;
    while ((c = getopt_long(argc, argv, "o:t:qh", lo, NULL)) != -1) {
        int sr = smelt_tool_option(&t, c, optarg);
        if (sr == SMELT_TOOL_OPTION_TAKEN) continue;
        if (sr != SMELT_TOOL_OPTION_OTHER) return sr;
        switch (c) {
        case 'o': out = optarg; break;
        case 'L': lora = optarg; break;
        case 'B': base = optarg; break;
        case 'F': no_full = 1; break;
        case 'N': o.allow_nonfinite = true; break;
        case 'T':
            outtype = optarg;
            qtype = NULL;
            o.outtype = smelt_convert_outtype_from_name(optarg);
            if (o.outtype == -2 && smelt_ftype_find(optarg)) { /* one pass: f16, as the file smelt-quantize would read */
                qtype = optarg;
                o.outtype = SMELT_TYPE_F16;
            }
            if (o.outtype == -2)
                return smelt_cli_usage_error(TOOL, "--outtype must be f32, f16, bf16, q8_0, auto or a smelt-quantize type such as "
                                                   "Q4_K_M (got '%s')", optarg);
            break;
        case 'I': imatrix = optarg; break;
        case 'v': o.vocab_only = true; break;
        case 'n': dry = 1; break;
        case 'm': o.name = optarg; break;
        case 't':
            if (smelt_cli_int(optarg, 1, 1024, &n)) return smelt_cli_usage_error(TOOL, "--threads needs a number from 1 to 1024");
            o.n_threads = (int)n;
            break;
        }
    }
    if (split.on && (lora || base)) return smelt_cli_usage_error(TOOL, "--split-max-size/--split-max-tensors do not apply to a LoRA GGUF");
    if (split.on && o.vocab_only) return smelt_cli_usage_error(TOOL, "--split-max-size/--split-max-tensors need tensors (not --vocab-only)");
    if (imatrix && !qtype) return smelt_cli_usage_error(TOOL, "--imatrix goes with a quantized --outtype (e.g. Q4_K_M)");
    if (qtype && (lora || base)) return smelt_cli_usage_error(TOOL, "with --lora, --outtype must be f32, f16 or bf16 (got '%s')", qtype);
    if (qtype && (dry || o.vocab_only))
        return smelt_cli_usage_error(TOOL, "--%s writes no tensors; a quantized --outtype needs them (smelt-quantize --dry-run shows "
                                           "a quantization plan)", dry ? "dry-run" : "vocab-only");
    o.split = split.on;
    o.split_max_bytes = split.max_bytes;
    o.split_max_tensors = split.max_tensors;
    if (lora || base) return run_lora(lora, base, out, outtype, no_full, o.name, o.allow_nonfinite, &t, argc - optind);
    if (optind != argc - 1) return smelt_cli_usage_error(TOOL, optind >= argc ? "MODEL_DIR is required" : "one MODEL_DIR only");
    const char *dir = argv[optind];
    if (!out && !dry) return smelt_cli_usage_error(TOOL, "-o OUT.gguf is required (or --dry-run)");
    smelt_tool_start(&t, qtype ? "converting+quantizing" : "converting");
    if (t.json || dry) t.term.quiet = 1;
    o.notes = smelt_tool_notes(&t);
    smelt_quantize_opts qo;
    smelt_qplan done = {0};
    if (qtype) { /* one pass: the split is the quantizer's */
        smelt_convert_opts_one_pass(&o, &qo, qtype, imatrix);
        qo.on_done = keep_plan;
        qo.user = &done;
    }
    o.progress = t.progress;

    smelt_err e;
    smelt_err_clear(&e);
    smelt_hf *hf = NULL;
    smelt_convert_plan *plan = NULL;
    smelt_guard *guard = NULL;
    int rc = out ? check_output_path(out, dir, "the model", NULL, imatrix, &guard, &e) : 0;
    o.guard = guard;
    if (!rc) rc = smelt_hf_open(dir, &hf, &e);
    char cfg[4096];
    if (!rc) {
        smelt_path_join(cfg, sizeof cfg, dir, "config.json");
        rc = smelt_convert_plan_new(smelt_hf_tensors(hf), smelt_hf_config(hf), cfg, dir, &o, &plan, &e);
        if (!rc && dry) {
            if (t.json) {
                json_t *j = smelt_convert_plan_json(plan);
                if (smelt_tool_print_json(&t, j, JSON_INDENT(2) | JSON_ENSURE_ASCII)) rc = SMELT_NOMEM(&e, "JSON");
                json_decref(j);
            } else {
                print_plan(plan, smelt_hf_tensors(hf), dir);
            }
        } else if (!rc && qtype) {
            smelt_convert_result res;
            rc = smelt_convert_plan_quantize(plan, &qo, dir, out, &t.progress, &res, &e);
            if (!rc) {
                smelt_progress_term_done(&t.term, done.out_bytes);
                smelt_tool_warn_nonfinite(&t, res.nonfinite, res.nonfinite_tensors);
                char sz[32], f0[4200];
                smelt_gguf_split_out_path(f0, sizeof f0, out, 0, done.n_shards_out);
                if (t.json) {
                    json_t *j = json_pack("{s:o?, s:I, s:s, s:I, s:I, s:I, s:I, s:f}", "output", json_string(split.on ? f0 : out),
                                          "files", (json_int_t)done.n_shards_out, "outtype", done.ftype_name, "tensors",
                                          (json_int_t)done.n, "bytes", (json_int_t)done.out_bytes, "f16_overflow",
                                          (json_int_t)res.f16_overflow, "nonfinite", (json_int_t)res.nonfinite, "seconds",
                                          round(res.seconds * 1000.0) / 1000.0);
                    rc = print_summary(&t, j, &e);
                } else if (!t.quiet) {
                    fprintf(stderr, "%s: wrote %s%s (%s in one pass, %zu tensors, %s)\n", TOOL, split.on ? f0 : out,
                            done.n_shards_out > 1 ? " …" : "", done.ftype_name, done.n,
                            smelt_cli_bytes(sz, sizeof sz, done.out_bytes));
                }
            }
        } else if (!rc) {
            smelt_convert_result res;
            if (!rc) rc = smelt_convert_plan_write(plan, out, &res, &e);
            if (!rc) {
                smelt_progress_term_done(&t.term, res.bytes);
                if (res.f16_overflow)
                    smelt_tool_warn(&t, "%llu values in %llu tensors exceeded the f16 range and became ±inf; use --outtype bf16 or f32",
                                    (unsigned long long)res.f16_overflow, (unsigned long long)res.f16_overflow_tensors);
                smelt_tool_warn_nonfinite(&t, res.nonfinite, res.nonfinite_tensors);
                char sz[32], f0[4200], fl[4200];
                smelt_gguf_split_out_path(f0, sizeof f0, out, 0, (int)res.n_files);
                smelt_gguf_split_out_path(fl, sizeof fl, out, (int)res.n_files - 1, (int)res.n_files);
                if (t.json) {
                    json_t *j = json_pack("{s:o?, s:I, s:s, s:I, s:I, s:I, s:I, s:f}", "output",
                                          json_string(o.split ? f0 : out), "files", (json_int_t)res.n_files, "outtype",
                                          smelt_convert_outtype_name(smelt_convert_plan_outtype(plan)), "tensors",
                                          (json_int_t)res.n_tensors, "bytes", (json_int_t)res.bytes, "f16_overflow",
                                          (json_int_t)res.f16_overflow, "nonfinite", (json_int_t)res.nonfinite, "seconds",
                                          round(res.seconds * 1000.0) / 1000.0);
                    rc = print_summary(&t, j, &e);
                } else if (!t.quiet && res.n_files > 1)
                    fprintf(stderr, "%s: wrote %s … %s (%llu files; %s, %llu tensors, %s)\n", TOOL, f0, fl,
                            (unsigned long long)res.n_files, smelt_convert_outtype_name(smelt_convert_plan_outtype(plan)),
                            (unsigned long long)res.n_tensors, smelt_cli_bytes(sz, sizeof sz, res.bytes));
                else if (!t.quiet)
                    fprintf(stderr, "%s: wrote %s (%s, %llu tensors, %s)\n", TOOL, o.split ? f0 : out,
                            smelt_convert_outtype_name(smelt_convert_plan_outtype(plan)), (unsigned long long)res.n_tensors,
                            smelt_cli_bytes(sz, sizeof sz, res.bytes));
            }
        }
    }
    smelt_convert_plan_free(plan);
    smelt_hf_close(hf);
    smelt_guard_free(guard);
    if (rc) return smelt_tool_fail(&t, rc, &e);
    smelt_tool_end(&t);
    return 0;
}

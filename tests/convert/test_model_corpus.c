/* test_model_corpus.c — one model check for every tool (formats/model_check.h), end to end
 * with the built tools: a corpus of config.json problems (and valid variants) converted by
 * smelt-convert, where every case is either refused by smelt-convert (exit 3 or 4, with the
 * config.json key named) or gives a GGUF that smelt-dump, smelt-verify, smelt-quantize
 * (--dry-run and a real Q8_0) and smelt-perplexity all accept; then invalid GGUFs (0 heads,
 * a missing tensor) refused by smelt-quantize, smelt-verify, smelt-perplexity and
 * smelt-imatrix with the same message, and a LoRA adapter GGUF refused by the forward-pass
 * tools. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "tests/common/hfsynth.h"
#include "tests/common/testutil.h"

#define TEXT "samples/text/eval-en.txt"

typedef struct {
    const char *name;
    int experts;            /* 0: LlamaForCausalLM, else MixtralForCausalLM with this many */
    const char *key, *value; /* config.json edit (value NULL: delete the key) */
    const char *key2, *value2;
    int convert_rc;         /* 0: written; 3 or 4: refused */
    const char *msg;        /* refused: the error line after "smelt-convert: error: DIR/" */
    int ppl_rc;             /* written: smelt-perplexity's exit status (0, or 4 for a
                               forward-pass limit, which msg then names) */
} ccase;

static const ccase k_cases[] = {
    {"valid llama", 0, NULL, NULL, NULL, NULL, 0, NULL, 0},
    {"valid mixtral", 2, NULL, NULL, NULL, NULL, 0, NULL, 0},
    /* tie_word_embeddings with an lm_head.weight present: the file's own output head is
     * written (llama.cpp loads output.weight when it exists) */
    {"tied embeddings, lm_head present", 0, "tie_word_embeddings", "true", NULL, NULL, 0, NULL, 0},
    {"rms_norm_eps -1", 0, "rms_norm_eps", "-1", NULL, NULL, 3,
     "config.json: 'rms_norm_eps': expected a finite number > 0, found -1", 0},
    {"rms_norm_eps 0", 0, "rms_norm_eps", "0", NULL, NULL, 3, "config.json: 'rms_norm_eps': expected a finite number > 0, found 0", 0},
    {"rms_norm_eps string", 0, "rms_norm_eps", "\"1e-5\"", NULL, NULL, 3, "config.json: 'rms_norm_eps': expected a number", 0},
    {"rms_norm_eps missing", 0, "rms_norm_eps", NULL, NULL, NULL, 3,
     "config.json: 'rms_norm_eps': required key is missing (the GGUF needs llama.attention.layer_norm_rms_epsilon, "
     "llama.cpp's loader refuses a file without it)", 0},
    {"rms_norm_eps 1e-40 (0 in f32)", 0, "rms_norm_eps", "1e-50", NULL, NULL, 3,
     "config.json: 'rms_norm_eps': expected a finite number > 0, found 1e-50", 0},
    {"rope_theta -1e4", 0, "rope_theta", "-1e4", NULL, NULL, 3,
     "config.json: 'rope_theta': expected a finite number > 0, found -10000", 0},
    {"rope_theta 1e39 (inf in f32)", 0, "rope_theta", "1e39", NULL, NULL, 3,
     "config.json: 'rope_theta': expected a finite number > 0, found 1e+39", 0},
    {"rope_theta missing (default 10000)", 0, "rope_theta", NULL, NULL, NULL, 0, NULL, 0},
    {"max_position_embeddings 0", 0, "max_position_embeddings", "0", NULL, NULL, 3,
     "config.json: 'max_position_embeddings': expected a context length >= 1, found 0", 0},
    {"max_position_embeddings missing", 0, "max_position_embeddings", NULL, NULL, NULL, 3,
     "config.json: 'max_position_embeddings': required key is missing (the GGUF needs llama.context_length, llama.cpp's "
     "loader refuses a file without it)", 0},
    {"max_position_embeddings null", 0, "max_position_embeddings", "null", NULL, NULL, 3,
     "config.json: 'max_position_embeddings': required key is missing (the GGUF needs llama.context_length, llama.cpp's "
     "loader refuses a file without it)", 0},
    {"n_ctx instead", 0, "max_position_embeddings", NULL, "n_ctx", "128", 0, NULL, 0},
    {"max_position_embeddings 2^32", 0, "max_position_embeddings", "4294967296", NULL, NULL, 3,
     "config.json: 'max_position_embeddings': expected a non-negative integer that fits 32 bits", 0},
    {"num_attention_heads 0", 0, "num_attention_heads", "0", NULL, NULL, 3,
     "config.json: 'num_attention_heads': expected an integer >= 1, found 0", 0},
    {"num_key_value_heads 0", 0, "num_key_value_heads", "0", NULL, NULL, 3,
     "config.json: 'num_key_value_heads': expected an integer >= 1, found 0", 0},
    {"num_key_value_heads not dividing", 0, "num_key_value_heads", "3", NULL, NULL, 3,
     "config.json: 'num_key_value_heads': expected a divisor of num_attention_heads 4, found 3", 0},
    {"hidden_size not a multiple of the heads", 0, "num_attention_heads", "5", "num_key_value_heads", "5", 3,
     "config.json: 'num_attention_heads': hidden_size 64 is not a multiple of num_attention_heads 5 (and head_dim is not "
     "set)", 0},
    {"head_dim odd", 0, "head_dim", "15", NULL, NULL, 3, "config.json: 'head_dim': expected an even head dimension (RoPE rotates pairs), found 15", 0},
    {"head_dim contradicting the tensors", 0, "head_dim", "32", NULL, NULL, 3,
     "model.safetensors: 'model.layers.0.self_attn.k_proj.weight': shape [32, 64] contradicts config.json: expected "
     "[num_key_value_heads × head_dim, hidden_size] = [64, 64]", 0},
    {"head_dim as computed", 0, "head_dim", "16", NULL, NULL, 0, NULL, 0},
    {"num_hidden_layers 0", 0, "num_hidden_layers", "0", NULL, NULL, 3,
     "config.json: 'num_hidden_layers': expected an integer >= 1, found 0", 0},
    {"num_hidden_layers 600", 0, "num_hidden_layers", "600", NULL, NULL, 3,
     "config.json: 'num_hidden_layers': expected at most 512, found 600", 0},
    {"intermediate_size 0", 0, "intermediate_size", "0", NULL, NULL, 3,
     "config.json: 'intermediate_size': expected an integer >= 1, found 0", 0},
    {"vocab_size 0", 0, "vocab_size", "0", NULL, NULL, 3, "config.json: 'vocab_size': expected an integer >= 1, found 0", 0},
    {"experts per token on a dense model", 0, "num_experts_per_tok", "2", NULL, NULL, 3,
     "config.json: 'num_experts_per_tok': expected 0 in a model without experts (num_local_experts is not set), found 2", 0},
    {"more experts per token than experts", 2, "num_experts_per_tok", "3", NULL, NULL, 3,
     "config.json: 'num_experts_per_tok': expected 1..2 (num_local_experts), found 3", 0},
    {"no experts per token", 2, "num_experts_per_tok", NULL, NULL, NULL, 3,
     "config.json: 'num_experts_per_tok': required key is missing (a mixture-of-experts model needs the number of experts "
     "used per token)", 0},
    {"0 experts per token", 2, "num_experts_per_tok", "0", NULL, NULL, 3,
     "config.json: 'num_experts_per_tok': expected 1..2 (num_local_experts), found 0", 0},
    {"mixtral without experts", 2, "num_local_experts", "0", NULL, NULL, 3,
     "config.json: 'num_local_experts': a Mixtral config needs a positive expert count", 0},
    {"linear rope scaling", 0, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", NULL, NULL, 0, NULL, 0},
    {"linear rope scaling factor -2", 0, "rope_scaling", "{\"type\": \"linear\", \"factor\": -2.0}", NULL, NULL, 3,
     "config.json: 'rope_scaling.factor': expected a finite number > 0, found -2", 0},
    {"dynamic rope scaling (ignored)", 0, "rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 2.0}", NULL, NULL, 0, NULL, 0},
    {"yarn rope scaling", 0, "rope_scaling",
     "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64}", NULL, NULL, 0,
     "'llama.rope.scaling.type': rope scaling 'yarn' is not supported (only none and linear)", 4},
    {"rope_theta in rope_parameters", 0, "rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": -5}", NULL, NULL, 3,
     "config.json: 'rope_parameters.rope_theta': expected a finite number > 0, found -5", 0},
};

static char g_conv[4200], g_dump[4200], g_ver[4200], g_quant[4200], g_ppl[4200], g_imx[4200], g_text[4200];

static void tools(void)
{
    tu_tool(g_conv, sizeof g_conv, "smelt-convert");
    tu_tool(g_dump, sizeof g_dump, "smelt-dump");
    tu_tool(g_ver, sizeof g_ver, "smelt-verify");
    tu_tool(g_quant, sizeof g_quant, "smelt-quantize");
    tu_tool(g_ppl, sizeof g_ppl, "smelt-perplexity");
    tu_tool(g_imx, sizeof g_imx, "smelt-imatrix");
    tu_path(g_text, sizeof g_text, TEXT);
    if (access(g_conv, X_OK) || access(g_ppl, X_OK)) cr_skip_test("the tools are not built (%s)", g_conv);
}

/* Run a command; stderr's "error:" line (after "TOOL: error: ") into err, if any. */
static int run(const char *cmd, char *err, size_t n)
{
    char full[20000], *out = NULL;
    snprintf(full, sizeof full, "%s 2>&1 >/dev/null", cmd);
    int rc = tu_run(full, &out);
    if (err) {
        err[0] = 0;
        char *p = out ? strstr(out, ": error: ") : NULL;
        if (p) {
            p += 9;
            size_t l = strcspn(p, "\n");
            snprintf(err, n, "%.*s", (int)l, p);
        }
    }
    free(out);
    return rc;
}

Test(model_corpus, every_config_is_refused_or_accepted_by_every_tool, .timeout = 600)
{
    tools();
    int written = 0, refused = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        const ccase *c = &k_cases[i];
        char dir[512], out[1024], cmd[16384], err[2000], want[4000];
        cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
        hs_model m = hs_default();
        m.experts = c->experts;
        if (c->experts) m.experts_used = 2;
        cr_assert_eq(hs_write(dir, &m), 0);
        if (c->key) cr_assert_eq(hs_config_set(dir, c->key, c->value), 0, "%s", c->name);
        if (c->key2) cr_assert_eq(hs_config_set(dir, c->key2, c->value2), 0, "%s", c->name);
        snprintf(out, sizeof out, "%s/out.gguf", dir);
        snprintf(cmd, sizeof cmd, "'%s' -q '%s' -o '%s' --outtype f16", g_conv, dir, out);
        int rc = run(cmd, err, sizeof err);
        if (rc != 0) {
            refused++;
            cr_expect(rc == 3 || rc == 4, "%s: smelt-convert exit %d: %s", c->name, rc, err);
            cr_expect_eq(rc, c->convert_rc, "%s: smelt-convert exit %d: %s", c->name, rc, err);
            snprintf(want, sizeof want, "%s/%s", dir, c->msg ? c->msg : "");
            cr_expect_str_eq(err, want, "%s: got '%s'", c->name, err);
            cr_expect_neq(access(out, F_OK), 0, "%s: an output was left", c->name);
            tu_rmtree(dir);
            continue;
        }
        written++;
        cr_expect_eq(c->convert_rc, 0, "%s: smelt-convert accepted it", c->name);
        /* what smelt-convert writes, every tool takes */
        snprintf(cmd, sizeof cmd, "'%s' '%s'", g_dump, out);
        cr_expect_eq(run(cmd, err, sizeof err), 0, "%s: smelt-dump: %s", c->name, err);
        snprintf(cmd, sizeof cmd, "'%s' '%s' | grep -q '^validation: ok'", g_dump, out);
        cr_expect_eq(run(cmd, NULL, 0), 0, "%s: smelt-dump's validation line", c->name);
        snprintf(cmd, sizeof cmd, "'%s' -q '%s'", g_ver, out);
        cr_expect_eq(run(cmd, err, sizeof err), 0, "%s: smelt-verify: %s", c->name, err);
        snprintf(cmd, sizeof cmd, "'%s' --dry-run '%s' Q8_0", g_quant, out);
        cr_expect_eq(run(cmd, err, sizeof err), 0, "%s: smelt-quantize --dry-run: %s", c->name, err);
        snprintf(cmd, sizeof cmd, "'%s' -q '%s' '%s/q8.gguf' Q8_0", g_quant, out, dir);
        cr_expect_eq(run(cmd, err, sizeof err), 0, "%s: smelt-quantize Q8_0: %s", c->name, err);
        snprintf(cmd, sizeof cmd, "'%s' -q -m '%s/q8.gguf' -f '%s' -c 32 --chunks 1 -t 1", g_ppl, dir, g_text);
        rc = run(cmd, err, sizeof err);
        cr_expect_eq(rc, c->ppl_rc, "%s: smelt-perplexity exit %d: %s", c->name, rc, err);
        if (c->ppl_rc) {
            snprintf(want, sizeof want, "%s/q8.gguf: %s", dir, c->msg);
            cr_expect_str_eq(err, want, "%s", c->name);
        }
        tu_rmtree(dir);
    }
    cr_expect_geq(written, 5);
    cr_expect_geq(refused, 20);
}

/* ==== invalid GGUFs: one verdict, one message, from every tool ==== */

/* Copy src to dst changing one u32 KV (key != NULL), dropping one tensor (drop != NULL) or
 * setting general.type to "adapter". */
static void rewrite(const char *src, const char *dst, const char *key, uint32_t v, const char *drop, int adapter)
{
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(src, 0, &g, &e), 0, "%s", e.msg);
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    cr_assert_eq(smelt_gguf_writer_copy_all_kv(w, g, &e), 0);
    if (key) cr_assert_eq(smelt_gguf_writer_set_u32(w, key, v, &e), 0);
    if (adapter) cr_assert_eq(smelt_gguf_writer_set_str(w, "general.type", "adapter", &e), 0);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        if (drop && !strcmp(t->name, drop)) continue;
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, &e), 0);
    }
    cr_assert_eq(smelt_gguf_writer_begin(w, dst, &e), 0, "%s", e.msg);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        if (drop && !strcmp(t->name, drop)) continue;
        cr_assert_eq(smelt_gguf_writer_write(w, t->data, t->nbytes, &e), 0);
    }
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
    smelt_gguf_close(g);
}

/* Every tool that reads a model refuses `bad` with exit `code` and the line `msg` (after
 * "TOOL: error: BAD: "). */
static void same_verdict(const char *dir, const char *bad, int code, const char *msg, int with_verify)
{
    char cmd[16384], err[2000], want[4000];
    snprintf(want, sizeof want, "%s: %s", bad, msg);
    struct {
        const char *tool, *fmt;
    } runs[] = {
        {g_quant, "'%s' '%s' '%s/q.gguf' Q8_0"},
        {g_quant, "'%s' --dry-run '%s' Q4_K_M"},
        {g_ppl, "'%s' -m '%s' -f '%s' -c 32"},
        {g_imx, "'%s' -m '%s' -f '%s' -c 32 -o '%s/imatrix.gguf'"},
        {g_ver, "'%s' -q '%s'"},
    };
    for (size_t k = 0; k < sizeof runs / sizeof runs[0] - (with_verify ? 0 : 1); k++) {
        if (runs[k].tool == g_quant) snprintf(cmd, sizeof cmd, runs[k].fmt, runs[k].tool, bad, dir);
        else if (runs[k].tool == g_ver) snprintf(cmd, sizeof cmd, runs[k].fmt, runs[k].tool, bad);
        else snprintf(cmd, sizeof cmd, runs[k].fmt, runs[k].tool, bad, g_text, dir);
        int rc = run(cmd, err, sizeof err);
        cr_expect_eq(rc, code, "%s: exit %d: %s", cmd, rc, err);
        cr_expect_str_eq(err, want, "%s: got %s", cmd, err);
    }
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c -e q.gguf -e imatrix.gguf", dir);
    char *o = NULL;
    tu_run(cmd, &o);
    cr_expect_eq(atoi(o ? o : "1"), 0, "an output was written for %s", bad);
    free(o);
}

Test(model_corpus, invalid_gguf_same_message_from_every_tool, .timeout = 300)
{
    tools();
    char dir[512], good[1024], bad[1024], cmd[16384];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    hs_model m = hs_default();
    cr_assert_eq(hs_write(dir, &m), 0);
    snprintf(good, sizeof good, "%s/good.gguf", dir);
    snprintf(cmd, sizeof cmd, "'%s' -q '%s' -o '%s' --outtype f32", g_conv, dir, good);
    cr_assert_eq(run(cmd, NULL, 0), 0);
    snprintf(bad, sizeof bad, "%s/heads0.gguf", dir);
    rewrite(good, bad, "llama.attention.head_count", 0, NULL, 0);
    same_verdict(dir, bad, 3, "'llama.attention.head_count': expected at least 1, found 0", 1);
    snprintf(bad, sizeof bad, "%s/kv3.gguf", dir);
    rewrite(good, bad, "llama.attention.head_count_kv", 3, NULL, 0);
    same_verdict(dir, bad, 3, "'llama.attention.head_count_kv': expected a divisor of llama.attention.head_count 4, found 3", 1);
    snprintf(bad, sizeof bad, "%s/ctx0.gguf", dir);
    rewrite(good, bad, "llama.context_length", 0, NULL, 0);
    same_verdict(dir, bad, 3, "'llama.context_length': expected at least 1, found 0", 1);
    snprintf(bad, sizeof bad, "%s/noffn.gguf", dir);
    rewrite(good, bad, NULL, 0, "blk.1.ffn_down.weight", 0);
    same_verdict(dir, bad, 3,
                 "'blk.1.ffn_down.weight': required tensor is missing (llama.cpp's loader needs it: [128, 64] = [n_ff, n_embd])", 1);
    snprintf(bad, sizeof bad, "%s/adapter.gguf", dir);
    rewrite(good, bad, NULL, 0, NULL, 1);
    same_verdict(dir, bad, 4,
                 "is a LoRA adapter (general.type = adapter), not a model; merge it first or use it with llama.cpp's --lora", 0);
    /* a truncated download: the data of a tensor runs past the end of the file */
    char trunc[1024];
    snprintf(trunc, sizeof trunc, "%s/trunc.gguf", dir);
    snprintf(cmd, sizeof cmd, "head -c 100000 '%s' > '%s'; true", good, trunc);
    cr_assert_eq(run(cmd, NULL, 0), 0);
    /* the expected line, from the layout of the good file (its header length varies) */
    char trunc_msg[512] = "";
    smelt_gguf *gg;
    smelt_err ge;
    cr_assert_eq(smelt_gguf_open(good, 0, &gg, &ge), 0);
    uint64_t doff = smelt_gguf_data_offset(gg), left = 100000 - doff;
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(gg) && !trunc_msg[0]; i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(gg, i);
        if (t->offset + t->nbytes > left)
            snprintf(trunc_msg, sizeof trunc_msg,
                     "'%s' @ byte %llu (0x%llx): data [%llu, %llu) runs past the end of the file (the data section holds "
                     "%llu bytes from file offset %llu): truncated or corrupt",
                     t->name, (unsigned long long)t->info_offset, (unsigned long long)t->info_offset,
                     (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes), (unsigned long long)left,
                     (unsigned long long)doff);
    }
    smelt_gguf_close(gg);
    cr_assert(trunc_msg[0]);
    same_verdict(dir, trunc, 3, trunc_msg, 1);
    char err[2000], want[4000];
    snprintf(want, sizeof want, "%s: %s", trunc, trunc_msg);
    for (int j = 0; j < 2; j++) {
        snprintf(cmd, sizeof cmd, "'%s' %s '%s'", g_dump, j ? "--json" : "", trunc);
        cr_expect_eq(run(cmd, err, sizeof err), 3, "%s", cmd);
        cr_expect_str_eq(err, want, "%s", cmd);
    }
    /* smelt-verify hashes an adapter as any GGUF */
    snprintf(cmd, sizeof cmd, "'%s' -q '%s' | grep -qx 'model check: skipped (a LoRA adapter, not a model)'", g_ver, bad);
    cr_expect_eq(run(cmd, NULL, 0), 0, "smelt-verify on an adapter");
    /* smelt-dump shows invalid files and says what is wrong */
    snprintf(bad, sizeof bad, "%s/heads0.gguf", dir);
    snprintf(cmd, sizeof cmd,
             "'%s' --no-tensors '%s' | grep -qxF \"validation: FAILED: 'llama.attention.head_count': expected at least 1, "
             "found 0\"",
             g_dump, bad);
    cr_expect_eq(run(cmd, NULL, 0), 0, "smelt-dump's validation line");
    tu_rmtree(dir);
}

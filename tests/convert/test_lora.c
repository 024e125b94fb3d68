/* test_lora.c — PEFT adapters as llama.cpp LoRA adapter GGUFs: the layout (byte-identical
 * to llama.cpp's convert_lora_to_gguf.py for the fixture without modules_to_save), the
 * full-rank pairs that carry modules_to_save, baked scaling, refusals, and (when the
 * llama.cpp tools are installed) llama-perplexity with --lora against smelt's merge. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/lora.h"
#include "convert/merge.h"
#include "formats/base/file.h"
#include "formats/base/half.h"
#include "formats/base/hash.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "tests/common/adapter.h"
#include "tests/common/testutil.h"

static char tmp[4096];
static void setup(void) { cr_assert_eq(tu_mkdtemp(tmp, sizeof tmp), 0); }
static void teardown(void) { tu_rmtree(tmp); }

/* The fixture adapter without its modules_to_save (what llama.cpp's converter accepts),
 * written to tmp/nomts. */
static void write_nomts(char *dir, size_t n)
{
    snprintf(dir, n, "%s/nomts", tmp);
    char src[4096], p[4200];
    tu_path(src, sizeof src, "samples/tiny-mixtral-zh-lora");
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", src);
    smelt_st *st;
    smelt_err e;
    cr_assert_eq(smelt_st_open(p, &st, &e), 0, "%s", e.msg);
    ta_tensor *t = calloc(smelt_st_n_tensors(st), sizeof *t);
    size_t k = 0;
    for (uint64_t i = 0; i < smelt_st_n_tensors(st); i++) {
        const smelt_st_tensor *x = smelt_st_tensor_at(st, i);
        if (!strstr(x->name, ".lora_")) continue;
        cr_assert_eq(x->dtype, SMELT_DT_F32);
        t[k++] = (ta_tensor){x->name, SMELT_DT_F32, 2, {x->shape[0], x->shape[1]}, (const float *)x->data};
    }
    snprintf(p, sizeof p, "%s/adapter_config.json", src);
    json_t *cfg;
    cr_assert_eq(smelt_json_load(p, &cfg, &e), 0);
    json_object_set_new(cfg, "modules_to_save", json_null());
    char *txt = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    cr_assert_eq(ta_write_adapter(dir, txt, t, k), 0);
    free(txt);
    json_decref(cfg);
    free(t);
    smelt_st_close(st);
}

static int to_gguf(const char *base_dir, const char *adapter, const char *out, const smelt_lora_gguf_opts *o,
                   smelt_lora_gguf_report *rep, smelt_err *e)
{
    smelt_hf *h = NULL;
    smelt_peft *p = NULL;
    int rc = smelt_hf_open(base_dir, &h, e);
    if (!rc) rc = smelt_peft_open(adapter, &p, e);
    if (!rc) rc = smelt_lora_to_gguf(p, h, out, o, rep, NULL, e);
    smelt_peft_close(p);
    smelt_hf_close(h);
    return rc;
}

static const smelt_gguf_tensor *tensor(const smelt_gguf *g, const char *name)
{
    const smelt_gguf_tensor *t = smelt_gguf_find_tensor(g, name);
    cr_assert(t, "no tensor %s", name);
    return t;
}

static const float *adapter_f32(const smelt_st *st, const char *name)
{
    const smelt_st_tensor *t = smelt_st_find(st, name);
    cr_assert(t, "%s", name);
    return (const float *)t->data;
}

static uint64_t perm(uint64_t row, uint64_t rows, uint64_t heads)
{
    uint64_t hd = rows / heads, h = row / hd, rem = row % hd;
    return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

Test(lora, fixture_without_modules_to_save_is_llama_cpps_file, .init = setup, .fini = teardown)
{
    char ad[4200], out[4200], base[4096];
    write_nomts(ad, sizeof ad);
    tu_path(base, sizeof base, "samples/tiny-mixtral");
    snprintf(out, sizeof out, "%s/adapter.gguf", tmp);
    smelt_lora_gguf_report rep;
    smelt_err e;
    cr_assert_eq(to_gguf(base, ad, out, NULL, &rep, &e), 0, "%s", e.msg);
    cr_expect_eq(rep.pairs, 28);   /* 16 attention + 12 stacked expert groups */
    cr_expect_eq(rep.modules, 64);
    cr_expect_eq(rep.full_pairs, 0);
    cr_expect_eq(rep.alpha, 16.0f);
    cr_expect_not(rep.baked);
    /* byte for byte the file llama.cpp's convert_lora_to_gguf.py (80fb11a) writes for this
     * adapter directory (named "nomts"), --outtype f32 */
    smelt_map m;
    cr_assert_eq(smelt_map_open(&m, out, &e), 0);
    cr_expect_eq(m.size, 1396992);
    char hx[17];
    snprintf(hx, sizeof hx, "%016" PRIx64, smelt_xxh64(m.data, (size_t)m.size));
    cr_expect_str_eq(hx, "efb773557e43abc8");
    smelt_map_close(&m);
    /* and the layout, spelled out */
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0, "%s", e.msg);
    smelt_str s;
    cr_assert_eq(smelt_gguf_get_str(g, "general.type", &s, &e), 0);
    cr_expect_eq(strncmp(s.p, "adapter", s.n), 0);
    cr_assert_eq(smelt_gguf_get_str(g, "adapter.type", &s, &e), 0);
    cr_expect_eq(strncmp(s.p, "lora", s.n), 0);
    cr_assert_eq(smelt_gguf_get_str(g, "general.architecture", &s, &e), 0);
    cr_expect_eq(strncmp(s.p, "llama", s.n), 0);
    float alpha;
    cr_assert_eq(smelt_gguf_get_f32(g, "adapter.lora.alpha", &alpha, &e), 0);
    cr_expect_eq(alpha, 16.0f);
    cr_expect_eq(smelt_gguf_n_tensors(g), 56);
    static const char *first[] = {"blk.0.ffn_gate_exps.weight.lora_a", "blk.0.ffn_gate_exps.weight.lora_b",
                                  "blk.0.ffn_down_exps.weight.lora_a", "blk.0.ffn_down_exps.weight.lora_b",
                                  "blk.0.ffn_up_exps.weight.lora_a",   "blk.0.ffn_up_exps.weight.lora_b",
                                  "blk.0.attn_k.weight.lora_a",        "blk.0.attn_k.weight.lora_b",
                                  "blk.0.attn_output.weight.lora_a",   "blk.0.attn_output.weight.lora_b"};
    for (size_t i = 0; i < sizeof first / sizeof *first; i++)
        cr_expect_str_eq(smelt_gguf_tensor_at(g, i)->name, first[i]);
    const smelt_gguf_tensor *da = tensor(g, "blk.2.ffn_down_exps.weight.lora_a");
    cr_expect_eq(da->ne[0], 512);
    cr_expect_eq(da->ne[1], 8);
    cr_expect_eq(da->ne[2], 4);
    char p[4400];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ad);
    smelt_st *st;
    cr_assert_eq(smelt_st_open(p, &st, &e), 0);
    /* expert 3's w2 lora_A is the 4th slice */
    const float *A = adapter_f32(st, "base_model.model.model.layers.2.block_sparse_moe.experts.3.w2.lora_A.weight");
    cr_expect_eq(memcmp((const float *)da->data + 3 * 512 * 8, A, 512 * 8 * 4), 0);
    /* q and k lora_b rows are permuted as llama.cpp permutes the weights (8 heads, 2 KV heads) */
    const float *Bq = adapter_f32(st, "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
    const float *Bk = adapter_f32(st, "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
    const float *Bv = adapter_f32(st, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    const float *gq = (const float *)tensor(g, "blk.1.attn_q.weight.lora_b")->data;
    const float *gk = (const float *)tensor(g, "blk.1.attn_k.weight.lora_b")->data;
    const float *gv = (const float *)tensor(g, "blk.1.attn_v.weight.lora_b")->data;
    for (uint64_t o = 0; o < 256; o++) cr_assert_eq(memcmp(gq + o * 8, Bq + perm(o, 256, 8) * 8, 32), 0, "q row %" PRIu64, o);
    for (uint64_t o = 0; o < 64; o++) cr_assert_eq(memcmp(gk + o * 8, Bk + perm(o, 64, 2) * 8, 32), 0, "k row %" PRIu64, o);
    cr_expect_eq(memcmp(gv, Bv, 64 * 8 * 4), 0);
    cr_expect_neq(memcmp(gq, Bq, 256 * 8 * 4), 0);
    smelt_st_close(st);
    smelt_gguf_close(g);
}

Test(lora, modules_to_save_become_exact_full_rank_pairs, .init = setup, .fini = teardown)
{
    char ad[4096], out[4200], base[4096];
    tu_path(ad, sizeof ad, "samples/tiny-mixtral-zh-lora");
    tu_path(base, sizeof base, "samples/tiny-mixtral");
    snprintf(out, sizeof out, "%s/adapter.gguf", tmp);
    smelt_lora_gguf_report rep;
    smelt_err e;
    cr_assert_eq(to_gguf(base, ad, out, NULL, &rep, &e), 0, "%s", e.msg);
    cr_expect_eq(rep.pairs, 30);
    cr_expect_eq(rep.full_pairs, 2);
    cr_expect_eq(rep.full_bytes, 2 * (4096 * 256 + 256 * 256) * 4);
    cr_expect_eq(rep.alpha, 0.0f);
    cr_expect(rep.baked);
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0, "%s", e.msg);
    smelt_stset *bs, *as;
    char ap[4200];
    snprintf(ap, sizeof ap, "%s/adapter_model.safetensors", ad);
    cr_assert_eq(smelt_stset_open(base, &bs, &e), 0);
    cr_assert_eq(smelt_stset_open(ap, &as, &e), 0);
    const uint16_t *eb = (const uint16_t *)smelt_stset_find(bs, "model.embed_tokens.weight")->data;
    const uint16_t *en = (const uint16_t *)smelt_stset_find(as, "base_model.model.model.embed_tokens.weight")->data;
    const uint16_t *hb = (const uint16_t *)smelt_stset_find(bs, "lm_head.weight")->data;
    const uint16_t *hn = (const uint16_t *)smelt_stset_find(as, "base_model.model.lm_head.weight")->data;
    /* token_embd: lora_a holds D = W_new - W_base, one row per token; lora_b = I */
    const smelt_gguf_tensor *ta = tensor(g, "token_embd.weight.lora_a"), *tb = tensor(g, "token_embd.weight.lora_b");
    cr_expect_eq(ta->type, SMELT_TYPE_F32);
    cr_expect_eq(ta->ne[0], 256);
    cr_expect_eq(ta->ne[1], 4096);
    cr_expect_eq(tb->ne[0], 256);
    cr_expect_eq(tb->ne[1], 256);
    const float *D = (const float *)ta->data, *I = (const float *)tb->data;
    uint64_t inexact = 0;
    for (uint64_t i = 0; i < 4096 * 256; i++) {
        float want = smelt_bf16_to_f32(en[i]) - smelt_bf16_to_f32(eb[i]);
        cr_assert_eq(D[i], want, "token_embd delta %" PRIu64, i);
        inexact += (float)(D[i] + smelt_bf16_to_f32(eb[i])) != smelt_bf16_to_f32(en[i]);
    }
    /* W_base + D gives W_new back in f32 except where the two differ by more than 2^24 in scale */
    cr_expect_eq(inexact, 1, "W_base + D should give W_new exactly (%" PRIu64 " do not)", inexact);
    for (uint64_t r = 0; r < 256; r++)
        for (uint64_t c = 0; c < 256; c++) cr_assert_eq(I[r * 256 + c], r == c ? 1.0f : 0.0f);
    /* output: lora_a = I, lora_b = D */
    const smelt_gguf_tensor *oa = tensor(g, "output.weight.lora_a"), *ob = tensor(g, "output.weight.lora_b");
    cr_expect_eq(oa->ne[0], 256);
    cr_expect_eq(oa->ne[1], 256);
    cr_expect_eq(ob->ne[0], 256);
    cr_expect_eq(ob->ne[1], 4096);
    inexact = 0;
    for (uint64_t i = 0; i < 4096 * 256; i++) {
        float d = ((const float *)ob->data)[i];
        cr_assert_eq(d, smelt_bf16_to_f32(hn[i]) - smelt_bf16_to_f32(hb[i]));
        inexact += (float)(d + smelt_bf16_to_f32(hb[i])) != smelt_bf16_to_f32(hn[i]);
    }
    cr_expect_eq(inexact, 3, "%" PRIu64 " lm_head elements", inexact);
    /* the other pairs carry their scaling (2) in lora_b, since alpha is 0 */
    const float *Bv = (const float *)smelt_stset_find(as, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight")->data;
    const float *gv = (const float *)tensor(g, "blk.0.attn_v.weight.lora_b")->data;
    for (uint64_t i = 0; i < 64 * 8; i++) cr_assert_eq(gv[i], 2.0f * Bv[i]);
    smelt_stset_close(bs);
    smelt_stset_close(as);
    smelt_gguf_close(g);
    /* refused when full-rank pairs are not allowed */
    smelt_lora_gguf_opts o;
    smelt_lora_gguf_opts_default(&o);
    o.full_delta = false;
    int rc = to_gguf(base, ad, out, &o, NULL, &e);
    cr_expect_eq(rc, SMELT_EUNSUPPORTED);
    cr_expect_str_eq(e.msg, "the adapter replaces 2 tensor(s) outright (modules_to_save), which llama.cpp's LoRA "
                            "format has no place for; merge instead (smelt-merge --gguf OUT.gguf), or allow full-rank "
                            "delta pairs");
}

static const char *SMALL_CFG = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 4,"
                               " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 8, "
                               "\"tie_word_embeddings\": %s}";

static void small_base(const char *dir, const char *tie)
{
    static float W[64];
    for (int i = 0; i < 64; i++) W[i] = (float)(i % 5) / 4.0f;
    ta_tensor t[4] = {{"model.embed_tokens.weight", SMELT_DT_BF16, 2, {8, 4}, W},
                      {"model.layers.0.self_attn.q_proj.weight", SMELT_DT_BF16, 2, {4, 4}, W},
                      {"model.layers.0.self_attn.k_proj.weight", SMELT_DT_BF16, 2, {2, 4}, W},
                      {"model.norm.weight", SMELT_DT_BF16, 1, {4}, W}};
    char cfg[512];
    snprintf(cfg, sizeof cfg, SMALL_CFG, tie);
    cr_assert_eq(ta_write_base(dir, cfg, t, 4), 0);
}

Test(lora, baked_scaling_and_refusals, .init = setup, .fini = teardown)
{
    char base[4200], ad[4200], out[4200];
    snprintf(base, sizeof base, "%s/base", tmp);
    small_base(base, "false");
    snprintf(out, sizeof out, "%s/a.gguf", tmp);
    static float A[8] = {1, 2, 3, 4, 5, 6, 7, 8}, B[8] = {0.5f, 1, 1.5f, 2, 2.5f, 3, 3.5f, 4};
    ta_tensor t[2] = {{"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", SMELT_DT_F32, 2, {2, 4}, A},
                      {"base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight", SMELT_DT_F32, 2, {2, 2}, B}};
    /* rsLoRA: llama.cpp would scale by alpha / r; smelt bakes alpha / sqrt(r) into lora_b */
    snprintf(ad, sizeof ad, "%s/rs", tmp);
    cr_assert_eq(ta_write_adapter(ad, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"use_rslora\": true, "
                                      "\"target_modules\": [\"k_proj\"]}",
                                  t, 2),
                 0);
    smelt_lora_gguf_report rep;
    smelt_err e;
    cr_assert_eq(to_gguf(base, ad, out, NULL, &rep, &e), 0, "%s", e.msg);
    cr_expect(rep.baked);
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0, "%s", e.msg);
    float alpha = -1;
    smelt_gguf_get_f32(g, "adapter.lora.alpha", &alpha, &e);
    cr_expect_eq(alpha, 0.0f);
    const float *gb = (const float *)tensor(g, "blk.0.attn_k.weight.lora_b")->data;
    float s = (float)(4.0 / sqrt(2.0));
    /* one KV head of 2 rows: the permutation swaps nothing for head_dim 2 */
    for (int i = 0; i < 4; i++) cr_expect_eq(gb[i], B[i] * s, "%d", i);
    smelt_gguf_close(g);
    /* refusals leave no output behind */
    snprintf(out, sizeof out, "%s/refused.gguf", tmp);
    /* DoRA */
    static float M[2] = {1, 1};
    ta_tensor td[3] = {t[0], t[1], {"base_model.model.model.layers.0.self_attn.k_proj.lora_magnitude_vector", SMELT_DT_F32, 1, {2}, M}};
    snprintf(ad, sizeof ad, "%s/dora", tmp);
    cr_assert_eq(ta_write_adapter(ad, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"use_dora\": true, "
                                      "\"target_modules\": [\"k_proj\"]}",
                                  td, 3),
                 0);
    int rc = to_gguf(base, ad, out, NULL, NULL, &e);
    cr_expect_eq(rc, SMELT_EUNSUPPORTED);
    cr_expect_str_eq(e.msg, "DoRA adapters: llama.cpp cannot apply this as a runtime adapter; merge the adapter into "
                            "the model instead (smelt-merge --gguf OUT.gguf, or smelt-merge -o DIR)");
    /* a vocabulary resize */
    static float E[40];
    ta_tensor te[1] = {{"base_model.model.model.embed_tokens.weight", SMELT_DT_BF16, 2, {10, 4}, E}};
    snprintf(ad, sizeof ad, "%s/resize", tmp);
    cr_assert_eq(ta_write_adapter(ad, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": "
                                      "[\"k_proj\"], \"modules_to_save\": [\"embed_tokens\"]}",
                                  te, 1),
                 0);
    rc = to_gguf(base, ad, out, NULL, NULL, &e);
    cr_expect_eq(rc, SMELT_EUNSUPPORTED);
    cr_expect_str_eq(e.msg, "'model.embed_tokens.weight' changes shape from [8, 4] to [10, 4] (vocabulary resize): a "
                            "runtime adapter cannot resize the base model: llama.cpp cannot apply this as a runtime "
                            "adapter; merge the adapter into the model instead (smelt-merge --gguf OUT.gguf, or "
                            "smelt-merge -o DIR)");
    /* tied embeddings */
    snprintf(base, sizeof base, "%s/tied", tmp);
    small_base(base, "true");
    ta_tensor tt[1] = {{"base_model.model.model.embed_tokens.weight", SMELT_DT_BF16, 2, {8, 4}, E}};
    snprintf(ad, sizeof ad, "%s/tiedad", tmp);
    cr_assert_eq(ta_write_adapter(ad, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": "
                                      "[\"k_proj\"], \"modules_to_save\": [\"embed_tokens\"]}",
                                  tt, 1),
                 0);
    rc = to_gguf(base, ad, out, NULL, NULL, &e);
    cr_expect_eq(rc, SMELT_EUNSUPPORTED);
    cr_expect(strstr(e.msg, "the model ties its embeddings, so llama.cpp would apply a token_embd adapter to the output "
                            "projection too"),
              "%s", e.msg);
    /* another architecture */
    snprintf(base, sizeof base, "%s/gpt2", tmp);
    cr_assert_eq(ta_write_base(base, "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\"}", t, 1), 0);
    rc = to_gguf(base, ad, out, NULL, NULL, &e);
    cr_expect_eq(rc, SMELT_EUNSUPPORTED);
    cr_expect_str_eq(e.msg, "LoRA adapter GGUF: architecture \"GPT2LMHeadModel\" (model_type \"gpt2\") is not "
                            "supported (Llama, Mistral and Mixtral are)");
    cr_expect_not(smelt_file_exists(out));
}

Test(lora, nonfinite_values_refused_or_counted, .init = setup, .fini = teardown)
{
    char base[4200], ad[4200], out[4200], line[1024], want[5000];
    snprintf(base, sizeof base, "%s/base", tmp);
    small_base(base, "false");
    snprintf(out, sizeof out, "%s/a.gguf", tmp);
    static float A[8] = {1, 2, 3, 4, 5, NAN, 7, 8}, B[4] = {0.5f, 1, 1.5f, 2};
    ta_tensor t[2] = {{"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", SMELT_DT_F32, 2, {2, 4}, A},
                      {"base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight", SMELT_DT_F32, 2, {2, 2}, B}};
    snprintf(ad, sizeof ad, "%s/nan", tmp);
    cr_assert_eq(ta_write_adapter(ad, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"k_proj\"]}",
                                  t, 2),
                 0);
    smelt_lora_gguf_report rep;
    smelt_err e;
    int rc = to_gguf(base, ad, out, NULL, &rep, &e);
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, SMELT_EFORMAT, "%s", line);
    snprintf(want, sizeof want,
             "%s/adapter_model.safetensors: 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight': value 5 is "
             "NaN; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)",
             ad);
    cr_expect_str_eq(line, want);
    cr_expect_not(smelt_file_exists(out));
    char cmd[4400], *ls = NULL;
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c smelt-tmp", tmp);
    tu_run(cmd, &ls);
    cr_expect_eq(atoi(ls ? ls : "-1"), 0, "temporary file left");
    free(ls);
    /* allowed: written, and counted */
    smelt_lora_gguf_opts o;
    smelt_lora_gguf_opts_default(&o);
    o.allow_nonfinite = true;
    cr_assert_eq(to_gguf(base, ad, out, &o, &rep, &e), 0, "%s", e.msg);
    cr_expect_eq(rep.nonfinite, 1);
    cr_expect_eq(rep.nonfinite_tensors, 1);
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0, "%s", e.msg);
    cr_expect(isnan(((const float *)tensor(g, "blk.0.attn_k.weight.lora_a")->data)[5]));
    smelt_gguf_close(g);
    /* +Inf in a replaced tensor (carried as a full-rank delta) */
    static float E[32];
    for (int i = 0; i < 32; i++) E[i] = (float)i / 8;
    E[9] = INFINITY;
    ta_tensor te[1] = {{"base_model.model.model.embed_tokens.weight", SMELT_DT_BF16, 2, {8, 4}, E}};
    snprintf(ad, sizeof ad, "%s/mts", tmp);
    cr_assert_eq(ta_write_adapter(ad, "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": "
                                      "[\"k_proj\"], \"modules_to_save\": [\"embed_tokens\"]}",
                                  te, 1),
                 0);
    snprintf(out, sizeof out, "%s/b.gguf", tmp);
    rc = to_gguf(base, ad, out, NULL, &rep, &e);
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, SMELT_EFORMAT, "%s", line);
    snprintf(want, sizeof want,
             "%s/adapter_model.safetensors: 'base_model.model.model.embed_tokens.weight': value 9 is +Inf; smelt refuses "
             "non-finite weights (--allow-nonfinite writes them anyway)",
             ad);
    cr_expect_str_eq(line, want);
    cr_expect_not(smelt_file_exists(out));
    cr_assert_eq(to_gguf(base, ad, out, &o, &rep, &e), 0, "%s", e.msg);
    cr_expect_eq(rep.nonfinite, 1, "the delta row holds the one +Inf");
}

Test(lora, f16_tensors)
{
    char ad[4096], base[4096], out[4200];
    cr_assert_eq(tu_mkdtemp(tmp, sizeof tmp), 0);
    write_nomts(ad, sizeof ad);
    tu_path(base, sizeof base, "samples/tiny-mixtral");
    snprintf(out, sizeof out, "%s/f16.gguf", tmp);
    smelt_lora_gguf_opts o;
    smelt_lora_gguf_opts_default(&o);
    o.out_type = SMELT_TYPE_F16;
    smelt_err e;
    cr_assert_eq(to_gguf(base, ad, out, &o, NULL, &e), 0, "%s", e.msg);
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0, "%s", e.msg);
    uint32_t ft = 0;
    cr_expect_eq(smelt_gguf_get_u32(g, "general.file_type", &ft, &e), 0);
    cr_expect_eq(ft, 1);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) cr_expect_eq(smelt_gguf_tensor_at(g, i)->type, SMELT_TYPE_F16);
    smelt_gguf_close(g);
    tu_rmtree(tmp);
}

/* ==== llama.cpp applies them (oracle) ==== */

static const char *envor(const char *var, char *buf, size_t n, const char *rel)
{
    const char *v = getenv(var);
    if (v && *v) return v;
    tu_path(buf, n, rel);
    return buf;
}

/* llama-perplexity's final estimate (console or --log-file); its asynchronous logger can drop
 * the last lines at exit, so a run that printed none is repeated (at most three times). */
static double ppl(const char *bin, const char *model, const char *lora, const char *log)
{
    char cmd[16384], text[4096];
    tu_path(text, sizeof text, "samples/text/eval-zh.txt");
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' %s%s%s -f '%s' -c 256 -b 256 -t 1 --log-file '%s'", bin, model,
             lora ? "--lora '" : "", lora ? lora : "", lora ? "'" : "", text, log);
    const char *key = "Final estimate: PPL = ";
    double v = -1;
    for (int run = 0; run < 3 && v < 0; run++) {
        char *console = NULL;
        cr_assert_eq(tu_run(cmd, &console), 0, "%s", cmd);
        const char *f = console ? strstr(console, key) : NULL;
        if (f) v = atof(f + strlen(key));
        free(console);
        for (int attempt = 0; attempt < 10 && v < 0; attempt++) {
            size_t len = 0;
            char *l = (char *)tu_read(log, &len), *buf = calloc(len + 1, 1);
            if (l && buf) memcpy(buf, l, len);
            free(l);
            f = buf ? strstr(buf, key) : NULL;
            if (f) v = atof(f + strlen(key));
            free(buf);
            if (v < 0) usleep(100000);
        }
    }
    cr_assert_geq(v, 0, "no PPL from %s", cmd);
    return v;
}

static void convert(const char *script, const char *dir, const char *out)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' --outtype f32 >/dev/null 2>&1", script, dir, out);
    cr_assert_eq(tu_run(cmd, NULL), 0, "%s", cmd);
}

static void merge_dir(const char *base, const char *ad, const char *out)
{
    char tool[4096], cmd[16384];
    tu_tool(tool, sizeof tool, "smelt-merge");
    snprintf(cmd, sizeof cmd, "'%s' -q --base '%s' --lora '%s' -o '%s'", tool, base, ad, out);
    cr_assert_eq(tu_run(cmd, NULL), 0, "%s", cmd);
}

Test(lora, llama_cpp_applies_the_adapters_like_the_merge, .init = setup, .fini = teardown, .timeout = 600)
{
    char b1[4096], b2[4096], b3[4096], b4[4096];
    const char *bin = envor("SMELT_LLAMA_PERPLEXITY", b1, sizeof b1, ".oracle/build/bin/llama-perplexity");
    const char *conv = envor("SMELT_CONVERT_HF", b2, sizeof b2, "tests/oracle/convert-hf");
    const char *stubs = envor("SMELT_ORACLE_PYSTUBS", b3, sizeof b3, "tests/oracle/pystubs");
    const char *src = envor("SMELT_LLAMA_SRC", b4, sizeof b4, ".oracle/llama.cpp-src");
    if (access(bin, X_OK) || access(conv, X_OK)) cr_skip_test("llama-perplexity or tests/oracle/convert-hf not available");
    if (tu_run("/usr/bin/python3 -c 'import torch, numpy, sentencepiece'", NULL))
        cr_skip_test("/usr/bin/python3 with torch is not available for llama.cpp's converter");
    char base[4096], fix[4096], nomts[4200], p[32][4400];
    tu_path(base, sizeof base, "samples/tiny-mixtral");
    tu_path(fix, sizeof fix, "samples/tiny-mixtral-zh-lora");
    write_nomts(nomts, sizeof nomts);
    const char *names[] = {"base.gguf", "merged", "merged.gguf", "merged-nomts", "merged-nomts.gguf", "full.gguf",
                           "nomts.gguf", "log1", "log2", "log3", "log4", "llama-nomts.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) snprintf(p[i], sizeof p[i], "%s/%s", tmp, names[i]);
    smelt_err e;
    cr_assert_eq(to_gguf(base, fix, p[5], NULL, NULL, &e), 0, "%s", e.msg);
    cr_assert_eq(to_gguf(base, nomts, p[6], NULL, NULL, &e), 0, "%s", e.msg);
    convert(conv, base, p[0]);
    merge_dir(base, fix, p[1]);
    convert(conv, p[1], p[2]);
    merge_dir(base, nomts, p[3]);
    convert(conv, p[3], p[4]);
    double merged = ppl(bin, p[2], NULL, p[7]);
    double full = ppl(bin, p[0], p[5], p[8]);
    double merged_nomts = ppl(bin, p[4], NULL, p[9]);
    double runtime_nomts = ppl(bin, p[0], p[6], p[10]);
    fprintf(stderr, "eval-zh PPL: merged %.4f, base + full-rank adapter %.4f; without modules_to_save: merged %.4f, "
                    "base + adapter %.4f\n",
            merged, full, merged_nomts, runtime_nomts);
    /* issue check 2: the merged model's PPL equals the oracle's (PyTorch, 58.34409) within 0.1%,
     * far below the base's 213.19 */
    cr_expect_lt(fabs(merged - 58.34408582111036) / 58.34408582111036, 1e-3, "merged %.4f", merged);
    cr_expect_lt(merged, 213.19186179394703 / 2);
    /* issue check 4: llama.cpp applying smelt's adapter GGUFs at run time matches the merge within
     * 0.1% (measured: ~8e-5; the difference is f32 rounding of W x + B (A x) against (W + BA) x) */
    cr_expect_lt(fabs(full - merged) / merged, 1e-3, "full-rank adapter %.4f vs merged %.4f", full, merged);
    cr_expect_lt(fabs(runtime_nomts - merged_nomts) / merged_nomts, 1e-3, "adapter %.4f vs merged %.4f", runtime_nomts,
                 merged_nomts);
    /* llama.cpp's own converter writes the same file for the adapter without modules_to_save */
    char stubs2[4096], cmd[65536];
    tu_path(stubs2, sizeof stubs2, "tests/convert/pystubs");
    if (access(stubs, R_OK) == 0) {
        snprintf(cmd, sizeof cmd,
                 "PYTHONPATH='%s:%s:%s/gguf-py:%s' NO_LOCAL_GGUF=1 HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 "
                 "/usr/bin/python3 '%s/run_converter.py' '%s/convert_lora_to_gguf.py' --base '%s' --outfile '%s' '%s' "
                 ">/dev/null 2>&1",
                 stubs2, stubs, src, src, stubs, src, base, p[11], nomts);
        cr_assert_eq(tu_run(cmd, NULL), 0, "%s", cmd);
        cr_expect_eq(tu_cmp_files(p[6], p[11]), 0, "smelt's adapter GGUF differs from convert_lora_to_gguf.py's");
    }
}

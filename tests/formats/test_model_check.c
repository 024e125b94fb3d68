/* test_model_check.c — the model check every tool shares (formats/model_check.h): a valid
 * dense and a valid MoE llama model built in memory, then one mutation per rule with its
 * exact message, the flags, and the same verdicts read back from GGUF files (one file and
 * shards). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/model_check.h"
#include "tests/common/testutil.h"

#define MAXK 48
#define MAXT 96

typedef struct {
    smelt_mc_kv kv[MAXK];
    char keys[MAXK][64], strs[MAXK][32];
    size_t n_kv;
    smelt_mc_tensor t[MAXT];
    char names[MAXT][64];
    size_t n_t;
    uint32_t arr_u32[MAXK][8];
} mdl;

static float g_scores[200];
static int32_t g_types[200];

static smelt_mc_kv *slot(mdl *m, const char *key)
{
    for (size_t i = 0; i < m->n_kv; i++)
        if (!strcmp(m->kv[i].key, key)) {
            memset(&m->kv[i], 0, sizeof m->kv[i]);
            m->kv[i].key = m->keys[i];
            return &m->kv[i];
        }
    cr_assert_lt(m->n_kv, MAXK);
    size_t i = m->n_kv++;
    snprintf(m->keys[i], sizeof m->keys[i], "%s", key);
    memset(&m->kv[i], 0, sizeof m->kv[i]);
    m->kv[i].key = m->keys[i];
    return &m->kv[i];
}

static void set_int(mdl *m, const char *key, int type, int64_t v)
{
    smelt_mc_kv *k = slot(m, key);
    k->type = type;
    k->arr_type = -1;
    k->n = 1;
    k->i = v;
}
static void set_u32(mdl *m, const char *key, int64_t v) { set_int(m, key, SMELT_GGUF_U32, v); }
static void set_f32(mdl *m, const char *key, double v)
{
    smelt_mc_kv *k = slot(m, key);
    k->type = SMELT_GGUF_F32;
    k->arr_type = -1;
    k->n = 1;
    k->f = (float)v;
}
static void set_str(mdl *m, const char *key, const char *v)
{
    smelt_mc_kv *k = slot(m, key);
    size_t i = (size_t)(k - m->kv);
    snprintf(m->strs[i], sizeof m->strs[i], "%s", v);
    k->type = SMELT_GGUF_STRING;
    k->arr_type = -1;
    k->n = 1;
    k->s = m->strs[i];
    k->slen = strlen(v);
}
static void set_arr(mdl *m, const char *key, int et, uint64_t n, const void *data)
{
    smelt_mc_kv *k = slot(m, key);
    k->type = SMELT_GGUF_ARRAY;
    k->arr_type = et;
    k->n = n;
    k->arr = data;
}
/* a per-layer u32 array */
static void set_u32s(mdl *m, const char *key, const uint32_t *v, size_t n)
{
    smelt_mc_kv *k = slot(m, key);
    size_t i = (size_t)(k - m->kv);
    memcpy(m->arr_u32[i], v, n * 4);
    set_arr(m, key, SMELT_GGUF_U32, n, m->arr_u32[i]);
}
static void del_kv(mdl *m, const char *key)
{
    for (size_t i = 0; i < m->n_kv; i++)
        if (!strcmp(m->kv[i].key, key)) {
            for (size_t j = i + 1; j < m->n_kv; j++) {
                memcpy(m->keys[j - 1], m->keys[j], sizeof m->keys[j]);
                memcpy(m->strs[j - 1], m->strs[j], sizeof m->strs[j]);
                memcpy(m->arr_u32[j - 1], m->arr_u32[j], sizeof m->arr_u32[j]);
                m->kv[j - 1] = m->kv[j];
                m->kv[j - 1].key = m->keys[j - 1];
                if (m->kv[j - 1].type == SMELT_GGUF_STRING) m->kv[j - 1].s = m->strs[j - 1];
                if (m->kv[j - 1].arr == m->arr_u32[j]) m->kv[j - 1].arr = m->arr_u32[j - 1];
            }
            m->n_kv--;
            return;
        }
}

static void add_t(mdl *m, const char *name, uint64_t ne0, uint64_t ne1, uint64_t ne2)
{
    cr_assert_lt(m->n_t, MAXT);
    size_t i = m->n_t++;
    snprintf(m->names[i], sizeof m->names[i], "%s", name);
    m->t[i] = (smelt_mc_tensor){m->names[i], {ne0, ne1, ne2, 1}, NULL};
}
static smelt_mc_tensor *get_t(mdl *m, const char *name)
{
    for (size_t i = 0; i < m->n_t; i++)
        if (!strcmp(m->names[i], name)) return &m->t[i];
    cr_assert_fail("no tensor %s", name);
    return NULL;
}
static void del_t(mdl *m, const char *name)
{
    for (size_t i = 0; i < m->n_t; i++)
        if (!strcmp(m->names[i], name)) {
            for (size_t j = i + 1; j < m->n_t; j++) {
                memcpy(m->names[j - 1], m->names[j], sizeof m->names[j]);
                m->t[j - 1] = m->t[j];
                m->t[j - 1].name = m->names[j - 1];
            }
            m->n_t--;
            return;
        }
    cr_assert_fail("no tensor %s", name);
}

/* 2 layers, n_embd 64, 4 heads (2 KV heads) of 16, ff 128, 105 tokens; MoE with 4 experts
 * (2 used) when experts > 0. */
static void base(mdl *m, int experts)
{
    memset(m, 0, sizeof *m);
    set_str(m, "general.architecture", "llama");
    set_str(m, "general.type", "model");
    set_u32(m, "llama.block_count", 2);
    set_u32(m, "llama.context_length", 256);
    set_u32(m, "llama.embedding_length", 64);
    set_u32(m, "llama.feed_forward_length", 128);
    set_u32(m, "llama.attention.head_count", 4);
    set_u32(m, "llama.attention.head_count_kv", 2);
    set_f32(m, "llama.rope.freq_base", 10000);
    set_f32(m, "llama.attention.layer_norm_rms_epsilon", 1e-5);
    if (experts) {
        set_u32(m, "llama.expert_count", (uint32_t)experts);
        set_u32(m, "llama.expert_used_count", 2);
    }
    set_u32(m, "llama.vocab_size", 105);
    set_u32(m, "llama.rope.dimension_count", 16);
    set_str(m, "tokenizer.ggml.model", "llama");
    set_arr(m, "tokenizer.ggml.tokens", SMELT_GGUF_STRING, 105, NULL);
    set_arr(m, "tokenizer.ggml.scores", SMELT_GGUF_F32, 105, g_scores);
    set_arr(m, "tokenizer.ggml.token_type", SMELT_GGUF_I32, 105, g_types);
    add_t(m, "token_embd.weight", 64, 105, 1);
    for (int l = 0; l < 2; l++) {
        char n[64];
#define L(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        add_t(m, L("attn_norm.weight"), 64, 1, 1);
        add_t(m, L("attn_q.weight"), 64, 64, 1);
        add_t(m, L("attn_k.weight"), 64, 32, 1);
        add_t(m, L("attn_v.weight"), 64, 32, 1);
        add_t(m, L("attn_output.weight"), 64, 64, 1);
        add_t(m, L("ffn_norm.weight"), 64, 1, 1);
        if (experts) {
            add_t(m, L("ffn_gate_inp.weight"), 64, (uint64_t)experts, 1);
            add_t(m, L("ffn_gate_exps.weight"), 64, 128, (uint64_t)experts);
            add_t(m, L("ffn_down_exps.weight"), 128, 64, (uint64_t)experts);
            add_t(m, L("ffn_up_exps.weight"), 64, 128, (uint64_t)experts);
        } else {
            add_t(m, L("ffn_gate.weight"), 64, 128, 1);
            add_t(m, L("ffn_down.weight"), 128, 64, 1);
            add_t(m, L("ffn_up.weight"), 64, 128, 1);
        }
#undef L
    }
    add_t(m, "output_norm.weight", 64, 1, 1);
    add_t(m, "output.weight", 64, 105, 1);
}

static int run(const mdl *m, unsigned flags, smelt_mc_hparams *hp, char *line, size_t n)
{
    smelt_mc_model mm = {"m.gguf", m->kv, m->n_kv, m->t, m->n_t, false};
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_mc_check(&mm, flags, hp, &e);
    smelt_err_format(&e, line, n);
    return rc;
}

static void expect(const mdl *m, int code, const char *want)
{
    char line[1200];
    int rc = run(m, 0, NULL, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d: %s", rc, line);
    cr_expect_str_eq(line, want);
}

Test(model_check, valid_dense_and_moe_models)
{
    mdl m;
    smelt_mc_hparams hp;
    char line[1200];
    base(&m, 0);
    cr_assert_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    cr_expect_eq(hp.n_layer, 2);
    cr_expect_eq(hp.n_embd, 64);
    cr_expect_eq(hp.n_head_kv, 2);
    cr_expect_eq(hp.head_dim, 16);
    cr_expect_eq(hp.head_dim_v, 16);
    cr_expect_eq(hp.n_rot, 16);
    cr_expect_eq(hp.n_vocab, 105);
    cr_expect_eq(hp.n_tokens, 105);
    cr_expect_eq(hp.n_expert, 0);
    cr_expect_eq(hp.rms_eps, 1e-5f);
    cr_expect_not(hp.tied_output);
    base(&m, 4);
    cr_assert_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    cr_expect_eq(hp.n_expert, 4);
    cr_expect_eq(hp.n_expert_used, 2);
    /* defaults: no rope.dimension_count, head_count_kv, freq_base, vocab_size, tokenizer */
    base(&m, 0);
    del_kv(&m, "llama.rope.dimension_count");
    del_kv(&m, "llama.attention.head_count_kv");
    del_kv(&m, "llama.rope.freq_base");
    del_kv(&m, "llama.vocab_size");
    del_kv(&m, "tokenizer.ggml.tokens");
    for (int l = 0; l < 2; l++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%d.attn_k.weight", l);
        get_t(&m, n)->ne[1] = 64;
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", l);
        get_t(&m, n)->ne[1] = 64;
    }
    del_t(&m, "output.weight");
    cr_assert_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    cr_expect_eq(hp.n_head_kv, 4);
    cr_expect_eq(hp.rope_base, 10000.0f);
    cr_expect_eq(hp.n_vocab, 105, "from token_embd");
    cr_expect_eq(hp.n_tokens, 0);
    cr_expect(hp.tied_output);
    /* a fused attn_qkv, biases, rope_freqs, per-layer arrays of equal values */
    base(&m, 0);
    del_t(&m, "blk.0.attn_q.weight");
    del_t(&m, "blk.0.attn_k.weight");
    del_t(&m, "blk.0.attn_v.weight");
    add_t(&m, "blk.0.attn_qkv.weight", 64, 128, 1);
    add_t(&m, "blk.0.attn_qkv.bias", 128, 1, 1);
    add_t(&m, "blk.1.attn_q.bias", 64, 1, 1);
    add_t(&m, "blk.1.attn_output.bias", 64, 1, 1);
    add_t(&m, "blk.1.ffn_down.bias", 64, 1, 1);
    add_t(&m, "rope_freqs.weight", 8, 1, 1);
    uint32_t h[2] = {4, 4};
    set_u32s(&m, "llama.attention.head_count", h, 2);
    cr_assert_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    cr_expect_eq(hp.n_head, 4);
}

Test(model_check, hyperparameter_ranges)
{
    mdl m;
    base(&m, 0);
    set_u32(&m, "llama.attention.head_count", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.head_count': expected at least 1, found 0");
    base(&m, 0);
    set_u32(&m, "llama.attention.head_count_kv", 3);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.head_count_kv': expected a divisor of llama.attention.head_count 4, found 3");
    base(&m, 0);
    set_u32(&m, "llama.attention.head_count_kv", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.head_count_kv': expected at least 1, found 0");
    base(&m, 0);
    set_f32(&m, "llama.attention.layer_norm_rms_epsilon", -1);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.layer_norm_rms_epsilon': expected a finite number > 0, found -1");
    base(&m, 0);
    set_f32(&m, "llama.attention.layer_norm_rms_epsilon", 1.0 / 0.0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.layer_norm_rms_epsilon': expected a finite number > 0, found inf");
    base(&m, 0);
    del_kv(&m, "llama.attention.layer_norm_rms_epsilon");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.layer_norm_rms_epsilon': required key is missing (llama.cpp's loader needs it)");
    base(&m, 0);
    set_f32(&m, "llama.rope.freq_base", -1e4);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.rope.freq_base': expected a finite number > 0, found -10000");
    base(&m, 0);
    set_u32(&m, "llama.context_length", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.context_length': expected at least 1, found 0");
    base(&m, 0);
    del_kv(&m, "llama.context_length");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.context_length': required key is missing (llama.cpp's loader needs it)");
    base(&m, 0);
    set_int(&m, "llama.context_length", SMELT_GGUF_I32, 256);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.context_length': expected a u32, found i32 256");
    base(&m, 0);
    set_str(&m, "llama.embedding_length", "64");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.embedding_length': expected a u32, found a string");
    base(&m, 0);
    set_int(&m, "llama.attention.layer_norm_rms_epsilon", SMELT_GGUF_U32, 1);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.layer_norm_rms_epsilon': expected an f32, found u32 1");
    base(&m, 0);
    set_u32(&m, "llama.block_count", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.block_count': expected 1..512 layers, found 0");
    base(&m, 0);
    set_u32(&m, "llama.block_count", 600);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.block_count': expected 1..512 layers, found 600");
    base(&m, 0);
    set_u32(&m, "llama.feed_forward_length", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.feed_forward_length': expected at least 1, found 0");
    base(&m, 0);
    set_u32(&m, "llama.embedding_length", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.embedding_length': expected at least 1, found 0");
    /* head size */
    base(&m, 0);
    set_u32(&m, "llama.attention.head_count", 5);
    set_u32(&m, "llama.attention.head_count_kv", 5);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'llama.attention.head_count': llama.embedding_length 64 is not a multiple of the head count 5 (and "
           "llama.attention.key_length, which would give the head size, is not set)");
    base(&m, 0);
    set_u32(&m, "llama.attention.key_length", 15);
    set_u32(&m, "llama.attention.value_length", 15);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.attention.key_length': expected an even head size >= 2 (RoPE rotates pairs), found 15");
    base(&m, 0);
    set_u32(&m, "llama.attention.value_length", 8);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'llama.attention.value_length': expected 16 (= llama.attention.key_length: the llama architecture has "
           "one head size), found 8");
    base(&m, 0);
    set_u32(&m, "llama.rope.dimension_count", 8);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'llama.rope.dimension_count': expected 16 (the head size: llama rotates the whole head), found 8");
    /* rope scaling */
    base(&m, 0);
    set_str(&m, "llama.rope.scaling.type", "dynamic");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.rope.scaling.type': expected none, linear, yarn or longrope, found 'dynamic'");
    base(&m, 0);
    set_str(&m, "llama.rope.scaling.type", "linear");
    set_f32(&m, "llama.rope.scaling.factor", -2);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.rope.scaling.factor': expected a finite number >= 0 (0: no scaling), found -2");
    /* per-layer arrays */
    base(&m, 0);
    uint32_t h[3] = {4, 2, 4};
    set_u32s(&m, "llama.attention.head_count", h, 2);
    expect(&m, SMELT_EUNSUPPORTED,
           "m.gguf: 'llama.attention.head_count': per-layer values differ (layer 0: 4, layer 1: 2); smelt handles one value "
           "for all layers");
    base(&m, 0);
    set_u32s(&m, "llama.attention.head_count", h, 3);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'llama.attention.head_count': expected one value per layer (2 values, llama.block_count), found an "
           "array of 3");
}

Test(model_check, experts)
{
    mdl m;
    base(&m, 4);
    set_u32(&m, "llama.expert_used_count", 5);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.expert_used_count': expected 1..4 (llama.expert_count), found 5");
    base(&m, 4);
    set_u32(&m, "llama.expert_used_count", 0);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.expert_used_count': expected 1..4 (llama.expert_count), found 0");
    base(&m, 4);
    del_kv(&m, "llama.expert_used_count");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.expert_used_count': required key is missing (llama.cpp's loader needs it)");
    base(&m, 0);
    set_u32(&m, "llama.expert_used_count", 2);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'llama.expert_used_count': expected 0 in a model without experts (no llama.expert_count), found 2");
    base(&m, 4);
    set_u32(&m, "llama.expert_count", 2000);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.expert_count': expected at most 1024 experts, found 2000");
    base(&m, 4);
    get_t(&m, "blk.1.ffn_gate_inp.weight")->ne[1] = 8;
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.1.ffn_gate_inp.weight': shape [64, 8] does not match the hyperparameters: expected [64, 4] = "
           "[n_embd, n_expert]");
    base(&m, 4);
    del_t(&m, "blk.0.ffn_up_exps.weight");
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.0.ffn_up_exps.weight': required tensor is missing (llama.cpp's loader needs it: [64, 128, 4] = "
           "[n_embd, n_ff, n_expert])");
    /* llama.cpp's llama loader does without ffn_gate_exps */
    base(&m, 4);
    del_t(&m, "blk.0.ffn_gate_exps.weight");
    char line[1200];
    cr_expect_eq(run(&m, 0, NULL, line, sizeof line), 0, "%s", line);
    /* a dense FFN tensor in an MoE model is not used */
    base(&m, 4);
    add_t(&m, "blk.1.ffn_up.weight", 64, 128, 1);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.1.ffn_up.weight': tensor is not part of the llama architecture (mixture of experts, "
           "ffn_{gate,up,down}_exps): llama.cpp refuses to load a file with tensors it does not use");
}

Test(model_check, vocabulary_and_tensors)
{
    mdl m;
    base(&m, 0);
    get_t(&m, "token_embd.weight")->ne[1] = 100;
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'token_embd.weight': shape [64, 100] does not match the hyperparameters: expected [64, 105] = [n_embd, "
           "n_vocab (tokenizer.ggml.tokens)]");
    base(&m, 0);
    set_u32(&m, "llama.vocab_size", 100);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'llama.vocab_size': expected 105 (the entries of tokenizer.ggml.tokens), found 100");
    base(&m, 0);
    set_arr(&m, "tokenizer.ggml.scores", SMELT_GGUF_F32, 104, g_scores);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'tokenizer.ggml.scores': expected one entry per token (105, tokenizer.ggml.tokens), found 104");
    base(&m, 0);
    set_arr(&m, "tokenizer.ggml.token_type", SMELT_GGUF_F32, 105, g_scores);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'tokenizer.ggml.token_type': expected an array of i32, found an array of 105 f32");
    base(&m, 0);
    set_str(&m, "tokenizer.ggml.tokens", "x");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'tokenizer.ggml.tokens': expected an array of strings, found a string");
    base(&m, 0);
    get_t(&m, "output.weight")->ne[1] = 106;
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'output.weight': shape [64, 106] does not match the hyperparameters: expected [64, 105] = [n_embd, "
           "n_vocab (tokenizer.ggml.tokens)]");
    base(&m, 0);
    del_t(&m, "token_embd.weight");
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'token_embd.weight': required tensor is missing (llama.cpp's loader needs it: [64, 105] = [n_embd, "
           "n_vocab (tokenizer.ggml.tokens)])");
    base(&m, 0);
    del_t(&m, "blk.1.ffn_down.weight");
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.1.ffn_down.weight': required tensor is missing (llama.cpp's loader needs it: [128, 64] = [n_ff, "
           "n_embd])");
    base(&m, 0);
    del_t(&m, "output_norm.weight");
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'output_norm.weight': required tensor is missing (llama.cpp's loader needs it: [64] = [n_embd])");
    base(&m, 0);
    get_t(&m, "blk.0.attn_q.weight")->ne[2] = 2;
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.0.attn_q.weight': shape [64, 64, 2] does not match the hyperparameters: expected [64, 64] = "
           "[n_embd, n_head × head size]");
    base(&m, 0);
    get_t(&m, "blk.1.attn_output.weight")->ne[0] = 32;
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.1.attn_output.weight': shape [32, 64] does not match the hyperparameters: expected [64, 64] = "
           "[n_head × head size, n_embd]");
    base(&m, 0);
    add_t(&m, "blk.0.attn_k.bias", 64, 1, 1);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.0.attn_k.bias': shape [64] does not match the hyperparameters: expected [32] = [n_head_kv × head "
           "size]");
    base(&m, 0);
    add_t(&m, "blk.2.attn_norm.weight", 64, 1, 1);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.2.attn_norm.weight': tensor is not part of the llama architecture (dense feed-forward, no "
           "experts): llama.cpp refuses to load a file with tensors it does not use");
    base(&m, 0);
    add_t(&m, "blk.0.ffn_norm.weight", 64, 1, 1);
    expect(&m, SMELT_EFORMAT, "m.gguf: 'blk.0.ffn_norm.weight': tensor name appears twice");
    /* a vocabulary-only model: the tensors are not looked at */
    base(&m, 0);
    del_t(&m, "token_embd.weight");
    smelt_mc_model vo = {"m.gguf", m.kv, m.n_kv, m.t, m.n_t, true};
    smelt_err e;
    cr_expect_eq(smelt_mc_check(&vo, 0, NULL, &e), 0, "%s", e.msg);
}

Test(model_check, adapters_and_other_architectures)
{
    mdl m;
    smelt_mc_hparams hp;
    char line[1200];
    base(&m, 0);
    set_str(&m, "general.type", "adapter");
    expect(&m, SMELT_EUNSUPPORTED,
           "m.gguf: is a LoRA adapter (general.type = adapter), not a model; merge it first or use it with llama.cpp's --lora");
    cr_expect_eq(run(&m, SMELT_MC_NON_MODEL_OK, &hp, line, sizeof line), SMELT_MC_SKIPPED);
    cr_expect_str_eq(hp.skipped, "a LoRA adapter, not a model");
    base(&m, 0);
    set_str(&m, "general.architecture", "gpt2");
    expect(&m, SMELT_EUNSUPPORTED,
           "m.gguf: 'general.architecture': architecture 'gpt2' is not supported; smelt handles llama, qwen2, qwen3, "
           "qwen3moe");
    cr_expect_eq(run(&m, SMELT_MC_OTHER_ARCH_OK, &hp, line, sizeof line), SMELT_MC_SKIPPED);
    cr_expect_str_eq(hp.skipped, "architecture 'gpt2': smelt validates llama, qwen2, qwen3, qwen3moe models");
    cr_expect_eq(run(&m, SMELT_MC_NON_MODEL_OK, &hp, line, sizeof line), SMELT_EUNSUPPORTED, "another flag");
    base(&m, 0);
    del_kv(&m, "general.architecture");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'general.architecture': required key is missing (llama.cpp's loader needs it)");
    cr_expect_eq(run(&m, SMELT_MC_NON_MODEL_OK, &hp, line, sizeof line), SMELT_MC_SKIPPED);
    cr_expect_str_eq(hp.skipped, "no general.architecture: not a model");
}

/* ==== the same verdicts on GGUF files ==== */

static void write_gguf(const mdl *m, const char *path, size_t first, size_t count, int shard, int n_shards)
{
    smelt_err e;
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    for (size_t i = 0; shard == 0 && i < m->n_kv; i++) {
        const smelt_mc_kv *k = &m->kv[i];
        int rc = 0;
        if (k->type == SMELT_GGUF_STRING) rc = smelt_gguf_writer_set_strn(w, k->key, k->s, (size_t)k->slen, &e);
        else if (k->type == SMELT_GGUF_F32) rc = smelt_gguf_writer_set_f32(w, k->key, (float)k->f, &e);
        else if (k->type == SMELT_GGUF_U32) rc = smelt_gguf_writer_set_u32(w, k->key, (uint32_t)k->i, &e);
        else if (k->type == SMELT_GGUF_I32) rc = smelt_gguf_writer_set_i32(w, k->key, (int32_t)k->i, &e);
        else if (k->type == SMELT_GGUF_ARRAY && k->arr_type == SMELT_GGUF_STRING) {
            const char *toks[200];
            for (uint64_t j = 0; j < k->n; j++) toks[j] = "t";
            rc = smelt_gguf_writer_set_arr_str(w, k->key, toks, NULL, k->n, &e);
        } else if (k->type == SMELT_GGUF_ARRAY) rc = smelt_gguf_writer_set_arr(w, k->key, k->arr_type, k->arr, k->n, &e);
        cr_assert_eq(rc, 0, "%s", e.msg);
    }
    if (n_shards > 1) {
        smelt_gguf_writer_set_u16(w, "split.no", (uint16_t)shard, &e);
        smelt_gguf_writer_set_u16(w, "split.count", (uint16_t)n_shards, &e);
    }
    for (size_t i = first; i < first + count; i++) {
        uint32_t nd = m->t[i].ne[2] > 1 ? 3 : m->t[i].ne[1] > 1 ? 2 : 1;
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, m->t[i].name, nd, m->t[i].ne, SMELT_TYPE_F32, &e), 0, "%s", e.msg);
    }
    cr_assert_eq(smelt_gguf_writer_begin(w, path, &e), 0, "%s", e.msg);
    static float zero[64 * 128 * 4];
    for (size_t i = first; i < first + count; i++)
        cr_assert_eq(smelt_gguf_writer_write(w, zero, 4 * m->t[i].ne[0] * m->t[i].ne[1] * m->t[i].ne[2], &e), 0, "%s", e.msg);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
}

static void gguf_verdict(const mdl *m, int code, const char *msg_after_path)
{
    char dir[4096], path[4200], line[1200], want[5000];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    write_gguf(m, path, 0, m->n_t, 0, 1);
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(path, 0, &g, &e), 0, "%s", e.msg);
    smelt_err_clear(&e);
    int rc = smelt_mc_check_gguf(g, 0, NULL, &e);
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "%s", line);
    if (msg_after_path) {
        snprintf(want, sizeof want, "%s: %s", path, msg_after_path);
        cr_expect_str_eq(line, want);
    }
    smelt_gguf_close(g);
    tu_rmtree(dir);
}

Test(model_check, gguf_files)
{
    mdl m;
    base(&m, 4);
    gguf_verdict(&m, 0, NULL);
    set_u32(&m, "llama.attention.head_count", 0);
    gguf_verdict(&m, SMELT_EFORMAT, "'llama.attention.head_count': expected at least 1, found 0");
    base(&m, 0);
    set_f32(&m, "llama.rope.freq_base", -1e4);
    gguf_verdict(&m, SMELT_EFORMAT, "'llama.rope.freq_base': expected a finite number > 0, found -10000");
    base(&m, 0);
    set_int(&m, "llama.context_length", SMELT_GGUF_I32, -5);
    gguf_verdict(&m, SMELT_EFORMAT, "'llama.context_length': expected a u32, found i32 -5");
    base(&m, 0);
    uint32_t h[2] = {4, 4};
    set_u32s(&m, "llama.attention.head_count", h, 2);
    gguf_verdict(&m, 0, NULL);
    base(&m, 0);
    del_t(&m, "blk.0.attn_v.weight");
    gguf_verdict(&m, SMELT_EFORMAT,
                 "'blk.0.attn_v.weight': required tensor is missing (llama.cpp's loader needs it: [64, 32] = [n_embd, "
                 "n_head_kv × head size])");
    base(&m, 0);
    set_str(&m, "general.type", "adapter");
    gguf_verdict(&m, SMELT_EUNSUPPORTED, SMELT_MC_ADAPTER_MSG);
}

/* A split model: the metadata of the first shard, the tensors of all; a tensor's shape
 * problem names the shard that holds it. */
Test(model_check, gguf_shards)
{
    mdl m;
    base(&m, 0);
    get_t(&m, "output.weight")->ne[0] = 32;
    char dir[4096], p0[4200], p1[4200], line[1200], want[5000];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(p0, sizeof p0, "%s/m-00001-of-00002.gguf", dir);
    snprintf(p1, sizeof p1, "%s/m-00002-of-00002.gguf", dir);
    write_gguf(&m, p0, 0, 10, 0, 2);
    write_gguf(&m, p1, 10, m.n_t - 10, 1, 2);
    smelt_gguf *g[2];
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(p0, SMELT_GGUF_ONE_FILE, &g[0], &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_mc_check_gguf(g[0], 0, NULL, &e), SMELT_EFORMAT, "one shard is incomplete");
    smelt_gguf_close(g[0]);
    cr_assert_eq(smelt_gguf_open(p0, 0, &g[0], &e), 0, "%s", e.msg);
    cr_assert_eq(smelt_gguf_n_shards(g[0]), 2);
    cr_assert_eq(smelt_gguf_open(p1, 0, &g[1], &e), SMELT_EUSAGE, "a later shard alone");
    cr_expect_eq(smelt_mc_check_gguf(g[0], 0, NULL, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    snprintf(want, sizeof want,
             "%s: 'output.weight': shape [32, 105] does not match the hyperparameters: expected [64, 105] = [n_embd, n_vocab "
             "(tokenizer.ggml.tokens)]",
             p1);
    cr_expect_str_eq(line, want);
    smelt_gguf_close(g[0]);
    tu_rmtree(dir);
}

/* The same model under another architecture of formats/arch.c: keys renamed. */
static void rearch(mdl *m, const char *arch)
{
    set_str(m, "general.architecture", arch);
    for (size_t i = 0; i < m->n_kv; i++)
        if (!strncmp(m->keys[i], "llama.", 6)) {
            char k[64];
            snprintf(k, sizeof k, "%s.%s", arch, m->keys[i] + 6);
            snprintf(m->keys[i], sizeof m->keys[i], "%s", k);
        }
}

static void add_qk_norms(mdl *m)
{
    for (int l = 0; l < 2; l++) {
        char n[64];
        snprintf(n, sizeof n, "blk.%d.attn_q_norm.weight", l);
        add_t(m, n, 16, 1, 1);
        snprintf(n, sizeof n, "blk.%d.attn_k_norm.weight", l);
        add_t(m, n, 16, 1, 1);
    }
}

Test(model_check, qwen_architectures)
{
    mdl m;
    smelt_mc_hparams hp;
    char line[1200];
    /* qwen3: q/k norms required, no rope_freqs */
    base(&m, 0);
    rearch(&m, "qwen3");
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.0.attn_q_norm.weight': required tensor is missing (llama.cpp's loader needs it: [16] = [head size])");
    add_qk_norms(&m);
    cr_assert_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    cr_expect_str_eq(hp.arch->name, "qwen3");
    cr_expect(hp.arch->rope_neox);
    add_t(&m, "rope_freqs.weight", 8, 1, 1);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'rope_freqs.weight': tensor is not part of the qwen3 architecture (dense feed-forward, no experts): "
           "llama.cpp refuses to load a file with tensors it does not use");
    /* qwen2: dense only; q/k/v biases optional */
    base(&m, 4);
    rearch(&m, "qwen2");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'qwen2.expert_count': expected no experts (qwen2 is a dense architecture), found 4");
    base(&m, 0);
    rearch(&m, "qwen2");
    add_t(&m, "blk.1.attn_k.bias", 32, 1, 1);
    cr_expect_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    add_t(&m, "blk.1.attn_output.bias", 64, 1, 1);
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.1.attn_output.bias': tensor is not part of the qwen2 architecture (dense feed-forward, no "
           "experts): llama.cpp refuses to load a file with tensors it does not use");
    /* qwen3moe: experts required, with their own width */
    base(&m, 0);
    rearch(&m, "qwen3moe");
    expect(&m, SMELT_EFORMAT, "m.gguf: 'qwen3moe.expert_count': required key is missing (llama.cpp's loader needs it)");
    base(&m, 4);
    rearch(&m, "qwen3moe");
    add_qk_norms(&m);
    set_u32(&m, "qwen3moe.expert_feed_forward_length", 128);
    cr_assert_eq(run(&m, 0, &hp, line, sizeof line), 0, "%s", line);
    cr_expect_eq(hp.n_ff_exp, 128);
    del_kv(&m, "qwen3moe.expert_feed_forward_length"); /* llama.cpp's default: n_ff / n_expert_used */
    expect(&m, SMELT_EFORMAT,
           "m.gguf: 'blk.0.ffn_gate_exps.weight': shape [64, 128, 4] does not match the hyperparameters: expected "
           "[64, 64, 4] = [n_embd, n_ff_exp, n_expert]");
}

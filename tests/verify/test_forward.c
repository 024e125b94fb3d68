/* test_forward.c — the forward pass: top-5 logits of reference.json's prompts (PyTorch)
 * on the f32 and f16 GGUFs of tiny-mixtral, bit-identical results across threads, ISAs,
 * batch splits and KV-cache continuation, the matmul hook, and the model validation errors
 * (exact messages) on crafted GGUFs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "quant/qtypes.h"
#include "tests/common/testutil.h"
#include "tests/common/eval_fixtures.h"
#include "verify/eval/forward.h"

static smelt_model *open_model(const char *path)
{
    smelt_err e = {0};
    smelt_model *m = NULL;
    cr_assert_eq(smelt_model_open(path, &m, &e), 0, "%s: %s", path, e.msg);
    return m;
}

static float *eval(const smelt_model *m, smelt_fwd_ops *o, const int32_t *tok, uint32_t n_seq, uint32_t n, uint32_t from)
{
    smelt_err e = {0};
    smelt_fwd *f;
    cr_assert_eq(smelt_fwd_new(m, o, 256, n_seq, n, &f, &e), 0, "%s", e.msg);
    float *lg = malloc(sizeof(float) * n_seq * n * m->hp.n_vocab);
    cr_assert_eq(smelt_fwd_eval(f, tok, n_seq, n, 0, from, lg, &e), 0, "%s", e.msg);
    smelt_fwd_free(f);
    return lg;
}

/* ==== reference.json: top-5 logits per position ==== */

static double top5_error(const char *type)
{
    char path[4200];
    vf_tiny(type, path, sizeof path);
    smelt_model *m = open_model(path);
    json_t *ref = vf_reference();
    json_t *prompts = json_object_get(json_object_get(ref, "prompts"), "base");
    cr_assert_eq(json_array_size(prompts), 2);
    smelt_pool *pool = smelt_pool_new(2);
    smelt_fwd_ops *o = smelt_fwd_ops_new(pool, -1);
    double worst = 0;
    for (size_t pi = 0; pi < json_array_size(prompts); pi++) {
        json_t *p = json_array_get(prompts, pi), *ids = json_object_get(p, "token_ids");
        uint32_t n = (uint32_t)json_array_size(ids);
        int32_t tok[64];
        for (uint32_t i = 0; i < n; i++) tok[i] = (int32_t)json_integer_value(json_array_get(ids, i));
        float *lg = eval(m, o, tok, 1, n, 0);
        json_t *top = json_object_get(p, "top5_per_position");
        cr_assert_eq(json_array_size(top), n);
        for (uint32_t i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * m->hp.n_vocab;
            size_t best = 0;
            for (size_t v = 1; v < m->hp.n_vocab; v++)
                if (row[v] > row[best]) best = v;
            json_t *t5 = json_array_get(top, i);
            cr_assert_eq(best, (size_t)json_integer_value(json_array_get(json_array_get(t5, 0), 0)),
                         "prompt %zu position %u: argmax %zu", pi, i, best);
            for (size_t k = 0; k < 5; k++) {
                json_t *pair = json_array_get(t5, k);
                size_t id = (size_t)json_integer_value(json_array_get(pair, 0));
                double d = fabs(row[id] - json_real_value(json_array_get(pair, 1)));
                if (d > worst) worst = d;
            }
        }
        free(lg);
    }
    json_decref(ref);
    smelt_fwd_ops_free(o);
    smelt_pool_free(pool);
    smelt_model_close(m);
    return worst;
}

Test(forward, top5_logits_f32)
{
    double w = top5_error("f32");
    cr_log_info("f32: max |logit - PyTorch| over the top-5 of every position: %.3g", w);
    cr_assert_lt(w, 1e-3);
}

Test(forward, top5_logits_f16)
{
    double w = top5_error("f16");
    cr_log_info("f16: max |logit - PyTorch| over the top-5 of every position: %.3g", w);
    cr_assert_lt(w, 1e-3);
}

/* ==== determinism ==== */

static void tokens(int32_t *t, size_t n, uint32_t vocab)
{
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((s >> 33) % vocab);
    }
    t[0] = 1;
}

Test(forward, deterministic_across_threads_isas_and_batching, .timeout = 300)
{
    char path[4200];
    vf_tiny("f32", path, sizeof path);
    smelt_model *m = open_model(path);
    const uint32_t n = 64, V = m->hp.n_vocab;
    int32_t tok[2 * 64];
    tokens(tok, 2 * n, V);
    tok[n] = 1;
    smelt_pool *p2 = smelt_pool_new(2);
    smelt_fwd_ops *best = smelt_fwd_ops_new(p2, -1), *port = smelt_fwd_ops_new(NULL, SMELT_ISA_PORTABLE);
    /* A: both sequences in one call, best ISA, 2 threads */
    float *a = eval(m, best, tok, 2, n, 0);
    /* B: each sequence alone, in pieces of 24 + 24 + 16 continuing the cache, portable, 1 thread */
    smelt_err e = {0};
    smelt_fwd *f;
    cr_assert_eq(smelt_fwd_new(m, port, 256, 1, 24, &f, &e), 0, "%s", e.msg);
    float *b = malloc(sizeof(float) * 2 * n * V);
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t p = 0; p < n; p += 24) {
            uint32_t k = n - p < 24 ? n - p : 24;
            cr_assert_eq(smelt_fwd_eval(f, tok + s * n + p, 1, k, p, 0, b + ((size_t)s * n + p) * V, &e), 0, "%s", e.msg);
        }
    smelt_fwd_free(f);
    for (size_t r = 0; r < 2 * n; r++)
        cr_assert_eq(memcmp(a + r * V, b + r * V, V * sizeof(float)), 0,
                     "logits of row %zu differ between %s/2 threads/one call and portable/1 thread/pieces", r,
                     smelt_fwd_ops_isa_name(best));
    /* C: only positions >= 40 requested: the same rows */
    float *c = eval(m, best, tok, 2, n, 40);
    for (size_t s = 0; s < 2; s++)
        cr_assert_eq(memcmp(c + s * (n - 40) * V, a + (s * n + 40) * V, (n - 40) * V * sizeof(float)), 0,
                     "pruned rows of sequence %zu differ", s);
    free(a), free(b), free(c);
    smelt_fwd_ops_free(best);
    smelt_fwd_ops_free(port);
    smelt_pool_free(p2);
    smelt_model_close(m);
}

/* ==== the matmul hook ==== */

typedef struct {
    int calls, q_calls, out_rows;
    size_t expert_rows[4][3]; /* per layer: up, gate, down rows over all experts */
    int bad;
    const smelt_model *m;
    const int32_t *tok;
} hookrec;

static void on_mm(void *user, const smelt_fwd_mm_info *mi)
{
    hookrec *h = user;
    h->calls++;
    if (mi->n_cols != (size_t)smelt_gguf_find_tensor(h->m->gguf, mi->weight)->ne[0]) h->bad++;
    if (!strcmp(mi->weight, "blk.0.attn_q.weight")) {
        h->q_calls++;
        /* the activations are rmsnorm(token_embd[t]) * attn_norm, exactly */
        size_t E = h->m->hp.n_embd;
        float *emb = malloc(E * 4), *y = malloc(E * 4);
        for (size_t r = 0; r < mi->n_rows; r++) {
            smelt_q_dequantize_row(h->m->tok_embd.type, h->m->tok_embd.data + (size_t)h->tok[r] * h->m->tok_embd.row_bytes, emb, E);
            smelt_rmsnorm(emb, h->m->layers[0].attn_norm, y, E, h->m->hp.rms_eps);
            if (memcmp(y, mi->x + r * mi->ldx, E * 4)) h->bad++;
        }
        free(emb), free(y);
    }
    if (!strcmp(mi->weight, "output.weight")) h->out_rows += (int)mi->n_rows;
    if (mi->expert >= 0) {
        if (mi->n_expert != 4 || mi->layer < 0 || mi->layer > 3) h->bad++;
        int k = strstr(mi->weight, "ffn_up_exps") ? 0 : strstr(mi->weight, "ffn_gate_exps") ? 1 : 2;
        h->expert_rows[mi->layer][k] += mi->n_rows;
    }
}

Test(forward, matmul_hook_sees_every_product)
{
    char path[4200];
    vf_tiny("f32", path, sizeof path);
    smelt_model *m = open_model(path);
    int32_t tok[2 * 32];
    tokens(tok, 64, m->hp.n_vocab);
    smelt_fwd_ops *o = smelt_fwd_ops_new(NULL, -1);
    smelt_err e = {0};
    smelt_fwd *f;
    cr_assert_eq(smelt_fwd_new(m, o, 64, 2, 32, &f, &e), 0);
    hookrec h = {0};
    h.m = m;
    h.tok = tok;
    smelt_fwd_set_hook(f, on_mm, &h);
    float *lg = malloc(sizeof(float) * 2 * 32 * m->hp.n_vocab);
    cr_assert_eq(smelt_fwd_eval(f, tok, 2, 32, 0, 16, lg, &e), 0, "%s", e.msg);
    cr_assert_eq(h.bad, 0);
    cr_assert_eq(h.q_calls, 1);
    cr_assert_eq(h.out_rows, 2 * 16, "output rows: only the requested positions");
    for (int l = 0; l < 3; l++)
        for (int k = 0; k < 3; k++) cr_assert_eq(h.expert_rows[l][k], 64 * 2, "layer %d: every token reaches 2 experts", l);
    for (int k = 0; k < 3; k++) cr_assert_eq(h.expert_rows[3][k], 32 * 2, "last layer: pruned rows only");
    /* per layer: q k v o, router, 3 x (experts that got tokens); + output */
    cr_assert_geq(h.calls, 4 * (5 + 3) + 1);
    smelt_fwd_free(f);
    free(lg);
    smelt_fwd_ops_free(o);
    smelt_model_close(m);
}

/* ==== validation: crafted GGUFs from the stories260K reference file ==== */

typedef struct {
    const char *drop;       /* tensor to leave out */
    const char *retype;     /* tensor whose type becomes new_type (same bytes per element) */
    int new_type;
    const char *extra;      /* an additional 1-D f32 tensor [64] */
    const char *str_key, *str_val;
    const char *u32_key;
    uint32_t u32_val;
} mods;

static void craft(const char *out, const mods *md)
{
    char src[4200];
    tu_path(src, sizeof src, STORIES_GGUF);
    smelt_err e = {0};
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(src, 0, &g, &e), 0, "%s", e.msg);
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    cr_assert_eq(smelt_gguf_writer_copy_all_kv(w, g, &e), 0);
    if (md->str_key) cr_assert_eq(smelt_gguf_writer_set_str(w, md->str_key, md->str_val, &e), 0);
    if (md->u32_key) cr_assert_eq(smelt_gguf_writer_set_u32(w, md->u32_key, md->u32_val, &e), 0);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        if (md->drop && !strcmp(t->name, md->drop)) continue;
        int type = md->retype && !strcmp(t->name, md->retype) ? md->new_type : t->type;
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, type, &e), 0, "%s", e.msg);
    }
    uint64_t ne64[1] = {64};
    if (md->extra) cr_assert_eq(smelt_gguf_writer_add_tensor(w, md->extra, 1, ne64, SMELT_TYPE_F32, &e), 0);
    cr_assert_eq(smelt_gguf_writer_begin(w, out, &e), 0, "%s", e.msg);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        if (md->drop && !strcmp(t->name, md->drop)) continue;
        cr_assert_eq(smelt_gguf_writer_write(w, t->data, t->nbytes, &e), 0, "%s", e.msg);
    }
    float z[64] = {0};
    if (md->extra) cr_assert_eq(smelt_gguf_writer_write(w, z, sizeof z, &e), 0);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
    smelt_gguf_close(g);
}

static void expect_open_error(const mods *md, int code, const char *msg_after_path)
{
    char dir[4096], path[4200], got[1200], want[8600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    craft(path, md);
    smelt_err e = {0};
    smelt_model *m = (smelt_model *)1;
    int rc = smelt_model_open(path, &m, &e);
    smelt_err_format(&e, got, sizeof got);
    snprintf(want, sizeof want, "%s: %s", path, msg_after_path);
    cr_assert_eq(rc, code, "%s", got);
    cr_assert_null(m);
    cr_assert_str_eq(got, want);
    tu_rmtree(dir);
}

Test(model, crafted_baseline_opens)
{
    mods md = {0};
    char dir[4096], path[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    craft(path, &md);
    smelt_model *m = open_model(path);
    cr_assert(m->tied_output, "stories260K has no output.weight: token_embd is the output");
    cr_assert_eq(m->hp.n_layer, 5);
    cr_assert_eq(m->hp.n_head_kv, 4);
    cr_assert_eq(m->hp.n_expert, 0);
    cr_assert_eq(m->hp.n_vocab, 512);
    smelt_model_close(m);
    tu_rmtree(dir);
}

Test(model, unsupported_architecture)
{
    mods md = {0};
    md.str_key = "general.architecture";
    md.str_val = "gpt2";
    expect_open_error(&md, SMELT_EUNSUPPORTED,
                      "'general.architecture': architecture 'gpt2' is not supported; smelt handles llama, qwen2, "
                      "qwen3, qwen3moe");
}

Test(model, missing_tensor)
{
    mods md = {0};
    md.drop = "blk.3.attn_k.weight";
    expect_open_error(&md, SMELT_EFORMAT,
                      "'blk.3.attn_k.weight': required tensor is missing (llama.cpp's loader needs it: [64, 32] = "
                      "[n_embd, n_head_kv × head size])");
}

Test(model, shape_mismatch)
{
    mods md = {0};
    md.u32_key = "llama.attention.head_count_kv";
    md.u32_val = 8;
    expect_open_error(&md, SMELT_EFORMAT,
                      "'blk.0.attn_k.weight': shape [64, 32] does not match the hyperparameters: expected [64, 64] = "
                      "[n_embd, n_head_kv × head size]");
}

Test(model, unsupported_tensor_type)
{
    mods md = {0};
    md.retype = "blk.1.ffn_up.weight";
    md.new_type = SMELT_TYPE_I32;
    expect_open_error(&md, SMELT_EUNSUPPORTED,
                      "'blk.1.ffn_up.weight': tensor type i32 is not supported: this build of smelt has no i32 decoder");
}

Test(model, unused_tensor_refused)
{
    mods md = {0};
    md.extra = "blk.0.attn_sinks.weight";
    expect_open_error(&md, SMELT_EFORMAT,
                      "'blk.0.attn_sinks.weight': tensor is not part of the llama architecture (dense feed-forward, no "
                      "experts): llama.cpp refuses to load a file with tensors it does not use");
}

Test(model, missing_key)
{
    mods md = {0};
    md.str_key = "llama.embedding_length"; /* wrong type: a string */
    md.str_val = "64";
    char dir[4096], path[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    craft(path, &md);
    smelt_err e = {0};
    smelt_model *m;
    cr_assert_eq(smelt_model_open(path, &m, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.object, "llama.embedding_length");
    tu_rmtree(dir);
}

Test(model, context_and_token_limits)
{
    char src[4200], got[1200];
    tu_path(src, sizeof src, STORIES_GGUF);
    smelt_model *m = open_model(src);
    smelt_fwd_ops *o = smelt_fwd_ops_new(NULL, -1);
    smelt_err e = {0};
    smelt_fwd *f = (smelt_fwd *)1;
    cr_assert_eq(smelt_fwd_new(m, o, 1024, 1, 1024, &f, &e), SMELT_EUSAGE);
    cr_assert_null(f);
    smelt_err_format(&e, got, sizeof got);
    char want[4400];
    snprintf(want, sizeof want, "%s: 'llama.context_length': context of 1024 tokens exceeds the model's training context of 512", src);
    cr_assert_str_eq(got, want);
    cr_assert_eq(smelt_fwd_new(m, o, 512, 1, 64, &f, &e), 0);
    int32_t tok[4] = {1, 20, 512, 3};
    float lg[4 * 512];
    cr_assert_eq(smelt_fwd_eval(f, tok, 1, 4, 0, 0, lg, &e), SMELT_EMISMATCH);
    cr_assert_str_eq(e.msg, "token id 512 (sequence 0, position 2) is outside the vocabulary of 512 tokens");
    tok[2] = 5;
    cr_assert_eq(smelt_fwd_eval(f, tok, 1, 4, 510, 0, lg, &e), SMELT_EUSAGE);
    cr_assert_eq(smelt_fwd_eval(f, tok, 1, 4, 0, 0, lg, &e), 0);
    smelt_fwd_free(f);
    smelt_fwd_ops_free(o);
    smelt_model_close(m);
}

Test(forward, top5_logits_bf16)
{
    double w = top5_error("bf16");
    cr_log_info("bf16: max |logit - PyTorch| over the top-5 of every position: %.3g", w);
    cr_assert_lt(w, 1e-3);
}

/* hfsynth.c — see hfsynth.h. */
#include "hfsynth.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/base/half.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "tests/common/testutil.h"
#include "tests/common/torchsave.h"

hs_model hs_default(void)
{
    hs_model m;
    memset(&m, 0, sizeof m);
    m.layers = 2;
    m.hidden = 64;
    m.heads = 4;
    m.kv_heads = 2;
    m.ff = 128;
    m.vocab = 105;
    m.dtype = SMELT_DT_F32;
    return m;
}

typedef struct {
    char name[160];
    smelt_dtype dt;
    uint32_t nd;
    uint64_t shape[3];
} ent;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void fill(const ent *t, float *v, uint64_t n, const hs_model *m)
{
    uint64_t s = fnv(t->name) | 1;
    int norm = strstr(t->name, "norm") != NULL;
    for (uint64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
        v[i] = norm ? 1.0f + 0.2f * u : 0.2f * u;
    }
    const char *bt = m->big_tensor ? m->big_tensor : "model.layers.0.mlp.up_proj.weight";
    if (m->big != 0 && !strcmp(t->name, bt) && m->big_index < n) v[m->big_index] = m->big;
}

static int add(ent *list, size_t *n, const hs_model *m, const char *name, uint32_t nd, uint64_t a, uint64_t b)
{
    if (m->drop && !strcmp(m->drop, name)) return 0;
    ent *t = &list[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dt = m->dtype;
    if (m->int_tensor && !strcmp(m->int_tensor, name)) t->dt = SMELT_DT_I32;
    if (m->other_dtype_tensor && !strcmp(m->other_dtype_tensor, name)) t->dt = m->other_dtype;
    t->nd = nd;
    t->shape[0] = a;
    t->shape[1] = b;
    return 0;
}

static int copy_tok(const char *dir)
{
    static const char *files[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    int rc = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[4096], b[4096], rel[256];
        snprintf(rel, sizeof rel, "tests/fixtures/external/llama2c-babyllama-tok105/hf/%s", files[i]);
        tu_path(a, sizeof a, rel);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        rc |= ts_copy_file(a, b);
    }
    return rc;
}

int hs_write(const char *dir, const hs_model *m)
{
    uint64_t H = (uint64_t)m->hidden, hd = H / (uint64_t)m->heads, Q = hd * (uint64_t)m->heads, K = hd * (uint64_t)m->kv_heads;
    uint64_t F = (uint64_t)m->ff, V = (uint64_t)(m->embd_rows ? m->embd_rows : m->vocab);
    size_t cap = 64 + (size_t)m->layers * (16 + 3 * (size_t)(m->experts + 1)), n = 0;
    ent *list = calloc(cap, sizeof *list);
    char nm[160];
    add(list, &n, m, "model.embed_tokens.weight", 2, V, H);
    if (!m->tied) add(list, &n, m, "lm_head.weight", 2, V, H);
    add(list, &n, m, "model.norm.weight", 1, H, 0);
    for (int l = 0; l < m->layers; l++) {
#define L(s, nd, a, b) (snprintf(nm, sizeof nm, "model.layers.%d." s, l), add(list, &n, m, nm, nd, a, b))
        L("input_layernorm.weight", 1, H, 0);
        L("post_attention_layernorm.weight", 1, H, 0);
        L("self_attn.q_proj.weight", 2, Q, H);
        L("self_attn.k_proj.weight", 2, K, H);
        L("self_attn.v_proj.weight", 2, K, H);
        L("self_attn.o_proj.weight", 2, H, Q);
        if (m->bias) {
            L("self_attn.q_proj.bias", 1, Q, 0);
            L("self_attn.k_proj.bias", 1, K, 0);
            L("self_attn.v_proj.bias", 1, K, 0);
            L("self_attn.o_proj.bias", 1, H, 0);
        }
        if (m->experts) {
            L("block_sparse_moe.gate.weight", 2, (uint64_t)m->experts, H);
            for (int x = 0; x < m->experts; x++) {
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, x);
                add(list, &n, m, nm, 2, F, H);
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, x);
                add(list, &n, m, nm, 2, H, F);
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, x);
                add(list, &n, m, nm, 2, F, H);
            }
        } else {
            L("mlp.gate_proj.weight", 2, F, H);
            L("mlp.up_proj.weight", 2, F, H);
            L("mlp.down_proj.weight", 2, H, F);
        }
#undef L
    }
    if (m->extra) add(list, &n, m, m->extra, 1, H, 0);
    smelt_st_writer *w = smelt_st_writer_new();
    smelt_err e;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = smelt_st_writer_add(w, list[i].name, list[i].dt, list[i].nd, list[i].shape, &e);
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (!rc) rc = smelt_st_writer_begin(w, p, &e);
    const char *next;
    while (!rc && (next = smelt_st_writer_next(w))) {
        size_t i;
        for (i = 0; i < n && strcmp(list[i].name, next); i++) {}
        uint64_t cnt = list[i].shape[0] * (list[i].nd > 1 ? list[i].shape[1] : 1);
        float *f = malloc(cnt * 4 + 4);
        fill(&list[i], f, cnt, m);
        void *out = f;
        size_t es = smelt_dtype_size(list[i].dt);
        uint8_t *buf = malloc(cnt * 8 + 8);
        for (uint64_t k = 0; k < cnt; k++) {
            switch (list[i].dt) {
            case SMELT_DT_F16: ((uint16_t *)(void *)buf)[k] = smelt_f32_to_f16(f[k]); break;
            case SMELT_DT_BF16: ((uint16_t *)(void *)buf)[k] = smelt_f32_to_bf16(f[k]); break;
            case SMELT_DT_I32: ((int32_t *)(void *)buf)[k] = (int32_t)(f[k] * 100); break;
            case SMELT_DT_F64: ((double *)(void *)buf)[k] = f[k]; break;
            default: memcpy(buf + 4 * k, &f[k], 4);
            }
        }
        out = buf;
        rc = smelt_st_writer_write(w, out, (size_t)(cnt * es), &e);
        free(buf);
        free(f);
    }
    if (!rc) rc = smelt_st_writer_commit(w, &e);
    smelt_st_writer_free(w);
    free(list);
    json_t *cfg = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:i,s:i,s:b,s:s}", "architectures",
                            m->experts ? "MixtralForCausalLM" : "LlamaForCausalLM", "model_type", m->experts ? "mixtral" : "llama",
                            "hidden_size", m->hidden, "intermediate_size", m->ff, "num_hidden_layers", m->layers,
                            "num_attention_heads", m->heads, "num_key_value_heads", m->kv_heads, "vocab_size", m->vocab,
                            "max_position_embeddings", 256, "rms_norm_eps", 1e-5, "rope_theta", 10000.0, "tie_word_embeddings",
                            m->tied, "bos_token_id", 1, "eos_token_id", 2, "attention_bias", m->bias, "torch_dtype",
                            smelt_dtype_name(m->dtype));
    if (m->experts) {
        json_object_set_new(cfg, "num_local_experts", json_integer(m->experts));
        json_object_set_new(cfg, "num_experts_per_tok", json_integer(m->experts_used ? m->experts_used : 1));
    }
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!rc) rc = json_dump_file(cfg, p, JSON_INDENT(2));
    json_decref(cfg);
    if (!rc) rc = copy_tok(dir);
    return rc;
}

int hs_config_set(const char *dir, const char *key, const char *value)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_error_t je;
    json_t *c = json_load_file(p, 0, &je);
    if (!c) return -1;
    if (value) {
        json_t *v = json_loads(value, JSON_DECODE_ANY, &je);
        if (!v) {
            json_decref(c);
            return -1;
        }
        json_object_set_new(c, key, v);
    } else {
        json_object_del(c, key);
    }
    int rc = json_dump_file(c, p, JSON_INDENT(2));
    json_decref(c);
    return rc;
}

int hs_copy_dir(const char *from, const char *to)
{
    DIR *d = opendir(from);
    if (!d) return -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        snprintf(b, sizeof b, "%s/%s", to, de->d_name);
        struct stat st;
        if (stat(a, &st) == 0 && S_ISREG(st.st_mode)) rc |= ts_copy_file(a, b);
    }
    closedir(d);
    return rc;
}

/* ==== v5 Mixtral layout ==== */

int hs_mixtral_v5(const char *src_dir, const char *dst_dir, int swap)
{
    smelt_stset *s;
    smelt_err e;
    if (smelt_stset_open(src_dir, &s, &e)) return -1;
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", src_dir);
    json_error_t je;
    json_t *cfg = json_load_file(p, 0, &je);
    int L = (int)json_integer_value(json_object_get(cfg, "num_hidden_layers"));
    int E = (int)json_integer_value(json_object_get(cfg, "num_local_experts"));
    json_decref(cfg);
    smelt_st_writer *w = smelt_st_writer_new();
    int rc = 0;
    uint64_t F = 0, H = 0;
    smelt_dtype dt = SMELT_DT_BF16;
    for (uint64_t i = 0; i < smelt_stset_n_tensors(s) && !rc; i++) {
        const smelt_st_tensor *t = smelt_stset_tensor_at(s, i);
        if (strstr(t->name, ".experts.")) {
            if (strstr(t->name, ".w1.")) {
                F = t->shape[0];
                H = t->shape[1];
                dt = t->dtype;
            }
            continue;
        }
        char nm[200];
        snprintf(nm, sizeof nm, "%s", t->name);
        char *g = strstr(nm, "block_sparse_moe.gate.weight");
        if (g) sprintf(g, "mlp.gate.weight");
        rc = smelt_st_writer_add(w, nm, t->dtype, t->n_dims, t->shape, &e);
    }
    for (int l = 0; l < L && !rc; l++) {
        char nm[200];
        uint64_t gu[3] = {(uint64_t)E, 2 * F, H}, dn[3] = {(uint64_t)E, H, F};
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.gate_up_proj", l);
        rc = smelt_st_writer_add(w, nm, dt, 3, gu, &e);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.down_proj", l);
        if (!rc) rc = smelt_st_writer_add(w, nm, dt, 3, dn, &e);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dst_dir);
    if (!rc) rc = smelt_st_writer_begin(w, p, &e);
    const char *next;
    size_t es = smelt_dtype_size(dt);
    while (!rc && (next = smelt_st_writer_next(w))) {
        int l;
        char what[32];
        if (sscanf(next, "model.layers.%d.mlp.experts.%31s", &l, what) == 2) {
            for (int x = 0; x < E && !rc; x++) {
                char a[200], b[200];
                if (!strcmp(what, "gate_up_proj")) {
                    snprintf(a, sizeof a, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, x, swap ? "w3" : "w1");
                    snprintf(b, sizeof b, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, x, swap ? "w1" : "w3");
                    rc = smelt_st_writer_write(w, smelt_stset_find(s, a)->data, (size_t)(F * H * es), &e);
                    if (!rc) rc = smelt_st_writer_write(w, smelt_stset_find(s, b)->data, (size_t)(F * H * es), &e);
                } else {
                    snprintf(a, sizeof a, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, x);
                    rc = smelt_st_writer_write(w, smelt_stset_find(s, a)->data, (size_t)(F * H * es), &e);
                }
            }
            continue;
        }
        char src[200];
        snprintf(src, sizeof src, "%s", next);
        char *g = strstr(src, "mlp.gate.weight");
        if (g) sprintf(g, "block_sparse_moe.gate.weight");
        const smelt_st_tensor *t = smelt_stset_find(s, src);
        rc = t ? smelt_st_writer_write(w, t->data, (size_t)(t->end - t->begin), &e) : -1;
    }
    if (!rc) rc = smelt_st_writer_commit(w, &e);
    smelt_st_writer_free(w);
    smelt_stset_close(s);
    DIR *d = rc ? NULL : opendir(src_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) ||
            !strcmp(de->d_name, "model.safetensors.index.json"))
            continue;
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%s", src_dir, de->d_name);
        snprintf(b, sizeof b, "%s/%s", dst_dir, de->d_name);
        rc |= ts_copy_file(a, b);
    }
    if (d) closedir(d);
    return rc;
}

/* ==== comparing GGUF files ==== */

static int skipped(const char *key, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (!strcmp(*skip, key)) return 1;
    return 0;
}

int hs_gguf_diff(const char *a, const char *b, int by_name, const char *const *skip, char *why, size_t n)
{
    smelt_gguf *x = NULL, *y = NULL;
    smelt_err e;
    why[0] = 0;
    if (smelt_gguf_open(a, 0, &x, &e) || smelt_gguf_open(b, 0, &y, &e)) {
        snprintf(why, n, "cannot open: %s", e.msg);
        smelt_gguf_close(x);
        return 1;
    }
    int d = 0;
    uint64_t i = 0, j = 0;
    for (; !d; i++, j++) {
        while (i < smelt_gguf_n_kv(x) && skipped(smelt_gguf_kv_at(x, i)->key, skip)) i++;
        while (j < smelt_gguf_n_kv(y) && skipped(smelt_gguf_kv_at(y, j)->key, skip)) j++;
        if (i >= smelt_gguf_n_kv(x) || j >= smelt_gguf_n_kv(y)) {
            if (i < smelt_gguf_n_kv(x) || j < smelt_gguf_n_kv(y)) {
                snprintf(why, n, "KV count differs: extra '%s'",
                         i < smelt_gguf_n_kv(x) ? smelt_gguf_kv_at(x, i)->key : smelt_gguf_kv_at(y, j)->key);
                d = 1;
            }
            break;
        }
        const smelt_gguf_kv *p = smelt_gguf_kv_at(x, i), *q = smelt_gguf_kv_at(y, j);
        if (strcmp(p->key, q->key)) {
            snprintf(why, n, "KV %llu: key '%s' vs '%s'", (unsigned long long)i, p->key, q->key);
            d = 1;
        } else if (p->type != q->type || p->arr_type != q->arr_type || p->n != q->n || p->value_size != q->value_size ||
                   memcmp(p->data, q->data, (size_t)p->value_size)) {
            char va[200], vb[200];
            smelt_gguf_kv_format(p, va, sizeof va, 4);
            smelt_gguf_kv_format(q, vb, sizeof vb, 4);
            snprintf(why, n, "KV '%s' differs: %s vs %s", p->key, va, vb);
            d = 1;
        }
    }
    if (!d && smelt_gguf_n_tensors(x) != smelt_gguf_n_tensors(y)) {
        snprintf(why, n, "tensor count %llu vs %llu", (unsigned long long)smelt_gguf_n_tensors(x), (unsigned long long)smelt_gguf_n_tensors(y));
        d = 1;
    }
    for (uint64_t k = 0; !d && k < smelt_gguf_n_tensors(x); k++) {
        const smelt_gguf_tensor *p = smelt_gguf_tensor_at(x, k);
        const smelt_gguf_tensor *q = by_name ? smelt_gguf_find_tensor(y, p->name) : smelt_gguf_tensor_at(y, k);
        if (!q || strcmp(p->name, q->name)) {
            snprintf(why, n, "tensor %llu: '%s' vs '%s'", (unsigned long long)k, p->name, q ? q->name : "(absent)");
            d = 1;
        } else if (p->type != q->type || p->n_dims != q->n_dims || memcmp(p->ne, q->ne, sizeof p->ne)) {
            snprintf(why, n, "tensor '%s': type/shape %d [%llu,%llu,%llu] vs %d [%llu,%llu,%llu]", p->name, p->type,
                     (unsigned long long)p->ne[0], (unsigned long long)p->ne[1], (unsigned long long)p->ne[2], q->type,
                     (unsigned long long)q->ne[0], (unsigned long long)q->ne[1], (unsigned long long)q->ne[2]);
            d = 1;
        } else if (memcmp(p->data, q->data, (size_t)p->nbytes)) {
            uint64_t at = 0;
            while (p->data[at] == q->data[at]) at++;
            snprintf(why, n, "tensor '%s': data differs from byte %llu", p->name, (unsigned long long)at);
            d = 1;
        }
    }
    smelt_gguf_close(x);
    smelt_gguf_close(y);
    if (!d && !by_name && tu_cmp_files(a, b)) {
        snprintf(why, n, "files differ outside KVs and tensor data (layout/padding)");
        d = 1;
    }
    return d;
}

int hs_oracle_convert(const char *dir, const char *out, const char *outtype, const char *extra, char **log)
{
    char tool[4096];
    const char *env = getenv("SMELT_ORACLE_CONVERT_HF");
    if (env && *env) snprintf(tool, sizeof tool, "%s", env);
    else tu_path(tool, sizeof tool, "tests/oracle/convert-hf");
    if (log) *log = NULL;
    if (access(tool, X_OK) != 0) return 77;
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' --outtype %s %s", tool, dir, out, outtype, extra ? extra : "");
    return tu_run(cmd, log);
}

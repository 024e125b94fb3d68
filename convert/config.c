/* config.c — config.json → hyperparameters and the <arch>.* GGUF keys of the architectures
 * in formats/arch.h. Includes kvs.h.
 *
 * Keys are looked up the way llama.cpp's converter does (find_hparam): the first of a list
 * of alternative names that is present in config.json wins, even when its value is null
 * (then nothing is written). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"
#include "formats/model_check.h"

/* First present key of a NULL-terminated list (value may be JSON null), or NULL. */
static json_t *find(json_t *cfg, const char *const *keys, const char **which)
{
    for (; *keys; keys++) {
        json_t *v = json_object_get(cfg, *keys);
        if (v) {
            if (which) *which = *keys;
            return v;
        }
    }
    return NULL;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* An integer hyperparameter from the first present of keys, in [min, max]. Absent (or
 * null): EFORMAT if required, else 1 and *out untouched. */
static int get_int(json_t *cfg, const char *path, const char *const *keys, int required, int64_t min, int64_t max, int64_t *out,
                   smelt_err *e)
{
    const char *k = keys[0];
    json_t *v = find(cfg, keys, &k);
    if (!v || json_is_null(v)) {
        if (required) return SMELT_ERR(e, SMELT_EFORMAT, path, keys[0], "required key is missing");
        return 1;
    }
    if (!json_is_integer(v)) return SMELT_ERR(e, SMELT_EFORMAT, path, k, "expected an integer");
    int64_t x = json_integer_value(v);
    if (x < min) return SMELT_ERR(e, SMELT_EFORMAT, path, k, "expected an integer >= %lld, found %lld", (long long)min, (long long)x);
    if (x > max) return SMELT_ERR(e, SMELT_EFORMAT, path, k, "expected at most %lld, found %lld", (long long)max, (long long)x);
    *out = x;
    return 0;
}

/* An int64 read into a uint32_t field (the ranges below keep it in range). */
static int get_u32f(json_t *cfg, const char *path, const char *const *keys, int required, int64_t min, int64_t max,
                    uint32_t *out, smelt_err *e)
{
    int64_t v = *out;
    int rc = get_int(cfg, path, keys, required, min, max, &v, e);
    if (rc == 0) *out = (uint32_t)v;
    return rc;
}

int smelt_hparams_read(json_t *cfg, const char *path, smelt_hparams *hp, smelt_err *e)
{
    memset(hp, 0, sizeof *hp);
    json_t *archs = json_object_get(cfg, "architectures");
    json_t *mt = json_object_get(cfg, "model_type");
    const char *arch = NULL, *model_type = json_is_string(mt) ? json_string_value(mt) : NULL;
    if (json_is_array(archs) && json_array_size(archs) > 0) {
        json_t *a0 = json_array_get(archs, 0);
        if (!json_is_string(a0)) return SMELT_ERR(e, SMELT_EFORMAT, path, "architectures", "expected a list of class names");
        arch = json_string_value(a0);
    }
    hp->arch = smelt_arch_by_hf(arch, model_type);
    if (!hp->arch) {
        if (!arch && !model_type)
            return SMELT_ERR(e, SMELT_EFORMAT, path, "architectures",
                             "neither 'architectures' nor 'model_type' is set: cannot tell the architecture (supported: %s)",
                             smelt_arch_hf_names);
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, arch ? "architectures" : "model_type",
                         "architecture '%s'%s%s%s is not supported; smelt-convert handles %s", arch ? arch : model_type,
                         arch && model_type ? " (model_type '" : "", arch && model_type ? model_type : "",
                         arch && model_type ? "')" : "", smelt_arch_hf_names);
    }
    snprintf(hp->hf_arch, sizeof hp->hf_arch, "%s", arch ? arch : model_type);
    /* the ranges are those of the shared model check (formats/model_check.h), refused here
     * with the config.json key that gave the value */
    int rc;
    int64_t n_vocab = 0;
    if ((rc = get_u32f(cfg, path, KEYS("num_hidden_layers", "n_layers", "n_layer", "num_layers"), 1, 1, 512, &hp->n_layer, e)) < 0 ||
        (rc = get_u32f(cfg, path, KEYS("hidden_size", "n_embd", "dim"), 1, 1, 1 << 24, &hp->n_embd, e)) < 0 ||
        (rc = get_u32f(cfg, path, KEYS("intermediate_size", "n_inner", "hidden_dim"), 1, 1, 1ll << 31, &hp->n_ff, e)) < 0 ||
        (rc = get_u32f(cfg, path, KEYS("num_attention_heads", "n_head", "n_heads"), 1, 1, 65536, &hp->n_head, e)) < 0 ||
        (rc = get_int(cfg, path, KEYS("vocab_size"), 1, 1, 1ll << 31, &n_vocab, e)) < 0)
        return rc;
    hp->n_vocab = (uint64_t)n_vocab;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_u32f(cfg, path, KEYS("num_key_value_heads", "n_kv_heads"), 0, 1, 65536, &hp->n_head_kv, e)) < 0) return rc;
    if (hp->n_head % hp->n_head_kv)
        return SMELT_ERR(e, SMELT_EFORMAT, path, "num_key_value_heads",
                         "expected a divisor of num_attention_heads %lld, found %lld", (long long)hp->n_head, (long long)hp->n_head_kv);
    hp->head_dim = 0;
    if ((rc = get_u32f(cfg, path, KEYS("head_dim"), 0, 0, 1 << 20, &hp->head_dim, e)) < 0) return rc;
    if (rc == 1 || hp->head_dim == 0) {
        if (hp->n_embd % hp->n_head)
            return SMELT_ERR(e, SMELT_EFORMAT, path, "num_attention_heads",
                             "hidden_size %lld is not a multiple of num_attention_heads %lld (and head_dim is not set)",
                             (long long)hp->n_embd, (long long)hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->head_dim % 2)
        return SMELT_ERR(e, SMELT_EFORMAT, path, "head_dim", "expected an even head dimension (RoPE rotates pairs), found %lld",
                         (long long)hp->head_dim);
    if ((rc = get_u32f(cfg, path, KEYS("num_local_experts", "num_experts", "n_routed_experts"), 0, 0, 1024, &hp->n_expert, e)) < 0)
        return rc;
    const char *used_key = "num_experts_per_tok";
    find(cfg, KEYS("num_experts_per_tok", "num_experts_per_token", "top_k_experts"), &used_key);
    if ((rc = get_u32f(cfg, path, KEYS("num_experts_per_tok", "num_experts_per_token", "top_k_experts"), 0, 0, 1024, &hp->n_expert_used,
                       e)) < 0)
        return rc;
    if (hp->n_expert == 0 && (!strcmp(hp->hf_arch, "MixtralForCausalLM") || !strcmp(hp->hf_arch, "mixtral")))
        return SMELT_ERR(e, SMELT_EFORMAT, path, "num_local_experts", "a Mixtral config needs a positive expert count");
    if (hp->n_expert == 0 && !(hp->arch->ffn & SMELT_FFN_DENSE))
        return SMELT_ERR(e, SMELT_EFORMAT, path, "num_experts", "a %s config needs a positive expert count", hp->arch->family);
    if (hp->n_expert > 0 && !(hp->arch->ffn & SMELT_FFN_MOE))
        return SMELT_ERR(e, SMELT_EFORMAT, path, "num_experts", "expected no experts in a %s config (a dense architecture), found %u",
                         hp->arch->family, hp->n_expert);
    if (hp->n_expert > 0 && rc == 1)
        return SMELT_ERR(e, SMELT_EFORMAT, path, used_key,
                         "required key is missing (a mixture-of-experts model needs the number of experts used per token)");
    if (hp->n_expert > 0 && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
        return SMELT_ERR(e, SMELT_EFORMAT, path, used_key, "expected 1..%lld (num_local_experts), found %lld", (long long)hp->n_expert,
                         (long long)hp->n_expert_used);
    if (hp->n_expert == 0 && hp->n_expert_used > 0)
        return SMELT_ERR(e, SMELT_EFORMAT, path, used_key,
                         "expected 0 in a model without experts (num_local_experts is not set), found %lld",
                         (long long)hp->n_expert_used);
    hp->tied_output = json_is_true(json_object_get(cfg, "tie_word_embeddings"));
    hp->n_ff_exp = hp->n_ff;
    if (hp->arch->expert_ff && hp->n_expert > 0) {
        hp->n_ff_exp = 0;
        if ((rc = get_u32f(cfg, path, KEYS("moe_intermediate_size"), 0, 1, 1ll << 31, &hp->n_ff_exp, e)) < 0) return rc;
        if (!hp->n_ff_exp) hp->n_ff_exp = hp->n_ff / hp->n_expert_used; /* llama.cpp's default */
        /* llama.cpp's qwen3moe graph renormalizes the selected experts' weights and runs
         * every layer sparse: a config that says otherwise would convert to a model that
         * computes something else */
        json_t *nt = json_object_get(cfg, "norm_topk_prob");
        if (json_is_false(nt))
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "norm_topk_prob",
                             "false is not supported: llama.cpp's %s graph always renormalizes the top-k expert weights",
                             hp->arch->name);
        json_t *mlp_only = json_object_get(cfg, "mlp_only_layers");
        if (json_is_array(mlp_only) && json_array_size(mlp_only) > 0)
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "mlp_only_layers",
                             "dense layers in a %s model are not supported (llama.cpp's graph has experts in every layer)",
                             hp->arch->family);
        json_t *step = json_object_get(cfg, "decoder_sparse_step");
        if (json_is_integer(step) && json_integer_value(step) != 1)
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "decoder_sparse_step",
                             "expected 1 (experts in every layer, as llama.cpp's graph has), found %lld",
                             (long long)json_integer_value(step));
    }
    return 0;
}

/* ==== KVs ==== */

static int kv_u32(smelt_kvs *kv, const char *key, json_t *v, const char *path, const char *src, smelt_err *e)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
        return SMELT_ERR(e, SMELT_EFORMAT, path, src, "expected a non-negative integer that fits 32 bits");
    return smelt_kvs_set_u32(kv, key, (uint32_t)json_integer_value(v), e);
}

static int kv_f32(smelt_kvs *kv, const char *key, json_t *v, const char *path, const char *src, smelt_err *e)
{
    if (!json_is_number(v)) return SMELT_ERR(e, SMELT_EFORMAT, path, src, "expected a number");
    return smelt_kvs_set_f32(kv, key, (float)json_number_value(v), e);
}

/* A value llama.cpp divides by or takes the log of (RMS epsilon, RoPE base, scaling factor):
 * finite and > 0 once rounded to f32. */
static int kv_f32_pos(smelt_kvs *kv, const char *key, json_t *v, const char *path, const char *src, smelt_err *e)
{
    if (!json_is_number(v)) return SMELT_ERR(e, SMELT_EFORMAT, path, src, "expected a number");
    float f = (float)json_number_value(v);
    if (!isfinite(f) || !(f > 0))
        return SMELT_ERR(e, SMELT_EFORMAT, path, src, "expected a finite number > 0, found %g", json_number_value(v));
    return smelt_kvs_set_f32(kv, key, f, e);
}

/* A key the GGUF cannot do without (llama.cpp's loader refuses a file without it). */
static int needed(json_t *v, const char *path, const char *src, const char *gguf_key, smelt_err *e)
{
    if (v && !json_is_null(v)) return 0;
    return SMELT_ERR(e, SMELT_EFORMAT, path, src, "required key is missing (the GGUF needs %s, llama.cpp's loader refuses a file without it)",
                     gguf_key);
}

/* Write key from the first present of keys, if its value is not null. */
static int opt_u32(smelt_kvs *kv, json_t *cfg, const char *path, const char *key, const char *const *keys, smelt_err *e)
{
    const char *which = NULL;
    json_t *v = find(cfg, keys, &which);
    if (!v || json_is_null(v)) return 0;
    return kv_u32(kv, key, v, path, which, e);
}

static int opt_f32(smelt_kvs *kv, json_t *v, const char *path, const char *src, const char *key, smelt_err *e)
{
    if (!v || json_is_null(v)) return 0;
    return kv_f32(kv, key, v, path, src, e);
}

int smelt_arch_kvs(json_t *cfg, const char *path, const smelt_hparams *hp, uint32_t file_type, smelt_kvs *kv,
                   const smelt_notes *notes, smelt_err *e)
{
    int rc;
    char kb[8][96];
    unsigned kn = 0;
#define AK(suffix) smelt_arch_key(hp->arch, (suffix), kb[kn++ & 7], sizeof kb[0])
    const char *ctx_key = "max_position_embeddings";
    json_t *ctx = find(cfg, KEYS("max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"),
                       &ctx_key);
    if ((rc = needed(ctx, path, ctx_key, AK("context_length"), e))) return rc;
    if (json_is_integer(ctx) && json_integer_value(ctx) < 1)
        return SMELT_ERR(e, SMELT_EFORMAT, path, ctx_key, "expected a context length >= 1, found %lld", (long long)json_integer_value(ctx));
    if ((rc = smelt_kvs_set_u32(kv, AK("block_count"), (uint32_t)hp->n_layer, e)) ||
        (rc = kv_u32(kv, AK("context_length"), ctx, path, ctx_key, e)) ||
        (rc = opt_u32(kv, cfg, path, AK("embedding_length"), KEYS("hidden_size", "n_embd", "dim"), e)) ||
        (rc = opt_u32(kv, cfg, path, AK("feed_forward_length"),
                      KEYS("prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner",
                           "hidden_dim"),
                      e)) ||
        (rc = opt_u32(kv, cfg, path, AK("attention.head_count"), KEYS("num_attention_heads", "n_head", "n_heads"), e)) ||
        (rc = opt_u32(kv, cfg, path, AK("attention.head_count_kv"), KEYS("num_key_value_heads", "n_kv_heads"), e)))
        return rc;
    json_t *causal = json_object_get(cfg, "is_causal");
    if (json_is_false(causal) && (rc = smelt_kvs_set_bool(kv, AK("attention.causal"), false, e))) return rc;

    /* rope: rope_parameters (transformers v5) or rope_scaling, plus the top-level theta */
    json_t *rp = json_object_get(cfg, "rope_parameters");
    if (!rp) rp = json_object_get(cfg, "rope_scaling");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return SMELT_ERR(e, SMELT_EFORMAT, path, "rope_scaling", "expected an object or null");
    if (rp && !json_is_object(rp)) rp = NULL;
    json_t *full = rp ? json_object_get(rp, "full_attention") : NULL;
    json_t *params = json_is_object(full) ? full : rp;
    const char *theta_key = NULL;
    json_t *theta = find(cfg, KEYS("global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"),
                         &theta_key);
    json_t *rope_type = NULL, *factor = NULL;
    if (params) {
        rope_type = json_object_get(params, "rope_type");
        if (!rope_type && !full && !json_object_get(rp, "sliding_attention")) rope_type = json_object_get(params, "type");
        factor = json_object_get(params, "factor");
        /* a rope_theta inside the RoPE parameters wins; with per-attention-type parameters
         * the top-level value is not consulted at all */
        json_t *t = json_object_get(params, "rope_theta");
        if (t || json_is_object(full)) {
            theta = t;
            theta_key = "rope_parameters.rope_theta";
        }
    }
    if (rope_type && !json_is_null(rope_type)) {
        if (!json_is_string(rope_type)) return SMELT_ERR(e, SMELT_EFORMAT, path, "rope_scaling.rope_type", "expected a string");
        const char *rt = json_string_value(rope_type);
        int has_factor = factor && !json_is_null(factor);
        if (!strcmp(rt, "linear") && has_factor) {
            if ((rc = smelt_kvs_set_str(kv, AK("rope.scaling.type"), "linear", 6, e)) ||
                (rc = kv_f32_pos(kv, AK("rope.scaling.factor"), factor, path, "rope_scaling.factor", e)))
                return rc;
        } else if (!strcmp(rt, "yarn") && has_factor) {
            json_t *orig = json_object_get(params, "original_max_position_embeddings");
            if (!orig) orig = json_object_get(cfg, "original_max_position_embeddings");
            if (!orig || json_is_null(orig))
                return SMELT_ERR(e, SMELT_EFORMAT, path, "rope_scaling.original_max_position_embeddings",
                                 "required for yarn scaling");
            if ((rc = smelt_kvs_set_str(kv, AK("rope.scaling.type"), "yarn", 4, e)) ||
                (rc = kv_f32_pos(kv, AK("rope.scaling.factor"), factor, path, "rope_scaling.factor", e)) ||
                (rc = kv_u32(kv, AK("rope.scaling.original_context_length"), orig, path,
                             "rope_scaling.original_max_position_embeddings", e)))
                return rc;
            json_t *af = json_object_get(params, "attention_factor");
            if (!af) af = json_object_get(params, "attn_factor");
            if ((rc = opt_f32(kv, json_object_get(params, "extrapolation_factor"), path, "rope_scaling.extrapolation_factor",
                              AK("rope.scaling.yarn_ext_factor"), e)) ||
                (rc = opt_f32(kv, af, path, "rope_scaling.attention_factor", AK("rope.scaling.yarn_attn_factor"), e)) ||
                (rc = opt_f32(kv, json_object_get(params, "beta_fast"), path, "rope_scaling.beta_fast",
                              AK("rope.scaling.yarn_beta_fast"), e)) ||
                (rc = opt_f32(kv, json_object_get(params, "beta_slow"), path, "rope_scaling.beta_slow",
                              AK("rope.scaling.yarn_beta_slow"), e)))
                return rc;
        } else if (!strcasecmp(rt, "llama3")) {
            /* no keys: the scaling is the rope_freqs tensor (smelt_config_rope_freqs) */
            if (!hp->arch->llama_keys)
                return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "rope_scaling.rope_type",
                                 "llama3 RoPE scaling is written as a rope_freqs tensor, which the %s architecture does not have",
                                 hp->arch->name);
        } else if (!strcmp(rt, "su") || !strcmp(rt, "longrope")) {
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "rope_scaling.rope_type", "%s RoPE scaling is not supported for %s", rt,
                             hp->arch->name);
        } else if (strcmp(rt, "dynamic") != 0 && strcmp(rt, "linear") != 0 && strcmp(rt, "yarn") != 0) {
            smelt_note(notes, "%s: unknown RoPE type '%s' ignored (no scaling keys written, as llama.cpp does)", path, rt);
        }
    }
    if (theta && !json_is_null(theta) && (rc = kv_f32_pos(kv, AK("rope.freq_base"), theta, path, theta_key, e))) return rc;
    const char *eps_key = "rms_norm_eps";
    json_t *eps = find(cfg, KEYS("rms_norm_eps", "norm_eps"), &eps_key);
    if ((rc = needed(eps, path, eps_key, AK("attention.layer_norm_rms_epsilon"), e)) ||
        (rc = kv_f32_pos(kv, AK("attention.layer_norm_rms_epsilon"), eps, path, eps_key, e)))
        return rc;
    eps = find(cfg, KEYS("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"), &eps_key);
    if ((rc = opt_f32(kv, eps, path, eps_key, AK("attention.layer_norm_epsilon"), e))) return rc;
    if ((rc = opt_u32(kv, cfg, path, AK("expert_count"), KEYS("num_local_experts", "num_experts", "n_routed_experts"), e)) ||
        (rc = opt_u32(kv, cfg, path, AK("expert_used_count"), KEYS("num_experts_per_tok", "num_experts_per_token", "top_k_experts"),
                      e)) ||
        (rc = opt_u32(kv, cfg, path, AK("expert_group_count"), KEYS("n_group"), e)) ||
        (rc = opt_u32(kv, cfg, path, AK("expert_group_used_count"), KEYS("topk_group"), e)))
        return rc;
    json_t *sf = find(cfg, KEYS("score_function", "scoring_func", "score_func", "moe_router_activation", "moe_router_activation_func",
                                "expert_selection_fn"),
                      NULL);
    if (sf && !json_is_null(sf)) {
        const char *s = json_is_string(sf) ? json_string_value(sf) : "";
        uint32_t g = !strcmp(s, "softmax") ? 1 : !strcmp(s, "sigmoid") ? 2 : !strcmp(s, "sqrtsoftplus") ? 3 : 0;
        if (!g) return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "scoring_func", "unsupported expert gating function '%s'", s);
        if ((rc = smelt_kvs_set_u32(kv, AK("expert_gating_func"), g, e))) return rc;
    }
    json_t *hd = json_object_get(cfg, "head_dim");
    if (hd && !json_is_null(hd)) {
        if ((rc = kv_u32(kv, AK("attention.key_length"), hd, path, "head_dim", e)) ||
            (rc = kv_u32(kv, AK("attention.value_length"), hd, path, "head_dim", e)))
            return rc;
    }
    if ((rc = smelt_kvs_set_u32(kv, "general.file_type", file_type, e))) return rc;
    /* what the architecture's converter class adds */
    if (hp->arch->llama_keys && ((rc = smelt_kvs_set_u32(kv, AK("vocab_size"), (uint32_t)hp->n_vocab, e)) ||
                                 (rc = smelt_kvs_set_u32(kv, AK("rope.dimension_count"), (uint32_t)hp->head_dim, e))))
        return rc;
    if (hp->arch->expert_ff && (rc = opt_u32(kv, cfg, path, AK("expert_feed_forward_length"), KEYS("moe_intermediate_size"), e)))
        return rc;
    return 0;
#undef AK
}

/* ==== the plan, checked as every tool will check the file ==== */

int smelt_arch_check_plan(const smelt_kvs *kv, const struct smelt_cv_tensor *t, size_t n, bool vocab_only, const char *dir,
                          smelt_err *e)
{
    smelt_mc_kv *mk = calloc(kv->n + 1, sizeof *mk);
    smelt_mc_tensor *mt = calloc(n + 1, sizeof *mt);
    char where[4200];
    int rc = 0;
    if (!mk || !mt) {
        rc = SMELT_NOMEM(e, "the model check");
        goto out;
    }
    for (size_t i = 0; i < kv->n; i++) {
        const smelt_kv *s = &kv->kv[i];
        smelt_mc_kv *d = &mk[i];
        d->key = s->key;
        d->type = s->type;
        d->arr_type = s->arr_type;
        d->n = s->n;
        if (s->type == SMELT_GGUF_ARRAY) d->arr = s->arr; /* NULL for strings */
        else if (s->type == SMELT_GGUF_STRING) d->s = s->s, d->slen = s->slen;
        else if (s->type == SMELT_GGUF_F32 || s->type == SMELT_GGUF_F64) d->f = s->v.f;
        else d->i = s->v.i; /* integers and bools (signed values are stored sign-extended) */
    }
    for (size_t i = 0; i < n; i++) {
        mt[i].name = t[i].name;
        memcpy(mt[i].ne, t[i].ne, sizeof mt[i].ne);
    }
    snprintf(where, sizeof where, "the GGUF planned from %s", dir);
    smelt_mc_model m = {where, mk, kv->n, mt, n, vocab_only};
    rc = smelt_mc_check(&m, 0, NULL, e);
out:
    free(mk);
    free(mt);
    return rc;
}

/* ==== Llama 3 RoPE frequency factors ==== */

/* A number from the RoPE parameters, or def when absent (as the converter's .get()). */
static int rope_num(json_t *params, const char *key, double def, double *out, const char *path, smelt_err *e)
{
    json_t *v = json_object_get(params, key);
    *out = def;
    if (!v) return 0;
    if (!json_is_number(v)) {
        char k[64];
        snprintf(k, sizeof k, "rope_scaling.%s", key);
        return SMELT_ERR(e, SMELT_EFORMAT, path, k, "expected a number");
    }
    *out = json_number_value(v);
    return 0;
}

int smelt_config_rope_freqs(json_t *cfg, const char *path, const smelt_hparams *hp, float *out, smelt_err *e)
{
    json_t *rp = json_object_get(cfg, "rope_parameters");
    if (!rp) rp = json_object_get(cfg, "rope_scaling");
    if (!json_is_object(rp)) return 0;
    json_t *full = json_object_get(rp, "full_attention");
    json_t *params = json_is_object(full) ? full : rp;
    json_t *rt = json_object_get(params, "rope_type");
    if (!rt && !full) rt = json_object_get(params, "type");
    if (!json_is_string(rt) || strcasecmp(json_string_value(rt), "llama3") != 0) return 0;
    /* the converter's defaults: theta from the parameters or the top level, else 10000 */
    double base, factor, lo, hi, old_ctx;
    json_t *theta = json_object_get(params, "rope_theta");
    if (!theta && !full) theta = json_object_get(cfg, "rope_theta");
    int rc;
    if (theta && !json_is_number(theta)) return SMELT_ERR(e, SMELT_EFORMAT, path, "rope_theta", "expected a number");
    base = theta ? json_number_value(theta) : 10000.0;
    json_t *orig = json_object_get(params, "original_max_position_embeddings");
    if (!orig && !full) orig = json_object_get(cfg, "original_max_position_embeddings");
    if (orig && !json_is_number(orig))
        return SMELT_ERR(e, SMELT_EFORMAT, path, "rope_scaling.original_max_position_embeddings", "expected a number");
    old_ctx = orig ? json_number_value(orig) : 8192.0;
    if ((rc = rope_num(params, "factor", 8.0, &factor, path, e)) || (rc = rope_num(params, "low_freq_factor", 1.0, &lo, path, e)) ||
        (rc = rope_num(params, "high_freq_factor", 4.0, &hi, path, e)))
        return rc;
    if (!(factor > 0) || !(lo > 0) || !(hi > lo) || !(old_ctx > 0) || !isfinite(factor) || !isfinite(hi) || !isfinite(old_ctx))
        return SMELT_ERR(e, SMELT_EFORMAT, path, "rope_scaling",
                         "llama3 scaling needs factor > 0 and 0 < low_freq_factor < high_freq_factor (found %g, %g, %g) and "
                         "original_max_position_embeddings > 0 (found %g)",
                         factor, lo, hi, old_ctx);
    /* The converter computes in float32 tensors: each step below is one float32 operation,
     * a python number meeting a tensor is first rounded to float32, and `a / tensor` is
     * computed as reciprocal(tensor) * a (torch's __rtruediv__). */
    const uint32_t dim = hp->head_dim, n = dim / 2;
    const float fbase = (float)base, ffactor = (float)factor, flo = (float)lo, fspan = (float)(hi - lo), fold = (float)old_ctx;
    const float two_pi = (float)(2 * M_PI), low_wl = (float)(old_ctx / lo), high_wl = (float)(old_ctx / hi);
    for (uint32_t i = 0; i < n; i++) {
        float x = (float)(2 * i) / (float)dim;
        float freq = 1.0f / powf(fbase, x);
        float wavelen = (1.0f / freq) * two_pi;
        if (wavelen < high_wl) out[i] = 1.0f;
        else if (wavelen > low_wl) out[i] = ffactor;
        else {
            float smooth = ((1.0f / wavelen) * fold - flo) / fspan;
            float d = (1.0f - smooth) / ffactor + smooth;
            out[i] = 1.0f / d;
        }
    }
    return 1;
}

/* tensor_map.c — name patterns and shape rules (see tensor_map.h). */
#include "tensor_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "123." at *p: parse a decimal index and advance past the dot. */
static int parse_index(const char **p, int64_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9') return -1;
    int64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        if (v > 100000000) return -1;
        v = v * 10 + (*s - '0');
        s++;
    }
    if (*s != '.') return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* tail is "<stem>.weight" or "<stem>.bias" (bias allowed when allow_bias) */
static int stem_is(const char *tail, const char *stem, int allow_bias, bool *bias)
{
    size_t l = strlen(stem);
    if (strncmp(tail, stem, l) != 0) return 0;
    if (!strcmp(tail + l, ".weight")) {
        *bias = false;
        return 1;
    }
    if (allow_bias && !strcmp(tail + l, ".bias")) {
        *bias = true;
        return 1;
    }
    return 0;
}

int smelt_tmap_parse(const char *name, smelt_tmap *m)
{
    m->bid = -1;
    m->expert = -1;
    m->bias = false;
    m->role = SMELT_R_SKIP;
    if (ends_with(name, ".rotary_emb.inv_freq") || ends_with(name, ".attention.masked_bias") ||
        ends_with(name, ".attention.bias"))
        return 0;
    if (!strcmp(name, "model.embed_tokens.weight")) {
        m->role = SMELT_R_TOKEN_EMBD;
        return 0;
    }
    if (!strcmp(name, "model.norm.weight")) {
        m->role = SMELT_R_OUTPUT_NORM;
        return 0;
    }
    if (!strcmp(name, "lm_head.weight")) {
        m->role = SMELT_R_OUTPUT;
        return 0;
    }
    const char *p = name;
    if (strncmp(p, "model.layers.", 13) != 0) return -1;
    p += 13;
    if (parse_index(&p, &m->bid)) return -1;
    static const struct {
        const char *stem;
        smelt_role role;
        int bias;
    } plain[] = {
        {"input_layernorm", SMELT_R_ATTN_NORM, 0},         {"post_attention_layernorm", SMELT_R_FFN_NORM, 0},
        {"self_attn.q_proj", SMELT_R_ATTN_Q, 1},           {"self_attn.k_proj", SMELT_R_ATTN_K, 1},
        {"self_attn.v_proj", SMELT_R_ATTN_V, 1},           {"self_attn.o_proj", SMELT_R_ATTN_OUT, 1},
        {"mlp.gate_proj", SMELT_R_FFN_GATE, 1},            {"mlp.up_proj", SMELT_R_FFN_UP, 1},
        {"mlp.down_proj", SMELT_R_FFN_DOWN, 1},            {"block_sparse_moe.gate", SMELT_R_FFN_GATE_INP, 0},
        {"mlp.gate", SMELT_R_FFN_GATE_INP, 0},
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (stem_is(p, plain[i].stem, plain[i].bias, &m->bias)) {
            m->role = plain[i].role;
            return 0;
        }
    if (!strcmp(p, "mlp.experts.gate_up_proj") || !strcmp(p, "mlp.experts.gate_up_proj.weight")) {
        m->role = SMELT_R_EXP_GATE_UP;
        return 0;
    }
    if (!strcmp(p, "mlp.experts.down_proj") || !strcmp(p, "mlp.experts.down_proj.weight")) {
        m->role = SMELT_R_EXP_DOWN;
        return 0;
    }
    if (!strncmp(p, "block_sparse_moe.experts.", 25)) {
        p += 25;
        if (parse_index(&p, &m->expert)) return -1;
        if (!strcmp(p, "w1.weight")) m->role = SMELT_R_EXP_W1;
        else if (!strcmp(p, "w2.weight")) m->role = SMELT_R_EXP_W2;
        else if (!strcmp(p, "w3.weight")) m->role = SMELT_R_EXP_W3;
        else return -1;
        return 0;
    }
    return -1;
}

static const char *k_gguf[SMELT_R_COUNT] = {
    [SMELT_R_TOKEN_EMBD] = "token_embd",      [SMELT_R_OUTPUT_NORM] = "output_norm",  [SMELT_R_OUTPUT] = "output",
    [SMELT_R_ATTN_NORM] = "attn_norm",        [SMELT_R_ATTN_Q] = "attn_q",            [SMELT_R_ATTN_K] = "attn_k",
    [SMELT_R_ATTN_V] = "attn_v",              [SMELT_R_ATTN_OUT] = "attn_output",     [SMELT_R_FFN_NORM] = "ffn_norm",
    [SMELT_R_FFN_GATE] = "ffn_gate",          [SMELT_R_FFN_UP] = "ffn_up",            [SMELT_R_FFN_DOWN] = "ffn_down",
    [SMELT_R_FFN_GATE_INP] = "ffn_gate_inp",  [SMELT_R_GATE_EXPS] = "ffn_gate_exps", [SMELT_R_UP_EXPS] = "ffn_up_exps",
    [SMELT_R_DOWN_EXPS] = "ffn_down_exps",
};

void smelt_tmap_gguf_name(smelt_role role, int64_t bid, bool bias, char *buf, size_t n)
{
    const char *b = k_gguf[role] ? k_gguf[role] : "?";
    if (bid < 0) snprintf(buf, n, "%s.%s", b, bias ? "bias" : "weight");
    else snprintf(buf, n, "blk.%lld.%s.%s", (long long)bid, b, bias ? "bias" : "weight");
}

void smelt_tmap_hf_name(smelt_role role, int64_t bid, char *buf, size_t n)
{
    static const char *hf[SMELT_R_COUNT] = {
        [SMELT_R_TOKEN_EMBD] = "model.embed_tokens",         [SMELT_R_OUTPUT_NORM] = "model.norm",
        [SMELT_R_OUTPUT] = "lm_head",                        [SMELT_R_ATTN_NORM] = "input_layernorm",
        [SMELT_R_ATTN_Q] = "self_attn.q_proj",               [SMELT_R_ATTN_K] = "self_attn.k_proj",
        [SMELT_R_ATTN_V] = "self_attn.v_proj",               [SMELT_R_ATTN_OUT] = "self_attn.o_proj",
        [SMELT_R_FFN_NORM] = "post_attention_layernorm",     [SMELT_R_FFN_GATE] = "mlp.gate_proj",
        [SMELT_R_FFN_UP] = "mlp.up_proj",                    [SMELT_R_FFN_DOWN] = "mlp.down_proj",
        [SMELT_R_FFN_GATE_INP] = "block_sparse_moe.gate",
    };
    const char *s = hf[role] ? hf[role] : "?";
    if (bid < 0) snprintf(buf, n, "%s.weight", s);
    else snprintf(buf, n, "model.layers.%lld.%s.weight", (long long)bid, s);
}

int64_t smelt_tmap_permute_heads(const smelt_hparams *hp, smelt_role role)
{
    if (role == SMELT_R_ATTN_Q) return hp->n_head;
    if (role == SMELT_R_ATTN_K) return hp->n_head_kv;
    return 0;
}

uint32_t smelt_tmap_expected(const smelt_hparams *hp, const smelt_tmap *m, uint64_t s[3], char *why, size_t n)
{
    uint64_t H = (uint64_t)hp->n_embd, V = (uint64_t)hp->n_vocab, F = (uint64_t)hp->n_ff, E = (uint64_t)hp->n_expert;
    uint64_t Q = (uint64_t)(hp->n_head * hp->head_dim), K = (uint64_t)(hp->n_head_kv * hp->head_dim);
    uint32_t nd = 2;
    const char *w = "";
#define SET2(a, b, text) (s[0] = (a), s[1] = (b), w = (text))
    switch (m->role) {
    case SMELT_R_TOKEN_EMBD:
    case SMELT_R_OUTPUT: SET2(V, H, "[vocab_size, hidden_size]"); break;
    case SMELT_R_OUTPUT_NORM:
    case SMELT_R_ATTN_NORM:
    case SMELT_R_FFN_NORM:
        nd = 1;
        s[0] = H;
        w = "[hidden_size]";
        break;
    case SMELT_R_ATTN_Q: SET2(Q, H, "[num_attention_heads × head_dim, hidden_size]"); break;
    case SMELT_R_ATTN_K:
    case SMELT_R_ATTN_V: SET2(K, H, "[num_key_value_heads × head_dim, hidden_size]"); break;
    case SMELT_R_ATTN_OUT: SET2(H, Q, "[hidden_size, num_attention_heads × head_dim]"); break;
    case SMELT_R_FFN_GATE:
    case SMELT_R_FFN_UP:
    case SMELT_R_EXP_W1:
    case SMELT_R_EXP_W3: SET2(F, H, "[intermediate_size, hidden_size]"); break;
    case SMELT_R_FFN_DOWN:
    case SMELT_R_EXP_W2: SET2(H, F, "[hidden_size, intermediate_size]"); break;
    case SMELT_R_FFN_GATE_INP: SET2(E, H, "[num_local_experts, hidden_size]"); break;
    case SMELT_R_EXP_GATE_UP:
        nd = 3;
        s[0] = E;
        s[1] = 2 * F;
        s[2] = H;
        w = "[num_local_experts, 2 × intermediate_size, hidden_size]";
        break;
    case SMELT_R_EXP_DOWN:
        nd = 3;
        s[0] = E;
        s[1] = H;
        s[2] = F;
        w = "[num_local_experts, hidden_size, intermediate_size]";
        break;
    default: nd = 0;
    }
#undef SET2
    if (m->bias && nd == 2) {
        nd = 1; /* a bias has one value per output row */
        w = m->role == SMELT_R_ATTN_OUT || m->role == SMELT_R_FFN_DOWN ? "[hidden_size]"
            : m->role == SMELT_R_ATTN_Q                                ? "[num_attention_heads × head_dim]"
            : m->role == SMELT_R_FFN_GATE || m->role == SMELT_R_FFN_UP ? "[intermediate_size]"
                                                                       : "[num_key_value_heads × head_dim]";
    }
    snprintf(why, n, "%s", w);
    return nd;
}

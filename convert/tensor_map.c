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

static const smelt_tk k_kind[SMELT_R_COUNT] = {
    [SMELT_R_TOKEN_EMBD] = SMELT_TK_TOKEN_EMBD,     [SMELT_R_OUTPUT_NORM] = SMELT_TK_OUTPUT_NORM,
    [SMELT_R_OUTPUT] = SMELT_TK_OUTPUT,             [SMELT_R_ATTN_NORM] = SMELT_TK_ATTN_NORM,
    [SMELT_R_ATTN_Q] = SMELT_TK_ATTN_Q,             [SMELT_R_ATTN_K] = SMELT_TK_ATTN_K,
    [SMELT_R_ATTN_V] = SMELT_TK_ATTN_V,             [SMELT_R_ATTN_OUT] = SMELT_TK_ATTN_OUT,
    [SMELT_R_FFN_NORM] = SMELT_TK_FFN_NORM,         [SMELT_R_FFN_GATE] = SMELT_TK_FFN_GATE,
    [SMELT_R_FFN_UP] = SMELT_TK_FFN_UP,             [SMELT_R_FFN_DOWN] = SMELT_TK_FFN_DOWN,
    [SMELT_R_FFN_GATE_INP] = SMELT_TK_FFN_GATE_INP, [SMELT_R_ATTN_Q_NORM] = SMELT_TK_ATTN_Q_NORM,
    [SMELT_R_ATTN_K_NORM] = SMELT_TK_ATTN_K_NORM,   [SMELT_R_EXP_W1] = SMELT_TK_COUNT,
    [SMELT_R_EXP_W2] = SMELT_TK_COUNT,              [SMELT_R_EXP_W3] = SMELT_TK_COUNT,
    [SMELT_R_EXP_GATE_UP] = SMELT_TK_COUNT,         [SMELT_R_EXP_DOWN] = SMELT_TK_COUNT,
    [SMELT_R_GATE_EXPS] = SMELT_TK_FFN_GATE_EXPS,   [SMELT_R_UP_EXPS] = SMELT_TK_FFN_UP_EXPS,
    [SMELT_R_DOWN_EXPS] = SMELT_TK_FFN_DOWN_EXPS,   [SMELT_R_ROPE_FREQS] = SMELT_TK_ROPE_FREQS,
    [SMELT_R_SKIP] = SMELT_TK_COUNT,
};

smelt_tk smelt_tmap_kind(smelt_role role) { return role < SMELT_R_COUNT ? k_kind[role] : SMELT_TK_COUNT; }

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
    /* one HF tensor per GGUF tensor: the names of formats/arch.c; biases where an
     * architecture may have them (which one has which is checked against its entry) */
    for (int r = SMELT_R_ATTN_NORM; r <= SMELT_R_ATTN_K_NORM; r++) {
        smelt_tk k = smelt_tmap_kind((smelt_role)r);
        bool norm = k == SMELT_TK_ATTN_NORM || k == SMELT_TK_FFN_NORM || k == SMELT_TK_ATTN_Q_NORM || k == SMELT_TK_ATTN_K_NORM;
        if (k != SMELT_TK_FFN_GATE_INP && stem_is(p, smelt_tk_hf(k), !norm, &m->bias)) {
            m->role = (smelt_role)r;
            return 0;
        }
    }
    /* the router: "<module>.gate" of an architecture with experts */
    for (int a = 0; a < SMELT_ARCH_COUNT; a++) {
        const smelt_arch *A = smelt_arch_at((smelt_arch_id)a);
        size_t l = A->hf_moe ? strlen(A->hf_moe) : 0;
        if (l && !strncmp(p, A->hf_moe, l) && stem_is(p + l, ".gate", 0, &m->bias)) {
            m->role = SMELT_R_FFN_GATE_INP;
            return 0;
        }
    }
    if (!strcmp(p, "mlp.experts.gate_up_proj") || !strcmp(p, "mlp.experts.gate_up_proj.weight")) {
        m->role = SMELT_R_EXP_GATE_UP;
        return 0;
    }
    if (!strcmp(p, "mlp.experts.down_proj") || !strcmp(p, "mlp.experts.down_proj.weight")) {
        m->role = SMELT_R_EXP_DOWN;
        return 0;
    }
    /* one expert's matrices, by the HF names of each architecture with experts */
    for (int a = 0; a < SMELT_ARCH_COUNT; a++) {
        const smelt_arch *A = smelt_arch_at((smelt_arch_id)a);
        size_t l = A->hf_moe ? strlen(A->hf_moe) : 0;
        const char *q = p;
        if (!l || strncmp(q, A->hf_moe, l) || strncmp(q + l, ".experts.", 9)) continue;
        q += l + 9;
        if (parse_index(&q, &m->expert)) return -1;
        static const smelt_role roles[3] = {SMELT_R_EXP_W1, SMELT_R_EXP_W2, SMELT_R_EXP_W3}; /* gate, down, up */
        for (int w = 0; w < 3; w++)
            if (!strncmp(q, A->hf_expert[w], strlen(A->hf_expert[w])) && !strcmp(q + strlen(A->hf_expert[w]), ".weight")) {
                m->role = roles[w];
                return 0;
            }
        return -1;
    }
    return -1;
}


void smelt_tmap_gguf_name(smelt_role role, int64_t bid, bool bias, char *buf, size_t n)
{
    smelt_tk k = smelt_tmap_kind(role);
    if (k == SMELT_TK_COUNT) snprintf(buf, n, "?");
    else smelt_tk_name(k, bid, bias, buf, n);
}

void smelt_tmap_hf_name(const smelt_arch *arch, smelt_role role, int64_t bid, char *buf, size_t n)
{
    smelt_tk k = smelt_tmap_kind(role);
    const char *s = k < SMELT_TK_COUNT ? smelt_tk_hf(k) : NULL;
    if (role == SMELT_R_FFN_GATE_INP) {
        snprintf(buf, n, "model.layers.%lld.%s.gate.weight", (long long)bid, arch->hf_moe);
        return;
    }
    if (!s) s = "?";
    if (bid < 0) snprintf(buf, n, "%s.weight", s);
    else snprintf(buf, n, "model.layers.%lld.%s.weight", (long long)bid, s);
}

int64_t smelt_tmap_permute_heads(const smelt_hparams *hp, smelt_role role)
{
    if (!hp->arch->permute_qk) return 0;
    if (role == SMELT_R_ATTN_Q) return hp->n_head;
    if (role == SMELT_R_ATTN_K) return hp->n_head_kv;
    return 0;
}

uint32_t smelt_tmap_expected(const smelt_hparams *hp, const smelt_tmap *m, uint64_t s[3], char *why, size_t n)
{
    uint64_t H = (uint64_t)hp->n_embd, V = (uint64_t)hp->n_vocab, F = (uint64_t)hp->n_ff, E = (uint64_t)hp->n_expert;
    uint64_t Q = (uint64_t)hp->n_head * hp->head_dim, K = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t FX = hp->n_ff_exp ? hp->n_ff_exp : F; /* one expert's width */
    bool fx = hp->arch->expert_ff;
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
    case SMELT_R_ATTN_Q_NORM:
    case SMELT_R_ATTN_K_NORM:
        nd = 1;
        s[0] = hp->head_dim;
        w = "[head_dim]";
        break;
    case SMELT_R_ATTN_Q: SET2(Q, H, "[num_attention_heads × head_dim, hidden_size]"); break;
    case SMELT_R_ATTN_K:
    case SMELT_R_ATTN_V: SET2(K, H, "[num_key_value_heads × head_dim, hidden_size]"); break;
    case SMELT_R_ATTN_OUT: SET2(H, Q, "[hidden_size, num_attention_heads × head_dim]"); break;
    case SMELT_R_FFN_GATE:
    case SMELT_R_FFN_UP:
    case SMELT_R_EXP_W1:
    case SMELT_R_EXP_W3:
        if (fx) SET2(FX, H, "[moe_intermediate_size, hidden_size]");
        else SET2(F, H, "[intermediate_size, hidden_size]");
        break;
    case SMELT_R_FFN_DOWN: SET2(H, F, "[hidden_size, intermediate_size]"); break;
    case SMELT_R_EXP_W2:
        if (fx) SET2(H, FX, "[hidden_size, moe_intermediate_size]");
        else SET2(H, F, "[hidden_size, intermediate_size]");
        break;
    case SMELT_R_FFN_GATE_INP: SET2(E, H, "[num_local_experts, hidden_size]"); break;
    case SMELT_R_EXP_GATE_UP:
        nd = 3;
        s[0] = E;
        s[1] = 2 * FX;
        s[2] = H;
        w = fx ? "[num_experts, 2 × moe_intermediate_size, hidden_size]" : "[num_local_experts, 2 × intermediate_size, hidden_size]";
        break;
    case SMELT_R_EXP_DOWN:
        nd = 3;
        s[0] = E;
        s[1] = H;
        s[2] = FX;
        w = fx ? "[num_experts, hidden_size, moe_intermediate_size]" : "[num_local_experts, hidden_size, intermediate_size]";
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

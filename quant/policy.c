/* policy.c — the ftype table and the per-tensor mix rules, as data.
 *
 * How a tensor's type is chosen (same steps and order as llama.cpp's quantizer):
 *   1. tensors that are never quantized keep their type (k_never: norms, 1-D tensors,
 *      the MoE router, position/token-type embeddings, …);
 *   2. --token-embedding-type / --output-tensor-type apply to their tensor as given;
 *   3. the ftype's default type; if it is a block type: the first --tensor-type pattern
 *      that matches, else (unless --pure) the mix rules of k_rules; then the fallback of
 *      k_fallback when the row length is not a multiple of the block size.
 * k_rules is read per (group, category): the SELECT rows are tried top to bottom and the
 * first whose ftype, conditions and exclusions hold decides; then every ADJUST row that
 * holds rewrites the result. Includes formats/ only. */
#include "policy.h"

#include <ctype.h>
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/ggml_types.h"

/* ==== the ftype table (llama-quantize's names and order) ==== */

#define T(x) SMELT_TYPE_##x
#define F(x) SMELT_FTYPE_##x

static const smelt_ftype_info k_ftypes[] = {
    {"Q4_0", F(Q4_0), T(Q4_0), false, NULL, "4.5 bpw, blocks of 32 with one scale"},
    {"Q4_1", F(Q4_1), T(Q4_1), false, NULL, "5.0 bpw, blocks of 32 with scale and minimum"},
    {"MXFP4_MOE", F(MXFP4_MOE), T(MXFP4), false, NULL, "MXFP4 experts, Q8_0 elsewhere"},
    {"Q5_0", F(Q5_0), T(Q5_0), false, NULL, "5.5 bpw, blocks of 32 with one scale"},
    {"Q5_1", F(Q5_1), T(Q5_1), false, NULL, "6.0 bpw, blocks of 32 with scale and minimum"},
    {"IQ2_XXS", F(IQ2_XXS), T(IQ2_XXS), false, NULL, "2.06 bpw i-quant (needs an imatrix)"},
    {"IQ2_XS", F(IQ2_XS), T(IQ2_XS), false, NULL, "2.31 bpw i-quant (needs an imatrix)"},
    {"IQ2_S", F(IQ2_S), T(IQ2_XS), false, NULL, "2.5 bpw i-quant mix"},
    {"IQ2_M", F(IQ2_M), T(IQ2_S), false, NULL, "2.7 bpw i-quant mix"},
    {"IQ1_S", F(IQ1_S), T(IQ1_S), false, NULL, "1.56 bpw i-quant (needs an imatrix)"},
    {"IQ1_M", F(IQ1_M), T(IQ1_M), false, NULL, "1.75 bpw i-quant (needs an imatrix)"},
    {"TQ1_0", F(TQ1_0), T(TQ1_0), false, NULL, "1.69 bpw ternary"},
    {"TQ2_0", F(TQ2_0), T(TQ2_0), false, NULL, "2.06 bpw ternary"},
    {"Q2_K", F(Q2_K), T(Q2_K), false, NULL, "2-bit k-quant; attn_v, ffn_down and attn_output higher"},
    {"Q2_K_S", F(Q2_K_S), T(Q2_K), false, NULL, "2-bit k-quant, smaller (needs an imatrix)"},
    {"IQ3_XXS", F(IQ3_XXS), T(IQ3_XXS), false, NULL, "3.06 bpw i-quant"},
    {"IQ3_S", F(IQ3_S), T(IQ3_S), false, NULL, "3.44 bpw i-quant"},
    {"IQ3_M", F(IQ3_M), T(IQ3_S), false, NULL, "3.66 bpw i-quant mix"},
    {"Q3_K", F(Q3_K_M), T(Q3_K), false, "Q3_K_M", "alias for Q3_K_M"},
    {"IQ3_XS", F(IQ3_XS), T(IQ3_S), false, NULL, "3.3 bpw i-quant mix"},
    {"Q3_K_S", F(Q3_K_S), T(Q3_K), false, NULL, "3-bit k-quant everywhere"},
    {"Q3_K_M", F(Q3_K_M), T(Q3_K), false, NULL, "3-bit k-quant; attn_v, attn_output, ffn_down 4-5 bit"},
    {"Q3_K_L", F(Q3_K_L), T(Q3_K), false, NULL, "3-bit k-quant; attn_v, attn_output, ffn_down 5 bit"},
    {"IQ4_NL", F(IQ4_NL), T(IQ4_NL), false, NULL, "4.5 bpw non-linear, blocks of 32"},
    {"IQ4_XS", F(IQ4_XS), T(IQ4_XS), false, NULL, "4.25 bpw non-linear"},
    {"Q4_K", F(Q4_K_M), T(Q4_K), false, "Q4_K_M", "alias for Q4_K_M"},
    {"Q4_K_S", F(Q4_K_S), T(Q4_K), false, NULL, "4-bit k-quant; first layers' attn_v/ffn_down 5 bit"},
    {"Q4_K_M", F(Q4_K_M), T(Q4_K), false, NULL, "4-bit k-quant; half of attn_v/ffn_down 6 bit"},
    {"Q5_K", F(Q5_K_M), T(Q5_K), false, "Q5_K_M", "alias for Q5_K_M"},
    {"Q5_K_S", F(Q5_K_S), T(Q5_K), false, NULL, "5-bit k-quant everywhere"},
    {"Q5_K_M", F(Q5_K_M), T(Q5_K), false, NULL, "5-bit k-quant; half of attn_v/ffn_down 6 bit"},
    {"Q6_K", F(Q6_K), T(Q6_K), false, NULL, "6.56 bpw k-quant"},
    {"Q8_0", F(Q8_0), T(Q8_0), false, NULL, "8.5 bpw, blocks of 32 with one scale"},
    {"F16", F(F16), T(F16), false, NULL, "IEEE half precision"},
    {"BF16", F(BF16), T(BF16), false, NULL, "bfloat16"},
    {"F32", F(F32), T(F32), false, NULL, "single precision"},
    {"COPY", F(F32), T(F32), true, NULL, "copy every tensor as it is (metadata changes only)"},
};

size_t smelt_ftype_count(void) { return sizeof k_ftypes / sizeof k_ftypes[0]; }

const smelt_ftype_info *smelt_ftype_at(size_t i) { return i < smelt_ftype_count() ? &k_ftypes[i] : NULL; }

const smelt_ftype_info *smelt_ftype_find(const char *name)
{
    if (!name || !*name) return NULL;
    for (size_t i = 0; i < smelt_ftype_count(); i++)
        if (!strcasecmp(k_ftypes[i].name, name)) return &k_ftypes[i];
    char *end;
    long v = strtol(name, &end, 10);
    if (*end || end == name) return NULL;
    for (size_t i = 0; i < smelt_ftype_count(); i++) /* first entry with the number, as llama-quantize */
        if (k_ftypes[i].ftype == v && !k_ftypes[i].copy) return &k_ftypes[i];
    return NULL;
}

const smelt_ftype_info *smelt_ftype_by_id(int ftype)
{
    for (size_t i = 0; i < smelt_ftype_count(); i++)
        if (k_ftypes[i].ftype == ftype && !k_ftypes[i].alias_of && !k_ftypes[i].copy) return &k_ftypes[i];
    return NULL;
}

int smelt_ftype_guess(const int *types, size_t n)
{
    static const struct { int type, ftype; } map[] = {
        {T(F32), F(F32)},     {T(F16), F(F16)},         {T(BF16), F(BF16)},       {T(Q4_0), F(Q4_0)},
        {T(Q4_1), F(Q4_1)},   {T(Q5_0), F(Q5_0)},       {T(Q5_1), F(Q5_1)},       {T(Q8_0), F(Q8_0)},
        {T(Q2_K), F(Q2_K)},   {T(Q3_K), F(Q3_K_M)},     {T(Q4_K), F(Q4_K_M)},     {T(Q5_K), F(Q5_K_M)},
        {T(Q6_K), F(Q6_K)},   {T(TQ1_0), F(TQ1_0)},     {T(TQ2_0), F(TQ2_0)},     {T(IQ2_XXS), F(IQ2_XXS)},
        {T(IQ2_XS), F(IQ2_XS)}, {T(IQ2_S), F(IQ2_S)},   {T(IQ3_XXS), F(IQ3_XXS)}, {T(IQ1_S), F(IQ1_S)},
        {T(IQ1_M), F(IQ1_M)}, {T(IQ4_NL), F(IQ4_NL)},   {T(IQ4_XS), F(IQ4_XS)},   {T(IQ3_S), F(IQ3_S)},
    };
    uint32_t count[SMELT_TYPE_COUNT] = {0}, best_n = 0;
    int best = T(F32);
    for (size_t i = 0; i < n; i++) {
        if (types[i] < 0 || types[i] >= SMELT_TYPE_COUNT) continue;
        if (++count[types[i]] > best_n) {
            best_n = count[types[i]];
            best = types[i];
        }
    }
    int ft = F(F32);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].type == best) ft = map[i].ftype;
    return ft | SMELT_FTYPE_GUESSED;
}

/* ==== tensor names ==== */

enum cat { C_OTHER, C_OUTPUT, C_TOKEN, C_ATTN_V, C_ATTN_K, C_ATTN_Q, C_ATTN_O, C_FFN_UP, C_FFN_GATE, C_FFN_DOWN };

/* Category by name, first match wins. attn_qkv and attn_kv_b count as attn_v. */
static const struct { bool exact; const char *s; enum cat c; } k_cats[] = {
    {true, "output.weight", C_OUTPUT},
    {true, "token_embd.weight", C_TOKEN},
    {true, "per_layer_token_embd.weight", C_TOKEN},
    {false, "attn_qkv.weight", C_ATTN_V},
    {false, "attn_kv_b.weight", C_ATTN_V},
    {false, "attn_v.weight", C_ATTN_V},
    {false, "attn_k.weight", C_ATTN_K},
    {false, "attn_q.weight", C_ATTN_Q},
    {false, "attn_output.weight", C_ATTN_O},
    {false, "ffn_up", C_FFN_UP},
    {false, "ffn_gate", C_FFN_GATE},
    {false, "ffn_down", C_FFN_DOWN},
};

static enum cat category(const char *name)
{
    for (size_t i = 0; i < sizeof k_cats / sizeof k_cats[0]; i++)
        if (k_cats[i].exact ? !strcmp(name, k_cats[i].s) : strstr(name, k_cats[i].s) != NULL) return k_cats[i].c;
    return C_OTHER;
}

/* Weights that stay as they are: the name contains (or, exact, equals) one of these. */
static const struct { bool exact; const char *s; } k_never[] = {
    {false, "_norm.weight"},          /* normalisation vectors */
    {false, "ffn_gate_inp.weight"},   /* MoE router */
    {false, "ffn_gate_tid2eid.weight"},
    {false, "altup"},                 {false, "laurel"},
    {false, "per_layer_model_proj"},
    {true, "position_embd.weight"},   {true, "token_types.weight"},
    {false, "ssm_conv1d"},            {false, "shortconv.conv.weight"},
    {false, "indexer.k_proj.weight"}, {false, "indexer.q_proj.weight"},
    {false, "time_mix_first.weight"}, {false, "time_mix_w0.weight"},  {false, "time_mix_w1.weight"},
    {false, "time_mix_w2.weight"},    {false, "time_mix_v0.weight"},  {false, "time_mix_v1.weight"},
    {false, "time_mix_v2.weight"},    {false, "time_mix_a0.weight"},  {false, "time_mix_a1.weight"},
    {false, "time_mix_a2.weight"},    {false, "time_mix_g1.weight"},  {false, "time_mix_g2.weight"},
    {false, "time_mix_decay_w1.weight"}, {false, "time_mix_decay_w2.weight"},
    {false, "time_mix_lerp_fused.weight"},
    {false, "attn_rel_b.weight"},
    {false, ".position_embd"},        {false, "sam.pos_embd"},        {false, "sam.neck."},
    {false, "sam.net_"},              {false, ".rel_pos"},            {false, ".patch_embd"},
    {false, ".patch_merger"},         {false, "a.rvq.codebook"},      {false, "mm.a.code_embd"},
};

static unsigned n_dims(const uint64_t ne[4])
{
    unsigned d = 4;
    while (d > 1 && ne[d - 1] == 1) d--;
    return d;
}

bool smelt_policy_quantizable(const char *name, const uint64_t ne[4], bool leave_output)
{
    if (n_dims(ne) < 2) return false;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight")) return false;
    if (leave_output && !strcmp(name, "output.weight")) return false;
    for (size_t i = 0; i < sizeof k_never / sizeof k_never[0]; i++)
        if (k_never[i].exact ? !strcmp(name, k_never[i].s) : strstr(name, k_never[i].s) != NULL) return false;
    return true;
}

bool smelt_policy_needs_imatrix(const char *name, int type, int ftype)
{
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight") ||
        !strcmp(name, "output.weight"))
        return false;
    switch (type) {
    case T(IQ3_XXS): case T(IQ2_XXS): case T(IQ2_XS): case T(IQ2_S): case T(IQ1_M): case T(IQ1_S): return true;
    case T(Q2_K): return ftype == F(Q2_K_S); /* only inside a Q2_K_S mix */
    default: return false;
    }
}

/* "blk.N." → N as llama.cpp reads it (sscanf "%d" semantics); false if absent. */
static bool block_number(const char *name, long *out)
{
    if (strncmp(name, "blk.", 4)) return false;
    char *end;
    long v = strtol(name + 4, &end, 10);
    if (end == name + 4) return false;
    *out = v;
    return true;
}

int smelt_policy_cmp(const char *a, const char *b)
{
    long la = -1, lb = -1;
    if (!block_number(a, &la)) la = -1;
    if (!block_number(b, &lb)) lb = -1;
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/* ==== the mix rules ==== */

/* Which part of the rule table a tensor reads: llama.cpp first separates the output
 * tensor, the MXFP4 mix, token embeddings and the very low-bit i-quant mixes. */
enum group { G_OUTPUT, G_MXFP4, G_TOKEN, G_IQLOW, G_STD };

/* Conditions (bits): facts about the model and the tensor's position. "i/n" is the
 * tensor's layer and the layer count; for attn_v it is the running count of attn_v
 * tensors and their total. */
enum {
    GQA4 = 1u << 0,    /* n_head / n_head_kv >= 4 */
    EXP8 = 1u << 1,    /* exactly 8 experts */
    EXP4 = 1u << 2,    /* at least 4 experts */
    IMX = 1u << 3,     /* an importance matrix is used */
    FIRST8 = 1u << 4,  /* i < n/8 */
    FIRST16 = 1u << 5, /* i < n/16 */
    MORE = 1u << 6,    /* "more bits" layers: i < n/8, i >= 7n/8, or every third one in between */
    MID = 1u << 7,     /* n/8 <= i < 7n/8 */
    LT2 = 1u << 8,     /* i < 2 */
    LT4 = 1u << 9,     /* i < 4 */
    M70B = 1u << 10,   /* the "70B" llama model type */
    ROWBAD = 1u << 11, /* the row length is not a multiple of the default type's block */
    DEFQ8 = 1u << 12,  /* the ftype's default type is Q8_0 */
    EXPERTS = 1u << 13,/* a stacked-experts tensor (ne[2] > 1) */
};

#define FT(x) (1ull << SMELT_FTYPE_##x)
#define ANY 0ull
#define IQLOW_FTYPES (FT(IQ2_XXS) | FT(IQ2_XS) | FT(IQ1_S) | FT(IQ2_S) | FT(IQ2_M) | FT(IQ1_M))
#define TM(x) (1ull << SMELT_TYPE_##x)

enum { SELECT, ADJUST };

typedef struct rule {
    uint8_t group, cat, kind;
    uint64_t ftypes;  /* ftypes the row applies to (ANY = all) */
    uint32_t when;    /* conditions that must hold */
    uint32_t unless;  /* conditions that must not hold */
    uint64_t from;    /* ADJUST: types it rewrites (0 = any) */
    int type;         /* the result; -1 = keep the current choice and stop */
    const char *why;
} rule;

#define KEEP (-1)
#define SEL(g, c, ft, w, u, ty, why) {g, c, SELECT, ft, w, u, 0, ty, why}
#define ADJ(g, c, from, w, ty, why) {g, c, ADJUST, ANY, w, 0, from, ty, why}

static const rule k_rules[] = {
    /* output.weight, and token_embd when the model ties it to the output */
    SEL(G_OUTPUT, C_OUTPUT, FT(MXFP4_MOE), 0, 0, T(Q8_0), "output: Q8_0 in the MXFP4 mix"),
    SEL(G_OUTPUT, C_OUTPUT, ANY, ROWBAD, 0, T(Q8_0), "output: rows do not fit the block, Q8_0"),
    SEL(G_OUTPUT, C_OUTPUT, IQLOW_FTYPES | FT(IQ3_XXS), 0, 0, T(Q5_K), "output: Q5_K in low-bit i-quant mixes"),
    SEL(G_OUTPUT, C_OUTPUT, ANY, 0, DEFQ8, T(Q6_K), "output: Q6_K"),

    /* the MXFP4 mix: experts in MXFP4, everything else Q8_0 */
    SEL(G_MXFP4, C_OTHER, ANY, EXPERTS, 0, T(MXFP4), "MXFP4 mix: experts"),
    SEL(G_MXFP4, C_OTHER, ANY, 0, 0, T(Q8_0), "MXFP4 mix: non-expert weights Q8_0"),

    /* token embeddings (not tied to the output) */
    SEL(G_TOKEN, C_TOKEN, FT(IQ2_XXS) | FT(IQ2_XS) | FT(IQ1_S) | FT(IQ1_M), 0, 0, T(Q2_K), "token_embd: Q2_K"),
    SEL(G_TOKEN, C_TOKEN, FT(IQ2_S) | FT(IQ2_M) | FT(IQ3_XXS), 0, 0, T(IQ3_S), "token_embd: IQ3_S"),
    SEL(G_TOKEN, C_TOKEN, FT(TQ1_0) | FT(TQ2_0), 0, 0, T(Q4_K), "token_embd: Q4_K in ternary mixes"),

    /* the 1-2 bit i-quant mixes */
    SEL(G_IQLOW, C_ATTN_V, ANY, GQA4, 0, T(Q4_K), "attn_v: Q4_K (GQA >= 4)"),
    SEL(G_IQLOW, C_ATTN_V, ANY, EXP4, 0, T(Q4_K), "attn_v: Q4_K (>= 4 experts)"),
    SEL(G_IQLOW, C_ATTN_V, FT(IQ2_S) | FT(IQ2_M), 0, 0, T(IQ3_S), "attn_v: IQ3_S"),
    SEL(G_IQLOW, C_ATTN_V, ANY, 0, 0, T(Q2_K), "attn_v: Q2_K"),
    SEL(G_IQLOW, C_ATTN_K, ANY, EXP8, 0, T(Q4_K), "attn_k: Q4_K (8 experts)"),
    SEL(G_IQLOW, C_FFN_DOWN, FT(IQ2_S) | FT(IQ2_M), FIRST8, 0, T(IQ3_S), "ffn_down: first eighth of layers IQ3_S"),
    SEL(G_IQLOW, C_FFN_DOWN, ANY, FIRST8, 0, T(Q2_K), "ffn_down: first eighth of layers Q2_K"),
    SEL(G_IQLOW, C_ATTN_O, ANY, EXP8, 0, T(Q5_K), "attn_output: Q5_K (8 experts)"),
    SEL(G_IQLOW, C_ATTN_O, FT(IQ1_S) | FT(IQ1_M), 0, 0, T(IQ2_XXS), "attn_output: IQ2_XXS"),
    SEL(G_IQLOW, C_ATTN_O, FT(IQ2_S) | FT(IQ2_M), 0, 0, T(IQ3_S), "attn_output: IQ3_S"),

    /* everything else: attn_v (also attn_qkv, attn_kv_b) */
    SEL(G_STD, C_ATTN_V, FT(Q2_K), GQA4, 0, T(Q4_K), "attn_v: Q4_K (GQA >= 4)"),
    SEL(G_STD, C_ATTN_V, FT(Q2_K), 0, 0, T(Q3_K), "attn_v: Q3_K"),
    SEL(G_STD, C_ATTN_V, FT(Q2_K_S), GQA4, 0, T(Q4_K), "attn_v: Q4_K (GQA >= 4)"),
    SEL(G_STD, C_ATTN_V, FT(IQ3_XXS), GQA4, 0, T(Q4_K), "attn_v: Q4_K (GQA >= 4)"),
    SEL(G_STD, C_ATTN_V, FT(IQ3_XXS), 0, IMX, T(IQ3_S), "attn_v: IQ3_S without an imatrix"),
    SEL(G_STD, C_ATTN_V, FT(IQ3_XXS), 0, 0, T(IQ3_XXS), "attn_v: IQ3_XXS"),
    SEL(G_STD, C_ATTN_V, FT(IQ3_XS) | FT(IQ3_S), GQA4, 0, T(Q4_K), "attn_v: Q4_K (GQA >= 4)"),
    SEL(G_STD, C_ATTN_V, FT(IQ3_M), 0, 0, T(Q4_K), "attn_v: Q4_K"),
    SEL(G_STD, C_ATTN_V, FT(Q3_K_M), LT2, 0, T(Q5_K), "attn_v: first two Q5_K"),
    SEL(G_STD, C_ATTN_V, FT(Q3_K_M), 0, 0, T(Q4_K), "attn_v: Q4_K"),
    SEL(G_STD, C_ATTN_V, FT(Q3_K_L), 0, 0, T(Q5_K), "attn_v: Q5_K"),
    SEL(G_STD, C_ATTN_V, FT(IQ4_NL) | FT(IQ4_XS), GQA4, 0, T(Q5_K), "attn_v: Q5_K (GQA >= 4)"),
    SEL(G_STD, C_ATTN_V, FT(Q4_K_M) | FT(Q5_K_M), MORE, 0, T(Q6_K), "attn_v: more-bits layers Q6_K"),
    SEL(G_STD, C_ATTN_V, FT(Q4_K_S), LT4, 0, T(Q5_K), "attn_v: first four Q5_K"),
    ADJ(G_STD, C_ATTN_V, TM(Q3_K) | TM(Q4_K), M70B, T(Q5_K), "attn_v: Q5_K in the 70B model"),
    ADJ(G_STD, C_ATTN_V, 0, EXP8, T(Q8_0), "attn_v: Q8_0 (8 experts)"),
    /* attn_k, attn_q */
    SEL(G_STD, C_ATTN_K, ANY, EXP8, 0, T(Q8_0), "attn_k: Q8_0 (8 experts)"),
    SEL(G_STD, C_ATTN_K, FT(IQ3_XS), 0, 0, T(IQ3_XXS), "attn_k: IQ3_XXS"),
    SEL(G_STD, C_ATTN_K, FT(IQ3_XXS), 0, 0, T(IQ2_S), "attn_k: IQ2_S"),
    SEL(G_STD, C_ATTN_Q, FT(IQ3_XS), 0, 0, T(IQ3_XXS), "attn_q: IQ3_XXS"),
    SEL(G_STD, C_ATTN_Q, FT(IQ3_XXS), 0, 0, T(IQ2_S), "attn_q: IQ2_S"),
    /* ffn_down */
    SEL(G_STD, C_FFN_DOWN, FT(Q2_K), 0, 0, T(Q3_K), "ffn_down: Q3_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q2_K_S), FIRST8, 0, T(Q4_K), "ffn_down: first eighth of layers Q4_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q2_K_S), 0, 0, KEEP, NULL),
    SEL(G_STD, C_FFN_DOWN, FT(IQ3_XXS), FIRST8, IMX, T(Q4_K), "ffn_down: first eighth Q4_K without an imatrix"),
    SEL(G_STD, C_FFN_DOWN, FT(IQ3_XXS), 0, IMX, T(Q3_K), "ffn_down: Q3_K without an imatrix"),
    SEL(G_STD, C_FFN_DOWN, FT(Q3_K_M), FIRST16, 0, T(Q5_K), "ffn_down: first sixteenth of layers Q5_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q3_K_M), 0, 0, T(Q4_K), "ffn_down: Q4_K"),
    SEL(G_STD, C_FFN_DOWN, FT(IQ3_M), FIRST8, 0, T(Q4_K), "ffn_down: first eighth of layers Q4_K"),
    SEL(G_STD, C_FFN_DOWN, FT(IQ3_M), EXP8 | MORE, 0, T(Q4_K), "ffn_down: more-bits layers Q4_K (8 experts)"),
    SEL(G_STD, C_FFN_DOWN, FT(Q3_K_L), 0, 0, T(Q5_K), "ffn_down: Q5_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q4_K_M), MORE, 0, T(Q6_K), "ffn_down: more-bits layers Q6_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q4_K_M), 0, 0, KEEP, NULL),
    SEL(G_STD, C_FFN_DOWN, FT(IQ4_NL) | FT(IQ4_XS), FIRST8, IMX, T(Q5_K), "ffn_down: first eighth Q5_K without an imatrix"),
    SEL(G_STD, C_FFN_DOWN, FT(Q5_K_M), MORE, 0, T(Q6_K), "ffn_down: more-bits layers Q6_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q4_K_S), FIRST8, 0, T(Q5_K), "ffn_down: first eighth of layers Q5_K"),
    SEL(G_STD, C_FFN_DOWN, FT(Q4_0), IMX | FIRST8, 0, T(Q4_1), "ffn_down: first eighth Q4_1 with an imatrix"),
    SEL(G_STD, C_FFN_DOWN, FT(Q5_0), IMX | FIRST8, 0, T(Q5_1), "ffn_down: first eighth Q5_1 with an imatrix"),
    /* attn_output */
    SEL(G_STD, C_ATTN_O, FT(Q2_K) | FT(IQ3_XS) | FT(IQ3_XXS) | FT(Q3_K_S) | FT(Q3_K_M) | FT(IQ4_NL) | FT(Q4_K_S) |
        FT(Q4_K_M) | FT(IQ3_S) | FT(IQ3_M) | FT(IQ4_XS), EXP8, 0, T(Q5_K), "attn_output: Q5_K (8 experts)"),
    SEL(G_STD, C_ATTN_O, ANY, EXP8, 0, KEEP, NULL),
    SEL(G_STD, C_ATTN_O, FT(Q2_K), 0, 0, T(Q3_K), "attn_output: Q3_K"),
    SEL(G_STD, C_ATTN_O, FT(IQ3_XXS), 0, 0, T(IQ3_S), "attn_output: IQ3_S"),
    SEL(G_STD, C_ATTN_O, FT(Q3_K_M) | FT(IQ3_M), 0, 0, T(Q4_K), "attn_output: Q4_K"),
    SEL(G_STD, C_ATTN_O, FT(Q3_K_L), 0, 0, T(Q5_K), "attn_output: Q5_K"),
    /* ffn_gate, ffn_up */
    SEL(G_STD, C_FFN_GATE, FT(IQ3_XS), MID, 0, T(IQ3_XXS), "ffn_gate: middle layers IQ3_XXS"),
    SEL(G_STD, C_FFN_UP, FT(IQ3_XS), MID, 0, T(IQ3_XXS), "ffn_up: middle layers IQ3_XXS"),
};

/* Where the row length does not fit the chosen block: the nearest type with blocks of
 * 32; a type with no entry and blocks of at most 32 stays (then F16 if still unfit). */
static const struct { int from, to; } k_fallback[] = {
    {T(IQ1_S), T(IQ4_NL)},  {T(IQ1_M), T(IQ4_NL)}, {T(IQ2_XXS), T(IQ4_NL)}, {T(IQ2_XS), T(IQ4_NL)},
    {T(IQ2_S), T(IQ4_NL)},  {T(IQ3_XXS), T(IQ4_NL)}, {T(IQ3_S), T(IQ4_NL)}, {T(IQ4_XS), T(IQ4_NL)},
    {T(Q2_0), T(Q4_0)},     {T(Q2_K), T(Q4_0)},    {T(Q3_K), T(Q4_0)},      {T(TQ1_0), T(Q4_0)},
    {T(TQ2_0), T(Q4_0)},    {T(Q4_K), T(Q5_0)},    {T(Q5_K), T(Q5_1)},      {T(Q6_K), T(Q8_0)},
};

static uint32_t blck(int type)
{
    const smelt_type_info *ti = smelt_type_get(type);
    return ti && ti->blck ? ti->blck : 1;
}

/* ==== evaluation ==== */

typedef struct state {
    const smelt_policy_model *m;
    const smelt_policy_opts *o;
    int default_type;
    bool tied; /* no output.weight: token_embd doubles as the output */
    long n_attn_v, i_attn_v, i_down, i_gate, i_up;
    regex_t *re;
    size_t n_re;
} state;

static bool more_bits(long i, long n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static unsigned position_bits(long i, long n)
{
    unsigned c = 0;
    if (i < n / 8) c |= FIRST8;
    if (i < n / 16) c |= FIRST16;
    if (more_bits(i, n)) c |= MORE;
    if (i >= n / 8 && i < 7 * n / 8) c |= MID;
    if (i < 2) c |= LT2;
    if (i < 4) c |= LT4;
    return c;
}

/* Layer of a dense-or-MoE ffn tensor: the running count for dense models, the block
 * number in the name for MoE models (whose expert tensors need not be in layer order). */
static int ffn_layer(const state *s, const smelt_policy_tensor *t, long counter, long *out, smelt_err *e)
{
    if (s->m->n_expert <= 1) {
        *out = counter;
        return 0;
    }
    long l;
    if (!block_number(t->name, &l))
        return SMELT_ERR(e, SMELT_EFORMAT, NULL, t->name, "expected a layer number (blk.N.) in the name of an MoE ffn tensor");
    if (l < 0 || l >= (long)s->m->n_layer)
        return SMELT_ERR(e, SMELT_EFORMAT, NULL, t->name, "layer %ld is outside [0, %" PRIu32 ")", l, s->m->n_layer);
    *out = l;
    return 0;
}

static int mix_type(state *s, smelt_policy_tensor *t, enum cat c, int type, smelt_err *e)
{
    const smelt_policy_model *m = s->m;
    int ft = s->o->ftype;
    enum group g;
    if (c == C_OUTPUT || (s->tied && c == C_TOKEN)) {
        if (s->o->output_tensor_type >= 0) {
            t->flags |= SMELT_PT_MANUAL;
            return s->o->output_tensor_type;
        }
        g = G_OUTPUT;
        c = C_OUTPUT;
    } else if (ft == F(MXFP4_MOE)) {
        g = G_MXFP4;
        c = C_OTHER;
    } else if (c == C_TOKEN) {
        g = G_TOKEN;
    } else if ((1ull << ft) & IQLOW_FTYPES) {
        g = G_IQLOW;
    } else {
        g = G_STD;
    }

    unsigned cond = 0;
    uint32_t gqa = m->n_head_kv ? m->n_head / m->n_head_kv : 0;
    if (gqa >= 4) cond |= GQA4;
    if (m->n_expert == 8) cond |= EXP8;
    if (m->n_expert >= 4) cond |= EXP4;
    if (s->o->has_imatrix) cond |= IMX;
    if (m->is_70b) cond |= M70B;
    if (t->ne[0] % blck(type)) cond |= ROWBAD;
    if (type == T(Q8_0)) cond |= DEFQ8;
    if (t->ne[2] > 1) cond |= EXPERTS;
    long layer;
    int rc;
    if (g == G_STD || g == G_IQLOW) {
        switch (c) {
        case C_ATTN_V: cond |= position_bits(s->i_attn_v, s->n_attn_v); break;
        case C_FFN_DOWN:
            if (g == G_IQLOW) layer = s->i_down;
            else if ((rc = ffn_layer(s, t, s->i_down, &layer, e))) return rc;
            cond |= position_bits(layer, m->n_layer);
            break;
        case C_FFN_GATE:
        case C_FFN_UP:
            if (g == G_STD) {
                if ((rc = ffn_layer(s, t, c == C_FFN_GATE ? s->i_gate : s->i_up, &layer, e))) return rc;
                cond |= position_bits(layer, m->n_layer);
            }
            break;
        default: break;
        }
    }

    int out = type;
    bool selected = false;
    for (size_t i = 0; i < sizeof k_rules / sizeof k_rules[0]; i++) {
        const rule *r = &k_rules[i];
        if (r->group != g || r->cat != c) continue;
        if (r->ftypes && !(r->ftypes & (1ull << ft))) continue;
        if ((cond & r->when) != r->when || (cond & r->unless)) continue;
        if (r->kind == SELECT) {
            if (selected) continue;
            selected = true;
            if (r->type != KEEP) {
                out = r->type;
                t->rule = r->why;
            }
        } else if (!r->from || (r->from & (1ull << out))) {
            out = r->type;
            t->rule = r->why;
        }
    }

    /* the running counts, advanced where llama.cpp advances them */
    if (g == G_STD || g == G_IQLOW) {
        if (c == C_ATTN_V) s->i_attn_v++;
        if (c == C_FFN_DOWN) s->i_down++;
        if (g == G_STD && c == C_FFN_GATE) s->i_gate++;
        if (g == G_STD && c == C_FFN_UP) s->i_up++;
    }
    return out;
}

static int fallback(smelt_policy_tensor *t, int type, smelt_err *e)
{
    uint32_t b = blck(type);
    if (t->ne[0] % b == 0) return type;
    int to = -1;
    for (size_t i = 0; i < sizeof k_fallback / sizeof k_fallback[0]; i++)
        if (k_fallback[i].from == type) to = k_fallback[i].to;
    if (to < 0) {
        if (b > 32)
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, t->name,
                             "row length %" PRIu64 " is not a multiple of the %s block (%u) and %s has no fallback type",
                             t->ne[0], smelt_type_name(type), b, smelt_type_name(type));
        to = type;
    }
    if (t->ne[0] % blck(to)) to = T(F16);
    t->flags |= SMELT_PT_FALLBACK;
    return to;
}

/* An explicitly requested type must fit the rows; llama.cpp would abort here. */
static int check_explicit(const smelt_policy_tensor *t, int type, const char *opt, smelt_err *e)
{
    if (t->ne[0] % blck(type))
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, t->name,
                         "%s %s: row length %" PRIu64 " is not a multiple of the %s block size %u", opt,
                         smelt_type_name(type), t->ne[0], smelt_type_name(type), blck(type));
    return 0;
}

static int plan_one(state *s, smelt_policy_tensor *t, smelt_err *e)
{
    const smelt_policy_opts *o = s->o;
    enum cat c = category(t->name);
    t->new_type = t->type;
    t->rule = NULL;
    t->flags = 0;
    if (o->copy || !smelt_policy_quantizable(t->name, t->ne, o->leave_output)) {
        t->flags |= SMELT_PT_KEPT;
        return 0;
    }
    if (o->token_embedding_type >= 0 && c == C_TOKEN) {
        bool named = false;
        if (!strcmp(t->name, "per_layer_token_embd.weight"))
            for (size_t i = 0; i < s->n_re && !named; i++) named = !regexec(&s->re[i], t->name, 0, NULL, 0);
        if (!named) {
            t->new_type = o->token_embedding_type;
            t->flags |= SMELT_PT_MANUAL;
            return check_explicit(t, t->new_type, "--token-embedding-type", e);
        }
    }
    if (o->output_tensor_type >= 0 && c == C_OUTPUT) {
        t->new_type = o->output_tensor_type;
        t->flags |= SMELT_PT_MANUAL;
        return check_explicit(t, t->new_type, "--output-tensor-type", e);
    }
    int type = s->default_type;
    if (smelt_type_is_quantized(type)) {
        bool manual = false;
        for (size_t i = 0; i < s->n_re; i++)
            if (!regexec(&s->re[i], t->name, 0, NULL, 0)) {
                type = o->overrides[i].type;
                manual = true;
                t->flags |= SMELT_PT_MANUAL;
                break;
            }
        if (!manual && !o->pure) {
            int r = mix_type(s, t, c, type, e);
            if (r < 0) return r;
            if (r != s->default_type && !(t->flags & SMELT_PT_MANUAL)) t->flags |= SMELT_PT_MIX;
            type = r;
        }
        type = fallback(t, type, e);
        if (type < 0) return type;
    }
    t->new_type = type;
    return 0;
}

int smelt_policy_plan(const smelt_policy_model *m, const smelt_policy_opts *o, smelt_policy_tensor *t,
                      size_t n, smelt_err *e)
{
    const smelt_ftype_info *fi = smelt_ftype_by_id(o->ftype);
    if (!fi && !o->copy) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "unknown ftype %d", o->ftype);
    state s = {m, o, fi ? fi->default_type : T(F32), true, 0, 0, 0, 0, 0, NULL, 0};
    for (size_t i = 0; i < n; i++) {
        enum cat c = category(t[i].name);
        if (c == C_ATTN_V) s.n_attn_v++;
        if (c == C_OUTPUT) s.tied = false;
    }
    int rc = 0;
    if (o->n_overrides) {
        s.re = calloc(o->n_overrides, sizeof *s.re);
        if (!s.re) return SMELT_NOMEM(e, "tensor type patterns");
        for (; s.n_re < o->n_overrides; s.n_re++) {
            const char *pat = o->overrides[s.n_re].pattern;
            char *low = strdup(pat); /* llama-quantize lower-cases the pattern */
            if (!low) {
                rc = SMELT_NOMEM(e, "pattern");
                break;
            }
            for (char *p = low; *p; p++) *p = (char)tolower((unsigned char)*p);
            int r = regcomp(&s.re[s.n_re], low, REG_EXTENDED | REG_NOSUB);
            free(low);
            if (r) {
                char msg[128];
                regerror(r, &s.re[s.n_re], msg, sizeof msg);
                rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--tensor-type pattern '%s': %s", pat, msg);
                break;
            }
        }
    }
    for (size_t i = 0; !rc && i < n; i++) {
        rc = plan_one(&s, &t[i], e);
        if (!rc && !(t[i].flags & SMELT_PT_KEPT) && smelt_policy_needs_imatrix(t[i].name, t[i].new_type, o->ftype))
            t[i].flags |= SMELT_PT_NEEDS_IMX;
    }
    for (size_t i = 0; i < s.n_re; i++) regfree(&s.re[i]);
    free(s.re);
    return rc;
}

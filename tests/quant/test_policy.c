/* test_policy.c — ftype names and the per-tensor mix rules: pinned by schema snapshots
 * (tests/quant/snapshots/, llama.cpp's snapshot format) on four model shapes, and checked
 * against llama.cpp itself: its quantizer's test hooks in libllama (every ftype, options
 * too) and its own Llama-3.1-70B snapshot in the source tree. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "formats/ggml_types.h"
#include "quant/policy.h"
#include "tests/common/quantize_plans.h"

/* ==== ftype names ==== */

Test(policy, ftype_names_as_llama_quantize)
{
    static const char *names[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M",
                                  "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32",
                                  "COPY", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS",
                                  "IQ3_S", "IQ3_M", "IQ3_XS", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4_MOE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const smelt_ftype_info *f = smelt_ftype_find(names[i]);
        cr_assert(f, "%s", names[i]);
        cr_assert_str_eq(f->name, names[i]);
    }
    cr_assert_eq(smelt_ftype_find("q4_k_m")->ftype, SMELT_FTYPE_Q4_K_M);
    cr_assert_str_eq(smelt_ftype_find("Q3_K")->alias_of, "Q3_K_M");
    cr_assert_eq(smelt_ftype_find("Q4_K")->ftype, SMELT_FTYPE_Q4_K_M);
    cr_assert_eq(smelt_ftype_find("Q5_K")->ftype, SMELT_FTYPE_Q5_K_M);
    cr_assert_eq(smelt_ftype_find("15")->ftype, SMELT_FTYPE_Q4_K_M);
    cr_assert_str_eq(smelt_ftype_find("15")->name, "Q4_K", "first entry with the number, as llama-quantize");
    cr_assert_str_eq(smelt_ftype_find("0")->name, "F32", "0 is F32, not COPY");
    cr_assert(smelt_ftype_find("COPY")->copy);
    cr_assert_null(smelt_ftype_find("Q4_K_X"));
    cr_assert_null(smelt_ftype_find("4"));
    cr_assert_null(smelt_ftype_find(""));
    cr_assert_eq(smelt_ftype_by_id(SMELT_FTYPE_Q3_K_M)->alias_of, NULL);
    cr_assert_eq(smelt_ftype_find("Q2_K_S")->default_type, SMELT_TYPE_Q2_K);
    cr_assert_eq(smelt_ftype_find("IQ2_M")->default_type, SMELT_TYPE_IQ2_S);
    cr_assert_eq(smelt_ftype_find("IQ3_XS")->default_type, SMELT_TYPE_IQ3_S);
}

Test(policy, ftype_guess_like_llama_loader)
{
    int a[] = {SMELT_TYPE_F32, SMELT_TYPE_Q4_K, SMELT_TYPE_Q4_K, SMELT_TYPE_Q6_K};
    cr_assert_eq(smelt_ftype_guess(a, 4), SMELT_FTYPE_Q4_K_M | SMELT_FTYPE_GUESSED);
    int b[] = {SMELT_TYPE_F16, SMELT_TYPE_F32, SMELT_TYPE_F32, SMELT_TYPE_F16};
    cr_assert_eq(smelt_ftype_guess(b, 4), SMELT_FTYPE_F32 | SMELT_FTYPE_GUESSED, "ties: the first to reach the count");
}

Test(policy, quantizable_names)
{
    uint64_t m[4] = {256, 256, 1, 1}, v[4] = {256, 1, 1, 1};
    cr_assert(smelt_policy_quantizable("blk.0.attn_q.weight", m, false));
    cr_assert_not(smelt_policy_quantizable("blk.0.attn_norm.weight", m, false));
    cr_assert_not(smelt_policy_quantizable("blk.0.ffn_gate_inp.weight", m, false));
    cr_assert_not(smelt_policy_quantizable("blk.0.attn_q.bias", m, false));
    cr_assert_not(smelt_policy_quantizable("blk.0.attn_q.weight", v, false), "1-D");
    cr_assert_not(smelt_policy_quantizable("output.weight", m, true));
    cr_assert(smelt_policy_quantizable("output.weight", m, false));
    cr_assert_not(smelt_policy_quantizable("position_embd.weight", m, false));
    cr_assert(smelt_policy_needs_imatrix("blk.0.ffn_down.weight", SMELT_TYPE_Q2_K, SMELT_FTYPE_Q2_K_S));
    cr_assert_not(smelt_policy_needs_imatrix("blk.0.ffn_down.weight", SMELT_TYPE_Q2_K, SMELT_FTYPE_Q2_K));
    cr_assert_not(smelt_policy_needs_imatrix("token_embd.weight", SMELT_TYPE_IQ2_XXS, SMELT_FTYPE_IQ2_XXS));
    cr_assert(smelt_policy_needs_imatrix("blk.0.attn_q.weight", SMELT_TYPE_IQ1_M, SMELT_FTYPE_IQ1_M));
    cr_assert_lt(smelt_policy_cmp("output.weight", "blk.0.attn_q.weight"), 0, "non-block tensors first");
    cr_assert_lt(smelt_policy_cmp("blk.2.x", "blk.10.a"), 0, "by block number, not by text");
}

/* ==== plans ==== */

typedef struct plan {
    qr_tensor t[QR_MAX_TENSORS];
    smelt_policy_tensor pt[QR_MAX_TENSORS];
    size_t n;
} plan;

static int cmp_qt(const void *a, const void *b)
{
    return smelt_policy_cmp(((const qr_tensor *)a)->name, ((const qr_tensor *)b)->name);
}

static smelt_policy_model model_of(const qr_shape *s)
{
    smelt_policy_model m = {s->n_layer, s->n_head, s->n_head_kv, s->n_expert,
                            s->n_layer == 80 && s->n_head != s->n_head_kv};
    return m;
}

/* Plan all tensors of a shape (sorted as llama.cpp does). */
static int make_plan(plan *p, const qr_shape *s, const smelt_policy_opts *o, smelt_err *e)
{
    p->n = qr_shape_tensors(s, p->t);
    qsort(p->t, p->n, sizeof p->t[0], cmp_qt);
    for (size_t i = 0; i < p->n; i++) {
        p->pt[i].name = p->t[i].name;
        memcpy(p->pt[i].ne, p->t[i].ne, sizeof p->t[i].ne);
        p->pt[i].type = p->t[i].type;
    }
    smelt_policy_model m = model_of(s);
    return smelt_policy_plan(&m, o, p->pt, p->n, e);
}

static smelt_policy_opts opts_for(const smelt_ftype_info *f, bool imx)
{
    smelt_policy_opts o = {f->ftype, f->copy, -1, -1, false, false, imx, NULL, 0};
    return o;
}

/* Our snapshot text for a shape, with or without an imatrix. */
static char *snapshot_text(const qr_shape *s, bool imx)
{
    static plan p;
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
#define PUT(...) (len += (size_t)snprintf(out + len, cap - len, __VA_ARGS__))
    PUT("# Model: %s (smelt policy%s)\n", s->name, imx ? ", with an importance matrix" : "");
    PUT("# n_embd=%u, n_ff=%u, n_vocab=%u, n_layer=%u, n_head=%u, n_head_kv=%u", s->n_embd, s->n_ff, s->n_vocab,
        s->n_layer, s->n_head, s->n_head_kv);
    if (s->n_expert) PUT(", n_expert=%u", s->n_expert);
    PUT("\n");
    const smelt_ftype_info *fts[64];
    size_t nf = qr_snapshot_ftypes(fts);
    for (size_t k = 0; k < nf; k++) {
        smelt_policy_opts o = opts_for(fts[k], imx);
        smelt_err e;
        cr_assert_eq(make_plan(&p, s, &o, &e), 0, "%s %s: %s", s->name, fts[k]->name, e.msg);
        PUT("\n[%s] %s\n", fts[k]->name, smelt_type_name(fts[k]->default_type));
        for (size_t i = 0; i < p.n; i++)
            if (!(p.pt[i].flags & SMELT_PT_KEPT) && p.pt[i].new_type != fts[k]->default_type)
                PUT("%s %s\n", p.pt[i].name, smelt_type_name(p.pt[i].new_type));
    }
#undef PUT
    return out;
}

Test(policy, snapshots)
{
    bool update = getenv("SMELT_UPDATE_SNAPSHOTS") != NULL;
    for (size_t k = 0; k < QR_N_SHAPES; k++)
        for (int imx = 0; imx < 2; imx++) {
            char rel[256], path[4096];
            snprintf(rel, sizeof rel, "tests/quant/snapshots/%s%s.schema", qr_shapes[k].name, imx ? ".imatrix" : "");
            tu_path(path, sizeof path, rel);
            char *txt = snapshot_text(&qr_shapes[k], imx);
            if (update) {
                cr_assert_eq(tu_write(path, txt, strlen(txt)), 0);
            } else {
                size_t len;
                char *want = (char *)tu_read(path, &len);
                cr_assert(want, "missing %s (SMELT_UPDATE_SNAPSHOTS=1 writes it)", rel);
                cr_assert(len == strlen(txt) && !memcmp(want, txt, len), "%s differs from the policy", rel);
                free(want);
            }
            free(txt);
        }
    if (update) cr_skip_test("snapshots rewritten");
}

/* The snapshot pins real behaviour: spot checks of rules that are easy to state. */
Test(policy, mix_rules_spot_checks)
{
    static plan p;
    smelt_err e;
    smelt_policy_opts o = opts_for(smelt_ftype_find("Q4_K_M"), false);
    cr_assert_eq(make_plan(&p, &qr_shapes[1], &o, &e), 0);
    for (size_t i = 0; i < p.n; i++) {
        const char *n = p.pt[i].name;
        int want = -1;
        if (!strcmp(n, "output.weight")) want = SMELT_TYPE_Q6_K;
        else if (!strcmp(n, "token_embd.weight")) want = SMELT_TYPE_Q4_K;
        else if (strstr(n, "attn_v.weight") || strstr(n, "attn_k.weight")) want = SMELT_TYPE_Q8_0; /* 8 experts */
        else if (strstr(n, "attn_output.weight")) want = SMELT_TYPE_Q5_K;
        else if (!strcmp(n, "blk.0.ffn_down_exps.weight") || !strcmp(n, "blk.31.ffn_down_exps.weight") ||
                 !strcmp(n, "blk.6.ffn_down_exps.weight"))
            want = SMELT_TYPE_Q6_K; /* first/last eighth, every third in between (4 + 2 = 6) */
        else if (!strcmp(n, "blk.5.ffn_down_exps.weight")) want = SMELT_TYPE_Q4_K;
        if (want >= 0) cr_assert_eq(p.pt[i].new_type, want, "%s: %s", n, smelt_type_name(p.pt[i].new_type));
    }
    /* dense-odd: 2880-wide rows do not fit 256-blocks, 1000 fit no block at all */
    o = opts_for(smelt_ftype_find("Q4_K_M"), false);
    cr_assert_eq(make_plan(&p, &qr_shapes[3], &o, &e), 0);
    for (size_t i = 0; i < p.n; i++) {
        const char *n = p.pt[i].name;
        if (!strcmp(n, "token_embd.weight")) /* tied: output rules; row unfit → Q8_0 */
            cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_Q8_0);
        if (!strcmp(n, "blk.3.attn_q.weight")) {
            cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_Q5_0, "q4_K falls back to q5_0");
            cr_assert(p.pt[i].flags & SMELT_PT_FALLBACK);
        }
        if (!strcmp(n, "blk.3.ffn_down.weight")) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_F16, "1000 fits no block");
    }
}

Test(policy, options)
{
    static plan p;
    smelt_err e;
    smelt_policy_override ov[] = {{"ATTN_V", SMELT_TYPE_Q8_0}, {"blk\\.[0-9]+\\.ffn_down", SMELT_TYPE_Q5_K}};
    smelt_policy_opts o = opts_for(smelt_ftype_find("Q4_K_M"), false);
    o.overrides = ov;
    o.n_overrides = 2;
    o.output_tensor_type = SMELT_TYPE_Q8_0;
    o.token_embedding_type = SMELT_TYPE_F16;
    cr_assert_eq(make_plan(&p, &qr_shapes[0], &o, &e), 0, "%s", e.msg);
    for (size_t i = 0; i < p.n; i++) {
        const char *n = p.pt[i].name;
        if (strstr(n, "attn_v")) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_Q8_0, "pattern lower-cased");
        if (strstr(n, "ffn_down")) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_Q5_K);
        if (!strcmp(n, "output.weight")) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_Q8_0);
        if (!strcmp(n, "token_embd.weight")) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_F16);
        if (strstr(n, "attn_v") || strstr(n, "ffn_down")) cr_assert(p.pt[i].flags & SMELT_PT_MANUAL);
    }
    o = opts_for(smelt_ftype_find("Q3_K_M"), false);
    o.pure = true;
    o.leave_output = true;
    cr_assert_eq(make_plan(&p, &qr_shapes[0], &o, &e), 0);
    for (size_t i = 0; i < p.n; i++) {
        if (!strcmp(p.pt[i].name, "output.weight")) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_F16, "left as is");
        else if (!(p.pt[i].flags & SMELT_PT_KEPT)) cr_assert_eq(p.pt[i].new_type, SMELT_TYPE_Q3_K, "%s", p.pt[i].name);
    }
}

Test(policy, errors)
{
    static plan p;
    smelt_err e;
    smelt_policy_override bad[] = {{"attn_(v", SMELT_TYPE_Q8_0}};
    smelt_policy_opts o = opts_for(smelt_ftype_find("Q4_K_M"), false);
    o.overrides = bad;
    o.n_overrides = 1;
    cr_assert_eq(make_plan(&p, &qr_shapes[0], &o, &e), SMELT_EUSAGE);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_assert_str_eq(line, "--tensor-type pattern 'attn_(v': Unmatched ( or \\(");
    o = opts_for(smelt_ftype_find("Q8_0"), false);
    o.output_tensor_type = SMELT_TYPE_Q4_K;
    cr_assert_eq(make_plan(&p, &qr_shapes[3], &o, &e), 0, "tied: no output.weight, nothing to check");
    o.token_embedding_type = SMELT_TYPE_Q4_K;
    cr_assert_eq(make_plan(&p, &qr_shapes[3], &o, &e), SMELT_EUSAGE);
    smelt_err_format(&e, line, sizeof line);
    cr_assert_str_eq(line, "'token_embd.weight': --token-embedding-type q4_K: row length 2880 is not a multiple of "
                           "the q4_K block size 256");
    /* an MoE model whose ffn tensor carries no block number */
    smelt_policy_tensor t[2] = {{"ffn_down_exps.weight", {256, 256, 4, 1}, SMELT_TYPE_F16, 0, 0, NULL},
                                {"blk.9.ffn_up_exps.weight", {256, 256, 4, 1}, SMELT_TYPE_F16, 0, 0, NULL}};
    smelt_policy_model m = {4, 8, 2, 4, false};
    o = opts_for(smelt_ftype_find("Q4_K_M"), false);
    cr_assert_eq(smelt_policy_plan(&m, &o, t, 1, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    cr_assert_str_eq(line, "'ffn_down_exps.weight': expected a layer number (blk.N.) in the name of an MoE ffn tensor");
    cr_assert_eq(smelt_policy_plan(&m, &o, t + 1, 1, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    cr_assert_str_eq(line, "'blk.9.ffn_up_exps.weight': layer 9 is outside [0, 4)");
}

/* ==== against llama.cpp ==== */

static const char *type_or_default(int t) { return smelt_type_name(t); }

typedef struct variant {
    const char *name;
    void (*lq)(lq_params *, void *);
    void (*sm)(smelt_policy_opts *);
} variant;

static lq_tt k_tt[] = {{"attn_v", SMELT_TYPE_Q8_0}, {"blk\\.[0-9]+\\.ffn_down", SMELT_TYPE_Q5_K}, {NULL, 39}};
static smelt_policy_override k_ov[] = {{"attn_v", SMELT_TYPE_Q8_0}, {"blk\\.[0-9]+\\.ffn_down", SMELT_TYPE_Q5_K}};

static void lq_none(lq_params *p, void *u) { (void)p, (void)u; }
static void sm_none(smelt_policy_opts *o) { (void)o; }
static void lq_pure(lq_params *p, void *u) { (void)u, p->pure = true; }
static void sm_pure(smelt_policy_opts *o) { o->pure = true; }
static void lq_types(lq_params *p, void *u)
{
    (void)u;
    p->output_tensor_type = SMELT_TYPE_Q8_0;
    p->token_embedding_type = SMELT_TYPE_Q8_0;
}
static void sm_types(smelt_policy_opts *o) { o->output_tensor_type = o->token_embedding_type = SMELT_TYPE_Q8_0; }
static void lq_leave(lq_params *p, void *u) { (void)u, p->quantize_output_tensor = false; }
static void sm_leave(smelt_policy_opts *o) { o->leave_output = true; }
static void lq_tts(lq_params *p, void *u) { (void)u, p->tt_overrides = k_tt; }
static void sm_tts(smelt_policy_opts *o)
{
    o->overrides = k_ov;
    o->n_overrides = 2;
}

static const variant k_variants[] = {
    {"default", lq_none, sm_none}, {"pure", lq_pure, sm_pure},         {"output/token types", lq_types, sm_types},
    {"leave output", lq_leave, sm_leave}, {"tensor types", lq_tts, sm_tts},
};

Test(policy, equals_llama_cpp_hooks, .timeout = 120)
{
    const lq_api *a = lq_get();
    if (!a) cr_skip_test("llama.cpp oracle (libllama with the llama_quant_* hooks) not installed");
    static plan p;
    static int types[QR_MAX_TENSORS];
    const smelt_ftype_info *fts[64];
    size_t nf = qr_snapshot_ftypes(fts), checked = 0, bad = 0;
    for (size_t k = 0; k < QR_N_SHAPES; k++)
        for (size_t v = 0; v < sizeof k_variants / sizeof k_variants[0]; v++) {
            if (v && k == 2) continue; /* options on the 70B list add nothing the others miss */
            for (size_t f = 0; f < nf; f++) {
                smelt_policy_opts o = opts_for(fts[f], false);
                k_variants[v].sm(&o);
                smelt_err e;
                int rc = make_plan(&p, &qr_shapes[k], &o, &e);
                if (rc) {
                    /* llama.cpp would crash on these (explicit type that does not fit the rows) */
                    cr_assert_eq(rc, SMELT_EUSAGE, "%s", e.msg);
                    continue;
                }
                /* every tensor, as llama.cpp's own pass sees them (tied-output and attn_v counts
                 * look at all names); tensors it does not quantize come back as their type */
                lq_mock_plan(a, &qr_shapes[k], p.t, p.n, fts[f]->ftype, k_variants[v].lq, NULL, types);
                for (size_t i = 0; i < p.n; i++) {
                    if (p.pt[i].flags & SMELT_PT_KEPT) continue;
                    checked++;
                    if (types[i] != p.pt[i].new_type && bad++ < 10)
                        cr_log_error("%s %s [%s]: %s llama.cpp %s, smelt %s", qr_shapes[k].name, fts[f]->name,
                                     k_variants[v].name, p.pt[i].name, type_or_default(types[i]),
                                     smelt_type_name(p.pt[i].new_type));
                }
            }
        }
    cr_assert_eq(bad, 0, "%zu of %zu tensor plans differ from llama.cpp", bad, checked);
    cr_assert_gt(checked, 50000);
}

Test(policy, equals_llama_cpp_70b_snapshot)
{
    const char *src = tu_oracle_src();
    if (!src) cr_skip_test("llama.cpp source tree not installed");
    char path[4096], ours[4096];
    snprintf(path, sizeof path, "%s/tests/snapshots/meta-llama-3.1-70b-instruct.schema", src);
    tu_path(ours, sizeof ours, "tests/quant/snapshots/llama-3.1-70b.schema");
    static qr_schema a, b;
    if (qr_schema_read(path, &a)) cr_skip_test("no %s in this llama.cpp", path);
    cr_assert_eq(qr_schema_read(ours, &b), 0);
    cr_assert_eq(a.n, b.n, "sections: llama.cpp %zu, smelt %zu", a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        const qr_section *x = &a.s[i], *y = qr_schema_find(&b, x->ftype);
        cr_assert(y, "[%s] missing", x->ftype);
        cr_assert_str_eq(x->deflt, y->deflt, "[%s]", x->ftype);
        cr_assert_eq(x->n, y->n, "[%s]: %zu overrides in llama.cpp, %zu in smelt", x->ftype, x->n, y->n);
        for (size_t j = 0; j < x->n; j++)
            cr_assert_str_eq(x->type[j], qr_section_type(y, x->name[j]), "[%s] %s", x->ftype, x->name[j]);
    }
    qr_schema_free(&a);
    qr_schema_free(&b);
}

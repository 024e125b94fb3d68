/* plan.c — deciding a conversion before any byte is written: architecture, every
 * tensor's GGUF name, type, shape and source rows (Q/K permutation, stacked experts), the
 * output order llama.cpp's converter produces, and every KV. Includes convert/, quant/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_int.h"
#include "convert/tensor_map.h"
#include "formats/tokfiles.h"
#include "quant/qtypes.h"

void smelt_convert_opts_default(smelt_convert_opts *o)
{
    memset(o, 0, sizeof *o);
    o->outtype = SMELT_OUTTYPE_AUTO;
}

void smelt_convert_opts_one_pass(smelt_convert_opts *co, smelt_quantize_opts *qo, const char *ftype, const char *imatrix)
{
    smelt_quantize_opts_default(qo);
    qo->ftype = ftype;
    qo->imatrix = imatrix;
    qo->n_threads = co->n_threads;
    qo->notes = co->notes;
    qo->allow_nonfinite = co->allow_nonfinite;
    qo->split = co->split;
    qo->split_max_bytes = co->split_max_bytes;
    qo->split_max_tensors = co->split_max_tensors;
    co->split = false;
    co->outtype = SMELT_TYPE_F16;
    co->quantize = qo;
}

int smelt_convert_outtype_from_name(const char *s)
{
    if (!strcmp(s, "f32")) return SMELT_TYPE_F32;
    if (!strcmp(s, "f16")) return SMELT_TYPE_F16;
    if (!strcmp(s, "bf16")) return SMELT_TYPE_BF16;
    if (!strcmp(s, "q8_0")) return SMELT_TYPE_Q8_0;
    if (!strcmp(s, "auto")) return SMELT_OUTTYPE_AUTO;
    return -2;
}

const char *smelt_convert_outtype_name(int t)
{
    switch (t) {
    case SMELT_TYPE_F32: return "f32";
    case SMELT_TYPE_F16: return "f16";
    case SMELT_TYPE_BF16: return "bf16";
    case SMELT_TYPE_Q8_0: return "q8_0";
    case SMELT_OUTTYPE_AUTO: return "auto";
    default: return "?";
    }
}

static uint32_t file_type_of(int t)
{
    switch (t) {
    case SMELT_TYPE_F16: return 1;  /* MOSTLY_F16 */
    case SMELT_TYPE_Q8_0: return 7; /* MOSTLY_Q8_0 */
    case SMELT_TYPE_BF16: return 32; /* MOSTLY_BF16 */
    default: return 0;              /* ALL_F32 */
    }
}

/* ==== output type ==== */

/* --outtype auto: the dtype of the weights (every tensor of 2 or more dimensions). A
 * checkpoint mixing dtypes gets the majority (by values), with a warning. */
static int resolve_auto(const smelt_tsrc *s, const smelt_notes *notes)
{
    uint64_t vals[SMELT_DT_COUNT] = {0}, cnt[SMELT_DT_COUNT] = {0};
    int scaled = 0;
    for (uint64_t i = 0; i < smelt_tsrc_count(s); i++) {
        const smelt_tinfo *t = smelt_tsrc_info(s, i);
        if (t->n_dims < 2 || !smelt_dtype_is_float(t->dtype)) continue;
        smelt_dtype d = t->block_scaled ? SMELT_DT_F8_E4M3 : t->dtype; /* counted as stored */
        scaled |= t->block_scaled;
        vals[d] += t->nelements;
        cnt[d]++;
    }
    int best = -1, kinds = 0;
    for (int d = 0; d < SMELT_DT_COUNT; d++)
        if (cnt[d]) {
            kinds++;
            if (best < 0 || vals[d] > vals[best]) best = d;
        }
    if (best < 0) return SMELT_TYPE_F16; /* llama.cpp's default when it cannot tell */
    /* block-scaled fp8 (fp8 × f32 scale) fits neither f16 nor bf16 exactly: bf16 keeps the range */
    int out = best == SMELT_DT_BF16 || (best == SMELT_DT_F8_E4M3 && scaled) ? SMELT_TYPE_BF16
              : best == SMELT_DT_F32 || best == SMELT_DT_F64 ? SMELT_TYPE_F32
                                                             : SMELT_TYPE_F16; /* F16, and float8 (exact in f16) */
    /* an fp8 checkpoint's bf16 tensors (embeddings, norms) are not rounded by bf16 output */
    int fp8_bf16 = scaled && best == SMELT_DT_F8_E4M3 && kinds == 2 && cnt[SMELT_DT_BF16];
    if (kinds > 1 && !fp8_bf16) {
        char list[512] = "";
        size_t used = 0;
        for (int d = 0; d < SMELT_DT_COUNT; d++)
            if (cnt[d] && used < sizeof list)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s (%llu tensors, %llu values)", used ? ", " : "",
                                         smelt_dtype_name((smelt_dtype)d), (unsigned long long)cnt[d], (unsigned long long)vals[d]);
        smelt_note(notes,
                   "the checkpoint mixes weight dtypes: %s; --outtype auto picks %s (the majority) and rounds the others "
                   "to it — use --outtype f32 to keep every value exactly",
                   list, smelt_convert_outtype_name(out));
    }
    if (scaled && best == SMELT_DT_F8_E4M3)
        smelt_note(notes, "block-scaled fp8 weights are dequantized (fp8 × scale) and rounded to bf16; --outtype f32 keeps "
                          "every product exactly");
    else if (best == SMELT_DT_F8_E4M3 || best == SMELT_DT_F8_E5M2)
        smelt_note(notes, "float8 weights are upcast exactly to f16 (smelt writes no float8 GGUF type)");
    return out;
}

/* The type a tensor is written in, by llama.cpp's converter's rules. */
static int tensor_type(const smelt_convert_plan *p, const char *name, uint32_t n_dims, uint64_t row_len, bool *fallback)
{
    size_t l = strlen(name);
    *fallback = false;
    if (n_dims <= 1 || (l >= 12 && !strcmp(name + l - 12, "_norm.weight"))) return SMELT_TYPE_F32;
    if ((l >= 19 && !strcmp(name + l - 19, "ffn_gate_inp.weight")) || l < 7 || strcmp(name + l - 7, ".weight") != 0)
        return SMELT_TYPE_F32;
    if (p->outtype == SMELT_TYPE_Q8_0 && row_len % 32 != 0) {
        *fallback = true;
        return SMELT_TYPE_F16;
    }
    return p->outtype;
}

/* ==== emitting output tensors ==== */

static int emit(smelt_convert_plan *p, const char *name, uint32_t n_dims, const uint64_t *shape, uint64_t row_len,
                int64_t perm, smelt_cv_part *parts, size_t n_parts, smelt_err *e)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        smelt_cv_tensor *t = realloc(p->t, nc * sizeof *t);
        if (!t) {
            free(parts);
            return SMELT_NOMEM(e, "plan");
        }
        p->t = t;
        p->cap = nc;
    }
    smelt_cv_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) t->ne[d] = shape[n_dims - 1 - d];
    t->row_len = row_len;
    t->perm_heads = perm;
    t->parts = parts;
    t->n_parts = n_parts;
    t->type = tensor_type(p, name, n_dims, t->ne[0], &t->q8_fallback);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) nel *= shape[d];
    if (smelt_type_row_bytes(t->type, nel, &t->nbytes, e)) return SMELT_EINTERNAL;
    if (t->q8_fallback)
        smelt_note(&p->opts.notes, "%s: row length %llu is not a multiple of 32, written as F16 instead of Q8_0 (as llama.cpp does)",
                   name, (unsigned long long)t->ne[0]);
    /* gguf-py's parameter count: experts counted per expert */
    if (strstr(name, "_exps.") && n_dims >= 3) {
        p->pc.expert += (int64_t)(nel / shape[0]);
        p->pc.expert_count += (int64_t)shape[0]; /* summed; averaged at the end */
    } else {
        p->pc.shared += (int64_t)nel;
    }
    p->pc.total += (int64_t)nel;
    return 0;
}

static uint64_t rows_of(const smelt_tinfo *t) { return t->n_dims >= 2 ? t->nelements / t->shape[t->n_dims - 1] : t->nelements; }
static uint64_t row_len_of(const smelt_tinfo *t) { return t->n_dims >= 2 ? t->shape[t->n_dims - 1] : 1; }

static int emit_single(smelt_convert_plan *p, uint64_t src, const smelt_tmap *m, smelt_err *e)
{
    const smelt_tinfo *ti = smelt_tsrc_info(p->src, src);
    char name[96];
    smelt_tmap_gguf_name(m->role, m->bid, m->bias, name, sizeof name);
    smelt_cv_part *part = malloc(sizeof *part);
    if (!part) return SMELT_NOMEM(e, "plan");
    part->src = src;
    part->row0 = 0;
    part->nrows = rows_of(ti);
    return emit(p, name, ti->n_dims, ti->shape, row_len_of(ti), smelt_tmap_permute_heads(&p->hp, m->role), part, 1, e);
}

typedef struct {
    int64_t *w[3];        /* v4: w1, w2, w3 per expert (source index or -1) */
    int64_t count;
    int64_t gate_up, down; /* v5 */
    int done;
} layer_experts;

/* The index of a stacked expert kind among (gate, down, up). */
static int expert_slot(smelt_tk k) { return k == SMELT_TK_FFN_GATE_EXPS ? 0 : k == SMELT_TK_FFN_DOWN_EXPS ? 1 : 2; }

/* v4: stack expert tensors of one layer: w1 → gate, w2 → down, w3 → up, in the order the
 * architecture's converter writes them (formats/arch.c: expert_order) */
static int emit_v4(smelt_convert_plan *p, int64_t bid, layer_experts *le, smelt_err *e)
{
    static const smelt_role out[3] = {SMELT_R_GATE_EXPS, SMELT_R_DOWN_EXPS, SMELT_R_UP_EXPS};
    uint64_t E = (uint64_t)p->hp.n_expert;
    for (int o = 0; o < 3; o++) {
        int w = expert_slot(p->hp.arch->expert_order[o]);
        smelt_cv_part *parts = calloc(E, sizeof *parts);
        if (!parts) return SMELT_NOMEM(e, "plan");
        const smelt_tinfo *t0 = smelt_tsrc_info(p->src, (uint64_t)le->w[w][0]);
        for (uint64_t x = 0; x < E; x++) {
            parts[x].src = (uint64_t)le->w[w][x];
            parts[x].row0 = 0;
            parts[x].nrows = t0->shape[0];
        }
        uint64_t shape[3] = {E, t0->shape[0], t0->shape[1]};
        char name[96];
        smelt_tmap_gguf_name(out[w], bid, false, name, sizeof name);
        int rc = emit(p, name, 3, shape, t0->shape[1], 0, parts, E, e);
        if (rc) return rc;
    }
    le->done = 1;
    return 0;
}

/* v5: gate_up_proj [E, 2I, H] holds gate rows first, then up rows, per expert */
static int emit_v5(smelt_convert_plan *p, int64_t bid, layer_experts *le, smelt_err *e)
{
    uint64_t E = (uint64_t)p->hp.n_expert, I = (uint64_t)p->hp.n_ff, H = (uint64_t)p->hp.n_embd;
    char name[96];
    for (int o = 0; o < 3; o++) { /* the order v4 checkpoints give */
        int which = expert_slot(p->hp.arch->expert_order[o]); /* 0 gate, 1 down, 2 up */
        smelt_cv_part *parts = calloc(E, sizeof *parts);
        if (!parts) return SMELT_NOMEM(e, "plan");
        size_t np = E;
        uint64_t shape[3] = {E, I, H};
        uint64_t row_len = H;
        smelt_role role;
        if (which == 1) {
            parts[0] = (smelt_cv_part){(uint64_t)le->down, 0, E * H};
            np = 1;
            shape[1] = H;
            shape[2] = I;
            row_len = I;
            role = SMELT_R_DOWN_EXPS;
        } else {
            for (uint64_t x = 0; x < E; x++) parts[x] = (smelt_cv_part){(uint64_t)le->gate_up, x * 2 * I + (which == 2 ? I : 0), I};
            role = which == 0 ? SMELT_R_GATE_EXPS : SMELT_R_UP_EXPS;
        }
        smelt_tmap_gguf_name(role, bid, false, name, sizeof name);
        int rc = emit(p, name, 3, shape, row_len, 0, parts, np, e);
        if (rc) return rc;
    }
    le->done = 1;
    return 0;
}

/* ==== validation ==== */

static const char *src_file(const smelt_tinfo *t) { return t->file ? t->file : "weights"; }

static void shape_str(const uint64_t *s, uint32_t nd, char *buf, size_t n)
{
    size_t u = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < nd && u < n; d++) u += (size_t)snprintf(buf + u, n - u, "%s%llu", d ? ", " : "", (unsigned long long)s[d]);
    if (u < n) snprintf(buf + u, n - u, "]");
}

static int check_tensor(const smelt_convert_plan *p, const smelt_tinfo *t, const smelt_tmap *m, smelt_err *e)
{
    const smelt_hparams *hp = &p->hp;
    if (m->bid >= hp->n_layer)
        return SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name, "layer %lld does not exist: config.json has num_hidden_layers %lld",
                         (long long)m->bid, (long long)hp->n_layer);
    int moe_role = m->role == SMELT_R_FFN_GATE_INP || (m->role >= SMELT_R_EXP_W1 && m->role <= SMELT_R_EXP_DOWN);
    if (moe_role && hp->n_expert == 0)
        return SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name, "a mixture-of-experts tensor, but config.json sets no num_local_experts");
    if (!moe_role && hp->n_expert > 0 && (m->role == SMELT_R_FFN_GATE || m->role == SMELT_R_FFN_UP || m->role == SMELT_R_FFN_DOWN))
        return SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name, "a dense feed-forward tensor in a mixture-of-experts model (num_local_experts %lld)",
                         (long long)hp->n_expert);
    if (m->expert >= hp->n_expert && m->expert >= 0)
        return SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name, "expert %lld does not exist: config.json has num_local_experts %lld",
                         (long long)m->expert, (long long)hp->n_expert);
    if (!smelt_dtype_is_float(t->dtype))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, src_file(t), t->name, "dtype %s is not a floating-point weight type (F32, F16, BF16, F64, F8_E4M3, F8_E5M2)",
                         smelt_dtype_name(t->dtype));
    uint64_t want[3];
    char why[96], got[96], exp[96];
    uint32_t nd = smelt_tmap_expected(hp, m, want, why, sizeof why);
    int ok = nd == t->n_dims;
    for (uint32_t d = 0; ok && d < nd; d++) ok = want[d] == t->shape[d];
    if (!ok) {
        shape_str(t->shape, t->n_dims, got, sizeof got);
        shape_str(want, nd, exp, sizeof exp);
        if ((m->role == SMELT_R_TOKEN_EMBD || m->role == SMELT_R_OUTPUT) && t->n_dims == 2 && t->shape[1] == want[1] && t->shape[0] != want[0])
            return SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name,
                             "shape %s contradicts config.json: vocab_size is %llu but the tensor has %llu rows. vocab_size "
                             "must equal the embedding rows; it may exceed the tokenizer's size only when the embeddings were "
                             "resized (resize_token_embeddings), the extra rows then get [PADn] tokens",
                             got, (unsigned long long)want[0], (unsigned long long)t->shape[0]);
        return SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name, "shape %s contradicts config.json: expected %s = %s", got, why, exp);
    }
    return 0;
}

/* Whether the architecture has the GGUF tensor a source role becomes (formats/arch.c). */
static bool arch_has(const smelt_arch *a, const smelt_tmap *m)
{
    smelt_tk k = smelt_tmap_kind(m->role);
    if (k == SMELT_TK_COUNT) return true; /* expert sources, skipped tensors: checked by shape and config */
    return (m->bias ? a->bias[k] : a->weight[k]) != SMELT_TP_NO;
}

/* llama.cpp's visiting order: weight files in name order; inside a safetensors file the
 * tensors in name order, inside a PyTorch file in pickle order (source order). */
static int is_st(const char *f)
{
    size_t l = f ? strlen(f) : 0;
    return l >= 12 && !strcmp(f + l - 12, ".safetensors");
}

static int cmp_order(const smelt_tsrc *s, uint64_t x, uint64_t y)
{
    const smelt_tinfo *tx = smelt_tsrc_info(s, x), *ty = smelt_tsrc_info(s, y);
    int c = strcmp(tx->file ? tx->file : "", ty->file ? ty->file : "");
    if (c) return c;
    if (is_st(tx->file)) {
        c = strcmp(tx->name, ty->name);
        if (c) return c;
    }
    return x < y ? -1 : x > y;
}

/* bottom-up merge sort of source indices (the comparator is total, so any sort is stable) */
static int order_sources(const smelt_tsrc *s, uint64_t *idx, uint64_t n, smelt_err *e)
{
    uint64_t *tmp = malloc((size_t)n * sizeof *tmp + 1);
    if (!tmp) return SMELT_NOMEM(e, "plan");
    for (uint64_t i = 0; i < n; i++) idx[i] = i;
    for (uint64_t w = 1; w < n; w *= 2) {
        for (uint64_t lo = 0; lo < n; lo += 2 * w) {
            uint64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            uint64_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) tmp[k++] = cmp_order(s, idx[a], idx[b]) <= 0 ? idx[a++] : idx[b++];
            while (a < mid) tmp[k++] = idx[a++];
            while (b < hi) tmp[k++] = idx[b++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
    free(tmp);
    return 0;
}

/* ==== the plan ==== */

static int build_tensors(smelt_convert_plan *p, smelt_err *e)
{
    const smelt_tsrc *s = p->src;
    uint64_t n = smelt_tsrc_count(s);
    int64_t L = p->hp.n_layer, E = p->hp.n_expert;
    smelt_tmap *map = calloc((size_t)n + 1, sizeof *map);
    uint64_t *order = calloc((size_t)n + 1, sizeof *order);
    uint32_t *present = calloc((size_t)L + 1, sizeof *present); /* bit per role, per layer; index L: globals */
    layer_experts *le = calloc((size_t)L + 1, sizeof *le);
    int rc = (!map || !order || !present || !le) ? SMELT_NOMEM(e, "plan") : 0;
    for (int64_t b = 0; b < L && !rc && E > 0; b++) {
        le[b].gate_up = le[b].down = -1;
        for (int w = 0; w < 3 && !rc; w++) {
            le[b].w[w] = malloc((size_t)E * sizeof(int64_t));
            if (!le[b].w[w]) rc = SMELT_NOMEM(e, "plan");
            else
                for (int64_t x = 0; x < E; x++) le[b].w[w][x] = -1;
        }
    }
    for (uint64_t i = 0; i < n && !rc; i++) {
        const smelt_tinfo *t = smelt_tsrc_info(s, i);
        if (smelt_tmap_parse(t->name, &map[i]) || !arch_has(p->hp.arch, &map[i]))
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, src_file(t), t->name,
                           "no GGUF equivalent for this tensor in the %s architecture (expected the tensor names of %s)",
                           p->hp.arch->name, p->hp.hf_arch);
        else if (map[i].role != SMELT_R_SKIP)
            rc = check_tensor(p, t, &map[i], e);
        if (!rc && map[i].role != SMELT_R_SKIP) {
            int64_t slot = map[i].bid >= 0 ? map[i].bid : L;
            uint32_t bit = 1u << map[i].role;
            if (map[i].bias) bit = 0; /* biases are optional */
            present[slot] |= bit;
        }
    }
    if (!rc) rc = order_sources(s, order, n, e);
    if (!rc && p->rope_freqs) { /* generated tensors come first, as in llama.cpp's converter */
        uint64_t shape[1] = {p->hp.head_dim / 2};
        char name[64];
        smelt_tmap_gguf_name(SMELT_R_ROPE_FREQS, -1, false, name, sizeof name);
        rc = emit(p, name, 1, shape, shape[0], 0, NULL, 0, e);
        if (!rc) p->t[p->n - 1].data = p->rope_freqs;
    }
    for (uint64_t k = 0; k < n && !rc; k++) {
        uint64_t i = order[k];
        const smelt_tmap *m = &map[i];
        const smelt_tinfo *t = smelt_tsrc_info(s, i);
        if (m->role == SMELT_R_SKIP) continue;
        if (m->role >= SMELT_R_EXP_W1 && m->role <= SMELT_R_EXP_DOWN) {
            layer_experts *x = &le[m->bid];
            int v5 = m->role >= SMELT_R_EXP_GATE_UP;
            if ((v5 && x->count > 0) || (!v5 && (x->gate_up >= 0 || x->down >= 0))) {
                rc = SMELT_ERR(e, SMELT_EFORMAT, src_file(t), t->name,
                               "layer %lld mixes per-expert (transformers v4) and fused (v5) expert tensors", (long long)m->bid);
                break;
            }
            if (v5) {
                if (m->role == SMELT_R_EXP_GATE_UP) x->gate_up = (int64_t)i;
                else x->down = (int64_t)i;
                if (x->gate_up >= 0 && x->down >= 0) rc = emit_v5(p, m->bid, x, e);
            } else {
                x->w[m->role - SMELT_R_EXP_W1][m->expert] = (int64_t)i;
                if (++x->count == 3 * E) rc = emit_v4(p, m->bid, x, e);
            }
            continue;
        }
        rc = emit_single(p, i, m, e);
    }
    /* everything a llama layer needs must be there */
    for (int64_t b = -1; b < L && !rc; b++) {
        static const smelt_role glob[] = {SMELT_R_TOKEN_EMBD, SMELT_R_OUTPUT_NORM};
        static const smelt_role all[] = {SMELT_R_ATTN_NORM, SMELT_R_ATTN_Q,         SMELT_R_ATTN_K,        SMELT_R_ATTN_V,
                                         SMELT_R_ATTN_Q_NORM, SMELT_R_ATTN_K_NORM, SMELT_R_ATTN_OUT, SMELT_R_FFN_NORM};
        static const smelt_role dense[] = {SMELT_R_FFN_GATE, SMELT_R_FFN_UP, SMELT_R_FFN_DOWN};
        smelt_role lay[8];
        size_t nl = 0; /* the layer roles the architecture requires */
        for (size_t r = 0; r < 8; r++)
            if (p->hp.arch->weight[smelt_tmap_kind(all[r])] == SMELT_TP_REQ) lay[nl++] = all[r];
        const smelt_role *need = b < 0 ? glob : lay;
        size_t nn = b < 0 ? 2 : nl;
        uint32_t have = present[b < 0 ? L : b];
        char hf[128], gg[96];
        for (size_t r = 0; r < nn + (b >= 0 ? 4 : 0) && !rc; r++) {
            smelt_role role;
            if (r < nn) role = need[r];
            else if (E == 0) {
                if (r - nn >= 3) break;
                role = dense[r - nn];
            } else {
                if (r - nn >= 1) break;
                role = SMELT_R_FFN_GATE_INP;
            }
            if (have & (1u << role)) continue;
            smelt_tmap_hf_name(p->hp.arch, role, b, hf, sizeof hf);
            smelt_tmap_gguf_name(role, b, false, gg, sizeof gg);
            rc = SMELT_ERR(e, SMELT_EFORMAT, smelt_tsrc_count(s) ? src_file(smelt_tsrc_info(s, 0)) : "weights", hf,
                           "incomplete checkpoint: this tensor (%s in the GGUF) is missing", gg);
        }
        if (!rc && b >= 0 && E > 0 && !le[b].done) {
            if (le[b].gate_up >= 0 || le[b].down >= 0) {
                rc = SMELT_ERR(e, SMELT_EFORMAT, src_file(smelt_tsrc_info(s, 0)),
                               le[b].gate_up >= 0 ? "mlp.experts.down_proj" : "mlp.experts.gate_up_proj",
                               "incomplete checkpoint: layer %lld has only one of the fused expert tensors", (long long)b);
            } else {
                for (int w = 0; w < 3 && !rc; w++)
                    for (int64_t x = 0; x < E && !rc; x++)
                        if (le[b].w[w][x] < 0) {
                            char nm[160];
                            const smelt_arch *A = p->hp.arch;
                            snprintf(nm, sizeof nm, "model.layers.%lld.%s.experts.%lld.%s.weight", (long long)b, A->hf_moe,
                                     (long long)x, A->hf_expert[w]);
                            rc = SMELT_ERR(e, SMELT_EFORMAT, src_file(smelt_tsrc_info(s, 0)), nm,
                                           "incomplete checkpoint: expert tensor missing (%s layers need %s %lld "
                                           "experts × %s, %s, %s)",
                                           A->id == SMELT_ARCH_LLAMA ? "Mixtral" : A->family,
                                           A->expert_ff ? "num_experts" : "num_local_experts", (long long)E, A->hf_expert[0],
                                           A->hf_expert[1], A->hf_expert[2]);
                        }
            }
        }
    }
    if (!rc && p->pc.expert_count) {
        /* expert_count = average experts per stacked tensor */
        int64_t nexp = 0;
        for (size_t i = 0; i < p->n; i++)
            if (strstr(p->t[i].name, "_exps.") && p->t[i].n_dims >= 3) nexp++;
        p->pc.expert_count = nexp ? p->pc.expert_count / nexp : 0;
    }
    for (int64_t b = 0; b < L && E > 0; b++)
        for (int w = 0; w < 3; w++) free(le[b].w[w]);
    free(le);
    free(present);
    free(order);
    free(map);
    return rc;
}

/* Q8_0 needs the quant library's encoder; ask it on one block to learn early whether it
 * exists (its EUNSUPPORTED error is passed on unchanged). */
static int probe_q8(smelt_err *e)
{
    const smelt_qtype_ops *o = smelt_q_ops(SMELT_TYPE_Q8_0);
    if (o && o->quantize_ref) return 0;
    float x[32] = {0};
    uint8_t y[34];
    return smelt_q_quantize_rows(SMELT_TYPE_Q8_0, x, y, 1, 32, NULL, NULL, e);
}

int smelt_convert_plan_new(const smelt_tsrc *weights, json_t *config, const char *config_path, const char *tok_dir,
                           const smelt_convert_opts *opts, smelt_convert_plan **out, smelt_err *e)
{
    *out = NULL;
    smelt_convert_plan *p = calloc(1, sizeof *p);
    if (!p) return SMELT_NOMEM(e, "plan");
    p->src = weights;
    p->opts = *opts;
    p->config_path = strdup(config_path ? config_path : "config.json");
    p->tok_dir = strdup(tok_dir);
    smelt_tokfiles *tf = NULL;
    int rc = (!p->config_path || !p->tok_dir) ? SMELT_NOMEM(e, "plan") : 0;
    if (!rc && opts->outtype != SMELT_OUTTYPE_AUTO && opts->outtype != SMELT_TYPE_F32 && opts->outtype != SMELT_TYPE_F16 &&
        opts->outtype != SMELT_TYPE_BF16 && opts->outtype != SMELT_TYPE_Q8_0)
        rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "output type %s is not supported (f32, f16, bf16, q8_0, auto)",
                       smelt_type_name(opts->outtype));
    if (!rc) rc = smelt_hparams_read(config, p->config_path, &p->hp, e);
    if (!rc) rc = smelt_tokfiles_load(tok_dir, &tf, e);
    if (!rc) {
        p->outtype = opts->outtype == SMELT_OUTTYPE_AUTO ? resolve_auto(weights, &p->opts.notes) : opts->outtype;
        p->file_type = file_type_of(p->outtype);
        if (p->outtype == SMELT_TYPE_Q8_0 && !opts->vocab_only) rc = probe_q8(e);
    }
    if (!rc && !opts->vocab_only) {
        p->rope_freqs = malloc((p->hp.head_dim / 2 + 1) * sizeof(float));
        rc = !p->rope_freqs ? SMELT_NOMEM(e, "plan") : smelt_config_rope_freqs(config, p->config_path, &p->hp, p->rope_freqs, e);
        if (rc == 0) {
            free(p->rope_freqs);
            p->rope_freqs = NULL;
        }
        if (rc > 0) rc = 0;
    }
    if (!rc && !opts->vocab_only) rc = build_tensors(p, e);
    /* metadata, in the order llama.cpp's converter sets it */
    if (!rc) rc = smelt_kvs_set_str(&p->kv, "general.architecture", p->hp.arch->name, strlen(p->hp.arch->name), e);
    if (!rc) rc = smelt_kvs_set_str(&p->kv, "general.type", "model", 5, e);
    if (!rc) {
        smelt_meta_src ms = {opts->card_dir ? opts->card_dir : tok_dir, config, opts->name_path ? opts->name_path : tok_dir, opts->name,
                             tf->generation_config};
        if (tf->gen_config_error[0])
            smelt_note(&p->opts.notes, "%s (ignored, as llama.cpp does)", tf->gen_config_error);
        rc = smelt_meta_kvs(&ms, &p->pc, &p->kv, &p->opts.notes, e);
    }
    if (!rc) rc = smelt_arch_kvs(config, p->config_path, &p->hp, p->file_type, &p->kv, &p->opts.notes, e);
    if (!rc) rc = smelt_kvs_set_u32(&p->kv, "general.quantization_version", 2, e);
    if (!rc) rc = smelt_cv_vocab_kvs(tf, config, p->config_path, p->hp.n_vocab, &p->kv, &p->vocab, &p->opts.notes, e);
    /* tokenizer_config.json's add_prefix_space is read by llama.cpp's Llama converter class
     * only; the Qwen classes take the SentencePiece vocabulary without it */
    if (!rc && !p->hp.arch->llama_keys) smelt_kvs_remove(&p->kv, "tokenizer.ggml.add_space_prefix");
    if (!rc) rc = smelt_arch_check_plan(&p->kv, p->t, p->n, opts->vocab_only, tok_dir, e);
    smelt_tokfiles_free(tf);
    if (rc) {
        smelt_convert_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void smelt_convert_plan_free(smelt_convert_plan *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free(p->t[i].parts);
    free(p->t);
    smelt_kvs_free(&p->kv);
    free(p->config_path);
    free(p->tok_dir);
    free(p->rope_freqs);
    free(p);
}

const smelt_kvs *smelt_convert_plan_kvs(const smelt_convert_plan *p) { return &p->kv; }
size_t smelt_convert_plan_n_tensors(const smelt_convert_plan *p) { return p->n; }
const smelt_cv_tensor *smelt_convert_plan_tensor(const smelt_convert_plan *p, size_t i) { return i < p->n ? &p->t[i] : NULL; }
int smelt_convert_plan_outtype(const smelt_convert_plan *p) { return p->outtype; }

json_t *smelt_convert_plan_json(const smelt_convert_plan *p)
{
    json_t *kvs = json_array(), *ts = json_array();
    for (size_t i = 0; i < p->kv.n; i++) json_array_append_new(kvs, smelt_kv_json(&p->kv.kv[i]));
    for (size_t i = 0; i < p->n; i++) {
        const smelt_cv_tensor *t = &p->t[i];
        json_t *ne = json_array(), *src = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(ne, json_integer((json_int_t)t->ne[d]));
        for (size_t k = 0; k < t->n_parts; k++) {
            const smelt_tinfo *ti = smelt_tsrc_info(p->src, t->parts[k].src);
            json_t *part = json_pack("{s:s,s:s,s:I,s:I}", "tensor", ti->name, "dtype",
                                     smelt_dtype_name(ti->block_scaled ? SMELT_DT_F8_E4M3 : ti->dtype), "row0",
                                     (json_int_t)t->parts[k].row0, "rows", (json_int_t)t->parts[k].nrows);
            if (ti->block_scaled) json_object_set_new(part, "block_scaled", json_true()); /* read as f32 */
            json_array_append_new(src, part);
        }
        json_t *o = json_pack("{s:s,s:s,s:o,s:I,s:o}", "name", t->name, "type", smelt_type_name(t->type), "ne", ne, "bytes",
                              (json_int_t)t->nbytes, "sources", src);
        if (t->perm_heads) json_object_set_new(o, "rope_permute_heads", json_integer(t->perm_heads));
        if (t->q8_fallback) json_object_set_new(o, "q8_0_fallback", json_true());
        json_array_append_new(ts, o);
    }
    return json_pack("{s:s,s:s,s:s,s:i,s:b,s:I,s:I,s:{s:I,s:I,s:I},s:I,s:o,s:o}", "architecture", p->hp.hf_arch, "gguf_architecture",
                     p->hp.arch->name, "outtype", smelt_convert_outtype_name(p->outtype), "file_type", (int)p->file_type, "vocab_only",
                     p->opts.vocab_only, "n_tensors", (json_int_t)p->n, "file_size", (json_int_t)smelt_convert_plan_file_size(p),
                     "vocab", "size", (json_int_t)p->vocab.n_vocab, "tokenizer", (json_int_t)p->vocab.n_tokenizer, "padding",
                     (json_int_t)p->vocab.n_pad, "parameters", (json_int_t)p->pc.total, "kv", kvs, "tensors", ts);
}

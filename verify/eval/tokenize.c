/* tokenize.c — SentencePiece (SPM) tokenizer over a GGUF vocabulary; see tokenize.h for the
 * behaviour reproduced from llama.cpp and the deliberate differences.
 * Includes formats/ (gguf, err, ckd, hash). */
#include "tokenize_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/ckd.h"
#include "formats/base/hash.h"

/* GGUF token types (tokenizer.ggml.token_type values). */
enum { TT_UNDEFINED = 0, TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE };

/* ==== text → id map ==== */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = smelt_tok_hash(p, n, SMELT_TOK_HASH0);
    return h ^ (h >> 29);
}

static int32_t find_text(const smelt_vocab *v, const char *p, size_t n)
{
    if (n > v->max_len || !v->slot) return -1;
    size_t i = (size_t)hash_bytes(p, n) & v->mask;
    for (; v->slot[i]; i = (i + 1) & v->mask) {
        uint32_t id = v->slot[i] - 1;
        size_t tl;
        const char *t = smelt_tok_text(v, id, &tl);
        if (tl == n && memcmp(t, p, n) == 0) return (int32_t)id;
    }
    return -1;
}

/* Insert id; returns the id already holding the same text, or -1. */
static int32_t map_insert(smelt_vocab *v, uint32_t id)
{
    size_t n;
    const char *p = smelt_tok_text(v, id, &n);
    size_t i = (size_t)hash_bytes(p, n) & v->mask;
    for (; v->slot[i]; i = (i + 1) & v->mask) {
        uint32_t o = v->slot[i] - 1;
        size_t ol;
        const char *t = smelt_tok_text(v, o, &ol);
        if (ol == n && memcmp(t, p, n) == 0) return (int32_t)o;
    }
    v->slot[i] = id + 1;
    return -1;
}

static int32_t find_cstr(const smelt_vocab *v, const char *s) { return find_text(v, s, strlen(s)); }

/* ==== loading ==== */

static const char *gpath(const smelt_gguf *g) { return smelt_gguf_path(g) ? smelt_gguf_path(g) : "<gguf>"; }

/* Optional array key of one of two element types; NULL when absent. */
static int opt_arr(const smelt_gguf *g, const char *key, int t1, int t2, uint64_t min_n,
                   const smelt_gguf_kv **out, smelt_err *e)
{
    *out = NULL;
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, key);
    if (!kv) return 0;
    if (kv->type != SMELT_GGUF_ARRAY || (kv->arr_type != t1 && kv->arr_type != t2))
        return SMELT_CORRUPT(e, gpath(g), kv->offset, key, "expected an array of %s, found %s%s%s",
                             t1 == t2 ? smelt_gguf_vtype_name(t1) : "f32 or i32",
                             smelt_gguf_vtype_name(kv->type), kv->type == SMELT_GGUF_ARRAY ? " of " : "",
                             kv->type == SMELT_GGUF_ARRAY ? smelt_gguf_vtype_name(kv->arr_type) : "");
    if (kv->n < min_n)
        return SMELT_CORRUPT(e, gpath(g), kv->offset, key,
                             "has %" PRIu64 " elements, fewer than the %" PRIu64 " tokens", kv->n, min_n);
    *out = kv;
    return 0;
}

static int opt_bool(const smelt_gguf *g, const char *key, bool *out, smelt_err *e)
{
    if (!smelt_gguf_get_kv(g, key)) return 0;
    return smelt_gguf_get_bool(g, key, out, e);
}

/* A special id key: the default is dropped when out of range; a stored id out of range
 * keeps the default (llama.cpp's rules). */
static int special_id(const smelt_gguf *g, const char *key, uint32_t n, int32_t *id, smelt_err *e)
{
    if (*id >= 0 && (uint32_t)*id >= n) *id = -1;
    if (!smelt_gguf_get_kv(g, key)) return 0;
    uint32_t v;
    int rc = smelt_gguf_get_u32(g, key, &v, e);
    if (rc) return rc;
    if (v < n) *id = (int32_t)v;
    return 0;
}

static uint32_t attr_of_type(int32_t t)
{
    switch (t) {
    case TT_UNKNOWN: return SMELT_TOKATTR_UNKNOWN;
    case TT_UNUSED: return SMELT_TOKATTR_UNUSED;
    case TT_NORMAL: return SMELT_TOKATTR_NORMAL;
    case TT_CONTROL: return SMELT_TOKATTR_CONTROL;
    case TT_USER_DEFINED: return SMELT_TOKATTR_USER_DEFINED;
    case TT_BYTE: return SMELT_TOKATTR_BYTE;
    default: return 0; /* undefined */
    }
}

/* Texts llama.cpp treats as end-of-generation markers (and forces to control). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[", NULL};
/* End-of-turn texts (a subset of the above) used when eot_token_id is absent. */
static const char *const EOT_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
    "<end_of_utterance>", NULL};
/* Fill-in-the-middle texts, by role: prefix, suffix, middle, pad, repo, file separator. */
static const char *const FIM_TEXTS[6][9] = {
    {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
     "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL},
    {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>",
     "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL},
    {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
     "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL},
    {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL},
    {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL},
    {"<|file_sep|>", NULL},
};

/* The lowest id among the texts of a list, or -1 (llama.cpp takes the first one its hash
 * map yields; with one match per list, as in real vocabularies, that is the same). */
static int32_t first_of(const smelt_vocab *v, const char *const *list)
{
    int32_t best = -1;
    for (; *list; list++) {
        int32_t id = find_cstr(v, *list);
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

static bool text_is(const smelt_vocab *v, int32_t id, const char *s)
{
    size_t n;
    const char *t = smelt_tok_text(v, (uint32_t)id, &n);
    return n == strlen(s) && memcmp(t, s, n) == 0;
}

/* llama.cpp's text-based attribute fix-ups, in its order. */
static void fixup_attrs(smelt_vocab *v, int32_t eot, int32_t eom, int32_t fim[6],
                        uint8_t *eog)
{
    uint32_t n = v->n;
    if (eot < 0) {
        eot = first_of(v, EOT_TEXTS);
        if (eot >= 0) v->attr[eot] |= SMELT_TOKATTR_CONTROL;
    }
    if (eom < 0) {
        eom = find_cstr(v, "<|eom_id|>");
        if (eom >= 0) v->attr[eom] |= SMELT_TOKATTR_CONTROL;
    }
    for (int r = 0; r < 6; r++)
        if (fim[r] < 0) {
            fim[r] = first_of(v, FIM_TEXTS[r]);
            if (fim[r] >= 0) v->attr[fim[r]] |= SMELT_TOKATTR_CONTROL;
        }
    /* control tokens whose text says "unused" */
    for (uint32_t i = 0; i < n; i++) {
        if (!(v->attr[i] & SMELT_TOKATTR_CONTROL)) continue;
        size_t tl;
        const char *t = smelt_tok_text(v, i, &tl);
        if (memmem(t, tl, "unused", 6)) v->attr[i] |= SMELT_TOKATTR_UNUSED;
    }
    /* end-of-generation set */
    for (int r = 3; r < 6; r++)
        if (fim[r] >= 0) eog[fim[r]] = 1;
    for (const char *const *s = EOG_TEXTS; *s; s++) {
        int32_t id = find_cstr(v, *s);
        if (id < 0) continue;
        eog[id] = 1;
        v->attr[id] |= SMELT_TOKATTR_CONTROL;
    }
    static const char *const ALWAYS_SHOWN[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
    for (const char *const *s = ALWAYS_SHOWN; *s; s++) {
        int32_t id = find_cstr(v, *s);
        if (id >= 0) v->attr[id] = SMELT_TOKATTR_USER_DEFINED;
    }
    if (v->eos >= 0) eog[v->eos] = 1;
    if (eot >= 0) eog[eot] = 1;
    if (eom >= 0) eog[eom] = 1;
    /* "<|end|>" is not an end of generation next to "<|return|>"+"<|call|>" (or
     * "<|calls|>"+"<|flush|>"); "</s>" is not one next to "<|tool_response>". */
    bool has_return = false, has_call = false, has_flush = false, has_tool = false;
    int32_t end_id = -1, s_id = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (!eog[i]) continue;
        int32_t id = (int32_t)i;
        if (text_is(v, id, "<|return|>")) has_return = true;
        else if (text_is(v, id, "<|call|>") || text_is(v, id, "<|calls|>")) has_call = true;
        else if (text_is(v, id, "<|flush|>")) has_flush = true;
        else if (text_is(v, id, "<|end|>")) end_id = id;
        if (text_is(v, id, "<|tool_response>")) has_tool = true;
        else if (text_is(v, id, "</s>")) s_id = id;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        eog[end_id] = 0;
        v->attr[end_id] = SMELT_TOKATTR_USER_DEFINED;
    }
    if (has_tool && s_id >= 0) {
        eog[s_id] = 0;
        v->attr[s_id] = SMELT_TOKATTR_NORMAL;
    }
}

/* Phi-3 vocabularies strip spaces to the right of their special tokens (applied after the
 * special-token list is built, as llama.cpp does). */
static void fixup_phi3(smelt_vocab *v, const smelt_gguf *g)
{
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, "general.name");
    if (!kv || kv->type != SMELT_GGUF_STRING) return;
    smelt_str s = smelt_gguf_kv_str(kv);
    char *low = malloc((size_t)s.n + 1);
    if (!low) return;
    for (uint64_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    low[s.n] = 0;
    bool phi3 = memmem(low, (size_t)s.n, "phi-3", 5) || memmem(low, (size_t)s.n, "phi3", 4);
    free(low);
    if (!phi3) return;
    for (uint32_t i = 0; i < v->n_special; i++) v->attr[v->special[i]] |= SMELT_TOKATTR_RSTRIP;
    int32_t id = find_cstr(v, "</s>");
    if (id >= 0) v->attr[id] |= SMELT_TOKATTR_RSTRIP;
    static const char *const KEEP[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
    for (const char *const *k = KEEP; *k; k++)
        if ((id = find_cstr(v, *k)) >= 0) v->attr[id] &= ~(uint32_t)SMELT_TOKATTR_RSTRIP;
}

static int by_length_desc(const void *a, const void *b, void *ctx)
{
    const smelt_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte a <0xXX> token stands for: up to two hex digits after "<0x" (as strtol reads). */
static uint8_t byte_of(const char *t, size_t n)
{
    unsigned b = 0;
    for (size_t i = 3; i < n && i < 5 && hexval(t[i]) >= 0; i++) b = b * 16 + (unsigned)hexval(t[i]);
    return (uint8_t)b;
}

/* Rendered piece of a token with special = true (llama.cpp's token-to-piece cache). */
static size_t render(const smelt_vocab *v, uint32_t id, char *dst)
{
    size_t n;
    const char *t = smelt_tok_text(v, id, &n);
    uint32_t a = v->attr[id];
    if (a & (SMELT_TOKATTR_UNKNOWN | SMELT_TOKATTR_CONTROL | SMELT_TOKATTR_USER_DEFINED)) {
        if (dst) memcpy(dst, t, n);
        return n;
    }
    if ((a & SMELT_TOKATTR_NORMAL) && v->kind == SMELT_VOCAB_BPE) return smelt_bpe_decode(t, n, dst);
    if (a & SMELT_TOKATTR_NORMAL) {
        size_t k = 0;
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(t + i, "\xe2\x96\x81", 3) == 0) {
                if (dst) dst[k] = ' ';
                k++;
                i += 3;
            } else {
                if (dst) dst[k] = t[i];
                k++;
                i++;
            }
        }
        return k;
    }
    if (a & SMELT_TOKATTR_BYTE) {
        if (dst) dst[0] = (char)byte_of(t, n);
        return 1;
    }
    return 0;
}

static void vocab_hash(smelt_vocab *v)
{
    smelt_xxh64_state *s = smelt_xxh64_new();
    if (!s) return;
    static const char tag[] = "smelt-vocab-v1";
    smelt_xxh64_update(s, tag, sizeof tag);
    uint32_t n = v->n;
    smelt_xxh64_update(s, &n, 4);
    for (uint32_t i = 0; i < n; i++) {
        size_t tl;
        const char *t = smelt_tok_text(v, i, &tl);
        uint32_t l32 = (uint32_t)tl;
        smelt_xxh64_update(s, &l32, 4);
        smelt_xxh64_update(s, t, tl);
        smelt_xxh64_update(s, &v->score[i], 4);
        smelt_xxh64_update(s, &v->type[i], 4);
    }
    if (v->kind == SMELT_VOCAB_BPE) { /* merges decide BPE tokens as scores decide SPM ones */
        smelt_xxh64_update(s, &v->n_merges, 4);
        smelt_xxh64_update(s, v->m_off, sizeof *v->m_off * ((size_t)v->n_merges + 1));
        smelt_xxh64_update(s, v->mtext, v->m_off[v->n_merges]);
    }
    v->hash = smelt_xxh64_digest(s);
    smelt_xxh64_free(s);
}

void smelt_vocab_free(smelt_vocab *v)
{
    if (!v) return;
    free(v->text);
    free(v->off);
    free(v->score);
    free(v->type);
    free(v->attr);
    free(v->piece);
    free(v->piece_off);
    free(v->slot);
    free(v->special);
    smelt_bpe_free(v);
    free(v);
}

static int load(smelt_vocab *v, const smelt_gguf *g, smelt_err *e)
{
    const char *path = gpath(g);
    smelt_str model;
    int rc = smelt_gguf_get_str(g, "tokenizer.ggml.model", &model, e);
    if (rc) return rc;
    if (model.n == 5 && memcmp(model.p, "llama", 5) == 0) v->kind = SMELT_VOCAB_SPM;
    else if (model.n == 4 && memcmp(model.p, "gpt2", 4) == 0) v->kind = SMELT_VOCAB_BPE;
    else
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "tokenizer.ggml.model",
                         "tokenizer model '%.*s' is not supported: smelt tokenizes SentencePiece "
                         "('llama') and byte-level BPE ('gpt2') vocabularies",
                         (int)(model.n > 64 ? 64 : model.n), model.p);
    const smelt_gguf_kv *tokens, *scores, *types;
    if ((rc = smelt_gguf_get_arr(g, "tokenizer.ggml.tokens", SMELT_GGUF_STRING, &tokens, e))) return rc;
    if (tokens->n == 0 || tokens->n >= INT32_MAX)
        return SMELT_CORRUPT(e, path, tokens->offset, "tokenizer.ggml.tokens",
                             "expected 1 to %d tokens, found %" PRIu64, INT32_MAX - 1, tokens->n);
    uint32_t n = (uint32_t)tokens->n;
    if ((rc = opt_arr(g, "tokenizer.ggml.scores", SMELT_GGUF_F32, SMELT_GGUF_I32, n, &scores, e))) return rc;
    if ((rc = opt_arr(g, "tokenizer.ggml.token_type", SMELT_GGUF_I32, SMELT_GGUF_I32, n, &types, e))) return rc;

    v->n = n;
    v->off = malloc(sizeof *v->off * ((size_t)n + 1));
    v->score = malloc(sizeof *v->score * n);
    v->type = malloc(sizeof *v->type * n);
    v->attr = malloc(sizeof *v->attr * n);
    v->piece_off = malloc(sizeof *v->piece_off * ((size_t)n + 1));
    if (!v->off || !v->score || !v->type || !v->attr || !v->piece_off) return SMELT_NOMEM(e, "the vocabulary");

    /* texts: an empty one becomes "[EMPTY_<id>]" */
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        smelt_str s = smelt_gguf_arr_str(tokens, i);
        total += s.n ? (size_t)s.n : 24;
    }
    v->text = malloc(total ? total : 1);
    if (!v->text) return SMELT_NOMEM(e, "the token texts");
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        smelt_str s = smelt_gguf_arr_str(tokens, i);
        v->off[i] = pos;
        if (s.n) {
            memcpy(v->text + pos, s.p, (size_t)s.n);
            pos += (size_t)s.n;
        } else {
            pos += (size_t)snprintf(v->text + pos, 24, "[EMPTY_%" PRIu32 "]", i);
        }
        size_t tl = pos - v->off[i];
        if (tl > v->max_len) v->max_len = tl;
        v->score[i] = scores ? (float)smelt_gguf_kv_num(scores, i) : 0.0f;
        v->type[i] = types ? (int32_t)smelt_gguf_kv_int(types, i) : TT_NORMAL;
        v->attr[i] = attr_of_type(v->type[i]);
    }
    v->off[n] = pos;

    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    v->slot = calloc(cap, sizeof *v->slot);
    if (!v->slot) return SMELT_NOMEM(e, "the token map");
    v->mask = (uint32_t)(cap - 1);
    for (uint32_t i = 0; i < n; i++) {
        int32_t dup = map_insert(v, i);
        if (dup >= 0) {
            size_t tl;
            const char *t = smelt_tok_text(v, i, &tl);
            return SMELT_CORRUPT(e, path, tokens->offset, "tokenizer.ggml.tokens",
                                 "token %" PRIu32 " repeats the text of token %" PRId32 " ('%.*s'); "
                                 "token texts must be unique",
                                 i, dup, (int)(tl > 64 ? 64 : tl), t);
        }
    }
    for (int b = 0; b < 256; b++) {
        char hx[7];
        snprintf(hx, sizeof hx, "<0x%02X>", b);
        int32_t id = find_text(v, hx, 6);
        if (id < 0) {
            char c = (char)b;
            id = find_text(v, &c, 1);
        }
        v->byte_tok[b] = id;
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t tl;
        const char *t = smelt_tok_text(v, i, &tl);
        if ((v->attr[i] & SMELT_TOKATTR_BYTE) && tl < 3)
            return SMELT_CORRUPT(e, path, tokens->offset, "tokenizer.ggml.token_type",
                                 "token %" PRIu32 " ('%.*s') is typed as a byte but is not of the form <0xXX>",
                                 i, (int)tl, t);
    }

    /* flags and special ids (SPM defaults: add BOS, no EOS, space prefix; bos 1 eos 2 unk 0;
     * BPE: no space prefix, BOS as the pre-tokenizer says, bos = eos = 11, no unk) */
    if (v->kind == SMELT_VOCAB_BPE) {
        if ((rc = smelt_bpe_load(v, g, path, e))) return rc;
        v->add_space_prefix = false;
        v->bos = 11;
        v->eos = 11;
        v->unk = -1;
    } else {
        v->add_space_prefix = true;
        v->add_bos = true;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
    }
    v->add_eos = false;
    if ((rc = opt_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, e))) return rc;
    int32_t eot = -1, eom = -1, sep = -1, pad = -1, mask = -1, fim[6] = {-1, -1, -1, -1, -1, -1};
    static const char *const FIM_KEYS[6] = {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
                                            "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.fim_pad_token_id",
                                            "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id"};
    if ((rc = special_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos, e)) ||
        (rc = special_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos, e)) ||
        (rc = special_id(g, "tokenizer.ggml.eot_token_id", n, &eot, e)) ||
        (rc = special_id(g, "tokenizer.ggml.eom_token_id", n, &eom, e)) ||
        (rc = special_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk, e)) ||
        (rc = special_id(g, "tokenizer.ggml.seperator_token_id", n, &sep, e)) ||
        (rc = special_id(g, "tokenizer.ggml.padding_token_id", n, &pad, e)) ||
        (rc = special_id(g, "tokenizer.ggml.mask_token_id", n, &mask, e)))
        return rc;
    for (int r = 0; r < 6; r++)
        if ((rc = special_id(g, FIM_KEYS[r], n, &fim[r], e))) return rc;
    if ((rc = special_id(g, "tokenizer.ggml.prefix_token_id", n, &fim[0], e)) ||
        (rc = special_id(g, "tokenizer.ggml.suffix_token_id", n, &fim[1], e)) ||
        (rc = special_id(g, "tokenizer.ggml.middle_token_id", n, &fim[2], e)))
        return rc;
    if ((rc = opt_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, e)) ||
        (rc = opt_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, e)))
        return rc;

    uint8_t *eog = calloc(n, 1);
    if (!eog) return SMELT_NOMEM(e, "the vocabulary");
    fixup_attrs(v, eot, eom, fim, eog);
    free(eog);

    /* special tokens, tried longest first when partitioning */
    v->special = malloc(sizeof *v->special * n);
    if (!v->special) return SMELT_NOMEM(e, "the special-token list");
    for (uint32_t i = 0; i < n; i++)
        if (v->attr[i] & (SMELT_TOKATTR_CONTROL | SMELT_TOKATTR_USER_DEFINED | SMELT_TOKATTR_UNKNOWN))
            v->special[v->n_special++] = (int32_t)i;
    qsort_r(v->special, v->n_special, sizeof *v->special, by_length_desc, v);

    /* rendered pieces */
    size_t ptotal = 0;
    for (uint32_t i = 0; i < n; i++) ptotal += render(v, i, NULL);
    v->piece = malloc(ptotal ? ptotal : 1);
    if (!v->piece) return SMELT_NOMEM(e, "the piece cache");
    size_t pp = 0;
    for (uint32_t i = 0; i < n; i++) {
        v->piece_off[i] = pp;
        pp += render(v, i, v->piece + pp);
    }
    v->piece_off[n] = pp;

    fixup_phi3(v, g);
    vocab_hash(v);
    return 0;
}

int smelt_vocab_from_gguf(const smelt_gguf *g, smelt_vocab **out, smelt_err *e)
{
    *out = NULL;
    smelt_vocab *v = calloc(1, sizeof *v);
    if (!v) return SMELT_NOMEM(e, "the vocabulary");
    int rc = load(v, g, e);
    if (rc) {
        smelt_vocab_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* ==== accessors ==== */

uint32_t smelt_vocab_n_tokens(const smelt_vocab *v) { return v->n; }
int32_t smelt_vocab_bos(const smelt_vocab *v) { return v->bos; }
int32_t smelt_vocab_eos(const smelt_vocab *v) { return v->eos; }
int32_t smelt_vocab_unk(const smelt_vocab *v) { return v->unk; }
bool smelt_vocab_add_bos(const smelt_vocab *v) { return v->add_bos; }
bool smelt_vocab_add_eos(const smelt_vocab *v) { return v->add_eos; }
bool smelt_vocab_add_space_prefix(const smelt_vocab *v) { return v->add_space_prefix; }
uint64_t smelt_vocab_hash(const smelt_vocab *v) { return v->hash; }

static bool in_range(const smelt_vocab *v, int32_t id) { return id >= 0 && (uint32_t)id < v->n; }

const char *smelt_vocab_piece(const smelt_vocab *v, int32_t id, size_t *len)
{
    size_t l = 0;
    const char *p = in_range(v, id) ? smelt_tok_text(v, (uint32_t)id, &l) : NULL;
    if (len) *len = l;
    return p;
}

float smelt_vocab_score(const smelt_vocab *v, int32_t id) { return in_range(v, id) ? v->score[id] : 0.0f; }
uint32_t smelt_vocab_attr(const smelt_vocab *v, int32_t id) { return in_range(v, id) ? v->attr[id] : 0; }
int32_t smelt_vocab_find(const smelt_vocab *v, const char *text, size_t len) { return find_text(v, text, len); }

const char *smelt_token_to_piece(const smelt_vocab *v, int32_t id, bool special, size_t *len)
{
    if (len) *len = 0;
    if (!in_range(v, id)) return NULL;
    const char *p = v->piece + v->piece_off[id];
    if (!special && (v->attr[id] & (SMELT_TOKATTR_UNKNOWN | SMELT_TOKATTR_CONTROL))) return p;
    if (len) *len = v->piece_off[id + 1] - v->piece_off[id];
    return p;
}

/* ==== tokenizing ==== */

typedef struct {
    int32_t tok; /* -1: raw text [off, off + len) */
    size_t off, len;
} frag;

typedef struct {
    int32_t prev, next;
    size_t off, n; /* bytes of the escaped text */
} sym;

typedef struct {
    int32_t left, right;
    double score; /* SPM: the token's score; BPE: minus the merge rank */
    size_t size;
} bigram;

typedef struct {
    const smelt_vocab *v;
    smelt_err *e;
    int32_t *out;
    size_t n_out, cap_out;
    char *buf; /* escaped fragment */
    size_t cap_buf;
    sym *syms;
    size_t cap_syms;
    bigram *heap;
    size_t n_heap, cap_heap;
    uint32_t *cps; /* BPE: the fragment's code points and pre-token ends */
    size_t *ends;
    size_t cap_cps, cap_ends;
} tk;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return -1;
        c *= 2;
    }
    void *np = realloc(*p, c * elem);
    if (!np) return -1;
    *p = np;
    *cap = c;
    return 0;
}

static int emit(tk *t, int32_t id)
{
    if (grow((void **)&t->out, &t->cap_out, t->n_out + 1, sizeof *t->out)) return SMELT_NOMEM(t->e, "token ids");
    t->out[t->n_out++] = id;
    return 0;
}

/* Max-heap order: higher score first, then the leftmost pair. */
static bool before(const bigram *a, const bigram *b)
{
    return b->score < a->score || (b->score == a->score && b->left > a->left);
}

static int heap_push(tk *t, bigram bg)
{
    if (grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof *t->heap)) return SMELT_NOMEM(t->e, "the merge queue");
    size_t i = t->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&bg, &t->heap[p])) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = bg;
    return 0;
}

static bigram heap_pop(tk *t)
{
    bigram top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&t->heap[c + 1], &t->heap[c])) c++;
        if (!before(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = last;
    return top;
}

static size_t utf8_len(unsigned char c)
{
    static const uint8_t LEN[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return LEN[c >> 4];
}

static int try_pair(tk *t, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return 0;
    size_t size = t->syms[l].n + t->syms[r].n;
    double score;
    if (t->v->kind == SMELT_VOCAB_BPE) {
        int32_t rank = smelt_bpe_rank(t->v, t->buf + t->syms[l].off, t->syms[l].n, t->buf + t->syms[r].off, t->syms[r].n);
        if (rank < 0) return 0;
        score = -(double)rank;
    } else {
        int32_t id = find_text(t->v, t->buf + t->syms[l].off, size);
        if (id < 0) return 0;
        score = t->v->score[id];
    }
    bigram bg = {l, r, score, size};
    return heap_push(t, bg);
}

/* Split t->buf[0, bl) into characters by UTF-8 lead byte (a truncated last character
 * keeps what remains) and merge adjacent pairs, best first (leftmost on ties), until none
 * applies. Returns the number of symbols (merged ones have n == 0) or a negative error. */
static int merge_syms(tk *t, size_t bl, size_t *ns_out)
{
    size_t ns = 0;
    for (size_t o = 0; o < bl; ns++) {
        if (grow((void **)&t->syms, &t->cap_syms, ns + 1, sizeof *t->syms)) return SMELT_NOMEM(t->e, "the symbols");
        size_t k = utf8_len((unsigned char)t->buf[o]);
        if (k > bl - o) k = bl - o;
        t->syms[ns] = (sym){(int32_t)ns - 1, o + k == bl ? -1 : (int32_t)ns + 1, o, k};
        o += k;
    }
    t->n_heap = 0;
    int rc;
    for (size_t i = 1; i < ns; i++)
        if ((rc = try_pair(t, (int32_t)i - 1, (int32_t)i))) return rc;
    while (t->n_heap) {
        bigram bg = heap_pop(t);
        sym *l = &t->syms[bg.left], *r = &t->syms[bg.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != bg.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) t->syms[r->next].prev = bg.left;
        if ((rc = try_pair(t, l->prev, bg.left)) || (rc = try_pair(t, bg.left, l->next))) return rc;
    }
    *ns_out = ns;
    return 0;
}

/* One raw fragment: escape, split into characters, merge the best-scoring pairs, emit. */
static int spm_fragment(tk *t, const char *src, size_t len, bool prefix)
{
    const smelt_vocab *v = t->v;
    uint64_t need;
    if (!smelt_mul_u64((uint64_t)len + 1, 3, &need) || need > (uint64_t)INT32_MAX)
        return SMELT_ERR(t->e, SMELT_EUNSUPPORTED, NULL, NULL, "text fragment of %zu bytes is too long to tokenize", len);
    if (grow((void **)&t->buf, &t->cap_buf, (size_t)need, 1)) return SMELT_NOMEM(t->e, "the text buffer");
    size_t bl = 0;
    if (prefix) {
        memcpy(t->buf, "\xe2\x96\x81", 3);
        bl = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (src[i] == ' ') {
            memcpy(t->buf + bl, "\xe2\x96\x81", 3);
            bl += 3;
        } else {
            t->buf[bl++] = src[i];
        }
    }
    size_t ns;
    int rc = merge_syms(t, bl, &ns);
    if (rc) return rc;
    /* A merged symbol is always a token; a lone character that is not falls back to its
     * bytes, or to the unknown token when the vocabulary lacks a byte token. */
    bool in_unk_run = false;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = t->syms[i].next) {
        const sym *s = &t->syms[i];
        const char *p = t->buf + s->off;
        int32_t id = find_text(v, p, s->n);
        if (id >= 0) {
            if ((rc = emit(t, id))) return rc;
            in_unk_run = false;
            continue;
        }
        bool bytes_ok = true;
        for (size_t j = 0; j < s->n; j++)
            if (v->byte_tok[(unsigned char)p[j]] < 0) bytes_ok = false;
        if (bytes_ok) {
            for (size_t j = 0; j < s->n; j++)
                if ((rc = emit(t, v->byte_tok[(unsigned char)p[j]]))) return rc;
            in_unk_run = false;
            continue;
        }
        if (v->unk < 0)
            return SMELT_ERR(t->e, SMELT_EFORMAT, NULL, NULL,
                             "character 0x%02x… has no token, no byte token and the vocabulary "
                             "has no unknown token",
                             (unsigned char)p[0]);
        if (!in_unk_run && (rc = emit(t, v->unk))) return rc;
        in_unk_run = true;
    }
    return 0;
}

/* One raw fragment of a byte-level BPE vocabulary: pre-tokenize, map bytes to characters,
 * merge by rank per pre-token, emit (a symbol that is no token becomes the tokens of its
 * single bytes, where those exist: llama.cpp's rule). */
static int bpe_fragment(tk *t, const char *src, size_t len)
{
    const smelt_vocab *v = t->v;
    uint64_t need;
    if (!smelt_mul_u64((uint64_t)len + 1, 8, &need) || need > (uint64_t)INT32_MAX)
        return SMELT_ERR(t->e, SMELT_EUNSUPPORTED, NULL, NULL, "text fragment of %zu bytes is too long to tokenize", len);
    if (grow((void **)&t->cps, &t->cap_cps, len + 1, sizeof *t->cps) ||
        grow((void **)&t->ends, &t->cap_ends, len + 1, sizeof *t->ends) ||
        grow((void **)&t->buf, &t->cap_buf, (size_t)need, 1))
        return SMELT_NOMEM(t->e, "the text buffer");
    size_t ncp, nw = smelt_bpe_split(v, src, len, t->cps, &ncp, t->ends), start = 0;
    int rc;
    for (size_t w = 0; w < nw; w++) {
        size_t bl = smelt_bpe_encode(t->cps + start, t->ends[w] - start, t->buf);
        start = t->ends[w];
        int32_t id;
        if (v->ignore_merges && (id = find_text(v, t->buf, bl)) >= 0) {
            if ((rc = emit(t, id))) return rc;
            continue;
        }
        size_t ns;
        if ((rc = merge_syms(t, bl, &ns))) return rc;
        for (int32_t i = ns ? 0 : -1; i >= 0; i = t->syms[i].next) {
            const char *p = t->buf + t->syms[i].off;
            size_t n = t->syms[i].n;
            if ((id = find_text(v, p, n)) >= 0) {
                if ((rc = emit(t, id))) return rc;
                continue;
            }
            for (size_t j = 0; j < n; j++)
                if ((id = find_text(v, p + j, 1)) >= 0 && (rc = emit(t, id))) return rc;
        }
    }
    return 0;
}

static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Split raw fragments on every special token (longest first), as llama.cpp partitions. */
static int partition(const smelt_vocab *v, const char *text, size_t len, bool parse_special, frag **out,
                     size_t *n_out, smelt_err *e)
{
    size_t n = 1, cap = 1, ncap = 0;
    frag *cur = malloc(sizeof *cur), *nxt = NULL;
    if (!cur) return SMELT_NOMEM(e, "text fragments");
    cur[0] = (frag){-1, 0, len};
    for (uint32_t k = 0; k < v->n_special; k++) {
        int32_t sid = v->special[k];
        uint32_t a = v->attr[sid];
        if (!parse_special && (a & (SMELT_TOKATTR_CONTROL | SMELT_TOKATTR_UNKNOWN))) continue;
        size_t tl;
        const char *st = smelt_tok_text(v, (uint32_t)sid, &tl);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            frag f = cur[i];
            /* up to 3 pieces per occurrence; grow generously */
            if (grow((void **)&nxt, &ncap, m + 3, sizeof *nxt)) goto nomem;
            if (f.tok >= 0 || f.len < tl) {
                nxt[m++] = f;
                continue;
            }
            size_t pos = f.off, end = f.off + f.len;
            const char *hit;
            while (pos < end && (hit = memmem(text + pos, end - pos, st, tl)) != NULL) {
                size_t at = (size_t)(hit - text), left = at - pos;
                if (a & SMELT_TOKATTR_LSTRIP)
                    while (left > 0 && is_space(text[pos + left - 1])) left--;
                if (grow((void **)&nxt, &ncap, m + 3, sizeof *nxt)) goto nomem;
                if (left) nxt[m++] = (frag){-1, pos, left};
                nxt[m++] = (frag){sid, 0, 0};
                pos = at + tl;
                if (a & SMELT_TOKATTR_RSTRIP)
                    while (pos < end && is_space(text[pos])) pos++;
            }
            if (pos < end) nxt[m++] = (frag){-1, pos, end - pos};
        }
        frag *tmp = cur;
        cur = nxt;
        nxt = tmp;
        size_t tc = cap;
        cap = ncap;
        ncap = tc;
        n = m;
    }
    free(nxt);
    *out = cur;
    *n_out = n;
    return 0;
nomem:
    free(cur);
    free(nxt);
    return SMELT_NOMEM(e, "text fragments");
}

int smelt_tokenize(const smelt_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                   int32_t **ids, size_t *n, smelt_err *e)
{
    *ids = NULL;
    *n = 0;
    tk t = {.v = v, .e = e};
    frag *fr = NULL;
    size_t nf = 0;
    int rc = 0;
    if (len && (rc = partition(v, text, len, parse_special, &fr, &nf, e))) return rc;
    if (add_special && v->add_bos) {
        if (v->bos < 0) {
            rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, "tokenizer.ggml.bos_token_id",
                           "the vocabulary asks for a BOS token but has none");
            goto out;
        }
        if ((rc = emit(&t, v->bos))) goto out;
    }
    bool prev_special = true; /* the first fragment gets the dummy prefix */
    for (size_t i = 0; i < nf; i++) {
        if (fr[i].tok >= 0) {
            if ((rc = emit(&t, fr[i].tok))) goto out;
            prev_special = true;
        } else {
            if (v->kind == SMELT_VOCAB_BPE) rc = bpe_fragment(&t, text + fr[i].off, fr[i].len);
            else rc = spm_fragment(&t, text + fr[i].off, fr[i].len, v->add_space_prefix && prev_special);
            if (rc) goto out;
            prev_special = false;
        }
    }
    if (add_special && v->add_eos) {
        if (v->eos < 0) {
            rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, "tokenizer.ggml.eos_token_id",
                           "the vocabulary asks for an EOS token but has none");
            goto out;
        }
        if ((rc = emit(&t, v->eos))) goto out;
    }
    if (!t.out && (rc = grow((void **)&t.out, &t.cap_out, 1, sizeof *t.out))) {
        rc = SMELT_NOMEM(e, "token ids");
        goto out;
    }
out:
    free(fr);
    free(t.buf);
    free(t.syms);
    free(t.heap);
    free(t.cps);
    free(t.ends);
    if (rc) {
        free(t.out);
        return rc;
    }
    *ids = t.out;
    *n = t.n_out;
    return 0;
}

/* ==== detokenizing ==== */

int smelt_detokenize_ex(const smelt_vocab *v, const int32_t *ids, size_t n, bool remove_special,
                        bool unparse_special, char **text, size_t *len, smelt_err *e)
{
    *text = NULL;
    if (len) *len = 0;
    for (size_t i = 0; i < n; i++)
        if (!in_range(v, ids[i]))
            return SMELT_ERR(e, SMELT_EMISMATCH, NULL, NULL,
                             "token id %" PRId32 " at position %zu is out of range for a vocabulary of %" PRIu32
                             " tokens",
                             ids[i], i, v->n);
    bool strip = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        strip = false;
        ids++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos) n--;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        smelt_token_to_piece(v, ids[i], unparse_special, &pl);
        total += pl;
    }
    char *s = malloc(total + 1);
    if (!s) return SMELT_NOMEM(e, "the detokenized text");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = smelt_token_to_piece(v, ids[i], unparse_special, &pl);
        if (strip && pl && p[0] == ' ') {
            p++;
            pl--;
        }
        strip = false;
        memcpy(s + k, p, pl);
        k += pl;
    }
    if (v->kind == SMELT_VOCAB_BPE && v->clean_spaces) k = smelt_bpe_clean_spaces(s, k);
    s[k] = 0;
    *text = s;
    if (len) *len = k;
    return 0;
}

int smelt_detokenize(const smelt_vocab *v, const int32_t *ids, size_t n, char **text, smelt_err *e)
{
    return smelt_detokenize_ex(v, ids, n, false, false, text, NULL, e);
}

/* tokenize_bpe.c — byte-level BPE (tokenizer.ggml.model "gpt2"): the llama3 and qwen2
 * pre-tokenizers written out by hand (no regex engine), GPT-2's byte-to-character map,
 * merge ranks, and llama.cpp's clean-up of detokenized text. See tokenize_int.h for the
 * interface and docs/tokenizer.md for the behaviour. Includes formats/ only. */
#include "tokenize_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* ==== Unicode classes ==== */

enum { C_OTHER = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3 };

/* (first code point, class) steps; see gen-ucat.py */
static const uint32_t UCAT[][2] = {
#include "ucat_data.inc"
};

static int ucls(uint32_t c)
{
    if (c < 0x80) {
        if (c == ' ' || (c >= '\t' && c <= '\r')) return C_SPACE;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_LETTER;
        if (c >= '0' && c <= '9') return C_NUMBER;
        return C_OTHER;
    }
    /* Unicode White_Space outside ASCII */
    if (c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
        c == 0x202F || c == 0x205F || c == 0x3000)
        return C_SPACE;
    size_t lo = 0, hi = sizeof UCAT / sizeof UCAT[0];
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (UCAT[mid][0] <= c) lo = mid;
        else hi = mid;
    }
    return (int)UCAT[lo][1];
}

/* ==== UTF-8 ==== */

/* llama.cpp's decoder: lead-byte length, continuation bytes checked, overlong forms and
 * surrogates accepted; anything else is U+FFFD for one byte. Code points above U+10FFFF
 * (which llama.cpp cannot re-encode and throws on) are invalid here too. Returns the
 * bytes used (len > 0). */
static size_t decode_one(const unsigned char *s, size_t len, uint32_t *out)
{
    unsigned char b = s[0];
    size_t k = b < 0x80 ? 1 : b < 0xC0 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF8 ? 4 : 0;
    bool ok = k > 0 && k <= len;
    for (size_t j = 1; ok && j < k; j++) ok = (s[j] & 0xC0) == 0x80;
    uint32_t c = 0;
    if (ok) {
        static const unsigned char LEAD_MASK[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
        c = b & LEAD_MASK[k];
        for (size_t j = 1; j < k; j++) c = (c << 6) | (s[j] & 0x3F);
        ok = c <= 0x10FFFF;
    }
    *out = ok ? c : 0xFFFD;
    return ok ? k : 1;
}

static size_t decode_utf8(const unsigned char *s, size_t len, uint32_t *cps)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) i += decode_one(s + i, len - i, &cps[n++]);
    return n;
}

static size_t put_utf8(uint32_t c, unsigned char *d)
{
    if (c < 0x80) {
        d[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        d[0] = (unsigned char)(0xC0 | (c >> 6));
        d[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (c >> 12));
        d[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | (c >> 18));
    d[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* ==== GPT-2's byte ↔ character map ==== */

/* Bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; the other 68 bytes take
 * U+0100.. in byte order (0x00-0x20, then 0x7F-0xA0, then 0xAD). */
static uint32_t byte_char(unsigned b)
{
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    if (b == 0xAD) return 0x100 + 67;
    return b;
}

static int char_byte(uint32_t c)
{
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) return (int)c;
    if (c >= 0x100 && c < 0x100 + 33) return (int)(c - 0x100);
    if (c >= 0x100 + 33 && c < 0x100 + 67) return (int)(0x7F + c - 0x100 - 33);
    if (c == 0x100 + 67) return 0xAD;
    return -1;
}

size_t smelt_bpe_encode(const uint32_t *cps, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char u[4];
        size_t k = put_utf8(cps[i], u);
        for (size_t j = 0; j < k; j++) o += put_utf8(byte_char(u[j]), (unsigned char *)dst + o);
    }
    return o;
}

size_t smelt_bpe_decode(const char *t, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = decode_one((const unsigned char *)t + i, n - i, &c);
        i += k;
        int b = char_byte(c);
        if (b >= 0) {
            if (dst) dst[o] = (char)b;
            o++;
            continue;
        }
        unsigned char u[4];
        size_t ul = put_utf8(c, u);
        char hex[32];
        int hl = snprintf(hex, sizeof hex, "[UNK_BYTE_0x");
        for (size_t j = 0; j < ul; j++) hl += snprintf(hex + hl, sizeof hex - (size_t)hl, "%02x", u[j]);
        if (dst) {
            memcpy(dst + o, hex, (size_t)hl);
            memcpy(dst + o + hl, t, n);
            dst[o + hl + n] = ']';
        }
        o += (size_t)hl + n + 1;
    }
    return o;
}

/* ==== pre-tokenizer ==== */

/* The llama3 / qwen2 split expression, alternative by alternative:
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,D} |
 *    ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 * with D = 3 (llama3) or 1 (qwen2). Every code point starts a match of one of them, so
 * the pre-tokens are the matches. */
size_t smelt_bpe_split(const smelt_vocab *v, const char *text, size_t len, uint32_t *cps, size_t *ncp, size_t *ends)
{
    size_t n = decode_utf8((const unsigned char *)text, len, cps), k = 0;
    *ncp = n;
    size_t maxd = v->max_digits > 0 ? (size_t)v->max_digits : 1;
    for (size_t i = 0; i < n;) {
        uint32_t c = cps[i];
        int cl = ucls(c);
        size_t j = i + 1;
        if (c == '\'' && i + 1 < n) {
            uint32_t a = cps[i + 1] < 0x80 ? (cps[i + 1] | 0x20) : 0;
            uint32_t b = i + 2 < n && cps[i + 2] < 0x80 ? (cps[i + 2] | 0x20) : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') {
                j = i + 2;
                goto cut;
            }
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
                j = i + 3;
                goto cut;
            }
        }
        if (c != '\r' && c != '\n' && cl != C_NUMBER && (cl == C_LETTER || (i + 1 < n && ucls(cps[i + 1]) == C_LETTER))) {
            j = i + 1;
            while (j < n && ucls(cps[j]) == C_LETTER) j++;
            goto cut;
        }
        if (cl == C_NUMBER) {
            j = i + 1;
            while (j < n && j - i < maxd && ucls(cps[j]) == C_NUMBER) j++;
            goto cut;
        }
        {
            size_t p = i + (c == ' ');
            if (p < n && ucls(cps[p]) == C_OTHER) {
                j = p + 1;
                while (j < n && ucls(cps[j]) == C_OTHER) j++;
                while (j < n && (cps[j] == '\r' || cps[j] == '\n')) j++;
                goto cut;
            }
        }
        if (cl == C_SPACE) {
            size_t w = i, last_nl = 0;
            for (; w < n && ucls(cps[w]) == C_SPACE; w++)
                if (cps[w] == '\r' || cps[w] == '\n') last_nl = w + 1;
            if (last_nl) j = last_nl;
            else if (w - i > 1 && w < n) j = w - 1;
            else j = w;
        }
    cut:
        ends[k++] = j;
        i = j;
    }
    return k;
}

/* ==== merges ==== */

static uint64_t pair_hash(const char *l, size_t ln, const char *r, size_t rn)
{
    uint64_t h = smelt_tok_hash(l, ln, SMELT_TOK_HASH0);
    h = smelt_tok_hash("\x01", 1, h); /* separates ("ab","c") from ("a","bc") */
    h = smelt_tok_hash(r, rn, h);
    return h ^ (h >> 29);
}

int32_t smelt_bpe_rank(const smelt_vocab *v, const char *l, size_t ln, const char *r, size_t rn)
{
    if (!v->mslot) return -1;
    for (size_t i = (size_t)pair_hash(l, ln, r, rn) & v->mmask; v->mslot[i]; i = (i + 1) & v->mmask) {
        uint32_t m = v->mslot[i] - 1;
        const char *t = v->mtext + v->m_off[m];
        size_t sl = v->m_split[m], tl = v->m_off[m + 1] - v->m_off[m];
        if (sl == ln && tl == ln + 1 + rn && memcmp(t, l, ln) == 0 && memcmp(t + ln + 1, r, rn) == 0) return (int32_t)m;
    }
    return -1;
}

/* The pre-tokenizer names llama.cpp gives these two expressions, with what each name
 * changes besides the expression (llama-vocab.cpp's loader). */
static const struct {
    const char *name;
    int max_digits;
    bool ignore_merges, add_bos, clean_spaces;
} PRE[] = {
    {"llama3", 3, true, true, true},     {"llama-v3", 3, true, true, true},   {"llama-bpe", 3, true, true, true},
    {"smaug-bpe", 3, false, false, true}, {"qwen2", 1, false, false, false}, {"deepseek-r1-qwen", 1, false, false, false},
};

int smelt_bpe_load(smelt_vocab *v, const smelt_gguf *g, const char *path, smelt_err *e)
{
    const smelt_gguf_kv *pk = smelt_gguf_get_kv(g, "tokenizer.ggml.pre");
    if (!pk)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "tokenizer.ggml.pre",
                         "a BPE vocabulary without a pre-tokenizer name (llama.cpp falls back to its GPT-2 "
                         "'default' split); smelt tokenizes llama3 (llama-bpe, smaug-bpe) and qwen2 only");
    smelt_str pre;
    int rc = smelt_gguf_get_str(g, "tokenizer.ggml.pre", &pre, e);
    if (rc) return rc;
    size_t which = sizeof PRE / sizeof PRE[0];
    for (size_t i = 0; i < sizeof PRE / sizeof PRE[0]; i++)
        if (strlen(PRE[i].name) == pre.n && memcmp(PRE[i].name, pre.p, pre.n) == 0) which = i;
    if (which == sizeof PRE / sizeof PRE[0])
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, "tokenizer.ggml.pre",
                         "pre-tokenizer '%.*s' is not supported: smelt tokenizes BPE vocabularies with the llama3 "
                         "(llama-bpe, llama3, llama-v3, smaug-bpe) and qwen2 (qwen2, deepseek-r1-qwen) pre-tokenizers",
                         (int)(pre.n > 64 ? 64 : pre.n), pre.p);
    v->max_digits = PRE[which].max_digits;
    v->ignore_merges = PRE[which].ignore_merges;
    v->add_bos = PRE[which].add_bos;
    v->clean_spaces = PRE[which].clean_spaces;

    const smelt_gguf_kv *mk;
    if ((rc = smelt_gguf_get_arr(g, "tokenizer.ggml.merges", SMELT_GGUF_STRING, &mk, e))) return rc;
    if (mk->n >= INT32_MAX)
        return SMELT_CORRUPT(e, path, mk->offset, "tokenizer.ggml.merges", "%" PRIu64 " merges is too many", mk->n);
    uint32_t nm = (uint32_t)mk->n;
    size_t total = 0;
    for (uint32_t i = 0; i < nm; i++) {
        smelt_str s = smelt_gguf_arr_str(mk, i);
        if (s.n > UINT32_MAX / 2 || total + s.n > UINT32_MAX / 2)
            return SMELT_CORRUPT(e, path, mk->offset, "tokenizer.ggml.merges", "merge %" PRIu32 " is too long", i);
        total += (size_t)s.n;
    }
    v->n_merges = nm;
    v->mtext = malloc(total ? total : 1);
    v->m_off = malloc(sizeof *v->m_off * ((size_t)nm + 1));
    v->m_split = malloc(sizeof *v->m_split * (nm ? nm : 1));
    size_t cap = 16;
    while (cap < (size_t)nm * 2) cap <<= 1;
    v->mslot = calloc(cap, sizeof *v->mslot);
    if (!v->mtext || !v->m_off || !v->m_split || !v->mslot) return SMELT_NOMEM(e, "the merges");
    v->mmask = (uint32_t)(cap - 1);
    size_t pos = 0;
    for (uint32_t i = 0; i < nm; i++) {
        smelt_str s = smelt_gguf_arr_str(mk, i);
        v->m_off[i] = (uint32_t)pos;
        memcpy(v->mtext + pos, s.p, (size_t)s.n);
        pos += (size_t)s.n;
        /* "left right", split at the first space after the first byte; without one the
         * merge can never apply (llama.cpp files it under an empty pair) */
        const char *sp = s.n > 1 ? memchr(s.p + 1, ' ', (size_t)s.n - 1) : NULL;
        v->m_split[i] = sp ? (uint32_t)(sp - s.p) : UINT32_MAX;
    }
    v->m_off[nm] = (uint32_t)pos;
    for (uint32_t i = 0; i < nm; i++) {
        if (v->m_split[i] == UINT32_MAX) continue;
        const char *t = v->mtext + v->m_off[i];
        size_t ln = v->m_split[i], rn = v->m_off[i + 1] - v->m_off[i] - ln - 1;
        if (smelt_bpe_rank(v, t, ln, t + ln + 1, rn) >= 0) continue; /* the first rank of a pair wins */
        size_t h = (size_t)pair_hash(t, ln, t + ln + 1, rn) & v->mmask;
        while (v->mslot[h]) h = (h + 1) & v->mmask;
        v->mslot[h] = i + 1;
    }
    return 0;
}

void smelt_bpe_free(smelt_vocab *v)
{
    free(v->mtext);
    free(v->m_off);
    free(v->m_split);
    free(v->mslot);
}

/* ==== detokenizing ==== */

size_t smelt_bpe_clean_spaces(char *s, size_t n)
{
    if (n == 0) return 0;
    /* " ?", " !", " .", " ," lose the space */
    size_t o = 1;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) o--;
        s[o++] = x;
    }
    n = o;
    /* " ' " becomes "'" */
    o = 1;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
            o--;
            s[++i] = 0; /* the space after it goes too; its NUL is what the next step sees */
        }
        s[o++] = x;
    }
    n = o;
    /* " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it) */
    o = 1;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = s[i + 1], x2 = i + 2 < n ? s[i + 2] : 0;
            if (x1 == 's' || x1 == 'm' || (i + 2 < n && ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')))) o--;
        }
        s[o++] = x;
    }
    return o;
}

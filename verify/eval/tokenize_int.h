/* tokenize_int.h — the vocabulary record shared by the tokenizer's two files
 * (tokenize.c: loading, special tokens, SPM, the merge loop; tokenize_bpe.c: byte-level
 * BPE pre-tokenizers, merges, byte mapping). Not installed; layer: verify. */
#ifndef SMELT_TOKENIZE_INT_H
#define SMELT_TOKENIZE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/base/err.h"
#include "formats/gguf.h"
#include "verify/eval/tokenize.h"

enum { SMELT_VOCAB_SPM = 1, SMELT_VOCAB_BPE = 2 };

struct smelt_vocab {
    int kind;            /* SMELT_VOCAB_* */
    uint32_t n;
    char *text;          /* all token texts, back to back */
    size_t *off;         /* n + 1 offsets into text */
    float *score;
    int32_t *type;       /* GGUF token type (TT_NORMAL when the file has none) */
    uint32_t *attr;      /* SMELT_TOKATTR_* */
    char *piece;         /* rendered pieces (llama_token_to_piece, special = true) */
    size_t *piece_off;   /* n + 1 */
    uint32_t *slot;      /* text → id hash table: id + 1, 0 = empty */
    uint32_t mask;
    size_t max_len;      /* longest token text in bytes */
    int32_t byte_tok[256];
    int32_t *special;    /* special-token partition order: longest text first */
    uint32_t n_special;
    int32_t bos, eos, unk;
    bool add_bos, add_eos, add_space_prefix;
    uint64_t hash;
    /* byte-level BPE (kind == SMELT_VOCAB_BPE) */
    int max_digits;      /* \p{N}{1,max_digits} in the pre-tokenizer: 3 (llama3) or 1 (qwen2) */
    bool ignore_merges;  /* a pre-token that is a token is emitted whole */
    bool clean_spaces;   /* detokenizing removes the space before ?!., and some contractions */
    char *mtext;         /* merges "left right", back to back */
    uint32_t *m_off;     /* n_merges + 1 offsets into mtext */
    uint32_t *m_split;   /* length of the left part of merge i (UINT32_MAX: unusable) */
    uint32_t n_merges;
    uint32_t *mslot;     /* (left, right) → rank hash table: rank + 1, 0 = empty */
    uint32_t mmask;
};

static inline uint64_t smelt_tok_hash(const char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull; /* FNV-1a */
    return h;
}
#define SMELT_TOK_HASH0 1469598103934665603ull

static inline const char *smelt_tok_text(const smelt_vocab *v, uint32_t id, size_t *len)
{
    *len = v->off[id + 1] - v->off[id];
    return v->text + v->off[id];
}

/* tokenize_bpe.c */

/* Read tokenizer.ggml.pre and tokenizer.ggml.merges (EUNSUPPORTED names a pre-tokenizer
 * smelt does not implement; EFORMAT a missing or mistyped merges array). Sets the BPE
 * fields and the pre-tokenizer's add_bos default. */
int smelt_bpe_load(smelt_vocab *v, const smelt_gguf *g, const char *path, smelt_err *e);
/* Rank of the merge (left, right), or -1. */
int32_t smelt_bpe_rank(const smelt_vocab *v, const char *l, size_t ln, const char *r, size_t rn);
/* Decode text as llama.cpp does (an invalid byte is U+FFFD) into cps[] (room for len) and
 * cut it into pre-tokens: ends[k] is the code point index where pre-token k ends. Returns
 * the number of pre-tokens; *ncp receives the number of code points. */
size_t smelt_bpe_split(const smelt_vocab *v, const char *text, size_t len, uint32_t *cps, size_t *ncp,
                       size_t *ends);
/* Code points → UTF-8 → one byte-level character per byte; dst needs 8 bytes per code
 * point. Returns bytes written. */
size_t smelt_bpe_encode(const uint32_t *cps, size_t n, char *dst);
/* A byte-level token text back to bytes (llama.cpp's rendering: a character outside the
 * byte map becomes "[UNK_BYTE_0x..<text>]"). dst NULL: only count. */
size_t smelt_bpe_decode(const char *t, size_t n, char *dst);
/* llama.cpp's clean-up of detokenized text (" ?" → "?", " ' " → "'", " 's" → "'s" …), in
 * place; returns the new length. */
size_t smelt_bpe_clean_spaces(char *s, size_t n);
void smelt_bpe_free(smelt_vocab *v);

#endif

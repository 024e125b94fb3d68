/* tokenize.h — the SentencePiece (SPM, tokenizer.ggml.model "llama") and byte-level BPE
 * ("gpt2" with the llama3 or qwen2 pre-tokenizer, tokenize_bpe.c) tokenizers over a GGUF
 * vocabulary, giving the same token ids as llama.cpp's llama_tokenize, and the reverse.
 * Layer: verify. Includes formats/ only. BPE: see docs/tokenizer.md (the SPM notes below
 * on special tokens, BOS/EOS and loading apply to both).
 *
 * What is reproduced (llama.cpp src/llama-vocab.cpp, node-llama-cpp 3.21.1 bundle):
 *  - the vocabulary load: token texts (an empty text becomes "[EMPTY_<id>]"), scores (f32 or
 *    i32), token types → attributes, special ids with their defaults (bos 1, eos 2, unk 0)
 *    and out-of-range rules, add_bos/add_eos/add_space_prefix, and the text-based attribute
 *    fix-ups (control-looking end/FIM tokens, Phi-3's right-strip);
 *  - special-token partitioning (control/unknown tokens only when parse_special, user-defined
 *    tokens always, longest first, with lstrip/rstrip), the dummy-prefix space before the
 *    first text fragment and after every special token, spaces escaped as U+2581;
 *  - the SPM merge loop (highest score first, leftmost on ties) and byte fallback to <0xXX>
 *    (or to the single-byte piece).
 * Deliberate differences (see docs/tokenizer.md):
 *  - a character that has neither a piece nor byte pieces becomes the unknown token, runs of
 *    such characters one unknown token, as SentencePiece itself encodes; llama.cpp throws
 *    (std::out_of_range) there. Without an unknown token this is an error (EFORMAT).
 *  - a vocabulary with two identical token texts is refused (EFORMAT); llama.cpp aborts.
 *  - special tokens of equal length are tried in id order (llama.cpp's order is unspecified).
 *
 * A smelt_vocab is immutable after smelt_vocab_from_gguf() and may be used from several
 * threads at once. It copies what it needs: the GGUF may be closed afterwards. */
#ifndef SMELT_TOKENIZE_H
#define SMELT_TOKENIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/gguf.h"

typedef struct smelt_vocab smelt_vocab;

/* Token attributes (bit values are llama.cpp's llama_token_attr). */
enum {
    SMELT_TOKATTR_UNKNOWN = 1 << 0,
    SMELT_TOKATTR_UNUSED = 1 << 1,
    SMELT_TOKATTR_NORMAL = 1 << 2,
    SMELT_TOKATTR_CONTROL = 1 << 3,
    SMELT_TOKATTR_USER_DEFINED = 1 << 4,
    SMELT_TOKATTR_BYTE = 1 << 5,
    SMELT_TOKATTR_LSTRIP = 1 << 7,
    SMELT_TOKATTR_RSTRIP = 1 << 8,
};

/* Build from GGUF metadata (tokenizer.ggml.model "llama" = SPM, "gpt2" = BPE with
 * tokenizer.ggml.pre and tokenizer.ggml.merges; tokens, scores, token_type, bos/eos/unk/…
 * ids, add_bos_token/add_eos_token, add_space_prefix). Errors: EFORMAT for a missing or
 * mistyped key, short scores/token_type arrays or duplicate token texts (naming the file,
 * the key and the id); EUNSUPPORTED naming any other tokenizer model or pre-tokenizer;
 * ENOMEM. *out is NULL on error. */
int smelt_vocab_from_gguf(const smelt_gguf *g, smelt_vocab **out, smelt_err *e);
void smelt_vocab_free(smelt_vocab *v); /* NULL is a no-op */

uint32_t smelt_vocab_n_tokens(const smelt_vocab *v);
int32_t smelt_vocab_bos(const smelt_vocab *v); /* -1 if none */
int32_t smelt_vocab_eos(const smelt_vocab *v); /* -1 if none */
int32_t smelt_vocab_unk(const smelt_vocab *v); /* -1 if none */
bool smelt_vocab_add_bos(const smelt_vocab *v);
bool smelt_vocab_add_eos(const smelt_vocab *v);
bool smelt_vocab_add_space_prefix(const smelt_vocab *v);
/* The token's text as stored (with U+2581 for spaces); borrowed until smelt_vocab_free().
 * NULL (and *len = 0) for an id out of range. len may be NULL. */
const char *smelt_vocab_piece(const smelt_vocab *v, int32_t id, size_t *len);
float smelt_vocab_score(const smelt_vocab *v, int32_t id);       /* 0 if out of range */
uint32_t smelt_vocab_attr(const smelt_vocab *v, int32_t id);     /* SMELT_TOKATTR_* bits */
/* Token id of an exact text (e.g. "<0x0A>", "▁the"), or -1. */
int32_t smelt_vocab_find(const smelt_vocab *v, const char *text, size_t len);

/* Same contract as llama_tokenize(vocab, text, len, add_special, parse_special):
 * add_special prepends BOS / appends EOS as the vocabulary asks; parse_special turns the
 * texts of control tokens (e.g. "<s>") into those tokens. Text is bytes (need not be valid
 * UTF-8, may hold NULs). *ids is malloc'd (caller frees; non-NULL even when *n is 0), *n
 * tokens. Errors: EFORMAT when a character has no token and the vocabulary no unknown
 * token, or BOS/EOS is required but absent; ENOMEM. On error *ids = NULL, *n = 0.
 * Thread-safe on a shared vocab. */
int smelt_tokenize(const smelt_vocab *v, const char *text, size_t len, bool add_special,
                   bool parse_special, int32_t **ids, size_t *n, smelt_err *e);

/* Token ids → UTF-8 text as llama_detokenize(remove_special=false, unparse_special=false)
 * gives it: control and unknown tokens render as nothing, byte tokens as their byte, U+2581
 * as a space, and (with add_space_prefix) one leading space of the first token is dropped.
 * *text is malloc'd and NUL-terminated (caller frees). Errors: EMISMATCH for an id out of
 * range (naming it and its position); ENOMEM. */
int smelt_detokenize(const smelt_vocab *v, const int32_t *ids, size_t n, char **text, smelt_err *e);
/* The general form: llama_detokenize(remove_special, unparse_special); *len receives the
 * byte length (the text may contain NUL bytes from <0x00>). len may be NULL. */
int smelt_detokenize_ex(const smelt_vocab *v, const int32_t *ids, size_t n, bool remove_special,
                        bool unparse_special, char **text, size_t *len, smelt_err *e);
/* One token as llama_token_to_piece(id, lstrip = 0, special) renders it; borrowed, not
 * NUL-terminated. NULL for an id out of range. */
const char *smelt_token_to_piece(const smelt_vocab *v, int32_t id, bool special, size_t *len);

/* A 64-bit fingerprint of the vocabulary: xxh64 over the token count and, per token, its
 * text (an empty one as "[EMPTY_<id>]"), score (f32 bits) and GGUF token type (1 when the
 * file has no token_type array). Equal vocabularies give equal values; special ids and
 * flags are not part of it. */
uint64_t smelt_vocab_hash(const smelt_vocab *v);

#endif

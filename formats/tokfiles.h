/* tokfiles.h — the tokenizer files of a Hugging Face model directory: SentencePiece's
 * tokenizer.model (a protobuf, parsed here without libprotobuf), tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, generation_config.json, added_tokens.json
 * and chat_template.jinja/.json. Layer: formats. Includes base/, jansson.
 *
 * This module parses and validates; what the files mean for a GGUF vocabulary is decided
 * in convert/vocab.c. Strings and JSON trees are borrowed until smelt_tokfiles_free(). */
#ifndef SMELT_TOKFILES_H
#define SMELT_TOKFILES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ==== SentencePiece model (tokenizer.model) ==== */

/* Piece types, as in sentencepiece_model.proto (and GGUF's token_type values). */
enum {
    SMELT_SPM_NORMAL = 1,
    SMELT_SPM_UNKNOWN = 2,
    SMELT_SPM_CONTROL = 3,
    SMELT_SPM_USER_DEFINED = 4,
    SMELT_SPM_UNUSED = 5,
    SMELT_SPM_BYTE = 6,
};

/* TrainerSpec.model_type */
enum { SMELT_SPM_UNIGRAM = 1, SMELT_SPM_BPE = 2, SMELT_SPM_WORD = 3, SMELT_SPM_CHAR = 4 };

typedef struct smelt_spm_piece {
    const char *piece; /* NUL-terminated copy (pieces never contain NUL) */
    uint32_t len;
    float score;       /* bits as stored (negative zero and all) */
    int type;          /* SMELT_SPM_* */
} smelt_spm_piece;

typedef struct smelt_spm {
    smelt_spm_piece *pieces;
    size_t n_pieces;
    /* trainer_spec (defaults as in the .proto when a field is absent) */
    int model_type;                  /* SMELT_SPM_UNIGRAM … */
    int64_t trainer_vocab_size;      /* what the trainer was asked for (8000 default) */
    bool byte_fallback;              /* false */
    bool split_digits;               /* false */
    bool treat_whitespace_as_suffix; /* false */
    int32_t unk_id, bos_id, eos_id, pad_id; /* 0, 1, 2, -1 */
    /* normalizer_spec */
    const char *normalizer_name;     /* "" when absent */
    bool add_dummy_prefix;           /* true */
    bool remove_extra_whitespaces;   /* true */
    bool escape_whitespaces;         /* true */
    bool has_precompiled_charsmap;
} smelt_spm;

/* Parse and validate like SentencePiece's loader: well-formed protobuf, at least one
 * piece, no empty or duplicate piece, known piece types, exactly one UNKNOWN piece.
 * Errors name the file, the piece and the byte offset. Caller frees. */
int smelt_spm_load(const char *path, smelt_spm **out, smelt_err *e);
int smelt_spm_load_mem(const void *buf, size_t len, const char *name, smelt_spm **out, smelt_err *e);
void smelt_spm_free(smelt_spm *s); /* NULL is a no-op */
/* Id of a piece, or -1 (linear time). */
int64_t smelt_spm_find(const smelt_spm *s, const char *piece);

/* ==== the JSON files ==== */

/* llama.cpp's special token kinds, in the order its converter visits them. */
enum { SMELT_TOK_BOS, SMELT_TOK_EOS, SMELT_TOK_UNK, SMELT_TOK_SEP, SMELT_TOK_PAD, SMELT_TOK_CLS, SMELT_TOK_MASK,
       SMELT_TOK_N_KINDS };
/* "bos", "eos", … */
const char *smelt_tok_kind_name(int kind);

typedef struct smelt_added_token {
    int64_t id;
    const char *content;
    int special;    /* -1 when the file does not say */
    int normalized; /* -1 when the file does not say */
} smelt_added_token;

typedef struct smelt_tokfiles {
    const char *dir;
    smelt_spm *spm;              /* tokenizer.model, or NULL */
    json_t *tokenizer_json;      /* tokenizer.json (object), or NULL */
    json_t *tokenizer_config;    /* tokenizer_config.json (object), or NULL */
    json_t *special_tokens_map;  /* special_tokens_map.json (object), or NULL */
    json_t *generation_config;   /* generation_config.json (object), or NULL; an unreadable
                                    one is ignored (gen_config_error says why), as llama.cpp does */
    char gen_config_error[256];
    json_t *added_tokens_json;   /* added_tokens.json (object content → id), or NULL */
    char *chat_template_jinja;   /* chat_template.jinja, or NULL */
    json_t *chat_template_json;  /* chat_template.json (object), or NULL */
    /* additional_chat_templates/<name>.jinja, sorted by name */
    char **extra_template_names, **extra_templates;
    size_t n_extra_templates;

    /* typed views of the above */
    smelt_added_token *added;    /* tokenizer.json "added_tokens", file order */
    size_t n_added;
    smelt_added_token *decoder;  /* tokenizer_config.json "added_tokens_decoder", file order */
    size_t n_decoder;
    int add_bos, add_eos;        /* tokenizer_config add_bos_token / add_eos_token: 0, 1, -1 unset */
    int add_prefix_space;        /* tokenizer_config add_prefix_space: 0, 1, -1 unset/null */
    const char *special[SMELT_TOK_N_KINDS];     /* tokenizer_config <kind>_token content, or NULL */
    const char *map_special[SMELT_TOK_N_KINDS]; /* special_tokens_map.json <kind>_token content */
} smelt_tokfiles;

/* Load every tokenizer file present in dir (none is required). Malformed JSON, a
 * mistyped field the converter relies on, or a bad tokenizer.model is an error naming
 * the file and the key. Caller frees. */
int smelt_tokfiles_load(const char *dir, smelt_tokfiles **out, smelt_err *e);
void smelt_tokfiles_free(smelt_tokfiles *t); /* NULL is a no-op */

#endif

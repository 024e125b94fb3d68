/* vocab.h — a SentencePiece vocabulary (or a byte-level BPE tokenizer.json) and its
 * special-token files → tokenizer.ggml.* and tokenizer.chat_template KVs, as llama.cpp's
 * converter writes them (its _set_vocab_sentencepiece, _set_vocab_gpt2 and SpecialVocab rules:
 * [PADn] filler, added_tokens.json, added_tokens_decoder overrides, special ids from
 * tokenizer_config.json + tokenizer.json and then config.json, post-processor templates,
 * chat templates, normalizer flags). Layer: convert. Includes formats/tokfiles.h, kvs.h. */
#ifndef SMELT_VOCAB_H
#define SMELT_VOCAB_H

#include <jansson.h>
#include <stdint.h>

#include "convert/kvs.h"
#include "formats/base/notes.h"
#include "formats/tokfiles.h"

typedef struct smelt_cv_vocab_info {
    uint64_t n_vocab;      /* tokens written (= config vocab_size) */
    uint64_t n_tokenizer;  /* tokens the tokenizer defines (pieces + added tokens) */
    uint64_t n_pad;        /* [PADn] fillers (n_vocab - n_tokenizer) */
} smelt_cv_vocab_info;

/* Append the tokenizer KVs. vocab_size is config.json's; the tokenizer may define fewer
 * tokens (the rest become [PADn], as llama.cpp does for resized embeddings) but never
 * more: that is EMISMATCH with the resize rule in the message. A directory without
 * tokenizer.model converts tokenizer.json as a byte-level BPE vocabulary (llama3 or qwen2
 * pre-tokenizer; anything else is EUNSUPPORTED naming the part); with neither file it is
 * EUNSUPPORTED. */
int smelt_cv_vocab_kvs(const smelt_tokfiles *t, json_t *config, const char *cfg_path, int64_t vocab_size, smelt_kvs *kv,
                    smelt_cv_vocab_info *info, const smelt_notes *notes, smelt_err *e);

#endif

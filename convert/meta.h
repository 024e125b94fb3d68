/* meta.h — the general.* provenance keys llama.cpp's converter writes: name, basename,
 * finetune, version, organization, size label, license, base models, datasets, tags,
 * languages (from the README.md model card front matter, config.json's _name_or_path and
 * the directory name, with gguf-py's heuristics) and general.sampling.* (from
 * generation_config.json). Layer: convert. Includes kvs.h, jansson. */
#ifndef SMELT_META_H
#define SMELT_META_H

#include <jansson.h>
#include <stdint.h>

#include "convert/kvs.h"
#include "formats/base/notes.h"

/* Parameter counts over the output tensors, as gguf-py's get_total_parameter_count(). */
typedef struct smelt_param_count {
    int64_t total, shared, expert, expert_count;
} smelt_param_count;

typedef struct smelt_meta_src {
    const char *card_dir;      /* directory holding README.md (may be NULL) */
    json_t *config;            /* config.json (for _name_or_path) */
    const char *name_path;     /* path whose last component is the fallback name (the model dir) */
    const char *name_override; /* general.name given by the user, or NULL */
    json_t *gen_config;        /* generation_config.json, or NULL */
} smelt_meta_src;

/* Append the sampling and provenance KVs (everything set_gguf_meta_model writes, in its
 * order). Parts of a model card smelt cannot read are skipped with a note. */
int smelt_meta_kvs(const smelt_meta_src *src, const smelt_param_count *pc, smelt_kvs *kv, const smelt_notes *notes,
                   smelt_err *e);

/* gguf-py's size label: "7.2B", "8x7.2B", "260K". */
void smelt_meta_size_label(const smelt_param_count *pc, char *buf, size_t n);
/* gguf-py's id_to_title ("tiny-mixtral" → "Tiny Mixtral"); caller frees. */
char *smelt_meta_title(const char *id);

#endif

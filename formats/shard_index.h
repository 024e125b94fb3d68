/* shard_index.h — a Hugging Face shard index (model.safetensors.index.json,
 * pytorch_model.bin.index.json): its weight_map read and checked, and the shard files it
 * names, for the safetensors and PyTorch readers alike.
 * Layer: formats. Includes formats/base; jansson. */
#ifndef SMELT_SHARD_INDEX_H
#define SMELT_SHARD_INDEX_H

#include <jansson.h>
#include <stddef.h>

#include "formats/base/err.h"

typedef struct smelt_shard_index {
    json_t *root;       /* the parsed file (owned) */
    json_t *weight_map; /* tensor name → shard file name (borrowed from root) */
    char **paths;       /* the distinct shards as paths beside the index, sorted by file name */
    size_t n_paths;
} smelt_shard_index;

/* Read the index at path: valid JSON with a weight_map object whose values are plain file
 * names (no '/', not "", "." or ".."); every shard named exists beside the index (not as a
 * directory). The shards are listed in file-name order, the order the converters visit
 * them. Errors (EFORMAT with the index path and the tensor or shard): bad JSON (byte
 * offset), no weight_map, a bad or missing shard name; EIO; ENOMEM. */
int smelt_shard_index_read(const char *path, smelt_shard_index *out, smelt_err *e);

/* After the shards are open: every weight_map entry must name the file that really holds
 * the tensor. file_of(user, name) gives the path of the file holding `name`, or NULL when
 * no shard has it. */
int smelt_shard_index_check(const smelt_shard_index *ix, const char *path,
                            const char *(*file_of)(void *user, const char *name), void *user, smelt_err *e);

void smelt_shard_index_free(smelt_shard_index *ix); /* safe on a zeroed struct */

#endif

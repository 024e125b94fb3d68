/* safetensors.h — safetensors reader (mmap, validated), sharded sets, and an
 * HF-compatible streaming writer. Layer: formats. Includes base/, dtype.h.
 *
 * Shapes are as stored: outermost dimension first (PyTorch order), the opposite of GGUF's
 * ne[]. Views are borrowed until the handle is closed. */
#ifndef SMELT_SAFETENSORS_H
#define SMELT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "dtype.h"

#define SMELT_ST_MAX_DIMS 8
#define SMELT_ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB, as the reference library */

typedef struct smelt_st_tensor {
    const char *name;
    smelt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[SMELT_ST_MAX_DIMS];
    uint64_t nelements;
    uint64_t begin, end;     /* data_offsets, relative to the data section */
    const uint8_t *data;     /* mapped bytes [begin, end) */
    const char *file;        /* path of the file holding it */
    uint64_t file_offset;    /* absolute offset of data in that file */
} smelt_st_tensor;

typedef struct smelt_st smelt_st;

int smelt_st_open(const char *path, smelt_st **out, smelt_err *e);
int smelt_st_open_mem(const void *buf, size_t size, const char *name, smelt_st **out, smelt_err *e);
void smelt_st_close(smelt_st *st); /* NULL is a no-op */

const char *smelt_st_path(const smelt_st *st);
uint64_t smelt_st_header_len(const smelt_st *st);  /* JSON bytes (after the 8-byte length) */
uint64_t smelt_st_data_offset(const smelt_st *st); /* 8 + header_len */
uint64_t smelt_st_n_tensors(const smelt_st *st);
/* Tensors in data order (ascending data_offsets). */
const smelt_st_tensor *smelt_st_tensor_at(const smelt_st *st, uint64_t i);
const smelt_st_tensor *smelt_st_find(const smelt_st *st, const char *name);
/* __metadata__ entries (string → string); *n receives the count. Borrowed. */
const char *const *smelt_st_metadata(const smelt_st *st, size_t *n); /* key0, val0, key1, … */
const char *smelt_st_metadata_get(const smelt_st *st, const char *key);
void smelt_st_release_tensor(const smelt_st *st, const smelt_st_tensor *t);

/* ==== sharded sets ==== */

/* A checkpoint that may span several files, presented as one namespace. */
typedef struct smelt_stset smelt_stset;

/* `path` is a directory (model.safetensors, or model.safetensors.index.json with its
 * shards), an index json, or a single .safetensors file. Every tensor of the index's
 * weight_map must exist in the shard it names; every shard must exist. */
int smelt_stset_open(const char *path, smelt_stset **out, smelt_err *e);
void smelt_stset_close(smelt_stset *s);
uint64_t smelt_stset_n_tensors(const smelt_stset *s);
/* Tensors shard by shard, each shard in data order. */
const smelt_st_tensor *smelt_stset_tensor_at(const smelt_stset *s, uint64_t i);
const smelt_st_tensor *smelt_stset_find(const smelt_stset *s, const char *name);
/* Index (for smelt_stset_tensor_at) of a tensor, or -1. */
int64_t smelt_stset_find_index(const smelt_stset *s, const char *name);
size_t smelt_stset_n_files(const smelt_stset *s);
const smelt_st *smelt_stset_file(const smelt_stset *s, size_t i);
/* Index of the file holding tensor i. */
size_t smelt_stset_file_of(const smelt_stset *s, uint64_t i);
/* Path of the index json, or NULL for a single file. */
const char *smelt_stset_index_path(const smelt_stset *s);

/* ==== writer ==== */

typedef struct smelt_st_writer smelt_st_writer;

smelt_st_writer *smelt_st_writer_new(void);
void smelt_st_writer_free(smelt_st_writer *w); /* aborts an uncommitted output */
/* __metadata__ entry; {"format":"pt"} is set by default. */
int smelt_st_writer_set_metadata(smelt_st_writer *w, const char *key, const char *val, smelt_err *e);
int smelt_st_writer_add(smelt_st_writer *w, const char *name, smelt_dtype dt, uint32_t n_dims,
                        const uint64_t *shape, smelt_err *e);
/* Bytes the file will have. */
uint64_t smelt_st_writer_file_size(const smelt_st_writer *w);
/* Sorts tensors as the safetensors library does (dtype descending, then name), writes the
 * header (compact JSON, __metadata__ first, space-padded to 8 bytes). */
int smelt_st_writer_begin(smelt_st_writer *w, const char *path, smelt_err *e);
/* Name of the tensor whose bytes the next write belongs to (NULL when all are written). */
const char *smelt_st_writer_next(const smelt_st_writer *w);
int smelt_st_writer_write(smelt_st_writer *w, const void *p, size_t n, smelt_err *e);
int smelt_st_writer_commit(smelt_st_writer *w, smelt_err *e);

/* HF sharding: given tensors in state-dict order with their byte sizes, assign shard
 * numbers (0-based) the way transformers' save_pretrained(max_shard_size) does: start a
 * new shard when adding a tensor would exceed max_bytes (a tensor larger than max_bytes
 * gets a shard of its own). Returns the number of shards. */
size_t smelt_st_plan_shards(const uint64_t *sizes, size_t n, uint64_t max_bytes, size_t *shard_of);
/* "model-00001-of-00003.safetensors" */
void smelt_st_shard_name(char *buf, size_t n, const char *prefix, size_t i, size_t count);
/* Write model.safetensors.index.json as transformers does (indent 2, sorted keys,
 * metadata.total_size, trailing newline); atomic. names/files have n entries. */
int smelt_st_write_index(const char *path, uint64_t total_size, const char *const *names,
                         const char *const *files, size_t n, smelt_err *e);

#endif

/* gguf.h — GGUF v2/v3 reader (mmap, validated) and streaming writer (atomic).
 * Layer: formats. Includes base/ and ggml_types.h.
 *
 * Reader: every length, count and offset read from the file is checked before use; a
 * malformed file gives SMELT_EFORMAT naming the file, the item and the byte offset.
 * Views returned by the reader are borrowed until smelt_gguf_close().
 *
 * Writer: KVs and tensor infos are declared first, then smelt_gguf_writer_begin() writes
 * the header and tensor data is streamed in declaration order (in as many pieces as the
 * caller likes); alignment padding is automatic. Nothing appears at the output path until
 * smelt_gguf_writer_commit(). Layout and encoding follow ggml's gguf writer, so reading a
 * llama.cpp file and writing it back with the same KVs and tensors is byte-identical. */
#ifndef SMELT_GGUF_H
#define SMELT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "ggml_types.h"

#define SMELT_GGUF_DEFAULT_ALIGNMENT 32
#define SMELT_GGUF_MAX_DIMS 4
#define SMELT_GGUF_MAX_NAME 64 /* llama.cpp refuses tensor names of 64 bytes or more */

enum smelt_gguf_vtype {
    SMELT_GGUF_U8 = 0,
    SMELT_GGUF_I8 = 1,
    SMELT_GGUF_U16 = 2,
    SMELT_GGUF_I16 = 3,
    SMELT_GGUF_U32 = 4,
    SMELT_GGUF_I32 = 5,
    SMELT_GGUF_F32 = 6,
    SMELT_GGUF_BOOL = 7,
    SMELT_GGUF_STRING = 8,
    SMELT_GGUF_ARRAY = 9,
    SMELT_GGUF_U64 = 10,
    SMELT_GGUF_I64 = 11,
    SMELT_GGUF_F64 = 12,
    SMELT_GGUF_VTYPE_COUNT = 13,
};

/* Name of a value type ("u32", "string", …) and size of a fixed-size type (0 otherwise). */
const char *smelt_gguf_vtype_name(int t);
size_t smelt_gguf_vtype_size(int t);

/* A string inside the file: not NUL-terminated. */
typedef struct smelt_str {
    const char *p;
    uint64_t n;
} smelt_str;

typedef struct smelt_gguf_kv {
    const char *key;        /* NUL-terminated copy */
    int type;               /* enum smelt_gguf_vtype */
    int arr_type;           /* element type when type == ARRAY, else -1 */
    uint64_t n;             /* 1 for scalars, element count for arrays */
    const uint8_t *data;    /* value bytes (after the type fields): scalar, array elements,
                               or the first string's length prefix */
    uint64_t offset;        /* file offset where this KV record starts */
    uint64_t value_offset;  /* file offset of `data` */
    uint64_t value_size;    /* bytes of the encoded value (after type fields) */
    const uint64_t *str_off;/* string arrays: offset of element i's length prefix from data */
} smelt_gguf_kv;

typedef struct smelt_gguf_tensor {
    const char *name;       /* NUL-terminated copy */
    uint32_t n_dims;        /* as stored (0..4) */
    uint64_t ne[SMELT_GGUF_MAX_DIMS]; /* ne[0] = row length (innermost); unused dims are 1 */
    int type;               /* ggml type id */
    uint64_t offset;        /* from the start of the data section */
    uint64_t nbytes;
    uint64_t nelements;
    uint64_t info_offset;   /* file offset of this tensor's info record */
    const uint8_t *data;    /* NULL for a metadata-only file (SMELT_GGUF_META_ONLY) */
    uint16_t shard;         /* the file holding it: smelt_gguf_shard(g, shard) (0: unsplit) */
} smelt_gguf_tensor;

typedef struct smelt_gguf smelt_gguf;

enum {
    /* Accept a file that ends where its data section starts (metadata-only GGUFs, as
     * written with only_meta): tensors then have data == NULL. A file that ends inside
     * the data section is truncated and refused with or without this flag. */
    SMELT_GGUF_META_ONLY = 1,
    /* Read this file alone, even if it is the first shard of a split model. */
    SMELT_GGUF_ONE_FILE = 2,
};

/* Split models, as llama.cpp's gguf-split writes them: NAME-00001-of-0000N.gguf holds every
 * KV plus split.no = 0 (u16), split.count = N (u16) and split.tensors.count (i32, the
 * tensors of all shards); NAME-0000i-of-0000N.gguf holds only the three split keys (split.no
 * = i-1) and its tensors. */
#define SMELT_GGUF_SPLIT_NO "split.no"
#define SMELT_GGUF_SPLIT_COUNT "split.count"
#define SMELT_GGUF_SPLIT_TENSORS "split.tensors.count"
#define SMELT_GGUF_MAX_SHARDS 65535

/* Shard path as llama.cpp names it: "<prefix>-%05d-of-%05d.gguf", i from 0. */
void smelt_gguf_split_path(char *buf, size_t n, const char *prefix, int i, int count);
/* The same for an output given as OUT.gguf (prefix: OUT without ".gguf"). */
void smelt_gguf_split_out_path(char *buf, size_t n, const char *out, int i, int count);

/* Open and validate a GGUF file (mmap). *out is NULL on error.
 * The first shard of a split model opens the whole model (unless SMELT_GGUF_ONE_FILE): the
 * other shards are found by name beside it, each opened and validated, and checked to
 * belong (split.no = its index, the same split.count and split.tensors.count, no tensor
 * twice, split.tensors.count = the tensors of all shards). The handle then has the KVs of
 * the first shard and the tensors of all, in shard order; smelt_gguf_path(),
 * _data_offset(), _file_size() and the other file accessors describe the first file,
 * smelt_gguf_shard() the others. Errors: a later shard given instead of the first, or a
 * first shard not named PREFIX-00001-of-0000N.gguf (EUSAGE); a missing shard (EIO, naming
 * the path it was expected at); a shard of another split or a wrong tensor count (EFORMAT,
 * naming the shard and the key). */
int smelt_gguf_open(const char *path, unsigned flags, smelt_gguf **out, smelt_err *e);
/* Number of files of the model (1 when unsplit or opened with SMELT_GGUF_ONE_FILE) and
 * file i as its own handle (i = 0: g itself; its tensor list is still the whole model's). */
uint16_t smelt_gguf_n_shards(const smelt_gguf *g);
const smelt_gguf *smelt_gguf_shard(const smelt_gguf *g, uint16_t i);
/* Same on a caller-owned buffer, which must outlive the handle; `name` is used in errors.
 * A buffer is one file: shards are not looked for. */
int smelt_gguf_open_mem(const void *buf, size_t size, const char *name, unsigned flags,
                        smelt_gguf **out, smelt_err *e);
void smelt_gguf_close(smelt_gguf *g); /* NULL is a no-op */

const char *smelt_gguf_path(const smelt_gguf *g);
uint32_t smelt_gguf_version(const smelt_gguf *g);
uint64_t smelt_gguf_alignment(const smelt_gguf *g);
uint64_t smelt_gguf_data_offset(const smelt_gguf *g); /* file offset of the data section */
/* File offset just after the last tensor info (before the alignment padding). */
uint64_t smelt_gguf_header_end(const smelt_gguf *g);
uint64_t smelt_gguf_file_size(const smelt_gguf *g);
uint64_t smelt_gguf_total_size(const smelt_gguf *g); /* of all shards */
const uint8_t *smelt_gguf_base(const smelt_gguf *g);  /* start of the mapped file */
/* Release the pages of a tensor's data from RSS once it has been processed. */
void smelt_gguf_release_tensor(const smelt_gguf *g, const smelt_gguf_tensor *t);

/* ==== metadata ==== */

uint64_t smelt_gguf_n_kv(const smelt_gguf *g);
const smelt_gguf_kv *smelt_gguf_kv_at(const smelt_gguf *g, uint64_t i);
/* Index of key, or -1. */
int64_t smelt_gguf_find_kv(const smelt_gguf *g, const char *key);
const smelt_gguf_kv *smelt_gguf_get_kv(const smelt_gguf *g, const char *key); /* NULL if absent */

/* Typed getters. Integer getters accept any integer value type whose value fits the
 * destination; float getters accept f32/f64. Missing key or wrong type: EFORMAT naming
 * the key, the expected and the actual type. */
int smelt_gguf_get_u32(const smelt_gguf *g, const char *key, uint32_t *out, smelt_err *e);
int smelt_gguf_get_u64(const smelt_gguf *g, const char *key, uint64_t *out, smelt_err *e);
int smelt_gguf_get_i64(const smelt_gguf *g, const char *key, int64_t *out, smelt_err *e);
int smelt_gguf_get_f32(const smelt_gguf *g, const char *key, float *out, smelt_err *e);
int smelt_gguf_get_bool(const smelt_gguf *g, const char *key, bool *out, smelt_err *e);
int smelt_gguf_get_str(const smelt_gguf *g, const char *key, smelt_str *out, smelt_err *e);
/* Array of the given element type (-1: any). */
int smelt_gguf_get_arr(const smelt_gguf *g, const char *key, int elem_type,
                       const smelt_gguf_kv **out, smelt_err *e);

/* Element access on a kv (no bounds errors: callers use kv->n). */
smelt_str smelt_gguf_kv_str(const smelt_gguf_kv *kv);            /* STRING scalar */
smelt_str smelt_gguf_arr_str(const smelt_gguf_kv *kv, uint64_t i); /* string array */
/* Numeric value of element i (scalar: i = 0) as double / int64 (bool → 0/1). */
double smelt_gguf_kv_num(const smelt_gguf_kv *kv, uint64_t i);
int64_t smelt_gguf_kv_int(const smelt_gguf_kv *kv, uint64_t i);
uint64_t smelt_gguf_kv_uint(const smelt_gguf_kv *kv, uint64_t i);
/* One packed little-endian integer or bool of GGUF value type vtype at p, as int64 (u64 above
 * INT64_MAX: INT64_MAX; a non-integer type: 0). */
int64_t smelt_gguf_int_at(int vtype, const void *p);
/* Human-readable value: strings quoted and escaped, arrays abbreviated to max_elems
 * elements (0 = all) as "[a, b, … (N total)]". Returns the length it needed. */
size_t smelt_gguf_kv_format(const smelt_gguf_kv *kv, char *buf, size_t n, uint64_t max_elems);

/* ==== tensors ==== */

uint64_t smelt_gguf_n_tensors(const smelt_gguf *g);
const smelt_gguf_tensor *smelt_gguf_tensor_at(const smelt_gguf *g, uint64_t i);
const smelt_gguf_tensor *smelt_gguf_find_tensor(const smelt_gguf *g, const char *name);
/* Number of rows (product of ne[1..3]) and bytes per row. */
uint64_t smelt_gguf_tensor_rows(const smelt_gguf_tensor *t);
uint64_t smelt_gguf_tensor_row_bytes(const smelt_gguf_tensor *t);

/* ==== writer ==== */

typedef struct smelt_gguf_writer smelt_gguf_writer;

smelt_gguf_writer *smelt_gguf_writer_new(void); /* NULL on ENOMEM */
void smelt_gguf_writer_free(smelt_gguf_writer *w); /* aborts an uncommitted output */
void smelt_gguf_writer_set_version(smelt_gguf_writer *w, uint32_t version); /* 2 or 3 */
/* A file without tensors is padded to the alignment after its header, as ggml's writer
 * does (default on). gguf-py leaves it unpadded; pass false to reproduce such files. */
void smelt_gguf_writer_set_pad_empty(smelt_gguf_writer *w, bool pad);

/* Set a KV: replaces the value in place if the key exists (keeping its position),
 * otherwise appends. Setting general.alignment (u32, power of 2) changes the layout. */
int smelt_gguf_writer_set_u8(smelt_gguf_writer *w, const char *key, uint8_t v, smelt_err *e);
int smelt_gguf_writer_set_i8(smelt_gguf_writer *w, const char *key, int8_t v, smelt_err *e);
int smelt_gguf_writer_set_u16(smelt_gguf_writer *w, const char *key, uint16_t v, smelt_err *e);
int smelt_gguf_writer_set_i16(smelt_gguf_writer *w, const char *key, int16_t v, smelt_err *e);
int smelt_gguf_writer_set_u32(smelt_gguf_writer *w, const char *key, uint32_t v, smelt_err *e);
int smelt_gguf_writer_set_i32(smelt_gguf_writer *w, const char *key, int32_t v, smelt_err *e);
int smelt_gguf_writer_set_u64(smelt_gguf_writer *w, const char *key, uint64_t v, smelt_err *e);
int smelt_gguf_writer_set_i64(smelt_gguf_writer *w, const char *key, int64_t v, smelt_err *e);
int smelt_gguf_writer_set_f32(smelt_gguf_writer *w, const char *key, float v, smelt_err *e);
int smelt_gguf_writer_set_f64(smelt_gguf_writer *w, const char *key, double v, smelt_err *e);
int smelt_gguf_writer_set_bool(smelt_gguf_writer *w, const char *key, bool v, smelt_err *e);
int smelt_gguf_writer_set_str(smelt_gguf_writer *w, const char *key, const char *v, smelt_err *e);
int smelt_gguf_writer_set_strn(smelt_gguf_writer *w, const char *key, const char *v, size_t n,
                               smelt_err *e);
/* Array of fixed-size elements, packed little-endian (bool as one byte each). */
int smelt_gguf_writer_set_arr(smelt_gguf_writer *w, const char *key, int elem_type,
                              const void *data, uint64_t n, smelt_err *e);
/* Array of strings; lens may be NULL (strlen is used). */
int smelt_gguf_writer_set_arr_str(smelt_gguf_writer *w, const char *key,
                                  const char *const *strs, const size_t *lens, uint64_t n,
                                  smelt_err *e);
/* Copy a KV from a reader verbatim (same encoding, byte for byte). */
int smelt_gguf_writer_copy_kv(smelt_gguf_writer *w, const smelt_gguf_kv *kv, smelt_err *e);
/* Copy every KV of a reader, in order. */
int smelt_gguf_writer_copy_all_kv(smelt_gguf_writer *w, const smelt_gguf *g, smelt_err *e);
/* Remove a key if present; returns 1 if it was removed. */
int smelt_gguf_writer_remove_kv(smelt_gguf_writer *w, const char *key);
bool smelt_gguf_writer_has_kv(const smelt_gguf_writer *w, const char *key);

/* Declare the next tensor (data is streamed later, in this order). n_dims is written as
 * given (ggml writes the count without trailing 1s; pass that for identical output). */
int smelt_gguf_writer_add_tensor(smelt_gguf_writer *w, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, int type, smelt_err *e);
uint64_t smelt_gguf_writer_n_tensors(const smelt_gguf_writer *w);
/* Size in bytes the complete file (all files of a split; the one of set_only_file) will have
 * with the current KVs and tensors. */
uint64_t smelt_gguf_writer_file_size(const smelt_gguf_writer *w);

/* Write the output as llama-gguf-split --split writes a model (before begin; 0 = no limit):
 * files PREFIX-00001-of-0000N.gguf … (PREFIX = the output path without ".gguf"), a new file
 * starting before every max_tensors-th tensor, or before the tensor that would take the
 * file's tensor data (each tensor padded to 32 bytes) past max_bytes; the first file holds
 * every KV (but split.*), and every file split.no, split.tensors.count and split.count, in
 * that order. Tensor data is still written in one stream; begin() opens the first file and
 * the others follow as the data reaches them; commit() renames all of them into place, or
 * none. With both limits 0 it is one file, named as a split of 1 (as llama-gguf-split). */
void smelt_gguf_writer_set_split(smelt_gguf_writer *w, uint64_t max_bytes, uint64_t max_tensors);
/* Check every output file against this guard in begin() (base/guard.h; kept, not owned). */
struct smelt_guard;
void smelt_gguf_writer_set_guard(smelt_gguf_writer *w, const struct smelt_guard *g);
/* Write only file f (from 0) of the split: begin() opens it alone, the data written is that
 * of its tensors only (from the first tensor of smelt_gguf_writer_file_of() = f, in order),
 * commit() renames it alone, file_size() is its size. The file is byte-identical to the
 * same file of the whole split, so separate processes can each write one. */
void smelt_gguf_writer_set_only_file(smelt_gguf_writer *w, size_t f);
/* The file (from 0) tensor i goes to. */
size_t smelt_gguf_writer_file_of(const smelt_gguf_writer *w, uint64_t i);
/* Number of files the split has (1 without a split; all of them with set_only_file), and
 * the path of file i for an output given as `path`. */
size_t smelt_gguf_writer_n_files(const smelt_gguf_writer *w);
void smelt_gguf_writer_file_path(const smelt_gguf_writer *w, const char *path, size_t i, char *buf, size_t n);

/* The header the unsplit file would have with the current KVs and tensors, padded to the
 * data section (a metadata-only GGUF: smelt_gguf_open_mem with SMELT_GGUF_META_ONLY reads
 * it). *buf is malloc'ed, the caller frees it. */
int smelt_gguf_writer_header(const smelt_gguf_writer *w, uint8_t **buf, size_t *n, smelt_err *e);

/* Open the (temporary) output and write the header. No KV/tensor changes afterwards. */
int smelt_gguf_writer_begin(smelt_gguf_writer *w, const char *path, smelt_err *e);
/* Append data of the current tensor; a piece may not cross into the next tensor. The
 * padding after a tensor is written once its last byte has arrived. */
int smelt_gguf_writer_write(smelt_gguf_writer *w, const void *p, size_t n, smelt_err *e);
/* Index of the tensor the next write belongs to (== n_tensors when all are written). */
uint64_t smelt_gguf_writer_current(const smelt_gguf_writer *w);
/* Verify every tensor is complete, then fsync and rename into place. */
int smelt_gguf_writer_commit(smelt_gguf_writer *w, smelt_err *e);

#endif

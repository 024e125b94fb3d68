/* kvs.h — an ordered list of GGUF metadata values, built before anything is written.
 * Layer: convert. Includes formats/ (gguf.h), jansson.
 *
 * Setting a key that exists replaces its value in place (keeping its position), as both
 * gguf-py's writer (a Python dict) and smelt's GGUF writer do, so the KV order of a plan
 * is the order in which keys were first set. */
#ifndef SMELT_KVS_H
#define SMELT_KVS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/gguf.h"

typedef struct smelt_kv {
    char *key;
    int type;      /* enum smelt_gguf_vtype */
    int arr_type;  /* element type when type == SMELT_GGUF_ARRAY, else -1 */
    uint64_t n;    /* 1 for scalars, element count for arrays */
    union {
        uint64_t u;
        int64_t i;
        double f;
    } v;           /* numeric and bool scalars */
    char *s;       /* STRING scalar (s, slen) */
    size_t slen;
    void *arr;     /* fixed-size array elements, packed little-endian */
    char **strs;   /* string array elements (strs[i], lens[i]) */
    size_t *lens;
} smelt_kv;

typedef struct smelt_kvs {
    smelt_kv *kv;
    size_t n, cap;
} smelt_kvs;

/* Each setter returns 0, or SMELT_ENOMEM (filling e). Values are copied. */
int smelt_kvs_set_u32(smelt_kvs *k, const char *key, uint32_t v, smelt_err *e);
int smelt_kvs_set_i32(smelt_kvs *k, const char *key, int32_t v, smelt_err *e);
int smelt_kvs_set_f32(smelt_kvs *k, const char *key, float v, smelt_err *e);
int smelt_kvs_set_bool(smelt_kvs *k, const char *key, bool v, smelt_err *e);
int smelt_kvs_set_str(smelt_kvs *k, const char *key, const char *s, size_t len, smelt_err *e);
/* Array of fixed-size elements (u8…f64, bool as bytes). */
int smelt_kvs_set_arr(smelt_kvs *k, const char *key, int elem_type, const void *data, uint64_t n, smelt_err *e);
/* Array of strings; lens may be NULL (strlen is used). */
int smelt_kvs_set_arr_str(smelt_kvs *k, const char *key, const char *const *strs, const size_t *lens, uint64_t n,
                          smelt_err *e);
/* Remove a key; returns 1 if it was there. */
int smelt_kvs_remove(smelt_kvs *k, const char *key);
const smelt_kv *smelt_kvs_get(const smelt_kvs *k, const char *key);
void smelt_kvs_free(smelt_kvs *k);

/* Declare every KV on a GGUF writer, in order. */
int smelt_kvs_apply(const smelt_kvs *k, smelt_gguf_writer *w, smelt_err *e);
/* Human-readable value (strings quoted, arrays abbreviated to max_elems, 0 = all). */
void smelt_kv_format(const smelt_kv *kv, char *buf, size_t n, uint64_t max_elems);
/* {"key", "type", "value"} with arrays in full. NULL on ENOMEM. */
json_t *smelt_kv_json(const smelt_kv *kv);

#endif

/* kvs.c — ordered GGUF metadata list (see kvs.h). */
#include "kvs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void kv_clear(smelt_kv *kv)
{
    free(kv->s);
    free(kv->arr);
    if (kv->strs)
        for (uint64_t i = 0; i < kv->n; i++) free(kv->strs[i]);
    free(kv->strs);
    free(kv->lens);
    kv->s = NULL;
    kv->arr = NULL;
    kv->strs = NULL;
    kv->lens = NULL;
}

/* The slot for key (existing, cleared; or new, appended). */
static smelt_kv *slot(smelt_kvs *k, const char *key, smelt_err *e)
{
    for (size_t i = 0; i < k->n; i++)
        if (!strcmp(k->kv[i].key, key)) {
            kv_clear(&k->kv[i]);
            return &k->kv[i];
        }
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 32;
        smelt_kv *v = realloc(k->kv, nc * sizeof *v);
        if (!v) {
            SMELT_NOMEM(e, "metadata");
            return NULL;
        }
        k->kv = v;
        k->cap = nc;
    }
    smelt_kv *kv = &k->kv[k->n];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) {
        SMELT_NOMEM(e, "metadata");
        return NULL;
    }
    k->n++;
    return kv;
}

static int scalar(smelt_kvs *k, const char *key, int type, uint64_t bits, smelt_err *e)
{
    smelt_kv *kv = slot(k, key, e);
    if (!kv) return SMELT_ENOMEM;
    kv->type = type;
    kv->arr_type = -1;
    kv->n = 1;
    kv->v.u = bits;
    return 0;
}

int smelt_kvs_set_u32(smelt_kvs *k, const char *key, uint32_t v, smelt_err *e) { return scalar(k, key, SMELT_GGUF_U32, v, e); }
int smelt_kvs_set_i32(smelt_kvs *k, const char *key, int32_t v, smelt_err *e)
{
    return scalar(k, key, SMELT_GGUF_I32, (uint64_t)(int64_t)v, e);
}
int smelt_kvs_set_bool(smelt_kvs *k, const char *key, bool v, smelt_err *e) { return scalar(k, key, SMELT_GGUF_BOOL, v, e); }

int smelt_kvs_set_f32(smelt_kvs *k, const char *key, float v, smelt_err *e)
{
    smelt_kv *kv = slot(k, key, e);
    if (!kv) return SMELT_ENOMEM;
    kv->type = SMELT_GGUF_F32;
    kv->arr_type = -1;
    kv->n = 1;
    kv->v.f = v;
    return 0;
}

int smelt_kvs_set_str(smelt_kvs *k, const char *key, const char *s, size_t len, smelt_err *e)
{
    smelt_kv *kv = slot(k, key, e);
    if (!kv) return SMELT_ENOMEM;
    kv->type = SMELT_GGUF_STRING;
    kv->arr_type = -1;
    kv->n = 1;
    kv->s = malloc(len + 1);
    if (!kv->s) return SMELT_NOMEM(e, "metadata");
    memcpy(kv->s, s, len);
    kv->s[len] = 0;
    kv->slen = len;
    return 0;
}

int smelt_kvs_set_arr(smelt_kvs *k, const char *key, int elem_type, const void *data, uint64_t n, smelt_err *e)
{
    smelt_kv *kv = slot(k, key, e);
    if (!kv) return SMELT_ENOMEM;
    size_t es = smelt_gguf_vtype_size(elem_type);
    kv->type = SMELT_GGUF_ARRAY;
    kv->arr_type = elem_type;
    kv->n = n;
    kv->arr = malloc((size_t)n * es + 1);
    if (!kv->arr) return SMELT_NOMEM(e, "metadata");
    if (n) memcpy(kv->arr, data, (size_t)n * es);
    return 0;
}

int smelt_kvs_set_arr_str(smelt_kvs *k, const char *key, const char *const *strs, const size_t *lens, uint64_t n,
                          smelt_err *e)
{
    smelt_kv *kv = slot(k, key, e);
    if (!kv) return SMELT_ENOMEM;
    kv->type = SMELT_GGUF_ARRAY;
    kv->arr_type = SMELT_GGUF_STRING;
    kv->n = 0;
    kv->strs = calloc((size_t)n + 1, sizeof *kv->strs);
    kv->lens = calloc((size_t)n + 1, sizeof *kv->lens);
    if (!kv->strs || !kv->lens) return SMELT_NOMEM(e, "metadata");
    for (uint64_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(strs[i]);
        kv->strs[i] = malloc(l + 1);
        if (!kv->strs[i]) return SMELT_NOMEM(e, "metadata");
        memcpy(kv->strs[i], strs[i], l);
        kv->strs[i][l] = 0;
        kv->lens[i] = l;
        kv->n = i + 1;
    }
    return 0;
}

int smelt_kvs_remove(smelt_kvs *k, const char *key)
{
    for (size_t i = 0; i < k->n; i++)
        if (!strcmp(k->kv[i].key, key)) {
            kv_clear(&k->kv[i]);
            free(k->kv[i].key);
            memmove(&k->kv[i], &k->kv[i + 1], (k->n - i - 1) * sizeof *k->kv);
            k->n--;
            return 1;
        }
    return 0;
}

const smelt_kv *smelt_kvs_get(const smelt_kvs *k, const char *key)
{
    for (size_t i = 0; i < k->n; i++)
        if (!strcmp(k->kv[i].key, key)) return &k->kv[i];
    return NULL;
}

void smelt_kvs_free(smelt_kvs *k)
{
    if (!k) return;
    for (size_t i = 0; i < k->n; i++) {
        kv_clear(&k->kv[i]);
        free(k->kv[i].key);
    }
    free(k->kv);
    memset(k, 0, sizeof *k);
}

int smelt_kvs_apply(const smelt_kvs *k, smelt_gguf_writer *w, smelt_err *e)
{
    int rc = 0;
    for (size_t i = 0; i < k->n && !rc; i++) {
        const smelt_kv *kv = &k->kv[i];
        switch (kv->type) {
        case SMELT_GGUF_U32: rc = smelt_gguf_writer_set_u32(w, kv->key, (uint32_t)kv->v.u, e); break;
        case SMELT_GGUF_I32: rc = smelt_gguf_writer_set_i32(w, kv->key, (int32_t)kv->v.i, e); break;
        case SMELT_GGUF_F32: rc = smelt_gguf_writer_set_f32(w, kv->key, (float)kv->v.f, e); break;
        case SMELT_GGUF_BOOL: rc = smelt_gguf_writer_set_bool(w, kv->key, kv->v.u != 0, e); break;
        case SMELT_GGUF_STRING: rc = smelt_gguf_writer_set_strn(w, kv->key, kv->s, kv->slen, e); break;
        case SMELT_GGUF_ARRAY:
            if (kv->arr_type == SMELT_GGUF_STRING)
                rc = smelt_gguf_writer_set_arr_str(w, kv->key, (const char *const *)kv->strs, kv->lens, kv->n, e);
            else
                rc = smelt_gguf_writer_set_arr(w, kv->key, kv->arr_type, kv->arr, kv->n, e);
            break;
        default: rc = SMELT_ERR(e, SMELT_EINTERNAL, NULL, kv->key, "metadata value of type %d", kv->type);
        }
    }
    return rc;
}

/* ==== presentation ==== */

typedef struct {
    char *p;
    size_t n, used;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    if (o->used >= o->n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->used, o->n - o->used, fmt, ap);
    va_end(ap);
    if (k > 0) o->used += (size_t)k;
    if (o->used >= o->n) o->used = o->n - 1;
}

static void put_str(out_t *o, const char *s, size_t len, size_t max)
{
    put(o, "\"");
    size_t lim = max && len > max ? max : len;
    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') put(o, "\\%c", c);
        else if (c == '\n') put(o, "\\n");
        else if (c < 0x20) put(o, "\\x%02x", c);
        else put(o, "%c", c);
    }
    put(o, "\"");
    if (lim < len) put(o, "… (%zu bytes)", len);
}

static double arr_num(const smelt_kv *kv, uint64_t i)
{
    const uint8_t *p = (const uint8_t *)kv->arr + i * smelt_gguf_vtype_size(kv->arr_type);
    switch (kv->arr_type) {
    case SMELT_GGUF_U8: return *p;
    case SMELT_GGUF_I8: return (int8_t)*p;
    case SMELT_GGUF_BOOL: return *p != 0;
    case SMELT_GGUF_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case SMELT_GGUF_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case SMELT_GGUF_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case SMELT_GGUF_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case SMELT_GGUF_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case SMELT_GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    case SMELT_GGUF_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    default: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    }
}

void smelt_kv_format(const smelt_kv *kv, char *buf, size_t n, uint64_t max_elems)
{
    out_t o = {buf, n, 0};
    if (!n) return;
    buf[0] = 0;
    switch (kv->type) {
    case SMELT_GGUF_U32: put(&o, "%u", (unsigned)kv->v.u); break;
    case SMELT_GGUF_I32: put(&o, "%d", (int)kv->v.i); break;
    case SMELT_GGUF_F32: put(&o, "%.9g", kv->v.f); break;
    case SMELT_GGUF_BOOL: put(&o, "%s", kv->v.u ? "true" : "false"); break;
    case SMELT_GGUF_STRING: put_str(&o, kv->s, kv->slen, max_elems ? 400 : 0); break;
    case SMELT_GGUF_ARRAY: {
        uint64_t show = max_elems && kv->n > max_elems ? max_elems : kv->n;
        put(&o, "[");
        for (uint64_t i = 0; i < show; i++) {
            if (i) put(&o, ", ");
            if (kv->arr_type == SMELT_GGUF_STRING) put_str(&o, kv->strs[i], kv->lens[i], 0);
            else if (kv->arr_type == SMELT_GGUF_BOOL) put(&o, "%s", arr_num(kv, i) ? "true" : "false");
            else put(&o, "%.9g", arr_num(kv, i));
        }
        if (show < kv->n) put(&o, ", … (%llu total)", (unsigned long long)kv->n);
        put(&o, "]");
        break;
    }
    default: put(&o, "?");
    }
}

json_t *smelt_kv_json(const smelt_kv *kv)
{
    json_t *v = NULL;
    switch (kv->type) {
    case SMELT_GGUF_U32:
    case SMELT_GGUF_I32: v = json_integer(kv->type == SMELT_GGUF_U32 ? (json_int_t)kv->v.u : (json_int_t)kv->v.i); break;
    case SMELT_GGUF_F32: v = json_real(kv->v.f); break;
    case SMELT_GGUF_BOOL: v = json_boolean(kv->v.u); break;
    case SMELT_GGUF_STRING: v = json_stringn_nocheck(kv->s, kv->slen); break;
    case SMELT_GGUF_ARRAY:
        v = json_array();
        for (uint64_t i = 0; v && i < kv->n; i++) {
            json_t *x;
            if (kv->arr_type == SMELT_GGUF_STRING) x = json_stringn_nocheck(kv->strs[i], kv->lens[i]);
            else if (kv->arr_type == SMELT_GGUF_BOOL) x = json_boolean(arr_num(kv, i) != 0);
            else if (kv->arr_type == SMELT_GGUF_F32 || kv->arr_type == SMELT_GGUF_F64) x = json_real(arr_num(kv, i));
            else x = json_integer((json_int_t)arr_num(kv, i));
            json_array_append_new(v, x ? x : json_null());
        }
        break;
    default: v = json_null();
    }
    char tname[32];
    if (kv->type == SMELT_GGUF_ARRAY) snprintf(tname, sizeof tname, "[%s]", smelt_gguf_vtype_name(kv->arr_type));
    else snprintf(tname, sizeof tname, "%s", smelt_gguf_vtype_name(kv->type));
    return json_pack("{s:s,s:s,s:o}", "key", kv->key, "type", tname, "value", v ? v : json_null());
}

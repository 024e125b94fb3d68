/* diff.c — see diff.h. Includes formats/ (gguf, safetensors, half, pool) and verify/integrity/checkpoint.h. */
#include "diff.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/half.h"
#include "formats/base/pool.h"

#define CHUNK_ELEMS (256u * 1024u)

void smelt_diff_opts_default(smelt_diff_opts *o)
{
    memset(o, 0, sizeof *o);
    o->values = true;
}

/* ==== shapes and 16-bit formats ==== */

static bool same_shape(const smelt_checkpoint_tensor *a, const smelt_checkpoint_tensor *b, bool gguf)
{
    if (gguf) { /* ne[] with trailing 1s: the stored n_dims does not matter */
        for (int d = 0; d < SMELT_GGUF_MAX_DIMS; d++)
            if (a->shape[d] != b->shape[d]) return false;
        return true;
    }
    if (a->n_dims != b->n_dims) return false;
    for (uint32_t d = 0; d < a->n_dims; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

enum { U_NONE = 0, U_F16 = 1, U_BF16 = 2 };

static int half_kind(const smelt_checkpoint_tensor *t)
{
    if (t->type == SMELT_TYPE_F16 || t->dtype == SMELT_DT_F16) return U_F16;
    if (t->type == SMELT_TYPE_BF16 || t->dtype == SMELT_DT_BF16) return U_BF16;
    return U_NONE;
}

/* Position of a 16-bit float on a line where adjacent values are 1 apart. */
static int32_t ord16(uint16_t h) { return (h & 0x8000) ? -(int32_t)(h & 0x7fff) : (int32_t)(h & 0x7fff); }

static uint16_t to16(float x, int kind) { return kind == U_F16 ? smelt_f32_to_f16(x) : smelt_f32_to_bf16(x); }

/* ==== value comparison ==== */

typedef struct {
    uint64_t n_diff, n_over, max_ulp, n_finite, n_nonfinite;
    double max_abs, sum_sq;
    int rc;
    smelt_err err;
} part;

typedef struct {
    const smelt_checkpoint_tensor *a, *b;
    uint64_t chunk;
    int ulp;     /* U_* */
    part *parts;
    float **buf; /* per thread: 2 × chunk */
} job;

static void cmp_task(void *ctx, size_t task, int thread)
{
    job *j = ctx;
    part *p = &j->parts[task];
    uint64_t first = (uint64_t)task * j->chunk;
    uint64_t n = j->a->nelements - first < j->chunk ? j->a->nelements - first : j->chunk;
    float *x = j->buf[thread], *y = x + j->chunk;
    if ((p->rc = smelt_checkpoint_decode(j->a, first, n, x, &p->err))) return;
    if ((p->rc = smelt_checkpoint_decode(j->b, first, n, y, &p->err))) return;
    for (uint64_t i = 0; i < n; i++) {
        float u = x[i], v = y[i];
        if (u == v || (isnan(u) && isnan(v))) {
            p->n_finite += isfinite(u) != 0;
            continue;
        }
        p->n_diff++;
        if (!isfinite(u) || !isfinite(v)) {
            p->n_nonfinite++;
            continue;
        }
        p->n_finite++;
        double d = fabs((double)u - (double)v);
        if (d > p->max_abs) p->max_abs = d;
        p->sum_sq += d * d;
        if (j->ulp) {
            int32_t k = ord16(to16(u, j->ulp)) - ord16(to16(v, j->ulp));
            uint64_t du = (uint64_t)(k < 0 ? -(int64_t)k : k);
            if (du > 1) p->n_over++;
            if (du > p->max_ulp) p->max_ulp = du;
        }
    }
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int compare_values(const smelt_checkpoint_tensor *a, const smelt_checkpoint_tensor *b, smelt_pool *pool, float **buf,
                          smelt_tensor_diff *d, smelt_err *e)
{
    uint64_t ba = smelt_checkpoint_block(a), bb = smelt_checkpoint_block(b);
    uint64_t l = ba / gcd64(ba, bb) * bb;
    job j = {.a = a, .b = b, .buf = buf};
    j.chunk = l >= CHUNK_ELEMS ? l : CHUNK_ELEMS / l * l;
    if (j.chunk > CHUNK_ELEMS * 2) return 0; /* blocks too large to pair up: not compared */
    int ka = half_kind(a), kb = half_kind(b);
    j.ulp = (ka == U_BF16 || kb == U_BF16) ? U_BF16 : (ka || kb) ? U_F16 : U_NONE;
    size_t nc = (size_t)((a->nelements + j.chunk - 1) / j.chunk);
    j.parts = calloc(nc ? nc : 1, sizeof *j.parts);
    if (!j.parts) return SMELT_NOMEM(e, "the comparison");
    smelt_pool_run(pool, nc, cmp_task, &j);
    uint64_t n_finite = 0;
    double sum_sq = 0;
    for (size_t k = 0; k < nc; k++) {
        part *p = &j.parts[k];
        if (p->rc) {
            int rc = p->rc;
            if (e) *e = p->err;
            free(j.parts);
            return rc;
        }
        d->n_diff += p->n_diff;
        d->n_nonfinite += p->n_nonfinite;
        d->n_over_1ulp += p->n_over;
        if (p->max_ulp > d->max_ulp) d->max_ulp = p->max_ulp;
        if (p->max_abs > d->max_abs) d->max_abs = p->max_abs;
        sum_sq += p->sum_sq;
        n_finite += p->n_finite;
    }
    free(j.parts);
    d->compared = true;
    d->rmse = n_finite ? sqrt(sum_sq / (double)n_finite) : 0;
    d->ulp_counted = j.ulp != U_NONE;
    d->ulp_type = j.ulp == U_F16 ? "f16" : j.ulp == U_BF16 ? "bf16" : NULL;
    return 0;
}

/* ==== metadata ==== */

static int add_kv(smelt_diff_result *r, size_t *cap, const char *key, int status, const char *a, const char *b)
{
    if (r->n_kv == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        smelt_kv_diff *n = realloc(r->kv, nc * sizeof *n);
        if (!n) return -1;
        r->kv = n;
        *cap = nc;
    }
    smelt_kv_diff *k = &r->kv[r->n_kv];
    k->key = strdup(key);
    k->status = status;
    k->a = a ? strdup(a) : NULL;
    k->b = b ? strdup(b) : NULL;
    if (!k->key || (a && !k->a) || (b && !k->b)) {
        free(k->key);
        free(k->a);
        free(k->b);
        return -1;
    }
    r->n_kv++;
    return 0;
}

static bool kv_equal(const smelt_gguf_kv *x, const smelt_gguf_kv *y)
{
    return x->type == y->type && x->arr_type == y->arr_type && x->n == y->n && x->value_size == y->value_size &&
           memcmp(x->data, y->data, (size_t)x->value_size) == 0;
}

static int diff_gguf_kv(const smelt_gguf *a, const smelt_gguf *b, smelt_diff_result *r, smelt_err *e)
{
    size_t cap = 0;
    char va[512], vb[512];
    for (uint64_t i = 0; i < smelt_gguf_n_kv(a); i++) {
        const smelt_gguf_kv *x = smelt_gguf_kv_at(a, i), *y = smelt_gguf_get_kv(b, x->key);
        smelt_gguf_kv_format(x, va, sizeof va, 8);
        if (!y) {
            if (add_kv(r, &cap, x->key, SMELT_KD_ONLY_A, va, NULL)) return SMELT_NOMEM(e, "the comparison");
        } else if (!kv_equal(x, y)) {
            smelt_gguf_kv_format(y, vb, sizeof vb, 8);
            if (add_kv(r, &cap, x->key, SMELT_KD_DIFFERENT, va, vb)) return SMELT_NOMEM(e, "the comparison");
        }
    }
    for (uint64_t i = 0; i < smelt_gguf_n_kv(b); i++) {
        const smelt_gguf_kv *y = smelt_gguf_kv_at(b, i);
        if (smelt_gguf_get_kv(a, y->key)) continue;
        smelt_gguf_kv_format(y, vb, sizeof vb, 8);
        if (add_kv(r, &cap, y->key, SMELT_KD_ONLY_B, NULL, vb)) return SMELT_NOMEM(e, "the comparison");
    }
    return 0;
}

static int diff_st_meta(const smelt_stset *a, const smelt_stset *b, smelt_diff_result *r, smelt_err *e)
{
    size_t cap = 0, na, nb;
    const char *const *ma = smelt_st_metadata(smelt_stset_file(a, 0), &na);
    const char *const *mb = smelt_st_metadata(smelt_stset_file(b, 0), &nb);
    char key[300];
    for (size_t i = 0; i < na; i++) {
        const char *vb = smelt_st_metadata_get(smelt_stset_file(b, 0), ma[2 * i]);
        snprintf(key, sizeof key, "__metadata__.%s", ma[2 * i]);
        if (!vb || strcmp(vb, ma[2 * i + 1]))
            if (add_kv(r, &cap, key, vb ? SMELT_KD_DIFFERENT : SMELT_KD_ONLY_A, ma[2 * i + 1], vb))
                return SMELT_NOMEM(e, "the comparison");
    }
    for (size_t i = 0; i < nb; i++) {
        if (smelt_st_metadata_get(smelt_stset_file(a, 0), mb[2 * i])) continue;
        snprintf(key, sizeof key, "__metadata__.%s", mb[2 * i]);
        if (add_kv(r, &cap, key, SMELT_KD_ONLY_B, NULL, mb[2 * i + 1])) return SMELT_NOMEM(e, "the comparison");
    }
    return 0;
}

/* ==== driver ==== */

void smelt_diff_result_free(smelt_diff_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_kv; i++) {
        free(r->kv[i].key);
        free(r->kv[i].a);
        free(r->kv[i].b);
    }
    free(r->kv);
    free(r->t);
    memset(r, 0, sizeof *r);
}

int smelt_diff_run(const smelt_checkpoint *a, const smelt_checkpoint *b, const smelt_diff_opts *o, smelt_diff_result *r,
                   smelt_err *e)
{
    smelt_diff_opts def;
    if (!o) {
        smelt_diff_opts_default(&def);
        o = &def;
    }
    memset(r, 0, sizeof *r);
    if (smelt_checkpoint_kind_of(a) != smelt_checkpoint_kind_of(b))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, smelt_checkpoint_path(b), NULL,
                         "cannot compare a %s with a %s: tensor names differ between the formats (compare GGUF "
                         "with GGUF, or safetensors with safetensors)",
                         smelt_checkpoint_describe(a), smelt_checkpoint_describe(b));
    bool gguf = smelt_checkpoint_kind_of(a) == SMELT_CHECKPOINT_GGUF;
    uint64_t na = smelt_checkpoint_n_tensors(a), nb = smelt_checkpoint_n_tensors(b);
    r->t = calloc(na + nb + 1, sizeof *r->t);
    smelt_pool *pool = smelt_pool_new(o->n_threads);
    int nth = pool ? smelt_pool_threads(pool) : 1;
    float **buf = calloc((size_t)nth, sizeof *buf);
    int rc = 0;
    if (!r->t || !pool || !buf) {
        rc = SMELT_NOMEM(e, "the comparison");
        goto out;
    }
    for (int i = 0; i < nth; i++)
        if (!(buf[i] = malloc(sizeof(float) * CHUNK_ELEMS * 4))) {
            rc = SMELT_NOMEM(e, "the comparison buffers");
            goto out;
        }
    for (uint64_t i = 0; i < na; i++) {
        const smelt_checkpoint_tensor *x = smelt_checkpoint_tensor_at(a, i);
        smelt_tensor_diff *d = &r->t[r->n++];
        d->name = x->name;
        d->ia = (int64_t)i;
        d->ib = smelt_checkpoint_find(b, x->name);
        d->n_elements = x->nelements;
        if (d->ib < 0) {
            d->status = SMELT_TD_ONLY_A;
            r->n_only_a++;
            continue;
        }
        const smelt_checkpoint_tensor *y = smelt_checkpoint_tensor_at(b, (uint64_t)d->ib);
        d->same_type = x->type == y->type && x->dtype == y->dtype;
        if (!same_shape(x, y, gguf)) {
            d->status = SMELT_TD_SHAPE;
            r->n_shape++;
        } else if (d->same_type && x->nbytes == y->nbytes && (x->nbytes == 0 || !memcmp(x->data, y->data, (size_t)x->nbytes))) {
            d->status = SMELT_TD_IDENTICAL;
            r->n_identical++;
        } else {
            d->status = SMELT_TD_DIFFERENT;
            r->n_different++;
            if (o->values && smelt_checkpoint_can_decode(x) && smelt_checkpoint_can_decode(y) && x->nelements &&
                (rc = compare_values(x, y, pool, buf, d, e)))
                goto out;
        }
        smelt_checkpoint_release(a, i);
        smelt_checkpoint_release(b, (uint64_t)d->ib);
        smelt_progress_step(o->progress, i + 1, na, 0, x->name);
    }
    for (uint64_t i = 0; i < nb; i++) {
        const smelt_checkpoint_tensor *y = smelt_checkpoint_tensor_at(b, i);
        if (smelt_checkpoint_find(a, y->name) >= 0) continue;
        smelt_tensor_diff *d = &r->t[r->n++];
        d->name = y->name;
        d->ia = -1;
        d->ib = (int64_t)i;
        d->n_elements = y->nelements;
        d->status = SMELT_TD_ONLY_B;
        r->n_only_b++;
    }
    rc = gguf ? diff_gguf_kv(smelt_checkpoint_gguf(a), smelt_checkpoint_gguf(b), r, e)
              : diff_st_meta(smelt_checkpoint_stset(a), smelt_checkpoint_stset(b), r, e);
    r->identical = !rc && r->n_identical == r->n && r->n_kv == 0;
out:
    if (buf)
        for (int i = 0; i < nth; i++) free(buf[i]);
    free(buf);
    smelt_pool_free(pool);
    if (rc) smelt_diff_result_free(r);
    return rc;
}

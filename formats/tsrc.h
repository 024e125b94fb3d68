/* tsrc.h — a tensor source: anything that yields named tensors one at a time (a
 * safetensors checkpoint, PyTorch .bin shards, a base model with LoRA merged on the fly).
 * Layer: formats. Includes base/, dtype.h.
 *
 * This is the seam that lets HF(+LoRA) → GGUF(→quant) run in one streaming pass: the
 * converter reads from a smelt_tsrc and never knows whether the bytes come from a file or
 * from a merge. Shapes are PyTorch order (outermost first). */
#ifndef SMELT_TSRC_H
#define SMELT_TSRC_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "dtype.h"

#define SMELT_TSRC_MAX_DIMS 8

typedef struct smelt_tinfo {
    const char *name;
    smelt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[SMELT_TSRC_MAX_DIMS];
    uint64_t nelements;
    uint64_t nbytes;
    const char *file; /* where it lives (for messages); may be NULL */
    uint8_t block_scaled; /* stored as F8_E4M3 with block scales, read as dtype (fp8src.h) */
} smelt_tinfo;

/* Scratch memory a source may fill when it cannot hand out mapped bytes. Owned by the
 * caller, reused across calls, freed with smelt_scratch_free(). */
typedef struct smelt_scratch {
    void *p;
    size_t cap;
} smelt_scratch;

/* Ensure at least n bytes; returns the buffer or NULL (ENOMEM). */
void *smelt_scratch_get(smelt_scratch *s, size_t n);
void smelt_scratch_free(smelt_scratch *s);

typedef struct smelt_tsrc_vt {
    uint64_t (*count)(void *self);
    const smelt_tinfo *(*info)(void *self, uint64_t i);
    int64_t (*find)(void *self, const char *name);
    /* Bytes of tensor i in its dtype: *data points at mapped memory or into scratch, valid
     * until the next read or release. */
    int (*read)(void *self, uint64_t i, const void **data, smelt_scratch *scratch, smelt_err *e);
    /* The caller is done with tensor i (lets mapped pages go). May be NULL. */
    void (*release)(void *self, uint64_t i);
    void (*close)(void *self);
} smelt_tsrc_vt;

typedef struct smelt_tsrc {
    const smelt_tsrc_vt *vt;
    void *self;
} smelt_tsrc;

static inline uint64_t smelt_tsrc_count(const smelt_tsrc *s) { return s->vt->count(s->self); }
static inline const smelt_tinfo *smelt_tsrc_info(const smelt_tsrc *s, uint64_t i) { return s->vt->info(s->self, i); }
static inline int64_t smelt_tsrc_find(const smelt_tsrc *s, const char *name) { return s->vt->find(s->self, name); }
static inline int smelt_tsrc_read(const smelt_tsrc *s, uint64_t i, const void **data, smelt_scratch *sc, smelt_err *e)
{
    return s->vt->read(s->self, i, data, sc, e);
}
static inline void smelt_tsrc_release(const smelt_tsrc *s, uint64_t i)
{
    if (s->vt->release) s->vt->release(s->self, i);
}

/* Read tensor i converted to f32 into dst (nelements floats). */
int smelt_tsrc_read_f32(const smelt_tsrc *s, uint64_t i, float *dst, smelt_scratch *scratch, smelt_err *e);
/* Tensor i converted to f32 into a new array *out (free() it; it is set, or NULL, even
 * when the read fails), then released (smelt_tsrc_release). */
int smelt_tsrc_load_f32(const smelt_tsrc *s, uint64_t i, float **out, smelt_err *e);

struct smelt_stset;
/* A tensor source over a safetensors set (the set is borrowed and must outlive it; close
 * the source with smelt_tsrc_close()). Tensors keep the set's order. */
int smelt_tsrc_open_stset(smelt_tsrc *out, const struct smelt_stset *set, smelt_err *e);
struct smelt_st;
/* The same over one safetensors file (a PEFT adapter's, opened from disk or memory). */
int smelt_tsrc_open_st(smelt_tsrc *out, const struct smelt_st *file, smelt_err *e);
/* Close any source; safe on a zeroed struct. */
void smelt_tsrc_close(smelt_tsrc *s);

#endif

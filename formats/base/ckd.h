/* ckd.h — checked arithmetic for every size derived from file contents.
 * Layer: formats/base. Header-only, libc only. Each returns true on success. */
#ifndef SMELT_CKD_H
#define SMELT_CKD_H

#include <stdbool.h>
#include <stdint.h>

static inline bool smelt_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool smelt_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Round x up to a multiple of align (a power of two). */
static inline bool smelt_align_u64(uint64_t x, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (__builtin_add_overflow(x, align - 1, &t)) return false;
    *out = t & ~(align - 1);
    return true;
}

static inline uint64_t smelt_pad_u64(uint64_t x, uint64_t align)
{
    return (x + align - 1) / align * align;
}

#endif

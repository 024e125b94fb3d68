/* finite.h — finding NaN and ±Inf among float values, and the one error every tool gives
 * when it refuses them.
 * Layer: formats/base. Includes err.h, libc.
 *
 * The counters are branch-free loops over the values' bit patterns (an exponent field of
 * all ones is NaN or Inf in every format here), written so the compiler vectorizes them:
 * they are meant to run on every row a tool converts, next to the conversion, at a small
 * fraction of its cost. Finding *which* value is the first is a second, rarer pass. */
#ifndef SMELT_FINITE_H
#define SMELT_FINITE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Element formats, by bit layout. */
typedef enum smelt_fin_fmt {
    SMELT_FIN_F32 = 0,
    SMELT_FIN_F16,     /* IEEE binary16 */
    SMELT_FIN_BF16,
    SMELT_FIN_F64,
    SMELT_FIN_F8_E4M3, /* OCP E4M3FN: no infinities, 0x7f / 0xff are NaN */
    SMELT_FIN_F8_E5M2, /* IEEE-like: exponent 0x1f is Inf or NaN */
} smelt_fin_fmt;

/* How many of the n values at p (any alignment) are NaN or ±Inf. */
uint64_t smelt_nonfinite_count(smelt_fin_fmt fmt, const void *p, uint64_t n);
/* The same for a row of f32 (the converters' working format). */
uint64_t smelt_nonfinite_f32(const float *x, uint64_t n);

/* Index of the first NaN/±Inf among the n values at p, or n if there is none; *value (if
 * non-NULL) receives that value as a double (NaN, +inf or -inf). */
uint64_t smelt_nonfinite_first(smelt_fin_fmt fmt, const void *p, uint64_t n, double *value);

/* "NaN", "+Inf" or "-Inf" ("finite" for anything else). */
const char *smelt_nonfinite_kind(double v);

/* The refusal every tool gives, as SMELT_EFORMAT:
 *   FILE: 'OBJECT': WHAT INDEX is KIND[DETAIL]; smelt refuses non-finite weights
 *   (--allow-nonfinite writes them anyway)
 * WHAT is "value" when NULL; INDEX is the flat (row-major, 0-based) index in the tensor;
 * DETAIL (may be NULL) is appended to the kind, e.g. " (…)". */
int smelt_err_nonfinite_(smelt_err *e, const char *file, const char *object, const char *what, uint64_t index,
                         double value, const char *detail, const char *src, int line);
/* Whether e holds that refusal (a caller passing it on leaves its message as it is: it
 * names the file and tensor the value came from already). */
int smelt_err_is_nonfinite(const smelt_err *e);
#define SMELT_ERR_NONFINITE(e, file, obj, what, index, value, detail) \
    smelt_err_nonfinite_((e), (file), (obj), (what), (index), (value), (detail), __FILE__, __LINE__)

#endif

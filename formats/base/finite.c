/* finite.c — counting and locating NaN/±Inf (see finite.h). Includes base/ only. */
#include "finite.h"

#include <math.h>
#include <string.h>

#include "half.h"

/* Values per inner loop: its counter is 32-bit (lanes as wide as an f32), the total is
 * 64-bit. */
#define BLOCK 65536u

/* One counting loop per bit layout: a value is NaN or Inf when its exponent field is all
 * ones. Loads go through memcpy (any alignment; compiled to plain vector loads). */
#define COUNT_LOOP(T, MASK)                                           \
    uint64_t total = 0;                                               \
    for (uint64_t i0 = 0; i0 < n; i0 += BLOCK) {                      \
        uint64_t m = n - i0 < BLOCK ? n - i0 : BLOCK;                 \
        const unsigned char *q = b + i0 * sizeof(T);                  \
        uint32_t c = 0;                                               \
        for (uint64_t i = 0; i < m; i++) {                            \
            T u;                                                      \
            memcpy(&u, q + i * sizeof(T), sizeof(T));                 \
            c += (uint32_t)((u & (T)(MASK)) == (T)(MASK));            \
        }                                                             \
        total += c;                                                   \
    }                                                                 \
    return total

static uint64_t count_f32(const unsigned char *b, uint64_t n) { COUNT_LOOP(uint32_t, 0x7f800000u); }
static uint64_t count_f16(const unsigned char *b, uint64_t n) { COUNT_LOOP(uint16_t, 0x7c00u); }
static uint64_t count_bf16(const unsigned char *b, uint64_t n) { COUNT_LOOP(uint16_t, 0x7f80u); }
static uint64_t count_f64(const unsigned char *b, uint64_t n) { COUNT_LOOP(uint64_t, 0x7ff0000000000000ull); }
static uint64_t count_e4m3(const unsigned char *b, uint64_t n) { COUNT_LOOP(uint8_t, 0x7fu); }
static uint64_t count_e5m2(const unsigned char *b, uint64_t n) { COUNT_LOOP(uint8_t, 0x7cu); }

static size_t fmt_size(smelt_fin_fmt fmt)
{
    switch (fmt) {
    case SMELT_FIN_F32: return 4;
    case SMELT_FIN_F16:
    case SMELT_FIN_BF16: return 2;
    case SMELT_FIN_F64: return 8;
    default: return 1;
    }
}

uint64_t smelt_nonfinite_count(smelt_fin_fmt fmt, const void *p, uint64_t n)
{
    const unsigned char *b = p;
    switch (fmt) {
    case SMELT_FIN_F32: return count_f32(b, n);
    case SMELT_FIN_F16: return count_f16(b, n);
    case SMELT_FIN_BF16: return count_bf16(b, n);
    case SMELT_FIN_F64: return count_f64(b, n);
    case SMELT_FIN_F8_E4M3: return count_e4m3(b, n);
    case SMELT_FIN_F8_E5M2: return count_e5m2(b, n);
    }
    return 0;
}

uint64_t smelt_nonfinite_f32(const float *x, uint64_t n) { return count_f32((const unsigned char *)x, n); }

static double value_at(smelt_fin_fmt fmt, const unsigned char *b)
{
    uint16_t h;
    float f;
    double d;
    switch (fmt) {
    case SMELT_FIN_F32: memcpy(&f, b, 4); return f;
    case SMELT_FIN_F16: memcpy(&h, b, 2); return smelt_f16_to_f32(h);
    case SMELT_FIN_BF16: memcpy(&h, b, 2); return smelt_bf16_to_f32(h);
    case SMELT_FIN_F64: memcpy(&d, b, 8); return d;
    case SMELT_FIN_F8_E4M3: return smelt_f8e4m3_to_f32(*b);
    case SMELT_FIN_F8_E5M2: return smelt_f8e5m2_to_f32(*b);
    }
    return 0;
}

uint64_t smelt_nonfinite_first(smelt_fin_fmt fmt, const void *p, uint64_t n, double *value)
{
    const unsigned char *b = p;
    size_t es = fmt_size(fmt);
    /* skip clean blocks with the vectorized counter, then look value by value */
    for (uint64_t i0 = 0; i0 < n; i0 += 4096) {
        uint64_t m = n - i0 < 4096 ? n - i0 : 4096;
        if (!smelt_nonfinite_count(fmt, b + i0 * es, m)) continue;
        for (uint64_t i = i0; i < i0 + m; i++) {
            double v = value_at(fmt, b + i * es);
            if (!isfinite(v)) {
                if (value) *value = v;
                return i;
            }
        }
    }
    if (value) *value = 0;
    return n;
}

const char *smelt_nonfinite_kind(double v)
{
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    return "finite";
}

static const char REFUSAL[] = "; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)";

int smelt_err_nonfinite_(smelt_err *e, const char *file, const char *object, const char *what, uint64_t index,
                         double value, const char *detail, const char *src, int line)
{
    return smelt_err_set_(e, SMELT_EFORMAT, file, object, SMELT_NO_OFFSET, src, line, "%s %llu is %s%s%s",
                          what ? what : "value", (unsigned long long)index, smelt_nonfinite_kind(value),
                          detail ? detail : "", REFUSAL);
}

int smelt_err_is_nonfinite(const smelt_err *e)
{
    return e && e->code == SMELT_EFORMAT && strstr(e->msg, REFUSAL) != NULL;
}

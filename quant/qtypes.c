/* qtypes.c — the traits table: which decoder serves which type id. */
#include "qtypes.h"

#include <string.h>

#include "formats/base/half.h"

static void deq_f32(const void *src, float *dst, size_t n) { memcpy(dst, src, n * 4); }
static void deq_f16(const void *src, float *dst, size_t n) { smelt_row_f16_to_f32(src, dst, n); }
static void deq_bf16(const void *src, float *dst, size_t n) { smelt_row_bf16_to_f32(src, dst, n); }

/* Q8_0: blocks of 32 — f16 scale d, then 32 int8 quants; x = d * q. */
static void deq_q8_0(const void *src, float *dst, size_t n)
{
    const uint8_t *b = src;
    for (size_t i = 0; i < n / 32; i++, b += 34) {
        uint16_t h;
        memcpy(&h, b, 2);
        float d = smelt_f16_to_f32(h);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = d * (float)(int8_t)b[2 + j];
    }
}

typedef void (*deq_fn)(const void *, float *, size_t);

static deq_fn decoder(int type)
{
    switch (type) {
    case SMELT_TYPE_F32: return deq_f32;
    case SMELT_TYPE_F16: return deq_f16;
    case SMELT_TYPE_BF16: return deq_bf16;
    case SMELT_TYPE_Q8_0: return deq_q8_0;
    default: return NULL;
    }
}

int smelt_q_dequantize_row(int type, const void *src, float *dst, size_t n)
{
    deq_fn f = decoder(type);
    if (!f) return -1;
    f(src, dst, n);
    return 0;
}

bool smelt_q_can_dequantize(int type) { return decoder(type) != NULL; }

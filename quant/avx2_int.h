/* avx2_int.h — integer helpers for the AVX2 dot kernels; included only by *_avx2.c
 * files (built with -mavx2 -mfma -mf16c). Every helper is exact integer arithmetic, so
 * the kernels reproduce the portable integer sums bit for bit. Private to quant/. */
#ifndef SMELT_QUANT_AVX2_INT_H
#define SMELT_QUANT_AVX2_INT_H

#include <immintrin.h>
#include <stdint.h>

/* f16 -> f32 with F16C (exact, like smelt_f16_to_f32). */
static inline float a2_f16(const void *p)
{
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline int a2_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

static inline int a2_hsum128(__m128i s)
{
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* 8 int32 partial sums of u[i] * y[i]: u unsigned bytes <= 127 (pairs cannot saturate),
 * y signed bytes. Lanes 0-3 hold bytes 0-15, lanes 4-7 bytes 16-31. */
static inline __m256i a2_dot_u8s8(__m256i u, __m256i y)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

/* Signed x times signed y (y > -128): |x| * (y * sign x). */
static inline __m256i a2_dot_s8s8(__m256i x, __m256i y)
{
    return a2_dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 16 packed bytes -> 32 nibbles: low nibbles first (bytes 0-15), then high nibbles. */
static inline __m256i a2_nibbles(const uint8_t *p)
{
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Byte j = 0xFF where bit j of h is set. */
static inline __m256i a2_bits(uint32_t h)
{
    __m256i v = _mm256_set1_epi32((int)h);
    v = _mm256_shuffle_epi8(v, _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                                  0x0303030303030303ll));
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfell));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

static inline __m256i a2_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Bits [s, s + width) of every byte (s < 8). */
static inline __m256i a2_field(__m256i v, int s, int mask)
{
    return _mm256_and_si256(_mm256_srli_epi16(v, s), _mm256_set1_epi8((char)mask));
}

#endif

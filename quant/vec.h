/* vec.h — an 8-lane f32 vector for the lane-parallel encoders, with two implementations
 * that give bit-identical results: portable C (default) and AVX2 (define SMELT_VEC_AVX2
 * before including, in a file built with -mavx2 -mfma -mf16c). Private to quant/.
 *
 * The encoders search 8 independent groups at once (8 blocks, or 8 sub-blocks), one per
 * lane, so every lane runs the same scalar sequence of IEEE operations in both
 * implementations: no fused multiply-add (the files are built in ISO C mode, which keeps
 * the compiler from contracting), min/max with the SSE operand rules, rounding half to
 * even (valid for |x| < 2^22, which the encoders guarantee by clamping first), and f16
 * conversion rounding to nearest even. VX(name) gives each implementation its own
 * symbol names. Layer: quant. */
#ifndef SMELT_QUANT_VEC_H
#define SMELT_QUANT_VEC_H

#include <stdint.h>

#include "formats/base/half.h"

#ifdef SMELT_VEC_AVX2
/* ==== AVX2 ==== */
#include <immintrin.h>

#ifndef __STRICT_ANSI__
#error "build with -std=c11: GNU modes let the compiler fuse mul+add, breaking parity"
#endif

#define VX(name) name##_avx2

typedef __m256 vf;
typedef __m256 vm;

static inline vf vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf vf_set1(float a) { return _mm256_set1_ps(a); }
static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf a) { _mm256_storeu_ps(p, a); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
/* min(a, b) = a < b ? a : b;  max(a, b) = a > b ? a : b */
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_round(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vf_abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline vf vf_floor(vf a) { return _mm256_floor_ps(a); }
static inline vf vf_sqrt(vf a) { return _mm256_sqrt_ps(a); }
static inline vm vf_gt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vm vf_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vm vf_ge(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
static inline vm vf_le(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
static inline vm vf_eq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
static inline vm vm_and(vm a, vm b) { return _mm256_and_ps(a, b); }
static inline vm vm_or(vm a, vm b) { return _mm256_or_ps(a, b); }
static inline vm vm_andnot(vm a, vm b) { return _mm256_andnot_ps(a, b); } /* !a & b */
static inline int vm_any(vm a) { return _mm256_movemask_ps(a) != 0; }
static inline int vm_all(vm a) { return _mm256_movemask_ps(a) == 0xff; }
/* m ? a : b */
static inline vf vf_sel(vm m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }
static inline vm vm_sel(vm m, vm a, vm b) { return _mm256_blendv_ps(b, a, m); }
static inline vm vm_none(void) { return _mm256_setzero_ps(); }
/* Integral values in [0, 255] to uint8, 8 at a time. */
static inline void vf_store_u8(uint8_t *p, vf a)
{
    __m256i i = _mm256_cvtps_epi32(a);
    __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packus_epi16(h, h));
}
/* Bit i = lane i of the mask. */
static inline int vm_bits(vm a) { return _mm256_movemask_ps(a); }
/* Integral values in [-128, 127] to int8, 8 at a time. */
static inline void vf_store_i8(int8_t *p, vf a)
{
    __m256i i = _mm256_cvtps_epi32(a);
    __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packs_epi16(h, h));
}
static inline vf vf_f16_round(vf a)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline void vf_store_f16(uint16_t *p, vf a)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 8x8 transpose: row r of the source (8 floats at src + r * stride) becomes column r of
 * the destination (row c at dst + c * dstride). */
static inline void vf_transpose8(const float *src, int stride, float *dst, int dstride)
{
    __m256 r0 = _mm256_loadu_ps(src + 0 * stride), r1 = _mm256_loadu_ps(src + 1 * stride);
    __m256 r2 = _mm256_loadu_ps(src + 2 * stride), r3 = _mm256_loadu_ps(src + 3 * stride);
    __m256 r4 = _mm256_loadu_ps(src + 4 * stride), r5 = _mm256_loadu_ps(src + 5 * stride);
    __m256 r6 = _mm256_loadu_ps(src + 6 * stride), r7 = _mm256_loadu_ps(src + 7 * stride);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * dstride, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * dstride, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * dstride, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * dstride, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * dstride, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * dstride, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * dstride, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * dstride, _mm256_permute2f128_ps(u3, u7, 0x31));
}

#else
/* ==== portable ==== */
#include "quant_int.h"

#define VX(name) name##_port

typedef struct {
    float v[8];
} vf;
typedef struct {
    uint32_t m[8];
} vm;

#define VF_MAP1(expr)                                                                                        \
    vf r;                                                                                                    \
    for (int i = 0; i < 8; i++) r.v[i] = (expr);                                                             \
    return r
#define VM_MAP(expr)                                                                                         \
    vm r;                                                                                                    \
    for (int i = 0; i < 8; i++) r.m[i] = (expr) ? 0xffffffffu : 0u;                                          \
    return r

static inline vf vf_zero(void) { VF_MAP1(0.f); }
static inline vf vf_set1(float a) { VF_MAP1(a); }
static inline vf vf_load(const float *p) { VF_MAP1(p[i]); }
static inline void vf_store(float *p, vf a)
{
    for (int i = 0; i < 8; i++) p[i] = a.v[i];
}
static inline vf vf_add(vf a, vf b) { VF_MAP1(a.v[i] + b.v[i]); }
static inline vf vf_sub(vf a, vf b) { VF_MAP1(a.v[i] - b.v[i]); }
static inline vf vf_mul(vf a, vf b) { VF_MAP1(a.v[i] * b.v[i]); }
static inline vf vf_div(vf a, vf b) { VF_MAP1(a.v[i] / b.v[i]); }
static inline vf vf_min(vf a, vf b) { VF_MAP1(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
static inline vf vf_max(vf a, vf b) { VF_MAP1(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
/* SIMD rounding keeps the sign of a result of zero (-0.3 -> -0.0); so does this. */
static inline float vec_round1(float a)
{
    float r = (float)q_nearest(a);
    return r == 0 ? smelt_bits_f32(smelt_f32_bits(a) & 0x80000000u) : r;
}
static inline vf vf_round(vf a) { VF_MAP1(vec_round1(a.v[i])); }
static inline vf vf_abs(vf a) { VF_MAP1(smelt_bits_f32(smelt_f32_bits(a.v[i]) & 0x7fffffffu)); }
static inline vf vf_floor(vf a) { VF_MAP1(__builtin_floorf(a.v[i])); }
static inline vf vf_sqrt(vf a) { VF_MAP1(__builtin_sqrtf(a.v[i])); }
static inline vm vf_gt(vf a, vf b) { VM_MAP(a.v[i] > b.v[i]); }
static inline vm vf_lt(vf a, vf b) { VM_MAP(a.v[i] < b.v[i]); }
static inline vm vf_ge(vf a, vf b) { VM_MAP(a.v[i] >= b.v[i]); }
static inline vm vf_le(vf a, vf b) { VM_MAP(a.v[i] <= b.v[i]); }
static inline vm vf_eq(vf a, vf b) { VM_MAP(a.v[i] == b.v[i]); }
static inline vm vm_and(vm a, vm b) { VM_MAP(a.m[i] & b.m[i]); }
static inline vm vm_or(vm a, vm b) { VM_MAP(a.m[i] | b.m[i]); }
static inline vm vm_andnot(vm a, vm b) { VM_MAP(~a.m[i] & b.m[i]); }
static inline int vm_any(vm a)
{
    uint32_t o = 0;
    for (int i = 0; i < 8; i++) o |= a.m[i];
    return o != 0;
}
static inline int vm_all(vm a)
{
    uint32_t o = 0xffffffffu;
    for (int i = 0; i < 8; i++) o &= a.m[i];
    return o != 0;
}
static inline vf vf_sel(vm m, vf a, vf b) { VF_MAP1(m.m[i] ? a.v[i] : b.v[i]); }
static inline vm vm_sel(vm m, vm a, vm b) { VM_MAP(m.m[i] ? a.m[i] : b.m[i]); }
static inline vm vm_none(void) { VM_MAP(0); }
static inline vf vf_f16_round(vf a) { VF_MAP1(smelt_f16_to_f32(smelt_f32_to_f16(a.v[i]))); }
static inline void vf_store_f16(uint16_t *p, vf a)
{
    for (int i = 0; i < 8; i++) p[i] = smelt_f32_to_f16(a.v[i]);
}
static inline void vf_transpose8(const float *src, int stride, float *dst, int dstride)
{
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 8; c++) dst[c * dstride + r] = src[r * stride + c];
}
/* Integral values in [-128, 127] to int8, 8 at a time. */
static inline void vf_store_i8(int8_t *p, vf a)
{
    for (int i = 0; i < 8; i++) p[i] = (int8_t)(int)a.v[i];
}
/* Integral values in [0, 255] to uint8, 8 at a time. */
static inline void vf_store_u8(uint8_t *p, vf a)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(int)a.v[i];
}
/* Bit i = lane i of the mask. */
static inline int vm_bits(vm a)
{
    int b = 0;
    for (int i = 0; i < 8; i++) b |= (a.m[i] ? 1 : 0) << i;
    return b;
}

#undef VF_MAP1
#undef VM_MAP
#endif

/* Lane i of a vector (slow; for the scalar tails of the encoders). */
static inline float vf_lane(vf a, int i)
{
    float t[8];
    vf_store(t, a);
    return t[i];
}

#endif

/* kquant_int.h — private to quant/kquant/: the super-block search engine shared by the
 * k-quant encoders, the llama.cpp scale searches the reference encoders need, and each
 * type's kernels for the family table. Layer: quant. */
#ifndef SMELT_KQUANT_INT_H
#define SMELT_KQUANT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kquant.h"
#include "quant/quant_int.h"
#include "quant/search.h"

/* ==== super-block search engine ==== */

/* Shape of a k-quant: sub-blocks, element levels, integer scale (and min) ranges. */
typedef struct {
    smelt_qs_plan sub;   /* search of each sub-block */
    smelt_qs_plan scale; /* search of the super-block factors */
    int passes;          /* local refinement + global refit rounds */
} kq_plan;

typedef struct {
    int nsub, len;       /* sub-blocks per super-block and their length */
    int lmin, lmax;      /* element levels */
    int smin, smax;      /* integer sub-block scales */
    int mmax;            /* integer sub-block mins in [0, mmax]; 0 = no mins */
    kq_plan plain, imx;  /* effort without and with importance weights */
} kq_shape;

/* Result for one super-block. x ~ (d * S[j]) * L[i] - (dmin * M[j]), evaluated in f32
 * exactly as the dequantizers do. d, dmin are the f16 bits to store. */
typedef struct {
    uint16_t d, dmin;
    int S[16], M[16];
    int8_t L[SMELT_QK_K];
    double err;
} kq_result;

/* Search one super-block of 256 finite values with weights w (> 0; NULL = all ones).
 * Deterministic; both builds give identical results. */
void kq_search_port(const smelt_search_kernels *k, const kq_shape *g, const float *x, const float *w, kq_result *r);
void kq_search_avx2(const smelt_search_kernels *k, const kq_shape *g, const float *x, const float *w, kq_result *r);

/* A kernel set: the search and the scale-search kernels it uses. */
typedef struct kq_engine {
    void (*search)(const smelt_search_kernels *k, const kq_shape *g, const float *x, const float *w, kq_result *r);
    const smelt_search_kernels *k;
} kq_engine;
extern const kq_engine kq_engine_port, kq_engine_avx2;

/* Exact weighted error of a decoded super-block result (for tests and candidates). */
double kq_error(const kq_shape *g, const float *x, const float *w, const kq_result *r);

/* ==== llama.cpp's scale searches (reproduced for the bit-exact reference encoders) ==== */

/* Scale and min for levels 0..nmax from a grid of inverse scales (weights given). */
float kq_ref_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, float rmin,
                       float rdelta, int nstep, bool use_mad);
/* Symmetric scale with weights x^2 and a +-0.9 grid (levels biased by nmax). */
float kq_ref_scale_sym(int n, int nmax, const float *x, int8_t *L);
/* Symmetric scale refined by coordinate descent on the levels (Q3_K). */
float kq_ref_scale_q3(int n, int nmax, const float *x, int8_t *L);

/* The reference scales of one Q4_K/Q5_K super-block (levels 0..nmax, 8 sub-blocks of 32):
 * each sub-block's scale and min from kq_ref_scale_min with weights rms + |x|, both
 * quantized to 6 bits against the largest; writes the 12 packed scale bytes, d, dmin
 * (f16) and the re-rounded levels L[256]. */
void kq_ref_scales_k4(const float *x, int nmax, float rmin, int nstep, uint8_t *scales, uint16_t *d,
                      uint16_t *dmin, uint8_t *L);

/* ==== shared packing ==== */

/* 6-bit scales and mins of Q4_K/Q5_K into / out of the 12 packed bytes. */
void kq_pack_scale_min_k4(uint8_t *q, const int *S, const int *M);
static inline void kq_scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}
/* 2-bit level planes of Q2_K/Q3_K: levels 0..3 of 256 elements into 64 bytes. */
void kq_pack_2bit(uint8_t *qs, const uint8_t *L);

/* Dot products, portable: add sub-block s's products, times its integer scale, to the
 * 8 integer lanes of the super-block: element e goes to lane e / 4 for 32-element
 * sub-blocks, and to lane 4 (s & 1) + e / 4 for 16-element ones (two sub-blocks share
 * a 32-byte vector in the SIMD kernels). lv are the stored levels, bias included. */
void kq_lanes_sub(int32_t *lane, int len, int s, int sc, const int *lv, const int8_t *y);

/* Rows loop shared by the encoders: per super-block weights from the imatrix or ones.
 * A type is described by its block size, its block encoder and shape, and the offsets
 * of the f16 factors (d, and dmin where there is one) that scale the whole super-block. */
typedef void (*kq_block_fn)(const kq_engine *e, const kq_shape *g, const float *x, const float *w, void *block,
                            kq_result *r);
typedef struct kq_type {
    size_t block_bytes;
    kq_block_fn quant; /* search one super-block of shape g, write it, leave the result in r */
    const kq_shape *shape;
    int n_factors;
    size_t factor_off[2];
} kq_type;
void kq_quantize_rows(const kq_engine *e, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                      const float *imx, const smelt_qerr *m, const kq_type *t);

/* ==== per-type kernels (q2_K.c … q8_K.c) ==== */

#define KQ_DECL(t)                                                                                           \
    void smelt_deq_##t(const void *src, float *dst, size_t n);                                              \
    void smelt_ref_##t(const float *x, void *dst, int64_t k);                                               \
    void smelt_quant_##t(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx);   \
    void smelt_quant_##t##_avx2(const float *src, void *dst, int64_t n_rows, int64_t row_len,              \
                                const float *imx);                                                          \
    void smelt_quant_##t##_err(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx, \
                               const smelt_qerr *m);                                                        \
    void smelt_quant_##t##_avx2_err(const float *src, void *dst, int64_t n_rows, int64_t row_len,          \
                                    const float *imx, const smelt_qerr *m);                                 \
    float smelt_dot_##t(const void *vx, const void *vy, size_t n);
/* A type's four row entry points (plain or error model; portable or AVX2 engine): all of
 * them kq_quantize_rows() with the type's static quant_block(). */
#define KQ_ROW_ENTRIES(t, shape, n_factors, ...)                                                            \
    static const kq_type kq_type_##t = {sizeof(smelt_block_##t), quant_block, shape, n_factors, {__VA_ARGS__}}; \
    void smelt_quant_##t(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)    \
    {                                                                                                        \
        kq_quantize_rows(&kq_engine_port, src, dst, n_rows, row_len, imx, NULL, &kq_type_##t);               \
    }                                                                                                        \
    void smelt_quant_##t##_err(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx, \
                               const smelt_qerr *m)                                                          \
    {                                                                                                        \
        kq_quantize_rows(&kq_engine_port, src, dst, n_rows, row_len, imx, m, &kq_type_##t);                  \
    }                                                                                                        \
    void smelt_quant_##t##_avx2(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx) \
    {                                                                                                        \
        kq_quantize_rows(&kq_engine_avx2, src, dst, n_rows, row_len, imx, NULL, &kq_type_##t);               \
    }                                                                                                        \
    void smelt_quant_##t##_avx2_err(const float *src, void *dst, int64_t n_rows, int64_t row_len,          \
                                    const float *imx, const smelt_qerr *m)                                   \
    {                                                                                                        \
        kq_quantize_rows(&kq_engine_avx2, src, dst, n_rows, row_len, imx, m, &kq_type_##t);                  \
    }

KQ_DECL(q2_K)
KQ_DECL(q3_K)
KQ_DECL(q4_K)
KQ_DECL(q5_K)
KQ_DECL(q6_K)
void smelt_deq_q8_K(const void *src, float *dst, size_t n);
/* Q3_K's 6-bit signed sub-block scale j (stored with a bias of 32). */
static inline int kq_q3_scale(const uint8_t *q, int j)
{
    int lo = j < 8 ? q[j] & 15 : q[j - 8] >> 4;
    return (lo | ((q[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}
void smelt_ref_q8_K(const float *x, void *dst, int64_t k);

#endif

/* tq_common.c — what TQ1_0 and TQ2_0 share (ternary_int.h): the scale search, decoding
 * and the dot with Q8_K over their levels. Includes quant/ only. */
#include <math.h>

#include "ternary_int.h"

#define ROUND_MAGIC 12582912.f /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
#define NBIN 128               /* histogram bins over x / max|x| in [-1, 1] */
#define T_MIN 0.9f             /* candidate scales: the largest |x| at T_MIN .. T_MAX levels */
#define T_MAX 4.5f
#define T_STEP 0.2f
#define LLOYD_ROUNDS 6

/* Nearest level of v, clamped to -1 .. hi (v clamped first, so the rounding stays exact). */
static inline float level_of(float v, float hi)
{
    v = v < -1.f ? -1.f : v;
    v = v > hi ? hi : v;
    return (v + ROUND_MAGIC) - ROUND_MAGIC;
}

/* sum w q x and sum w q^2 of the nearest levels q at inverse scale inv, in 8 lanes */
static void level_sums(const float *x, const float *w, float inv, float hi, float *sqx, float *sq2)
{
    float a[8] = {0}, b[8] = {0};
    for (int i = 0; i < TQ_BLOCK; i += 8)
        for (int k = 0; k < 8; k++) {
            float q = level_of(x[i + k] * inv, hi), wq = w[i + k] * q;
            a[k] += wq * x[i + k];
            b[k] += wq * q;
        }
    *sqx = q_lanes_sum(a);
    *sq2 = q_lanes_sum(b);
}

/* Weighted squared error of the nearest levels at scale d (non-zero, finite). */
static float scale_error(const float *x, const float *w, float d, float hi)
{
    float e[8] = {0}, inv = 1.f / d;
    for (int i = 0; i < TQ_BLOCK; i += 8)
        for (int k = 0; k < 8; k++) {
            float r = x[i + k] - d * level_of(x[i + k] * inv, hi);
            e[k] += w[i + k] * r * r;
        }
    return q_lanes_sum(e);
}

static float gain(float a, float b) { return b > 0 ? a * a / b : -1.f; }

/* The block as a histogram of u = x / max|x|: prefix sums of w and w x over the bins, so
 * that any scale's level sums are a few differences (elements assigned by their bin). */
typedef struct {
    double w[NBIN + 1], wx[NBIN + 1];
} histogram;

static void histogram_build(const float *x, const float *w, float m, histogram *h)
{
    double sw[NBIN] = {0}, swx[NBIN] = {0};
    float scale = (float)(NBIN / 2) / m;
    for (int i = 0; i < TQ_BLOCK; i++) {
        int b = (int)(x[i] * scale + (float)(NBIN / 2));
        b = b < 0 ? 0 : b >= NBIN ? NBIN - 1 : b;
        sw[b] += w[i];
        swx[b] += (double)w[i] * x[i];
    }
    h->w[0] = h->wx[0] = 0;
    for (int b = 0; b < NBIN; b++) {
        h->w[b + 1] = h->w[b] + sw[b];
        h->wx[b + 1] = h->wx[b] + swx[b];
    }
}

/* first bin at or above u (a bin boundary index 0 .. NBIN) */
static int boundary(double u)
{
    double v = (u + 1) * (NBIN / 2) + 0.5;
    return v < 0 ? 0 : v > NBIN ? NBIN : (int)v; /* truncation is floor here: v >= 0 */
}

/* Gain of the levels at inverse scale t / max|x| (t signed), from the histogram. */
static double histogram_gain(const histogram *h, double t, int hi)
{
    double a = 0, b = 0, it = 1 / t;
    for (int k = -1; k <= hi; k++) {
        if (k == 0) continue;
        /* the u range of level k: u t in [k - 1/2, k + 1/2), the end levels unbounded */
        double lo_u = k == -1 ? (t > 0 ? -2 : 2) : (k - 0.5) * it;
        double hi_u = k == hi ? (t > 0 ? 2 : -2) : (k + 0.5) * it;
        int b0 = boundary(t > 0 ? lo_u : hi_u), b1 = boundary(t > 0 ? hi_u : lo_u);
        if (b1 <= b0) continue;
        a += k * (h->wx[b1] - h->wx[b0]);
        b += (double)(k * k) * (h->w[b1] - h->w[b0]);
    }
    return b > 0 ? a * a / b : -1;
}

/* The best t of the histogram: steps of T_STEP from T_MIN to T_MAX (each sign of d when
 * the levels are not symmetric), then halves and quarters of a step around the best. */
static float histogram_best(const histogram *h, int hi)
{
    double best = -2;
    float best_t = 1;
    for (int s = 1; s >= (hi > 1 ? -1 : 1); s -= 2)
        for (float t = T_MIN; t <= T_MAX; t += T_STEP) {
            double v = histogram_gain(h, s * (double)t, hi);
            if (v > best) {
                best = v;
                best_t = (float)s * t;
            }
        }
    for (float step = T_STEP / 2; step >= T_STEP / 4; step /= 2) {
        float t0 = best_t;
        for (int k = -1; k <= 1; k += 2) {
            double v = histogram_gain(h, (double)(t0 + (float)k * step), hi);
            if (v > best) {
                best = v;
                best_t = t0 + (float)k * step;
            }
        }
    }
    return best_t;
}

/* The f16 scale d and the levels L[i] in -1 .. hi of one block that give the smallest
 * weighted squared error sum w (x - d L)^2 the search finds: candidate scales that map
 * the largest |x| to T_MIN .. T_MAX levels scored on the histogram (histogram_best), the best refined by exact Lloyd rounds, then the
 * f16 values around it and llama.cpp's scale scored exactly. d is finite; an all-zero
 * block gives d = 0 and levels 0. */
static uint16_t encode_levels(const float *x, const float *w, int hi, int8_t *L)
{
    const float fhi = (float)hi;
    float m = 0;
    for (int i = 0; i < TQ_BLOCK; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    if (!(m > 1e-30f)) {
        memset(L, 0, TQ_BLOCK);
        return 0;
    }
    histogram h;
    histogram_build(x, w, m, &h);
    float best_t = histogram_best(&h, hi);
    /* exact Lloyd rounds from the best: fit d, re-pick the levels, while the error falls */
    float a, b, best = -1, d = m / best_t;
    for (int it = 0; it < LLOYD_ROUNDS; it++) {
        level_sums(x, w, 1.f / d, fhi, &a, &b);
        float v = gain(a, b);
        if (!(v > best)) break;
        best = v;
        d = a / b;
    }
    /* the stored f16 value: the nearest ones around d, and llama.cpp's (the largest |x|),
     * each finite and non-zero, by exact error */
    if (!(fabsf(d) <= 65504.f)) d = copysignf(65504.f, d);
    uint16_t h16 = smelt_f32_to_f16(d), cand[4], bh = 0;
    for (int k = -1; k <= 1; k++) {
        int mag = (int)(h16 & 0x7fff) + k;
        cand[k + 1] = mag < 1 || mag > 0x7bff ? 0 : (uint16_t)((h16 & 0x8000) | mag);
    }
    cand[3] = smelt_f32_to_f16(m);
    float be = INFINITY;
    for (int k = 0; k < 4; k++) {
        if ((cand[k] & 0x7fff) == 0 || (cand[k] & 0x7fff) > 0x7bff) continue;
        float e = scale_error(x, w, smelt_f16_to_f32(cand[k]), fhi);
        if (e < be) {
            be = e;
            bh = cand[k];
        }
    }
    if (bh == 0) {
        memset(L, 0, TQ_BLOCK);
        return 0;
    }
    float inv = 1.f / smelt_f16_to_f32(bh);
    for (int i = 0; i < TQ_BLOCK; i++) L[i] = (int8_t)level_of(x[i] * inv, fhi);
    return bh;
}

void tq_dequantize(const tq_format *f, const void *src, float *y, size_t n)
{
    const uint8_t *b = src;
    int c[TQ_BLOCK];
    for (size_t i = 0; i < n / TQ_BLOCK; i++, y += TQ_BLOCK) {
        float d = f->codes(b + i * f->bytes, c);
        for (int j = 0; j < TQ_BLOCK; j++) y[j] = (float)(c[j] - 1) * d;
    }
}

void tq_ref(const tq_format *f, const float *x, void *dst, int64_t n)
{
    uint8_t *y = dst;
    int c[TQ_BLOCK];
    for (int64_t i = 0; i < n / TQ_BLOCK; i++, x += TQ_BLOCK, y += f->bytes) {
        float amax = 0;
        for (int j = 0; j < TQ_BLOCK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        float id = amax != 0 ? 1.f / amax : 0.f;
        for (int j = 0; j < TQ_BLOCK; j++) c[j] = (int)lroundf(x[j] * id) + 1;
        f->pack(c, smelt_f32_to_f16(amax), y);
    }
}

void tq_encode_block(const void *ctx, const float *x, const float *w, void *blk)
{
    const tq_format *f = ctx;
    int8_t L[TQ_BLOCK];
    int c[TQ_BLOCK];
    uint16_t d = encode_levels(x, w, f->hi, L);
    for (int j = 0; j < TQ_BLOCK; j++) c[j] = L[j] + 1;
    f->pack(c, d, blk);
}


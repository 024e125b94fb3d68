/* iq4_common.c — the IQ4 grid, the scale search of one 32-value group, llama.cpp's IQ4
 * encoder (reference blocks and the floor for smelt's) and the rows loop. Includes quant/
 * only. */
#include <math.h>
#include <string.h>

#include "iqgrid.h"
#include "iquant_int.h"
#include "quant/search.h"

/* the format's 16 levels (ggml's kvalues_iq4nl) */
const int8_t smelt_iq4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

const float iq4_mid[15] = {-115.5f, -93.5f, -74.f, -57.f, -42.f, -28.5f, -16.f, -4.5f,
                           7.f,     19.f,   31.5f, 45.5f, 61.f,  79.f,   101.f};

#ifndef IQ4_STEP
#define IQ4_STEP 4
#endif
#define IQ4_EPS 1e-15f /* groups whose largest |x| is below this are all zero */


/* sum w v x and sum w v^2 of the nearest levels v at inverse scale s */
static void level_sums(const float *x, const float *w, float s, float *sqx, float *sq2)
{
    float a = 0, b = 0;
    for (int i = 0; i < IQ4_GROUP; i++) {
        float v = (float)smelt_iq4_grid[iq4_index(s * x[i])], wv = w[i] * v;
        a += wv * x[i];
        b += wv * v;
    }
    *sqx = a;
    *sq2 = b;
}

/* The gain sqx^2 / sq2 is what a least-squares scale removes from sum w x^2. */
static float gain(float a, float b) { return b > 0 ? a * a / b : -1.f; }

float iq4_group_scale(const float *x, const float *w)
{
    float max = q_signed_absmax(x, IQ4_GROUP);
    if (fabsf(max) < IQ4_EPS) return 0;
    /* the largest |x| mapped to g = end + k grid units, for either end of the grid (the
     * asymmetric grid makes both signs of the scale differ); llama.cpp tries
     * g = -127 + (-7 .. 7) and +127 */
    float best = -1, best_g = 0;
    static const float ends[2] = {-127.f, 113.f};
    for (int e = 0; e < 2; e++)
        for (int k = -16; k <= 24; k += IQ4_STEP) {
            float g = ends[e] < 0 ? ends[e] - (float)k : ends[e] + (float)k, a, b;
            level_sums(x, w, g / max, &a, &b);
            float v = gain(a, b);
            if (v > best) {
                best = v;
                best_g = g;
            }
        }
    /* the points between the coarse ones around the best */
    float g0 = best_g;
    for (int k = 1; k < IQ4_STEP; k++)
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            float g = g0 + (float)(sgn * k), a, b;
            level_sums(x, w, g / max, &a, &b);
            float v = gain(a, b);
            if (v > best) {
                best = v;
                best_g = g;
            }
        }
    float best_s = best_g / max;
    float a, b;
    level_sums(x, w, best_s, &a, &b);
    float d = b > 0 ? a / b : 0;
    /* Lloyd rounds: the error falls at every step that is kept */
    for (int it = 0; it < 16 && d != 0; it++) {
        float a2, b2;
        level_sums(x, w, 1.f / d, &a2, &b2);
        float v = gain(a2, b2);
        if (!(v > best)) break;
        best = v;
        d = a2 / b2;
    }
    return d;
}

float iq4_fit(const float *x, const float *w, float D, uint8_t *L)
{
    float s = D != 0 ? 1.f / D : 0.f, e = 0;
    for (int i = 0; i < IQ4_GROUP; i++) {
        int k = iq4_index(s * x[i]);
        if (L) L[i] = (uint8_t)k;
        float r = x[i] - D * (float)smelt_iq4_grid[k];
        e += w[i] * r * r;
    }
    return e;
}

double iq4_error(const float *x, const float *y, const float *w, int n)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        double r = (double)x[i] - y[i];
        e += (w ? w[i] : 1.0) * r * r;
    }
    return e;
}

void iq4_pack(uint8_t *qs, const uint8_t *L, int ngroups)
{
    for (int g = 0; g < ngroups; g++)
        for (int l = 0; l < 16; l++) qs[16 * g + l] = (uint8_t)(L[32 * g + l] | L[32 * g + 16 + l] << 4);
}

/* ==== llama.cpp's encoder ====
 * Reproduced operation for operation (same float expressions in the same order): its
 * blocks must come out byte for byte. */

/* Nearest level as ggml picks it: the two grid values around x, then the nearer by their
 * distances computed in f32 (ties and near-ties to the upper). The bracket is found by a
 * branch-free bisection over grid values 1..15 (what ggml's loop finds). */
static int ref_index(float x)
{
    const int8_t *v = smelt_iq4_grid;
    if (x <= v[0]) return 0;
    if (!(x < v[15])) return 15; /* and NaN, as ggml's bisection ends */
    int b = x >= v[8] ? 8 : 0;   /* b = number of v[1..15] <= x, 0..14 here */
    b += x >= v[b + 4] ? 4 : 0;
    b += x >= v[b + 2] ? 2 : 0;
    b += x >= v[b + 1] ? 1 : 0;
    return x - v[b] < v[b + 1] - x ? b : b + 1;
}

/* sum w q x and sum w q^2 of the levels at inverse scale id (levels to L if not NULL) */
static void ref_sums(const float *xb, const float *wt, float id, uint8_t *L, float *sqx, float *sq2)
{
    float a = 0, b = 0;
    for (int j = 0; j < IQ4_GROUP; j++) {
        int l = ref_index(id * xb[j]);
        if (L) L[j] = (uint8_t)l;
        float q = smelt_iq4_grid[l], w = wt[j];
        a += w * q * xb[j];
        b += w * q * q;
    }
    *sqx = a;
    *sq2 = b;
}

void iq4_llama_block(int nsub, const float *x, const float *qw, int ntry, uint8_t *L, uint16_t *dh, uint8_t *qs,
                     uint16_t *sh, uint8_t *sl)
{
    const int n = IQ4_GROUP * nsub;
    const float v0 = smelt_iq4_grid[0];
    float sigma2 = 0;
    for (int j = 0; j < n; j++) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / (float)n;
    memset(qs, 0, (size_t)n / 2);
    *dh = smelt_f32_to_f16(0.f);
    float scales[8], wt[IQ4_GROUP], max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < nsub; ib++) {
        const float *xb = x + IQ4_GROUP * ib;
        uint8_t *Lb = L + IQ4_GROUP * ib;
        for (int j = 0; j < IQ4_GROUP; j++)
            wt[j] = qw ? qw[IQ4_GROUP * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
        float max = q_signed_absmax(xb, IQ4_GROUP);
        if (fabsf(max) < IQ4_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = ntry > 0 ? -max / v0 : max / v0, sqx, sq2;
        ref_sums(xb, wt, 1 / d, Lb, &sqx, &sq2);
        d = sq2 > 0 ? sqx / sq2 : 0.f;
        float best = d * sqx;
        for (int t = -ntry; t <= ntry; t++) {
            ref_sums(xb, wt, ((float)t + v0) / max, NULL, &sqx, &sq2);
            if (sq2 > 0 && sqx * sqx > best * sq2) {
                d = sqx / sq2;
                best = d * sqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }
    if (nsub > 1) {
        *sh = 0;
        float d = -max_scale / 32;
        *dh = smelt_f32_to_f16(d);
        float id = d != 0 ? 1 / d : 0.f;
        for (int ib = 0; ib < nsub; ib++) {
            int l = q_clampi(q_nearest(id * scales[ib]), -32, 31);
            float dl = d * (float)l, idl = dl != 0 ? 1 / dl : 0.f;
            for (int j = 0; j < IQ4_GROUP; j++) L[IQ4_GROUP * ib + j] = (uint8_t)ref_index(idl * x[IQ4_GROUP * ib + j]);
            l += 32;
            if (ib % 2 == 0) sl[ib / 2] = (uint8_t)(l & 15);
            else sl[ib / 2] |= (uint8_t)((l & 15) << 4);
            *sh |= (uint16_t)((l >> 4) << 2 * ib);
        }
    } else {
        *dh = smelt_f32_to_f16(scales[0]);
        if (ntry > 0) {
            float id = scales[0] != 0 ? 1 / scales[0] : 0;
            for (int j = 0; j < n; j++) L[j] = (uint8_t)ref_index(id * x[j]);
        }
    }
    iq4_pack(qs, L, nsub);
}

/* ==== rows ==== */

void iq4_quantize_rows(const iq4_type *t, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                       const float *imx, const smelt_qerr *m)
{
    const int blck = t->blck;
    const size_t bytes = t->bytes;
    uint8_t *y = dst;
    int64_t nb = row_len / blck;
    float xs[256], w[256];
    if (m && m->ref) {
        for (int64_t r = 0; r < n_rows; r++)
            for (int64_t ib = 0; ib < nb; ib++, y += bytes) {
                smelt_qs_sanitize(src + r * row_len + ib * blck, blck, xs);
                t->ref(xs, y, blck);
            }
        return;
    }
    float fl = imx ? smelt_qs_weight_floor(imx, row_len) : 0;
    if (imx && m && m->a > 0) fl += smelt_qs_weight_lift(fl, m->a);
    bool mag = m && m->p != 0.0f, unbias = m && m->unbias;
    static const size_t d_off[1] = {0}; /* where scale_d is NULL, blocks start with their f16 factor d */
    for (int64_t r = 0; r < n_rows; r++) {
        uint8_t *row = y;
        double s[2] = {0, 0};
        for (int64_t ib = 0; ib < nb; ib++, y += bytes) {
            smelt_qs_sanitize(src + r * row_len + ib * blck, blck, xs);
            const float *qw = imx ? imx + ib * blck : NULL;
            smelt_qs_block_weights(qw, fl, blck, w);
            if (mag) smelt_qs_magnitude(xs, blck, m->p, m->c, w);
            if (t->grid) iqg_encode(t->grid, xs, w, qw, y);
            else t->enc(xs, w, qw, y);
            if (unbias) {
                t->dequantize(y, w, (size_t)blck); /* the weights are spent: reuse their buffer */
                smelt_qs_unbias_sums(xs, qw, w, blck, s);
            }
        }
        double c;
        if (unbias && t->scale_d && smelt_qs_unbias_scale(s, &c))
            for (int64_t ib = 0; ib < nb; ib++) t->scale_d(row + ib * bytes, c);
        else if (unbias && !t->scale_d)
            smelt_qs_unbias_apply(row, nb, bytes, d_off, 1, s);
    }
}

/* kern.c — portable encoder kernels (see kern.h). Written lane by lane so that the AVX2
 * twin (kern_avx2.c) performs the same f32 operations in the same order. */
#include "kern.h"

#include "quant_int.h"

static inline float lanes_sum8(const float *a)
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* max then min with the SIMD operand semantics: max(t, lo) = t > lo ? t : lo. */
static inline float clamp_round(float t, float lo, float hi)
{
    t = t > lo ? t : lo;
    t = t < hi ? t : hi;
    return (float)q_nearest(t);
}



static void sym_score(int n, const float *x, const float *w, int lo, int hi, const float *s, int K, float *out)
{
    float flo = (float)lo, fhi = (float)hi;
    for (int k = 0; k < K; k++) {
        float s2 = 0, s3 = 0;
        for (int i = 0; i < n; i++) {
            float l = clamp_round(x[i] * s[k], flo, fhi);
            float wl = w[i] * l;
            s2 = s2 + wl * l;
            s3 = s3 + wl * x[i];
        }
        out[2 * k] = s2;
        out[2 * k + 1] = s3;
    }
}

static float sym_round(int n, const float *x, const float *w, float d, float id, int lo, int hi, int8_t *L,
                       float *sums)
{
    float flo = (float)lo, fhi = (float)hi;
    float e[8] = {0}, a1[8] = {0}, a2[8] = {0}, a3[8] = {0};
    for (int v = 0; v < n; v += 8)
        for (int j = 0; j < 8; j++) {
            float xi = x[v + j];
            float l = clamp_round(xi * id, flo, fhi);
            L[v + j] = (int8_t)(int)l;
            float r = d * l - xi;
            float wl = w[v + j] * l;
            e[j] = e[j] + (w[v + j] * r) * r;
            a1[j] = a1[j] + wl;
            a2[j] = a2[j] + wl * l;
            a3[j] = a3[j] + wl * xi;
        }
    sums[0] = lanes_sum8(a1);
    sums[1] = lanes_sum8(a2);
    sums[2] = lanes_sum8(a3);
    return lanes_sum8(e);
}

const smelt_search_kernels smelt_search_kernels_portable = {sym_score, sym_round};

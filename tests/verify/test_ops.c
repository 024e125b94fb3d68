/* test_ops.c — the forward pass's numeric kernels: matrix products over every decodable
 * weight type against a double-precision reference, exp accuracy, RMSNorm, RoPE and
 * attention against naive formulas, and bit-identical results across ISAs, thread counts
 * and job splits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/half.h"
#include "quant/qtypes.h"
#include "verify/eval/ops.h"

/* ==== helpers ==== */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rnd(size_t n, float scale)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static smelt_fwd_ops *ops_isa(smelt_pool *pool, int isa)
{
    smelt_fwd_ops *o = smelt_fwd_ops_new(pool, isa);
    cr_assert_not_null(o);
    return o;
}

static smelt_fwd_ops *avx2_or_skip(smelt_pool *pool)
{
    smelt_fwd_ops *o = ops_isa(pool, SMELT_ISA_AVX2);
    if (smelt_fwd_ops_isa(o) != SMELT_ISA_AVX2) {
        smelt_fwd_ops_free(o);
        cr_skip_test("this CPU (or SMELT_NO_SIMD) has no AVX2+FMA+F16C kernels to compare");
    }
    return o;
}

/* A weight matrix of `type` holding N rows of K values derived from random floats.
 * Returns NULL when smelt can neither produce nor hand-craft the type. */
static uint8_t *make_weights(int type, size_t N, size_t K, uint64_t *row_bytes)
{
    smelt_err e = {0};
    if (smelt_type_row_bytes(type, K, row_bytes, &e)) return NULL;
    uint8_t *w = calloc(N, *row_bytes);
    float *src = rnd(N * K, 0.5f);
    if (smelt_q_can_quantize(type)) {
        cr_assert_eq(smelt_q_quantize_rows(type, src, w, (int64_t)N, (int64_t)K, NULL, NULL, &e), 0, "%s", e.msg);
    } else if (type == SMELT_TYPE_Q8_0) {
        for (size_t b = 0; b < N * K / 32; b++) {
            uint16_t d = smelt_f32_to_f16(0.004f + 0.001f * (float)(b % 7));
            memcpy(w + b * 34, &d, 2);
            for (int j = 0; j < 32; j++) w[b * 34 + 2 + j] = (uint8_t)(int8_t)(frand() * 127);
        }
    } else {
        free(w);
        w = NULL;
    }
    free(src);
    return w;
}

static smelt_wview view(int type, const uint8_t *data, size_t N, size_t K, size_t X, uint64_t row_bytes)
{
    smelt_wview v = {"test.weight", type, {K, N, X}, data, row_bytes, row_bytes * N};
    return v;
}

/* ==== matrix products ==== */

static void check_matmul_type(int type)
{
    static const size_t Ts[] = {1, 7, 13, 100}, Ns[] = {1, 5, 17, 33, 100}, Ks[] = {32, 288, 544};
    const smelt_type_info *ti = smelt_type_get(type);
    smelt_pool *pool = smelt_pool_new(2);
    smelt_fwd_ops *o = ops_isa(pool, -1);
    float *deq = NULL;
    for (size_t ik = 0; ik < 3; ik++) {
        size_t K = Ks[ik];
        if (K % ti->blck) continue;
        for (size_t in = 0; in < 5; in++) {
            size_t N = Ns[in];
            uint64_t rb;
            uint8_t *w = make_weights(type, N, K, &rb);
            if (!w) {
                smelt_fwd_ops_free(o);
                smelt_pool_free(pool);
                cr_skip_test("no way to produce %s weights yet", smelt_type_name(type));
            }
            deq = realloc(deq, N * K * sizeof(float));
            for (size_t r = 0; r < N; r++) cr_assert_eq(smelt_q_dequantize_row(type, w + r * rb, deq + r * K, K), 0);
            smelt_wview v = view(type, w, N, K, 1, rb);
            for (size_t it = 0; it < 4; it++) {
                size_t T = Ts[it];
                float *x = rnd(T * K, 1.0f), *c = malloc(T * N * sizeof(float));
                smelt_mm j = {&v, 0, x, K, c, N, T, false};
                smelt_fwd_ops_matmul(o, &j, 1);
                for (size_t t = 0; t < T; t++)
                    for (size_t n = 0; n < N; n++) {
                        double ref = 0, mag = 0;
                        for (size_t k = 0; k < K; k++) {
                            ref += (double)x[t * K + k] * deq[n * K + k];
                            mag += fabs((double)x[t * K + k] * deq[n * K + k]);
                        }
                        cr_assert(fabs(c[t * N + n] - ref) <= (double)K * 1.2e-7 * mag + 1e-30,
                                  "%s T%zu N%zu K%zu [%zu,%zu]: %.9g vs %.9g", smelt_type_name(type), T, N, K, t, n,
                                  (double)c[t * N + n], ref);
                    }
                free(x);
                free(c);
            }
            free(w);
        }
    }
    free(deq);
    smelt_fwd_ops_free(o);
    smelt_pool_free(pool);
}

Test(ops, matmul_f32) { check_matmul_type(SMELT_TYPE_F32); }
Test(ops, matmul_f16) { check_matmul_type(SMELT_TYPE_F16); }
Test(ops, matmul_bf16) { check_matmul_type(SMELT_TYPE_BF16); }
Test(ops, matmul_q8_0) { check_matmul_type(SMELT_TYPE_Q8_0); }

/* every other type the quant library decodes, as soon as it is registered */
Test(ops, matmul_every_decodable_type)
{
    int n = 0;
    for (int t = 0; t < SMELT_TYPE_COUNT; t++) {
        if (t == SMELT_TYPE_F32 || t == SMELT_TYPE_F16 || t == SMELT_TYPE_BF16 || t == SMELT_TYPE_Q8_0) continue;
        if (!smelt_q_can_dequantize(t) || !smelt_q_can_quantize(t)) continue;
        const smelt_qtype_ops *q = smelt_q_ops(t);
        if (q && q->needs_imatrix) continue; /* their quantizers want an importance matrix */
        check_matmul_type(t);
        n++;
    }
    cr_log_info("matmul checked on %d further types", n);
}

Test(ops, matmul_accumulate_and_experts)
{
    size_t N = 40, K = 96, T = 11, X = 3;
    float *w = rnd(X * N * K, 1.0f), *x = rnd(T * K, 1.0f), *c = rnd(T * N, 1.0f);
    float *c0 = malloc(T * N * sizeof(float));
    memcpy(c0, c, T * N * sizeof(float));
    smelt_wview v = view(SMELT_TYPE_F32, (const uint8_t *)w, N, K, X, K * 4);
    smelt_fwd_ops *o = ops_isa(NULL, -1);
    smelt_mm j = {&v, 2, x, K, c, N, T, true};
    smelt_fwd_ops_matmul(o, &j, 1);
    for (size_t t = 0; t < T; t++)
        for (size_t n = 0; n < N; n++) {
            double ref = c0[t * N + n];
            for (size_t k = 0; k < K; k++) ref += (double)x[t * K + k] * w[(2 * N + n) * K + k];
            cr_assert_float_eq(c[t * N + n], ref, 1e-4);
        }
    smelt_fwd_ops_free(o);
    free(w);
    free(x);
    free(c);
    free(c0);
}

/* same bits whatever the thread count, the ISA, and whether products run together */
Test(ops, matmul_deterministic)
{
    size_t N = 70, K = 512, T = 50;
    float *w = rnd(N * K, 1.0f), *x = rnd(T * K, 1.0f);
    uint16_t *wh = malloc(N * K * 2), *wb = malloc(N * K * 2);
    smelt_row_f32_to_f16(w, wh, N * K, SMELT_F16_OVERFLOW_INF);
    smelt_row_f32_to_bf16(w, wb, N * K);
    smelt_wview vb = view(SMELT_TYPE_BF16, (const uint8_t *)wb, N, K, 1, K * 2);
    smelt_wview v32 = view(SMELT_TYPE_F32, (const uint8_t *)w, N, K, 1, K * 4);
    smelt_wview v16 = view(SMELT_TYPE_F16, (const uint8_t *)wh, N, K, 1, K * 2);
    float *c[6];
    for (int i = 0; i < 6; i++) c[i] = malloc(T * N * sizeof(float));
    smelt_pool *p1 = smelt_pool_new(1), *p3 = smelt_pool_new(3);
    smelt_fwd_ops *a = ops_isa(p1, SMELT_ISA_PORTABLE), *b = ops_isa(p3, -1);
    smelt_mm j0[3] = {{&v32, 0, x, K, c[0], N, T, false}, {&v16, 0, x, K, c[1], N, T, false}, {&vb, 0, x, K, c[5], N, T, false}};
    smelt_fwd_ops_matmul(a, j0, 3);
    smelt_mm j1[2] = {{&v32, 0, x, K, c[2], N, T, false}, {&v16, 0, x, K, c[3], N, T, false}};
    smelt_fwd_ops_matmul(b, &j1[0], 1);
    smelt_fwd_ops_matmul(b, &j1[1], 1);
    smelt_mm j2 = {&v32, 0, x, K, c[4], N, T / 2, false}, j3 = {&v32, 0, x + (T / 2) * K, K, c[4] + (T / 2) * N, N, T - T / 2, false};
    smelt_fwd_ops_matmul(b, &j2, 1);
    smelt_fwd_ops_matmul(b, &j3, 1);
    cr_assert_eq(memcmp(c[0], c[2], T * N * 4), 0, "f32: portable/1 thread vs best/3 threads differ");
    cr_assert_eq(memcmp(c[1], c[3], T * N * 4), 0, "f16: portable/1 thread vs best/3 threads differ");
    cr_assert_eq(memcmp(c[0], c[4], T * N * 4), 0, "splitting the rows changed the result");
    smelt_mm jb = {&vb, 0, x, K, c[4], N, T, false};
    smelt_fwd_ops_matmul(b, &jb, 1);
    cr_assert_eq(memcmp(c[5], c[4], T * N * 4), 0, "bf16: portable/1 thread vs best/3 threads differ");
    cr_log_info("compared portable with %s", smelt_fwd_ops_isa_name(b));
    smelt_fwd_ops_free(a);
    smelt_fwd_ops_free(b);
    smelt_pool_free(p1);
    smelt_pool_free(p3);
    for (int i = 0; i < 6; i++) free(c[i]);
    free(w);
    free(wh);
    free(wb);
    free(x);
}

/* ==== exp, sums, SwiGLU, softmax ==== */

static double ulp_err(float got, double want)
{
    if (want == 0) return got == 0 ? 0 : INFINITY;
    int ex;
    frexp(want, &ex);
    double ulp = ldexp(1.0, (ex - 24 < -149 ? -149 : ex - 24));
    return fabs((double)got - want) / ulp;
}

Test(ops, exp_accuracy)
{
    smelt_fwd_ops *o = ops_isa(NULL, -1);
    size_t n = 200001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = -87.3f + (float)i * (88.3f + 87.3f) / (float)(n - 1);
    smelt_fwd_ops_exp_sub(o, x, 0.0f, y, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double u = ulp_err(y[i], exp((double)x[i]));
        if (u > worst) worst = u;
    }
    cr_log_info("exp: max error %.2f ulp", worst);
    cr_assert_leq(worst, 2.0, "exp error %.2f ulp", worst);
    float sp[6] = {-INFINITY, -100.0f, 100.0f, NAN, 0.0f, -0.0f}, r[6];
    smelt_fwd_ops_exp_sub(o, sp, 0.0f, r, 6);
    cr_assert_eq(r[0], 0.0f);
    cr_assert_eq(r[1], 0.0f);
    cr_assert(isinf(r[2]) && r[2] > 0);
    cr_assert(isnan(r[3]));
    cr_assert_eq(r[4], 1.0f);
    cr_assert_eq(r[5], 1.0f);
    free(x);
    free(y);
    smelt_fwd_ops_free(o);
}

Test(ops, kernels_identical_across_isas)
{
    smelt_fwd_ops *p = ops_isa(NULL, SMELT_ISA_PORTABLE), *a = avx2_or_skip(NULL);
    for (size_t n = 1; n < 70; n += 3) {
        float *x = rnd(n, 30.0f), *u = rnd(n, 2.0f), *y0 = malloc(n * 4), *y1 = malloc(n * 4);
        smelt_fwd_ops_exp_sub(p, x, 1.5f, y0, n);
        smelt_fwd_ops_exp_sub(a, x, 1.5f, y1, n);
        cr_assert_eq(memcmp(y0, y1, n * 4), 0, "exp n=%zu", n);
        cr_assert_eq(smelt_fwd_ops_sum(p, x, n), smelt_fwd_ops_sum(a, x, n), "sum n=%zu", n);
        memcpy(y0, x, n * 4);
        memcpy(y1, x, n * 4);
        smelt_fwd_ops_swiglu(p, y0, u, n);
        smelt_fwd_ops_swiglu(a, y1, u, n);
        cr_assert_eq(memcmp(y0, y1, n * 4), 0, "swiglu n=%zu", n);
        free(x), free(u), free(y0), free(y1);
    }
    smelt_fwd_ops_free(p);
    smelt_fwd_ops_free(a);
}

Test(ops, sum_lane_order)
{
    smelt_fwd_ops *o = ops_isa(NULL, -1);
    float x[19];
    for (int i = 0; i < 19; i++) x[i] = ldexpf(1.0f, i % 3 ? 0 : 24) * (i % 2 ? 1 : -1);
    float l[8] = {0};
    for (int i = 0; i < 19; i++) l[i % 8] += x[i];
    float want = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    cr_assert_eq(smelt_fwd_ops_sum(o, x, 19), want);
    smelt_fwd_ops_free(o);
}

Test(ops, swiglu_and_softmax_values)
{
    smelt_fwd_ops *o = ops_isa(NULL, -1);
    float g[5] = {-3.0f, -0.5f, 0.0f, 0.7f, 9.0f}, u[5] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    float want[5];
    for (int i = 0; i < 5; i++) want[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    smelt_fwd_ops_swiglu(o, g, u, 5);
    for (int i = 0; i < 5; i++) cr_assert_float_eq(g[i], want[i], 1e-6, "swiglu[%d]", i);
    float s[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    smelt_fwd_ops_softmax(o, s, 4);
    double z = exp(1) + exp(2) + exp(3) + exp(4);
    for (int i = 0; i < 4; i++) cr_assert_float_eq(s[i], exp(i + 1) / z, 1e-7);
    float big[3] = {1000.0f, 999.0f, -1000.0f}, scr[3];
    size_t im;
    double lse = smelt_fwd_ops_logsumexp(o, big, 3, scr, &im);
    cr_assert_eq(im, 0);
    cr_assert_float_eq(lse, 1000.0 + log(1 + exp(-1.0)), 1e-6);
    smelt_fwd_ops_free(o);
}

/* ==== RMSNorm, RoPE ==== */

Test(ops, rmsnorm)
{
    float *x = rnd(300, 3.0f), *w = rnd(300, 1.0f), y[300];
    smelt_rmsnorm(x, w, y, 300, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 300; i++) ss += (double)x[i] * x[i];
    double sc = 1.0 / sqrt(ss / 300 + 1e-5);
    for (int i = 0; i < 300; i++) cr_assert_float_eq(y[i], x[i] * sc * w[i], 1e-6);
    free(x);
    free(w);
}

Test(ops, rope_normal_mode)
{
    /* θ_i = pos · base^(-2i/n): pairs (2i, 2i+1) rotate by θ_i */
    float cs[64], x[64], x0[64];
    smelt_rope_table(cs, 37, 64, 10000.0f, 1.0f, NULL);
    for (int i = 0; i < 64; i++) x0[i] = x[i] = frand();
    smelt_rope_apply(x, cs, 64);
    for (int i = 0; i < 32; i++) {
        double th = 37.0 * pow(10000.0, -2.0 * i / 64.0);
        double a = x0[2 * i] * cos(th) - x0[2 * i + 1] * sin(th), b = x0[2 * i] * sin(th) + x0[2 * i + 1] * cos(th);
        cr_assert_float_eq(x[2 * i], a, 2e-5, "pair %d", i);
        cr_assert_float_eq(x[2 * i + 1], b, 2e-5, "pair %d", i);
    }
    /* position 0 is the identity; linear scaling halves the angle; freq factors divide it */
    smelt_rope_table(cs, 0, 64, 10000.0f, 1.0f, NULL);
    for (int i = 0; i < 32; i++) cr_assert(cs[2 * i] == 1.0f && cs[2 * i + 1] == 0.0f);
    float ff[32], c1[64], c2[64];
    for (int i = 0; i < 32; i++) ff[i] = 2.0f;
    smelt_rope_table(c1, 10, 64, 500000.0f, 0.5f, NULL);
    smelt_rope_table(c2, 10, 64, 500000.0f, 1.0f, ff);
    cr_assert_eq(memcmp(c1, c2, sizeof c1), 0);
}

/* ==== attention ==== */

Test(ops, attention_matches_naive)
{
    size_t hd = 40, hdv = 24, n_q = 9, pos0 = 30, n_ctx = 64, ldq = 50, ldo = 30;
    float *q = rnd(n_q * ldq, 1.0f), *kt = rnd(hd * n_ctx, 1.0f), *v = rnd(n_ctx * hdv, 1.0f);
    float *out = calloc(n_q * ldo, 4), *out2 = calloc(n_q * ldo, 4), *scr = malloc(4 * n_ctx * 4);
    smelt_fwd_ops *o = ops_isa(NULL, -1), *p = ops_isa(NULL, SMELT_ISA_PORTABLE);
    float scale = 1.0f / sqrtf((float)hd);
    smelt_fwd_ops_attend(o, q, ldq, n_q, pos0, hd, kt, n_ctx, v, hdv, hdv, scale, out, ldo, scr);
    smelt_fwd_ops_attend(p, q, ldq, n_q, pos0, hd, kt, n_ctx, v, hdv, hdv, scale, out2, ldo, scr);
    cr_assert_eq(memcmp(out, out2, n_q * ldo * 4), 0, "portable and %s attention differ", smelt_fwd_ops_isa_name(o));
    for (size_t i = 0; i < n_q; i++) {
        size_t n = pos0 + i + 1;
        double s[64], mx = -1e300, z = 0;
        for (size_t j = 0; j < n; j++) {
            s[j] = 0;
            for (size_t d = 0; d < hd; d++) s[j] += (double)q[i * ldq + d] * kt[d * n_ctx + j];
            s[j] *= scale;
            if (s[j] > mx) mx = s[j];
        }
        for (size_t j = 0; j < n; j++) z += (s[j] = exp(s[j] - mx));
        for (size_t d = 0; d < hdv; d++) {
            double a = 0;
            for (size_t j = 0; j < n; j++) a += s[j] / z * v[j * hdv + d];
            cr_assert_float_eq(out[i * ldo + d], a, 2e-6, "query %zu dim %zu", i, d);
        }
    }
    smelt_fwd_ops_free(o);
    smelt_fwd_ops_free(p);
    free(q), free(kt), free(v), free(out), free(out2), free(scr);
}

/* kq_common.c — the k-quant super-block search, llama.cpp's scale searches for the
 * reference encoders, and packing shared by several k-quants. Includes quant/ only. */
#include <math.h>
#include <string.h>

#include "quant/kern.h"

#include "kquant_int.h"
#include "quant/search.h"

/* ==== super-block search ====
 *
 * 1. Each sub-block gets its own least-squares scale (and offset) from a search of
 *    search.h, with the curvature of its error around that optimum:
 *    caa = sum w L^2, cam = sum w L, cmm = sum w.
 * 2. The sub-block scales become integers S[j] times one super-block factor d, chosen by
 *    the same search with weights caa: the error a sub-block gains from a scale off by e
 *    is about caa * e^2, so this minimises the approximate total, not the largest scale.
 * 3. Each offset is first moved to its best value for the rounded scale
 *    (m += (d S - a) cam / cmm), then the offsets are quantized the same way (weights cmm).
 * 4. With d and dmin in f16, every sub-block tries its integer scale and min +-1 with
 *    the levels re-rounded, scored by the exact error; then d and dmin are re-fitted by
 *    least squares over the whole super-block and kept if the exact error drops. */

typedef struct {
    float err[16], sl[16], sl2[16], sxl[16], sw[16], sx[16];
} sub_stats;

/* Levels, error and sums of sub-block j for integer scale s and min m. */
static float sub_round(const smelt_qkern *k, const kq_shape *g, const float *x, const float *w, float d, float dm,
                       int s, int m, int8_t *L, float *sums)
{
    float a = d * (float)s, of = dm * (float)m;
    float ia = a != 0 ? 1.f / a : 0.f;
    if (g->mmax) {
        uint8_t U[32];
        float e = k->asym_round(g->len, x, w, a, -of, ia, g->lmax, U, sums);
        for (int i = 0; i < g->len; i++) L[i] = (int8_t)U[i];
        return e;
    }
    return k->sym_round(g->len, x, w, a, ia, g->lmin, g->lmax, L, sums);
}

static double round_all(const smelt_qkern *k, const kq_shape *g, const float *x, const float *w, kq_result *r,
                        sub_stats *st)
{
    float d = smelt_f16_to_f32(r->d), dm = smelt_f16_to_f32(r->dmin);
    double tot = 0;
    for (int j = 0; j < g->nsub; j++) {
        int o = j * g->len;
        float sums[3];
        st->err[j] = sub_round(k, g, x + o, w + o, d, dm, r->S[j], r->M[j], r->L + o, sums);
        st->sl[j] = sums[0];
        st->sl2[j] = sums[1];
        st->sxl[j] = sums[2];
        tot += st->err[j];
    }
    return tot;
}

/* Try each sub-block's integer scale/min +-1 (exact error, levels re-rounded). */
static double refine_local(const smelt_qkern *k, const kq_shape *g, const float *x, const float *w, kq_result *r,
                           sub_stats *st)
{
    float d = smelt_f16_to_f32(r->d), dm = smelt_f16_to_f32(r->dmin);
    int8_t T[32];
    double tot = 0;
    for (int j = 0; j < g->nsub; j++) {
        int o = j * g->len;
        int s0 = r->S[j], m0 = r->M[j];
        for (int ds = -1; ds <= 1; ds++) {
            int s = s0 + ds;
            if (s < g->smin || s > g->smax) continue;
            for (int dmi = -1; dmi <= 1; dmi++) {
                int m = m0 + dmi;
                if ((ds == 0 && dmi == 0) || m < 0 || m > g->mmax) continue;
                float sums[3];
                float e = sub_round(k, g, x + o, w + o, d, dm, s, m, T, sums);
                if (e < st->err[j]) {
                    st->err[j] = e;
                    st->sl[j] = sums[0];
                    st->sl2[j] = sums[1];
                    st->sxl[j] = sums[2];
                    r->S[j] = s;
                    r->M[j] = m;
                    memcpy(r->L + o, T, (size_t)g->len);
                }
            }
        }
        tot += st->err[j];
    }
    return tot;
}

/* Least-squares d, dmin for fixed integer scales, mins and levels:
 * x ~ d p - dm q with p = S[j] L[i], q = M[j]. */
static bool refit_global(const kq_shape *g, const kq_result *r, const sub_stats *st, float *d, float *dm)
{
    double App = 0, Apq = 0, Aqq = 0, Bp = 0, Bq = 0;
    for (int j = 0; j < g->nsub; j++) {
        double S = r->S[j], M = r->M[j];
        App += S * S * st->sl2[j];
        Apq += S * M * st->sl[j];
        Aqq += M * M * st->sw[j];
        Bp += S * st->sxl[j];
        Bq += M * st->sx[j];
    }
    if (g->mmax == 0 || Aqq <= 0) {
        if (!(App > 0)) return false;
        *d = (float)(Bp / App);
        *dm = 0;
        return true;
    }
    double D = App * Aqq - Apq * Apq;
    if (!(D > 1e-12 * App * Aqq)) return false;
    *d = (float)((Bp * Aqq - Bq * Apq) / D);
    *dm = (float)((Bp * Apq - Bq * App) / D);
    return true;
}

static bool f16_ok(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

#include <stdlib.h>
static float knobf(const char *n, float def) { const char *e = getenv(n); return e ? (float)atof(e) : def; }
void kq_search(const smelt_qkern *k, const kq_shape *g0, const float *x, const float *w, kq_result *r)
{
    static __thread kq_shape cache[8];
    static __thread const kq_shape *cache_k[8];
    int ci = 0;
    while (ci < 8 && cache_k[ci] && cache_k[ci] != g0) ci++;
    if (ci < 8 && cache_k[ci] == g0) goto have;
    kq_shape gg = *g0, *g = &gg;
    g->sub.sweep = knobf("KS_SWEEP", g->sub.sweep); g->sub.ncand = (int)knobf("KS_NCAND", (float)g->sub.ncand);
    g->sub.polish = (int)knobf("KS_POLISH", (float)g->sub.polish);
    g->sub.win_lo = knobf("KS_LO", g->sub.win_lo); g->sub.win_hi = knobf("KS_HI", g->sub.win_hi);
    g->scale.sweep = knobf("KC_SWEEP", g->scale.sweep); g->scale.ncand = (int)knobf("KC_NCAND", (float)g->scale.ncand);
    g->scale.win_lo = knobf("KC_LO", g->scale.win_lo); g->scale.win_hi = knobf("KC_HI", g->scale.win_hi);
    g->passes = (int)knobf("K_PASSES", (float)g->passes);
    g->sub.recentre = (int)knobf("KS_RC", (float)g->sub.recentre);
    if (ci < 8) { cache[ci] = gg; cache_k[ci] = g0; }
    have:;
    if (ci < 8) g = &cache[ci];
    float a[16], m[16], caa[16], cam[16], cmm[16];
    sub_stats st;
    memset(r, 0, sizeof *r);
    for (int j = 0; j < g->nsub; j++) {
        int o = j * g->len;
        const float *xj = x + o, *wj = w + o;
        int8_t *L = r->L + o;
        smelt_qs_fit f;
        if (g->mmax) {
            uint8_t U[32];
            smelt_qs_asym(k, g->len, g->lmax, xj, wj, &g->sub, true, U, &f);
            for (int i = 0; i < g->len; i++) L[i] = (int8_t)U[i];
            m[j] = -f.b;
        } else {
            smelt_qs_sym(k, g->len, g->lmin, g->lmax, xj, wj, &g->sub, L, &f);
            m[j] = 0;
        }
        a[j] = f.a;
        caa[j] = f.sl2;
        cam[j] = f.sl;
        cmm[j] = f.sw;
        st.sw[j] = f.sw;
        st.sx[j] = f.sx;
    }

    int8_t S8[16], M8[16];
    smelt_qs_fit fs;
    smelt_qs_sym(k, g->nsub, g->smin, g->smax, a, caa, &g->scale, S8, &fs);
    float d = fs.a, dm = 0;
    for (int j = 0; j < g->nsub; j++) r->S[j] = S8[j];
    if (g->mmax) {
        float mm[16];
        for (int j = 0; j < g->nsub; j++) {
            float v = m[j] + (d * (float)S8[j] - a[j]) * (cmm[j] > 0 ? cam[j] / cmm[j] : 0.f);
            mm[j] = v > 0 ? v : 0;
        }
        smelt_qs_sym(k, g->nsub, 0, g->mmax, mm, cmm, &g->scale, M8, &fs);
        dm = fs.a;
        for (int j = 0; j < g->nsub; j++) r->M[j] = M8[j];
    }
    r->d = smelt_f32_to_f16(d);
    r->dmin = smelt_f32_to_f16(dm);
    if (!f16_ok(r->d) || !f16_ok(r->dmin)) {
        /* scales beyond f16 range: keep a decodable (all-zero) block */
        memset(r, 0, sizeof *r);
        r->err = INFINITY;
        return;
    }

    double err = round_all(k, g, x, w, r, &st);
    for (int pass = 0; pass < g->passes; pass++) {
        err = refine_local(k, g, x, w, r, &st);
        float nd, ndm;
        if (!refit_global(g, r, &st, &nd, &ndm)) break;
        kq_result t = *r;
        t.d = smelt_f32_to_f16(nd);
        t.dmin = smelt_f32_to_f16(ndm);
        if ((t.d == r->d && t.dmin == r->dmin) || !f16_ok(t.d) || !f16_ok(t.dmin)) break;
        sub_stats ts = st;
        double e = round_all(k, g, x, w, &t, &ts);
        if (!(e < err)) break;
        *r = t;
        st = ts;
        err = e;
    }
    r->err = err;
}

double kq_error(const kq_shape *g, const float *x, const float *w, const kq_result *r)
{
    float d = smelt_f16_to_f32(r->d), dm = smelt_f16_to_f32(r->dmin);
    double e = 0;
    for (int j = 0; j < g->nsub; j++) {
        float sf = d * (float)r->S[j], of = dm * (float)r->M[j];
        for (int i = 0; i < g->len; i++) {
            int q = j * g->len + i;
            float v = sf * (float)r->L[q] - of - x[q];
            e += (double)w[q] * v * v;
        }
    }
    return e;
}

/* ==== llama.cpp's scale searches ====
 * Reproduced operation for operation (same float expressions in the same order), since
 * the reference encoders must match ggml's bytes exactly. */

#define GROUP_EPS 1e-15f

float kq_ref_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, float rmin,
                       float rdelta, int nstep, bool use_mad)
{
    float lo = x[0], hi = x[0];
    float sw = w[0];
    float sx = sw * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sw += w[i];
        sx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *the_min = -lo;
        return 0.f;
    }
    float iscale = (float)nmax / (hi - lo);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        int l = q_nearest(iscale * (x[i] - lo));
        L[i] = (uint8_t)q_clampi(l, 0, nmax);
        float diff = scale * (float)L[i] + lo - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best += w[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -lo;
        return scale;
    }
    uint8_t aux[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = q_clampi(q_nearest(iscale * (x[i] - lo)), 0, nmax);
            aux[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float D = sw * sl2 - sl * sl;
        if (D > 0) {
            float s = (sw * sxl - sx * sl) / D;
            float mn = (sl2 * sx - sl * sxl) / D;
            if (mn > 0) {
                mn = 0;
                s = sxl / sl2;
            }
            float e = 0;
            for (int i = 0; i < n; i++) {
                float diff = s * (float)aux[i] + mn - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                e += w[i] * diff;
            }
            if (e < best) {
                memcpy(L, aux, (size_t)n);
                best = e;
                scale = s;
                lo = mn;
            }
        }
    }
    *the_min = -lo;
    return scale;
}

float kq_ref_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
    float mx = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            mx = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / mx;
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_clampi(q_nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sxl += w * x[i] * (float)l;
        sl2 += w * (float)l * (float)l;
    }
    float scale = sl2 != 0 ? sxl / sl2 : 0.0f;
    float best = scale * sxl;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / mx;
        sxl = sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = q_clampi(q_nearest(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sxl += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
        }
        if (sl2 > 0 && sxl * sxl > best * sl2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + q_clampi(q_nearest(iscale * x[i]), -nmax, nmax - 1));
            scale = sxl / sl2;
            best = scale * sxl;
        }
    }
    return scale;
}

float kq_ref_scale_q3(int n, int nmax, const float *x, int8_t *L)
{
    float mx = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            mx = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / mx;
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_clampi(q_nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sxl += w * x[i] * (float)l;
        sl2 += w * (float)l * (float)l;
    }
    for (int round = 0; round < 5; round++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sxl - w * x[i] * (float)L[i];
            if (slx > 0) {
                float s2 = sl2 - w * (float)L[i] * (float)L[i];
                int nl = q_clampi(q_nearest(x[i] * s2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    s2 += w * (float)nl * (float)nl;
                    if (s2 > 0 && slx * slx * sl2 > sxl * sxl * s2) {
                        L[i] = (int8_t)nl;
                        sxl = slx;
                        sl2 = s2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sl2 > 0.0f ? sxl / sl2 : 0.0f;
}

/* ==== shared packing ==== */

void kq_pack_scale_min_k4(uint8_t *q, const int *S, const int *M)
{
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        int s = S[j] & 63, m = M[j] & 63;
        if (j < 4) {
            q[j] = (uint8_t)s;
            q[j + 4] = (uint8_t)m;
        } else {
            q[j + 4] = (uint8_t)((s & 15) | (m & 15) << 4);
            q[j - 4] |= (uint8_t)((s >> 4) << 6);
            q[j] |= (uint8_t)((m >> 4) << 6);
        }
    }
}

void kq_scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

void kq_pack_2bit(uint8_t *qs, const uint8_t *L)
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((p[0] & 3) | (p[32] & 3) << 2 | (p[64] & 3) << 4 | (p[96] & 3) << 6);
        }
}

/* ==== rows ==== */

void kq_quantize_rows(const smelt_qkern *k, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                      const float *imx, size_t block_bytes, kq_block_fn fn)
{
    float fl = imx ? smelt_qs_weight_floor(imx, row_len) : 0;
    uint8_t *y = dst;
    int64_t nb = row_len / SMELT_QK_K;
    float w[SMELT_QK_K], clean[SMELT_QK_K];
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t ib = 0; ib < nb; ib++, y += block_bytes) {
            const float *x = src + r * row_len + ib * SMELT_QK_K;
            smelt_qs_block_weights(imx ? imx + ib * SMELT_QK_K : NULL, fl, SMELT_QK_K, w);
            if (smelt_qs_sanitize(x, SMELT_QK_K, clean)) x = clean;
            fn(k, x, w, y);
        }
}

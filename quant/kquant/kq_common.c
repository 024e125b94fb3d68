/* kq_common.c — the k-quant super-block search, llama.cpp's scale searches for the
 * reference encoders, and packing shared by several k-quants. Includes quant/ only. */
#include <math.h>
#include <string.h>

#include "kquant_int.h"
#include "quant/search.h"

/* ==== super-block search ====
 *
 * 1. Each sub-block gets its own least-squares scale (and offset) from the exact
 *    threshold sweep (search.h), with the curvature of its error around that optimum:
 *    caa = sum w L^2, cam = sum w L, cmm = sum w.
 * 2. The sub-block scales become integers S[j] times one super-block factor d, chosen by
 *    the same sweep with weights caa: the error a sub-block gains from a scale off by e
 *    is about caa * e^2, so this minimises the (approximate) total, not the largest scale.
 * 3. Each offset is first moved to its best value for the rounded scale
 *    (m += (d S - a) cam / cmm), then the offsets are quantized the same way (weights cmm).
 * 4. With d and dmin in f16, every sub-block tries its integer scale and min +-1 with
 *    the levels re-rounded, scored by the exact error; then d and dmin are re-fitted by
 *    least squares over the whole super-block and kept if the exact error drops. */

static double sub_round(const kq_shape *g, const float *x, const float *w, float sf, float of, int8_t *L)
{
    double e = 0;
    if (sf == 0) {
        for (int i = 0; i < g->len; i++) {
            L[i] = 0;
            float r = -of - x[i];
            e += (double)w[i] * r * r;
        }
        return e;
    }
    float is = 1.f / sf;
    for (int i = 0; i < g->len; i++) {
        float t = (x[i] + of) * is;
        int l = t <= (float)g->lmin ? g->lmin : t >= (float)g->lmax ? g->lmax : q_nearest(t);
        L[i] = (int8_t)l;
        float r = sf * (float)l - of - x[i];
        e += (double)w[i] * r * r;
    }
    return e;
}

/* Exact error of every sub-block for the stored d, dmin, S, M; re-rounds the levels. */
static double round_all(const kq_shape *g, const float *x, const float *w, kq_result *r, double *esub)
{
    float d = smelt_f16_to_f32(r->d), dm = smelt_f16_to_f32(r->dmin);
    double tot = 0;
    for (int j = 0; j < g->nsub; j++) {
        int o = j * g->len;
        esub[j] = sub_round(g, x + o, w + o, d * (float)r->S[j], dm * (float)r->M[j], r->L + o);
        tot += esub[j];
    }
    return tot;
}

/* Try each sub-block's integer scale/min +-1 (exact error, levels re-rounded). */
static double refine_local(const kq_shape *g, const float *x, const float *w, kq_result *r, double *esub)
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
                double e = sub_round(g, x + o, w + o, d * (float)s, dm * (float)m, T);
                if (e < esub[j]) {
                    esub[j] = e;
                    r->S[j] = s;
                    r->M[j] = m;
                    memcpy(r->L + o, T, (size_t)g->len);
                }
            }
        }
        tot += esub[j];
    }
    return tot;
}

/* Least-squares d, dmin for fixed integer scales, mins and levels. */
static bool refit_global(const kq_shape *g, const float *x, const float *w, const kq_result *r, float *d, float *dm)
{
    double App = 0, Apq = 0, Aqq = 0, Bp = 0, Bq = 0;
    for (int j = 0; j < g->nsub; j++)
        for (int i = 0; i < g->len; i++) {
            int k = j * g->len + i;
            double p = (double)r->S[j] * r->L[k], q = r->M[j], wk = w[k];
            App += wk * p * p;
            Apq += wk * p * q;
            Aqq += wk * q * q;
            Bp += wk * p * x[k];
            Bq += wk * q * x[k];
        }
    /* x ~ d p - dm q */
    if (g->mmax == 0 || Aqq <= 0) {
        if (App <= 0) return false;
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

void kq_search(const kq_shape *g, const float *x, const float *w, kq_result *r)
{
    float a[16], m[16], caa[16], cam[16], cmm[16];
    int8_t S8[16], M8[16];
    memset(r, 0, sizeof *r);
    for (int j = 0; j < g->nsub; j++) {
        int o = j * g->len;
        const float *xj = x + o, *wj = w + o;
        int8_t *L = r->L + o;
        if (g->mmax) {
            uint8_t U[32];
            float b;
            a[j] = smelt_qs_asym(g->len, g->lmax, xj, wj, U, &b, true, g->win_lo, g->win_hi, 2);
            m[j] = -b;
            for (int i = 0; i < g->len; i++) L[i] = (int8_t)U[i];
        } else {
            a[j] = smelt_qs_sym(g->len, g->lmin, g->lmax, xj, wj, L, g->win_lo, g->win_hi);
            m[j] = 0;
        }
        double s2 = 0, s1 = 0, s0 = 0;
        for (int i = 0; i < g->len; i++) {
            s2 += (double)wj[i] * L[i] * L[i];
            s1 += (double)wj[i] * L[i];
            s0 += wj[i];
        }
        caa[j] = (float)s2;
        cam[j] = (float)s1;
        cmm[j] = (float)s0;
    }

    float d = smelt_qs_sym(g->nsub, g->smin, g->smax, a, caa, S8, 0.6f, 1.5f);
    for (int j = 0; j < g->nsub; j++) r->S[j] = S8[j];
    float dm = 0;
    if (g->mmax) {
        float mm[16];
        for (int j = 0; j < g->nsub; j++) {
            float v = m[j] + (d * (float)S8[j] - a[j]) * (cmm[j] > 0 ? cam[j] / cmm[j] : 0.f);
            mm[j] = v > 0 ? v : 0;
        }
        dm = smelt_qs_sym(g->nsub, 0, g->mmax, mm, cmm, M8, 0.6f, 1.5f);
        for (int j = 0; j < g->nsub; j++) r->M[j] = M8[j];
    }
    r->d = smelt_f32_to_f16(d);
    r->dmin = smelt_f32_to_f16(dm);
    if (!isfinite(smelt_f16_to_f32(r->d)) || !isfinite(smelt_f16_to_f32(r->dmin))) {
        /* values beyond f16 range: nothing sensible to search; keep a decodable block */
        memset(r, 0, sizeof *r);
        r->err = INFINITY;
        return;
    }

    double esub[16];
    double err = round_all(g, x, w, r, esub);
    for (int pass = 0; pass < 2; pass++) {
        err = refine_local(g, x, w, r, esub);
        float nd, ndm;
        if (!refit_global(g, x, w, r, &nd, &ndm)) break;
        kq_result t = *r;
        t.d = smelt_f32_to_f16(nd);
        t.dmin = smelt_f32_to_f16(ndm);
        if (t.d == r->d && t.dmin == r->dmin) break;
        if (!isfinite(smelt_f16_to_f32(t.d)) || !isfinite(smelt_f16_to_f32(t.dmin))) break;
        double et[16];
        double e = round_all(g, x, w, &t, et);
        if (!(e < err)) break;
        *r = t;
        memcpy(esub, et, sizeof et);
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
            int k = j * g->len + i;
            float v = sf * (float)r->L[k] - of - x[k];
            e += (double)w[k] * v * v;
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

void kq_quantize_rows(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx,
                      size_t block_bytes, kq_block_fn fn)
{
    float fl = imx ? smelt_qs_weight_floor(imx, row_len) : 0;
    uint8_t *y = dst;
    int64_t nb = row_len / SMELT_QK_K;
    float w[SMELT_QK_K];
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t ib = 0; ib < nb; ib++, y += block_bytes) {
            smelt_qs_block_weights(imx ? imx + ib * SMELT_QK_K : NULL, fl, SMELT_QK_K, w);
            fn(src + r * row_len + ib * SMELT_QK_K, w, y);
        }
}

/* kq_common.c — the k-quant super-block search, llama.cpp's scale searches for the
 * reference encoders, and packing shared by several k-quants. Includes quant/ only. */
#include <math.h>
#include <string.h>


#include "kquant_int.h"
#include "quant/search.h"

/* ==== super-block search (portable build of kq_engine.inc) ==== */

#include "quant/vec.h"

#include "kq_engine.inc"

const kq_engine kq_engine_port = {kq_search_port, &smelt_search_kernels_portable};

double kq_error(const kq_shape *g, const float *x, const float *w, const kq_result *r)
{
    float d = smelt_f16_to_f32(r->d), dm = smelt_f16_to_f32(r->dmin);
    double e = 0;
    for (int j = 0; j < g->nsub; j++) {
        float sf = d * (float)r->S[j], of = dm * (float)r->M[j];
        for (int i = 0; i < g->len; i++) {
            int q = j * g->len + i;
            float v = sf * (float)r->L[q] - of - x[q];
            e += (double)(w ? w[q] : 1.f) * v * v;
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

/* The first guess of both symmetric searches: the element of largest magnitude mx sets the
 * inverse scale -nmax / mx; levels in [-nmax, nmax) are stored plus `bias`, and the x²-weighted
 * sums Σ w x l and Σ w l² returned. False (levels zeroed) for a group of zeros. */
static bool ref_sym_first_guess(int n, int nmax, const float *x, int8_t *L, int bias, float *mx_out, float *sxl_out,
                                float *sl2_out)
{
    float mx = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            mx = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return false;
    }
    float iscale = (float)-nmax / mx;
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_clampi(q_nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + bias);
        float w = x[i] * x[i];
        sxl += w * x[i] * (float)l;
        sl2 += w * (float)l * (float)l;
    }
    *mx_out = mx;
    *sxl_out = sxl;
    *sl2_out = sl2;
    return true;
}

float kq_ref_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
    float mx, sxl, sl2;
    if (!ref_sym_first_guess(n, nmax, x, L, nmax, &mx, &sxl, &sl2)) return 0.f;
    float iscale;
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
    float mx, sxl, sl2;
    if (!ref_sym_first_guess(n, nmax, x, L, 0, &mx, &sxl, &sl2)) return 0.f;
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

void kq_ref_scales_k4(const float *x, int nmax, float rmin, int nstep, uint8_t *scales, uint16_t *d,
                      uint16_t *dmin, uint8_t *L)
{
    float w[32], sc[8], mn[8];
    float max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        float s2 = 0;
        for (int l = 0; l < 32; l++) s2 += x[32 * j + l] * x[32 * j + l];
        float av = sqrtf(s2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(x[32 * j + l]);
        sc[j] = kq_ref_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mn[j], rmin, 0.1f, nstep, false);
        if (sc[j] > max_sc) max_sc = sc[j];
        if (mn[j] > max_mn) max_mn = mn[j];
    }
    float inv_sc = max_sc > 0 ? 63.f / max_sc : 0.f;
    float inv_mn = max_mn > 0 ? 63.f / max_mn : 0.f;
    int S[8], M[8];
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)q_nearest(inv_sc * sc[j]), lm = (uint8_t)q_nearest(inv_mn * mn[j]);
        S[j] = ls < 63 ? ls : 63;
        M[j] = lm < 63 ? lm : 63;
    }
    kq_pack_scale_min_k4(scales, S, M);
    q_put_f16(d, max_sc / 63.f);
    q_put_f16(dmin, max_mn / 63.f);
    for (int j = 0; j < 8; j++) {
        int s, m;
        kq_scale_min_k4(j, scales, &s, &m);
        float step = q_f16(d) * (float)s;
        if (step == 0) continue;
        float dm = q_f16(dmin) * (float)m;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)q_clampi(q_nearest((x[32 * j + l] + dm) / step), 0, nmax);
    }
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

void kq_pack_2bit(uint8_t *qs, const uint8_t *L)
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((p[0] & 3) | (p[32] & 3) << 2 | (p[64] & 3) << 4 | (p[96] & 3) << 6);
        }
}

/* ==== dot products ==== */

void kq_lanes_sub(int32_t *lane, int len, int s, int sc, const int *lv, const int8_t *y)
{
    int base = len == 32 ? 0 : 4 * (s & 1);
    for (int e = 0; e < len; e++) lane[base + e / 4] += sc * (lv[e] * y[e]);
}

/* ==== rows ==== */

/* Unbiased rows (smelt_qerr.unbias, quant/search.h): a super-block's sums for the row's
 * correction, q decoded from the search's result (x is still in cache; nothing unpacked). */
static void unbias_sums(const kq_shape *g, const float *x, const float *a, const kq_result *r, double s[2])
{
    float q[SMELT_QK_K];
    float d = smelt_f16_to_f32(r->d), dm = smelt_f16_to_f32(r->dmin);
    for (int j = 0; j < g->nsub; j++) {
        float ds = d * (float)r->S[j], ms = dm * (float)r->M[j];
        for (int i = j * g->len; i < (j + 1) * g->len; i++) q[i] = ds * (float)r->L[i] - ms;
    }
    smelt_qs_unbias_sums(x, a, q, SMELT_QK_K, s);
}

void kq_quantize_rows(const kq_engine *e, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                      const float *imx, const smelt_qerr *m, const kq_type *t)
{
    float fl = imx ? smelt_qs_weight_floor(imx, row_len) : 0;
    if (imx && m && m->a > 0) fl += smelt_qs_weight_lift(fl, m->a);
    bool mag = m && m->p != 0.0f, weighted = imx || mag, unbias = m && m->unbias;
    uint8_t *y = dst;
    int64_t nb = row_len / SMELT_QK_K;
    float w[SMELT_QK_K];
    kq_result res;
    /* Weights from an error model alone (no imatrix) vary smoothly with |x|: the plain
     * plan's effort does as well as the imatrix plan's (measured: the same KL-divergence
     * within noise, at 1.3-1.9x the speed; docs/quantize.md). */
    kq_shape g = *t->shape;
    if (!imx) g.imx = g.plain;
    for (int64_t r = 0; r < n_rows; r++) {
        uint8_t *row = y;
        double s[2] = {0, 0};
        for (int64_t ib = 0; ib < nb; ib++, y += t->block_bytes) {
            const float *x = src + r * row_len + ib * SMELT_QK_K;
            if (weighted) {
                smelt_qs_block_weights(imx ? imx + ib * SMELT_QK_K : NULL, fl, SMELT_QK_K, w);
                if (mag) smelt_qs_magnitude(x, SMELT_QK_K, m->p, m->c, w);
            }
            t->quant(e, &g, x, weighted ? w : NULL, y, &res);
            if (unbias) unbias_sums(t->shape, x, imx ? imx + ib * SMELT_QK_K : NULL, &res, s);
        }
        if (unbias) smelt_qs_unbias_apply(row, nb, t->block_bytes, t->factor_off, t->n_factors, s);
    }
}

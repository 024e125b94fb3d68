/* iqgrid.c — the grid i-quants' codebooks with their search tables (built once, at first
 * use), llama.cpp's shared search steps, and smelt's super-block search. Includes quant/
 * only. */
#include "iqgrid.h"

#include "quant/kquant/kquant.h"

#include <float.h>
#include <math.h>
#include <string.h>

extern const uint16_t iqg_iq2xxs_code[256], iqg_iq2xs_code[512], iqg_iq2s_code[1024], iqg_iq3xxs_code[256],
    iqg_iq3s_code[512], iqg_iq1s_code[2048];

/* ==== codebooks and tables ==== */

/* Table sizes: cube codes (2^(bits * dim)) and the total length of the neighbour lists of
 * the cube points off the grid (counted once; iqg_get checks it). */
#define CUBE2 65536
#define CUBE3 4096

static float g_val2xxs[256 * 8], g_val2xs[512 * 8], g_val2s[1024 * 8], g_val3xxs[256 * 4], g_val3s[512 * 4],
    g_val1s[2048 * 8];
static float g_mod2xxs[256 * 8], g_mod2xs[512 * 8], g_mod2s[1024 * 8], g_mod3xxs[256 * 4], g_mod3s[512 * 4],
    g_mod1s[2048 * 8];
static int32_t g_map2xxs[CUBE2], g_map2xs[CUBE2], g_map2s[CUBE2], g_map3xxs[CUBE3], g_map3s[CUBE3], g_map1s[CUBE2];
static uint16_t g_nbr2xxs[119462], g_nbr2xs[187770], g_nbr2s[50253], g_nbr3xxs[22825], g_nbr3s[28317],
    g_nbr1s[332234];
static pthread_once_t g_once[IQG_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                           PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

static void build(iqg_grid *g);
static void init_2xxs(void);
static void init_2xs(void);
static void init_2s(void);
static void init_1s(void);
static void init_3xxs(void);
static void init_3s(void);

#define NBR(a) a, sizeof a / sizeof a[0], 0
static iqg_grid g_grids[IQG_COUNT] = {
    [IQG_2XXS] = {8, 2, 3, 256, 2, iqg_iq2xxs_code, {8, 25, 43}, &g_once[IQG_2XXS], init_2xxs, g_val2xxs, g_mod2xxs,
                  g_map2xxs, NBR(g_nbr2xxs)},
    [IQG_2XS] = {8, 2, 3, 512, 2, iqg_iq2xs_code, {8, 25, 43}, &g_once[IQG_2XS], init_2xs, g_val2xs, g_mod2xs, g_map2xs,
                 NBR(g_nbr2xs)},
    [IQG_2S] = {8, 2, 3, 1024, 1, iqg_iq2s_code, {8, 25, 43}, &g_once[IQG_2S], init_2s, g_val2s, g_mod2s, g_map2s,
                NBR(g_nbr2s)},
    [IQG_3XXS] = {4, 3, 8, 256, 2, iqg_iq3xxs_code, {4, 12, 20, 28, 36, 44, 52, 62}, &g_once[IQG_3XXS], init_3xxs,
                  g_val3xxs, g_mod3xxs, g_map3xxs, NBR(g_nbr3xxs)},
    [IQG_3S] = {4, 3, 8, 512, 3, iqg_iq3s_code, {1, 3, 5, 7, 9, 11, 13, 15}, &g_once[IQG_3S], init_3s, g_val3s, g_mod3s,
                g_map3s, NBR(g_nbr3s)},
    [IQG_1S] = {8, 2, 3, 2048, 3, iqg_iq1s_code, {-1, 0, 1}, &g_once[IQG_1S], init_1s, g_val1s, g_mod1s, g_map1s,
                NBR(g_nbr1s)},
};

static void init_2xxs(void) { build(&g_grids[IQG_2XXS]); }
static void init_2xs(void) { build(&g_grids[IQG_2XS]); }
static void init_2s(void) { build(&g_grids[IQG_2S]); }
static void init_1s(void) { build(&g_grids[IQG_1S]); }
static void init_3xxs(void) { build(&g_grids[IQG_3XXS]); }
static void init_3s(void) { build(&g_grids[IQG_3S]); }

static inline int lev(const iqg_grid *g, unsigned code, int i) { return (int)(code >> g->bits * i) & ((1 << g->bits) - 1); }

/* Every point's values; the map; for each cube point with all levels in range that is not
 * a point, the points of the first `shells` distinct squared distances (in level steps),
 * nearest first, equal distances by index. The distances to every point come from one
 * vectorizable pass over the points' levels (stored by coordinate), the shells from their
 * histogram, and the list from one counting pass. */
static void build(iqg_grid *g)
{
    enum { MAX_POINTS = 2048, MAX_D2 = 8 * 7 * 7 }; /* the largest codebook; dim 8 × (nlev - 1)^2 */
    const int ncube = 1 << g->bits * g->dim, D = g->dim;
    int16_t pl[8][MAX_POINTS], d2[MAX_POINTS];
    size_t hist[MAX_D2 + 1], at[MAX_D2 + 1];
    for (int p = 0; p < g->n; p++)
        for (int i = 0; i < D; i++) {
            pl[i][p] = (int16_t)lev(g, g->code[p], i);
            g->val[p * D + i] = g->level[pl[i][p]];
            g->model[p * D + i] = (float)(2 * pl[i][p] + 1);
        }
    for (int u = 0; u < ncube; u++) g->map[u] = INT32_MIN;
    for (int p = 0; p < g->n; p++) g->map[g->code[p]] = p;
    const int max_d2 = D * (g->nlev - 1) * (g->nlev - 1);
    size_t len = 0;
    for (int u = 0; u < ncube; u++) {
        bool in = true;
        for (int i = 0; i < D; i++) in = in && lev(g, (unsigned)u, i) < g->nlev;
        if (!in || g->map[u] != INT32_MIN) continue;
        for (int p = 0; p < g->n; p++) d2[p] = 0;
        for (int i = 0; i < D; i++) {
            const int16_t l = (int16_t)lev(g, (unsigned)u, i), *li = pl[i];
            for (int p = 0; p < g->n; p++) d2[p] = (int16_t)(d2[p] + (l - li[p]) * (l - li[p]));
        }
        memset(hist, 0, sizeof(size_t) * (size_t)(max_d2 + 1));
        for (int p = 0; p < g->n; p++) hist[d2[p]]++;
        size_t start = len++, count = 0;
        int last = -1; /* the farthest shell kept */
        for (int d = 0, sh = 0; d <= max_d2 && sh < g->shells; d++) {
            at[d] = len + count; /* where the points of this distance go */
            if (!hist[d]) continue;
            count += hist[d];
            last = d;
            sh++;
        }
        for (int p = 0; p < g->n; p++)
            if (d2[p] <= last && hist[d2[p]] && at[d2[p]] < g->nbr_cap) g->nbr[at[d2[p]]++] = (uint16_t)p;
        if (start < g->nbr_cap) g->nbr[start] = (uint16_t)count;
        len += count;
        g->map[u] = -(int32_t)(start + 1);
    }
    g->nbr_len = len;
}

const iqg_grid *iqg_get(int which)
{
    if (which < 0 || which >= IQG_COUNT) return NULL;
    iqg_grid *g = &g_grids[which];
    pthread_once(g->once, g->init);
    return g;
}

/* ==== llama.cpp's steps ==== */

void iqg_llama_signs(const float *x, const float *w, int n, bool parity, float *xv, uint8_t *signs)
{
    for (int k = 0; k < n / 8; k++) {
        const float *xk = x + 8 * k, *wk = w + 8 * k;
        float *vk = xv + 8 * k;
        int nneg = 0;
        unsigned s = 0;
        for (int i = 0; i < 8; i++) {
            vk[i] = xk[i] >= 0 ? xk[i] : -xk[i];
            if (!(xk[i] >= 0)) {
                nneg++;
                s |= 1u << i;
            }
        }
        if (parity && nneg % 2) {
            int imin = 0;
            float min = wk[0] * xk[0] * xk[0];
            for (int i = 1; i < 8; i++) {
                float v = wk[i] * xk[i] * xk[i];
                if (v < min) {
                    min = v;
                    imin = i;
                }
            }
            vk[imin] = -vk[imin];
            s ^= 1u << imin;
        }
        signs[k] = (uint8_t)(parity ? s & 127 : s);
    }
}

/* One point of `dim` magnitudes xv at inverse scale id: the cube point of levels
 * clamp(round((id xv - 1) / 2)), or, off the grid, the nearest of its neighbours under
 * weights wa at scale `scale`. Level indices to L; returns the point; *on tells which. */
static int llama_point(const iqg_grid *g, const float *xv, const float *wa, float id, float scale, int8_t *L,
                       bool *on)
{
    unsigned u = 0;
    for (int i = 0; i < g->dim; i++) {
        L[i] = (int8_t)q_clampi(q_nearest(0.5f * (id * xv[i] - 1)), 0, g->nlev - 1);
        u |= (unsigned)L[i] << g->bits * i;
    }
    int32_t m = g->map[u];
    if (on) *on = m >= 0;
    if (m >= 0) return m;
    const uint16_t *list = g->nbr + (-m - 1);
    float best = FLT_MAX;
    int p = list[1];
    for (int j = 1; j <= list[0]; j++) {
        const float *q = g->model + list[j] * g->dim;
        float d2 = 0;
        for (int i = 0; i < g->dim; i++) {
            float diff = scale * q[i] - xv[i];
            d2 += wa[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            p = list[j];
        }
    }
    for (int i = 0; i < g->dim; i++) L[i] = (int8_t)lev(g, g->code[p], i);
    return p;
}

/* sum w xv q and sum w q^2 over n elements, q = 2 L + 1, in llama.cpp's order. */
static void llama_sums(const float *w, const float *xv, const int8_t *L, int n, float *sqx, float *sq2)
{
    float a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        float q = (float)(2 * L[i] + 1);
        a += w[i] * xv[i] * q;
        b += w[i] * q * q;
    }
    *sqx = a;
    *sq2 = b;
}

/* llama.cpp's make_qp_quants (used by its IQ2_XXS encoder): a non-negative scale for n
 * values on levels 0..nmax, refined by coordinate descent. Its levels live in bytes (a
 * negative level wraps), and later steps read them back so: kept. */
static float llama_qp_scale(int n, int nmax, const float *x, const float *w)
{
    uint8_t L[32];
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < 1e-15f) return 0;
    float iscale = (float)nmax / max, scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)q_nearest(iscale * x[i]);
        float diff = x[i] - scale * L[i];
        best += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        float iscale_is = (0.1f * (float)is + (float)nmax) / max, scale_is = 1 / iscale_is, mse = 0;
        for (int i = 0; i < n; i++) {
            int l = q_nearest(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            float diff = x[i] - scale_is * (float)l;
            mse += w[i] * diff * diff;
        }
        if (mse < best) {
            best = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = q_nearest(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * (float)l;
        suml2 += w[i] * (float)l * (float)l;
    }
    for (int it = 0; it < 5; it++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float slx = sumlx - w[i] * x[i] * L[i], sl2 = suml2 - w[i] * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int nl = q_nearest(x[i] * sl2 / slx);
                nl = nl < nmax ? nl : nmax;
                if (nl != L[i]) {
                    slx += w[i] * x[i] * (float)nl;
                    sl2 += w[i] * (float)nl * (float)nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

bool iqg_llama_group(const iqg_grid *g, const iqg_llama_plan *p, int n, const float *xv, const float *w, int *idx,
                     float *scale_out)
{
    const int D = g->dim, np = n / D;
    float wa[32], max = xv[0];
    int8_t L[32] = {0}, La[32];
    int idxa[8];
    bool on[8], ona[8];
    for (int i = 0; i < n; i++) wa[i] = sqrtf(w[i]);
    for (int i = 1; i < n; i++) max = max > xv[i] ? max : xv[i];
    if (max < p->eps) return false;
    float scale, m, sqx, sq2, best = 0;
    if (p->qp_start) {
        scale = llama_qp_scale(n, p->kmax + 1, xv, w);
        m = scale * (float)p->kmax;
        if (m <= 0) return false;
    } else {
        scale = max / (float)(2 * p->kmax - 1);
        m = max;
    }
    for (int k = 0; k < np; k++) {
        on[k] = p->on_init;
        idx[k] = g->map[0];
    }
    for (int is = -p->tmax; is <= p->tmax; is++) {
        float id = ((float)(2 * p->kmax - 1) + (float)is * p->tstep) / m, this_scale = 1 / id;
        for (int k = 0; k < np; k++) idxa[k] = llama_point(g, xv + D * k, wa + D * k, id, this_scale, La + D * k, &ona[k]);
        llama_sums(w, xv, La, n, &sqx, &sq2);
        if (sq2 > 0 && sqx * sqx > best * sq2) {
            scale = sqx / sq2;
            best = scale * sqx;
            memcpy(L, La, (size_t)n);
            memcpy(idx, idxa, sizeof(int) * (size_t)np);
            memcpy(on, ona, sizeof(bool) * (size_t)np);
        }
    }
    int off = 0;
    for (int k = 0; k < np; k++) off += !on[k];
    if ((off > 0 || p->repick == IQG_REPICK_ALL) && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < np; k++)
            if (!on[k] || p->repick != IQG_REPICK_OFF_GRID)
                idx[k] = llama_point(g, xv + D * k, wa + D * k, id, scale, L + D * k, NULL);
        llama_sums(w, xv, L, n, &sqx, &sq2);
        if (sq2 > 0) scale = sqx / sq2;
    }
    *scale_out = scale;
    return true;
}

void iqg_llama_block(const iqg_llama_spec *sp, const float *x, const float *qw, iqg_choice *c)
{
    const iqg_grid *g = iqg_get(sp->grid);
    const int G = sp->gsize, ng = 256 / G, ppg = G / g->dim;
    const unsigned smask = sp->parity ? 127 : 255;
    float scales[16], max_scale = 0, sumx2 = 0;
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 256; i++) sumx2 += x[i] * x[i];
    float sigma2 = sp->sigma * sumx2 / 256;
    for (int j = 0; j < ng; j++) {
        const float *xb = x + G * j;
        float w[32], xv[32], scale;
        int idx[8];
        for (int i = 0; i < G; i++) {
            float x2 = xb[i] * xb[i];
            w[i] = qw                           ? qw[G * j + i] * sqrtf(sigma2 + x2)
                   : sp->noqw == IQG_NOQW_SQRT  ? sqrtf(sigma2 + x2)
                   : sp->noqw == IQG_NOQW_FLOOR ? 0.25f * sigma2 + x2
                                                : x2;
        }
        uint8_t sg[4];
        iqg_llama_signs(xb, w, G, sp->parity, xv, sg);
        scales[j] = 0;
        if (!iqg_llama_group(g, &sp->plan, G, xv, w, idx, &scale)) continue;
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < G / 8; k++) sg[k] = (uint8_t)(~sg[k] & smask);
        }
        for (int k = 0; k < ppg; k++) c->pt[ppg * j + k] = (uint16_t)idx[k];
        memcpy(c->sign + G / 8 * j, sg, (size_t)(G / 8));
        scales[j] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(c, 0, sizeof *c);
        return;
    }
    float d = max_scale / 31, id = 1 / d;
    c->d = d * sp->dmul;
    for (int j = 0; j < ng; j++) c->s[j] = (uint8_t)q_clampi(q_nearest(0.5f * (id * scales[j] - 1)), 0, 15);
}

void iqg_llama_rows(const iqg_type *t, const float *x, void *dst, int64_t k)
{
    uint8_t *y = dst;
    for (int64_t i = 0; i < k / 256; i++, y += t->bytes) {
        if (t->spec) {
            iqg_choice c;
            iqg_llama_block(t->spec, x + 256 * i, NULL, &c);
            t->put(&c, y);
        } else {
            t->llama(x + 256 * i, NULL, y);
        }
    }
}

/* ==== smelt's search ==== */

/* The point nearest to `dim` magnitudes a at step S (decoded values S * val) under weights
 * w: the cube point of the nearest levels if it is on the grid (then no point is nearer),
 * else the nearest of its neighbours. Its weighted squared error to *err. */
static int pick(const iqg_grid *g, const float *a, const float *w, float S, float *err)
{
    float inv = 1 / S;
    unsigned u = 0;
    for (int i = 0; i < g->dim; i++) {
        float y = a[i] * inv;
        int l = 0;
        while (l + 1 < g->nlev && y > 0.5f * (g->level[l] + g->level[l + 1])) l++;
        u |= (unsigned)l << g->bits * i;
    }
    int32_t m = g->map[u];
    if (m >= 0) {
        const float *v = g->val + m * g->dim;
        float e = 0;
        for (int i = 0; i < g->dim; i++) {
            float r = a[i] - S * v[i];
            e += w[i] * r * r;
        }
        *err = e;
        return m;
    }
    const uint16_t *list = g->nbr + (-m - 1);
    float best = INFINITY;
    int p = list[1];
    for (int j = 1; j <= list[0]; j++) {
        const float *v = g->val + list[j] * g->dim;
        float e = 0;
        for (int i = 0; i < g->dim; i++) {
            float r = a[i] - S * v[i];
            e += w[i] * r * r;
        }
        if (e < best) {
            best = e;
            p = list[j];
        }
    }
    *err = best;
    return p;
}

/* Points of one group of n magnitudes at step S: their total error, and the least-squares
 * step of those points (sum w a v / sum w v^2) to *ls (0 if undefined). */
static float group_at(const iqg_grid *g, const float *a, const float *w, int n, float S, uint16_t *pt, float *ls)
{
    float e = 0, sxv = 0, svv = 0;
    for (int k = 0; k < n / g->dim; k++) {
        float ek;
        int p = pick(g, a + k * g->dim, w + k * g->dim, S, &ek);
        if (pt) pt[k] = (uint16_t)p;
        e += ek;
        if (ls) {
            const float *v = g->val + p * g->dim;
            for (int i = 0; i < g->dim; i++) {
                sxv += w[i + k * g->dim] * a[i + k * g->dim] * v[i];
                svv += w[i + k * g->dim] * v[i] * v[i];
            }
        }
    }
    if (ls) *ls = svv > 0 ? sxv / svv : 0;
    return e;
}

/* The best continuous step of one group: the steps that put its largest magnitude at
 * 0.55, 0.65 .. 1.15 of the top level, each refitted once to its points; the best by
 * error. */
static float group_step(const iqg_grid *g, const float *a, const float *w, int n)
{
    float amax = 0;
    for (int i = 0; i < n; i++) amax = a[i] > amax ? a[i] : amax;
    if (!(amax > 0)) return 0;
    float top = g->level[g->nlev - 1], best = INFINITY, best_s = 0;
    for (int t = 0; t <= 6; t++) {
        float S = amax / (top * (0.55f + 0.1f * (float)t)), ls, e = group_at(g, a, w, n, S, NULL, &ls);
        if (e < best) {
            best = e;
            best_s = S;
        }
        if (ls > 0) {
            e = group_at(g, a, w, n, ls, NULL, NULL);
            if (e < best) {
                best = e;
                best_s = ls;
            }
        }
    }
    return best_s;
}

#define N_TOP 6 /* factor candidates: the largest group step on rung 15, 14, ... */

double iqg_search(const iqg_fit *f, const float *x, const float *w, iqg_choice *c)
{
    const iqg_grid *g = f->g;
    const int G = f->gsize, ng = 256 / G, ppg = G / g->dim;
    float a[256], sig[16], smax = 0;
    memset(c, 0, sizeof *c);
    for (int k = 0; k < 32; k++) {
        unsigned s = 0;
        int nneg = 0;
        for (int i = 0; i < 8; i++) {
            float v = x[8 * k + i];
            a[8 * k + i] = fabsf(v);
            if (v < 0) {
                s |= 1u << i;
                nneg++;
            }
        }
        if (f->parity && nneg % 2) {
            int imin = 0;
            for (int i = 1; i < 8; i++)
                if (w[8 * k + i] * a[8 * k + i] * a[8 * k + i] < w[8 * k + imin] * a[8 * k + imin] * a[8 * k + imin])
                    imin = i;
            a[8 * k + imin] = -a[8 * k + imin];
            s ^= 1u << imin;
        }
        c->sign[k] = (uint8_t)(f->parity ? s & 127 : s);
    }
    for (int j = 0; j < ng; j++) {
        sig[j] = group_step(g, a + G * j, w + G * j, G);
        smax = sig[j] > smax ? sig[j] : smax;
    }
    double total0 = 0;
    for (int i = 0; i < 256; i++) total0 += (double)w[i] * x[i] * x[i];
    if (!(smax > 0)) return total0; /* d = 0: every element decodes to 0 */
    double best = INFINITY;
    for (int t = 0; t < N_TOP; t++) {
        float d = q_as_f16(smax / ((float)(2 * (15 - t) + 1) * f->unit));
        if (!(d <= 65504.f)) d = 65504.f;
        if (d == 0) d = 0x1p-24f;
        double tot = 0;
        uint8_t s[16];
        uint16_t pt[64], ptt[8];
        for (int j = 0; j < ng && tot < best; j++) {
            float r = sig[j] / (d * f->unit);
            int s0 = q_clampi(q_nearest(r > 64.f ? 32.f : 0.5f * (r - 1)), 0, 15);
            float bj = INFINITY;
            for (int sj = s0 > 0 ? s0 - 1 : 0; sj <= s0 + 1 && sj <= 15; sj++) {
                float e = group_at(g, a + G * j, w + G * j, G, d * (float)(2 * sj + 1) * f->unit, ptt, NULL);
                if (e < bj) {
                    bj = e;
                    s[j] = (uint8_t)sj;
                    memcpy(pt + ppg * j, ptt, sizeof(uint16_t) * (size_t)ppg);
                }
            }
            tot += bj;
        }
        if (tot < best) {
            best = tot;
            c->d = d;
            memcpy(c->s, s, sizeof s);
            memcpy(c->pt, pt, sizeof pt);
        }
    }
    if (!(best < total0)) { /* nothing beats all zeros */
        c->d = 0;
        return total0;
    }
    return best;
}

void iqg_keep_better(const float *x, const float *w, void (*deq)(const void *, float *, size_t), const void *mine,
                     const void *theirs, size_t bytes, void *dst)
{
    float ym[256], yt[256];
    deq(mine, ym, 256);
    deq(theirs, yt, 256);
    memcpy(dst, iq4_error(x, yt, w, 256) < iq4_error(x, ym, w, 256) ? theirs : mine, bytes);
}

void iqg_encode(const iqg_type *t, const float *x, const float *w, const float *qw, void *dst)
{
    uint8_t mine[128], theirs[128];
    iqg_fit f = t->fit;
    f.g = iqg_get(t->grid);
    iqg_choice c;
    iqg_search(&f, x, w, &c);
    t->put(&c, mine);
    if (t->spec) {
        iqg_llama_block(t->spec, x, qw, &c);
        t->put(&c, theirs);
    } else {
        t->llama(x, qw, theirs);
    }
    iqg_keep_better(x, w, t->deq, mine, theirs, t->bytes, dst);
}

void iqg_dequantize(const iqg_layout *l, const void *src, float *y, size_t n)
{
    const iqg_grid *g = iqg_get(l->grid);
    const uint8_t *b = src;
    int q[32], ls[2];
    for (size_t i = 0; i < n / 256; i++, b += l->bytes) {
        float d = q_f16(b);
        for (int j = 0; j < 8; j++) {
            l->group(g, b, j, q, ls);
            for (int e = 0; e < 32; e++) *y++ = d * (float)ls[e / 16] * l->unit * (float)q[e];
        }
    }
}

void iqg_signed_run(const iqg_grid *g, int point, unsigned signs, int *q)
{
    const float *v = g->val + point * g->dim;
    for (int e = 0; e < g->dim; e++) q[e] = (signs >> e & 1) ? -(int)v[e] : (int)v[e];
}

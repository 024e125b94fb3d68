/* iq1_common.c — what IQ1_S and IQ1_M share: decoding a run, llama.cpp's point choice for
 * its partition search, and smelt's nearest-point search at decoded values. Includes
 * quant/ only. */
#include "iq1.h"

#include <float.h>
#include <math.h>

const float iq1_lev[2][3] = {{-1 + IQ1_DELTA, IQ1_DELTA, 1 + IQ1_DELTA}, {-1 - IQ1_DELTA, -IQ1_DELTA, 1 - IQ1_DELTA}};

static inline int lev1(const iqg_grid *g, int point, int i) { return (g->code[point] >> 2 * i) & 3; }

void iq1_run(const iqg_grid *g, int point, float dl, float delta, float *y)
{
    const float *v = g->val + 8 * point;
    for (int i = 0; i < 8; i++) y[i] = dl * (v[i] + delta);
}

void iq1_sort(const float *x, int n, int *idx)
{
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && x[idx[j - 1]] > x[i]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

int iq1_llama_point(const iqg_grid *g, const float *x, const float *w, float scale, const float *xx, int8_t *L,
                    bool *on)
{
    unsigned u = 0;
    for (int i = 0; i < 8; i++) u |= (unsigned)L[i] << 2 * i;
    int32_t m = g->map[u];
    *on = m >= 0;
    if (m >= 0) return m;
    const uint16_t *list = g->nbr + (-m - 1);
    float best = FLT_MAX;
    int p = list[1];
    for (int j = 1; j <= list[0]; j++) {
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            float diff = scale * xx[lev1(g, list[j], i)] - x[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            p = list[j];
        }
    }
    for (int i = 0; i < 8; i++) L[i] = (int8_t)lev1(g, p, i);
    return p;
}

float iq1_run_err(const iqg_grid *g, int point, const float *x, const float *w, float dl, float delta)
{
    const float *v = g->val + 8 * point;
    float e = 0;
    for (int i = 0; i < 8; i++) {
        float r = x[i] - dl * (v[i] + delta);
        e += w[i] * r * r;
    }
    return e;
}

int iq1_pick(const iqg_grid *g, const float *x, const float *w, float dl, float delta, float *err)
{
    unsigned u = 0;
    float inv = 1 / dl;
    for (int i = 0; i < 8; i++) {
        float y = x[i] * inv - delta;
        unsigned l = y < -0.5f ? 0 : y < 0.5f ? 1 : 2;
        u |= l << 2 * i;
    }
    int32_t m = g->map[u];
    if (m >= 0) {
        *err = iq1_run_err(g, m, x, w, dl, delta);
        return m;
    }
    const uint16_t *list = g->nbr + (-m - 1);
    float best = INFINITY;
    int p = list[1];
    for (int j = 1; j <= list[0]; j++) {
        float e = iq1_run_err(g, list[j], x, w, dl, delta);
        if (e < best) {
            best = e;
            p = list[j];
        }
    }
    *err = best;
    return p;
}

/* Error of choice c (its factor d) under w. */
static double choice_err(const iqg_grid *g, int gsize, const float *x, const float *w, const iq1_choice *c)
{
    double e = 0;
    for (int k = 0; k < 32; k++) {
        float dl = c->d * (float)(2 * c->l[8 * k / gsize] + 1);
        e += iq1_run_err(g, c->pt[k], x + 8 * k, w + 8 * k, dl, c->neg[k] ? -IQ1_DELTA : IQ1_DELTA);
    }
    return e;
}

/* Groups searched at factor d (kept in c->d), starting from c's scales. */
static double search_groups(const iqg_grid *g, int gsize, bool run_shift, const float *x, const float *w,
                            iq1_choice *c)
{
    const int rpg = gsize / 8;
    double total = 0;
    for (int j = 0; j < 256 / gsize; j++) {
        const float *xg = x + gsize * j, *wg = w + gsize * j;
        float best = INFINITY;
        iq1_choice t = *c;
        for (int l = c->l[j] > 1 ? c->l[j] - 2 : 0; l <= c->l[j] + 2 && l <= 7; l++) {
            float dl = c->d * (float)(2 * l + 1), e = 0, er[2][4];
            int pr[2][4];
            for (int s = 0; s < 2; s++)
                for (int k = 0; k < rpg; k++)
                    pr[s][k] = iq1_pick(g, xg + 8 * k, wg + 8 * k, dl, s ? -IQ1_DELTA : IQ1_DELTA, &er[s][k]);
            int sg = 0;
            if (!run_shift) {
                float e0 = 0, e1 = 0;
                for (int k = 0; k < rpg; k++) {
                    e0 += er[0][k];
                    e1 += er[1][k];
                }
                sg = e1 < e0;
            }
            uint8_t neg[4];
            for (int k = 0; k < rpg; k++) {
                neg[k] = (uint8_t)(run_shift ? er[1][k] < er[0][k] : sg);
                e += er[neg[k]][k];
            }
            if (e < best) {
                best = e;
                t.l[j] = (uint8_t)l;
                for (int k = 0; k < rpg; k++) {
                    t.neg[rpg * j + k] = neg[k];
                    t.pt[rpg * j + k] = (uint16_t)pr[neg[k]][k];
                }
            }
        }
        c->l[j] = t.l[j];
        for (int k = 0; k < rpg; k++) {
            c->neg[rpg * j + k] = t.neg[rpg * j + k];
            c->pt[rpg * j + k] = t.pt[rpg * j + k];
        }
        total += best;
    }
    return total;
}

double iq1_refine(const iqg_grid *g, int gsize, bool run_shift, const float *x, const float *w, iq1_choice *c)
{
    if (!(c->d <= 65504.f)) c->d = 65504.f; /* llama.cpp's factor can overflow f16 */
    double best = choice_err(g, gsize, x, w, c);
    if (c->d == 0) return best;
    iq1_choice t = *c;
    for (int it = 0; it < 4; it++) {
        double e = search_groups(g, gsize, run_shift, x, w, &t);
        if (!(e < best)) break;
        best = e;
        *c = t;
        /* refit the factor to the chosen points and scales */
        double sxq = 0, sqq = 0;
        for (int k = 0; k < 32; k++) {
            const float *v = g->val + 8 * t.pt[k];
            float m = (float)(2 * t.l[8 * k / gsize] + 1), dlt = t.neg[k] ? -IQ1_DELTA : IQ1_DELTA;
            for (int i = 0; i < 8; i++) {
                double q = (double)m * (v[i] + dlt);
                sxq += (double)w[8 * k + i] * x[8 * k + i] * q;
                sqq += (double)w[8 * k + i] * q * q;
            }
        }
        if (!(sqq > 0 && sxq > 0)) break;
        float d = q_as_f16((float)(sxq / sqq));
        if (!(d > 0 && d <= 65504.f) || d == t.d) break;
        t.d = d;
    }
    return best;
}

void iq1_llama_sums(const iqg_grid *g, const uint16_t *pt, const uint8_t *neg, int nrun, const float *x,
                    const float *w, float mul, float *sqx, float *sq2)
{
    float a = *sqx, b = *sq2;
    for (int k = 0; k < nrun; k++)
        for (int j = 0; j < 8; j++) {
            float q = iq1_lev[neg[k]][lev1(g, pt[k], j)] * mul;
            a += w[8 * k + j] * q * x[8 * k + j];
            b += w[8 * k + j] * q * q;
        }
    *sqx = a;
    *sq2 = b;
}

float iq1_llama_refit_scale(const iqg_grid *g, const uint16_t *pt, const uint8_t *neg, int nrun, const float *x,
                            const float *w, float scale)
{
    float sqx = 0, sq2 = 0;
    iq1_llama_sums(g, pt, neg, nrun, x, w, 1, &sqx, &sq2);
    return sqx > 0 && sq2 > 0 ? sqx / sq2 : scale;
}

void iq1_llama_rows(const iq1_type *t, const float *x, void *dst, int64_t k)
{
    iq1_choice c;
    for (int64_t i = 0; i < k / 256; i++) {
        t->llama(x + 256 * i, NULL, &c);
        t->pack(&c, (uint8_t *)dst + i * t->bytes);
    }
}

void iq1_encode(const iq1_type *t, const float *x, const float *w, const float *qw, void *dst)
{
    iq1_choice c;
    uint8_t mine[64], theirs[64];
    t->llama(x, qw, &c);
    t->pack(&c, theirs);
    iq1_refine(iqg_get(IQG_1S), t->gsize, t->run_shift, x, w, &c);
    t->pack(&c, mine);
    iqg_keep_better(x, w, t->deq, mine, theirs, t->bytes, dst);
}

/* search.c — scale searches shared by the quant families (see search.h).
 * Includes quant/ private headers only. */
#include "search.h"

#include <math.h>

#include "quant_int.h"

/* ==== threshold sweep ==== */

typedef struct {
    float t;
    int i;
} qs_ev;

typedef struct {
    int n;
    float u[SMELT_QS_MAX];  /* magnitude that drives the level (<= 0: never moves) */
    int cap[SMELT_QS_MAX];  /* largest level magnitude */
    int lv[SMELT_QS_MAX];   /* current level magnitude */
    qs_ev h[SMELT_QS_MAX];  /* min-heap of next thresholds */
    int hn;
} sweep;

static inline bool ev_less(qs_ev a, qs_ev b) { return a.t < b.t || (a.t == b.t && a.i < b.i); }

static void heap_push(sweep *s, float t, int i)
{
    qs_ev e = {t, i};
    int k = s->hn++;
    while (k > 0) {
        int p = (k - 1) >> 1;
        if (ev_less(s->h[p], e)) break;
        s->h[k] = s->h[p];
        k = p;
    }
    s->h[k] = e;
}

static qs_ev heap_pop(sweep *s)
{
    qs_ev top = s->h[0], last = s->h[--s->hn];
    int k = 0;
    for (;;) {
        int c = 2 * k + 1;
        if (c >= s->hn) break;
        if (c + 1 < s->hn && ev_less(s->h[c + 1], s->h[c])) c++;
        if (ev_less(last, s->h[c])) break;
        s->h[k] = s->h[c];
        k = c;
    }
    s->h[k] = last;
    return top;
}

/* Sums of the objective. Symmetric: maximise Sxl^2 / S2. With offset: maximise
 * (S0 Sxl^2 - 2 S1 Sx Sxl + S2 Sx^2) / (S0 S2 - S1^2), the error removed by the joint
 * least-squares fit, subject to a > 0 (and b <= 0 when asked). */
typedef struct {
    double S0, Sx, S1, S2, Sxl;
    bool offset, b_nonpos;
} objective;

/* Score as a fraction num/den (den > 0); false if the state is not admissible. */
static bool score(const objective *o, double *num, double *den)
{
    if (!o->offset) {
        if (o->S2 <= 0) return false;
        *num = o->Sxl * o->Sxl;
        *den = o->S2;
        return true;
    }
    double D = o->S0 * o->S2 - o->S1 * o->S1;
    double an = o->S0 * o->Sxl - o->S1 * o->Sx;
    double bn = o->S2 * o->Sx - o->S1 * o->Sxl;
    if (D > 1e-12 * o->S0 * o->S2 && an > 0 && !(o->b_nonpos && bn > 0)) {
        *num = o->S0 * o->Sxl * o->Sxl - 2 * o->S1 * o->Sx * o->Sxl + o->S2 * o->Sx * o->Sx;
        *den = D;
        return true;
    }
    if (o->b_nonpos && o->S2 > 0 && o->Sxl > 0 && bn > 0) { /* offset pinned at 0 */
        *num = o->Sxl * o->Sxl;
        *den = o->S2;
        return true;
    }
    return false;
}

/* Walk the thresholds in (s_lo, s_hi] starting from the levels at s_lo; v[i] is the value
 * multiplying the level in Sxl. Returns the best inverse scale (mid-way between its
 * threshold and the next), or -1 if no admissible state was seen. */
static float sweep_run(sweep *s, objective *o, const float *v, const float *w, float s_lo, float s_hi, double *bn_out,
                       double *bd_out)
{
    s->hn = 0;
    o->S1 = o->S2 = o->Sxl = 0;
    for (int i = 0; i < s->n; i++) {
        int l = 0;
        if (s->u[i] > 0) {
            float t = s_lo * s->u[i];
            l = t >= (float)s->cap[i] ? s->cap[i] : q_nearest(t);
            if (l < s->cap[i]) heap_push(s, ((float)l + 0.5f) / s->u[i], i);
        }
        s->lv[i] = l;
        o->S1 += (double)w[i] * l;
        o->S2 += (double)w[i] * l * l;
        o->Sxl += (double)w[i] * v[i] * l;
    }
    float best = -1;
    double bn = 0, bd = 1, num, den;
    if (score(o, &num, &den)) {
        best = s_lo;
        bn = num;
        bd = den;
    }
    while (s->hn > 0 && s->h[0].t <= s_hi) {
        qs_ev e = heap_pop(s);
        int i = e.i;
        double l = s->lv[i];
        o->S1 += w[i];
        o->S2 += (double)w[i] * (2 * l + 1);
        o->Sxl += (double)w[i] * v[i];
        s->lv[i]++;
        if (s->lv[i] < s->cap[i]) heap_push(s, ((float)s->lv[i] + 0.5f) / s->u[i], i);
        if (s->hn > 0 && s->h[0].t <= e.t) continue; /* ties: score once all have moved */
        if (score(o, &num, &den) && (best < 0 || num * bd > bn * den)) {
            float next = s->hn > 0 && s->h[0].t < s_hi ? s->h[0].t : s_hi;
            best = next > e.t ? 0.5f * (e.t + next) : e.t;
            bn = num;
            bd = den;
        }
    }
    *bn_out = bn;
    *bd_out = bd;
    return best;
}

/* ==== symmetric ==== */

void smelt_qs_sym(const smelt_search_kernels *k, int n, int lo, int hi, const float *x, const float *w,
                  const smelt_qs_plan *p, int8_t *L, smelt_qs_fit *f)
{
    float amax = 0, sw = 0, sx = 0;
    int im = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            im = i;
        }
        sw += w[i];
        sx += w[i] * x[i];
    }
    *f = (smelt_qs_fit){0};
    f->sw = sw;
    f->sx = sx;
    for (int i = 0; i < n; i++) L[i] = 0;
    if (!(amax > 1e-30f)) {
        f->err = 0;
        for (int i = 0; i < n; i++) f->err += w[i] * x[i] * x[i];
        return;
    }

    /* grid: inverse scales of both signs (a negative one mirrors the level range) */
    enum { MAXC = 2 * 48 };
    float s[MAXC], out[2 * MAXC];
    int nc = p->ncand < 1 ? 1 : p->ncand > 48 ? 48 : p->ncand;
    float step = nc > 1 ? (p->win_hi - p->win_lo) / (float)(nc - 1) : 0.f;
    int K = 0;
    for (int sign = 1; sign >= -1; sign -= 2) {
        if (sign < 0 && lo == -hi) break;
        int cap_m = (x[im] > 0) == (sign > 0) ? hi : -lo;
        if (cap_m <= 0) continue;
        float s0 = (float)cap_m / amax;
        for (int c = 0; c < nc; c++) s[K++] = (float)sign * s0 * (nc > 1 ? p->win_lo + step * (float)c : 1.f);
    }
    if (K == 0) return;
    k->sym_score(n, x, w, lo, hi, s, K, out);
    int bk = -1;
    double bn = 0, bd = 1;
    for (int c = 0; c < K; c++) {
        double s2 = out[2 * c], sxl = out[2 * c + 1];
        if (s2 > 0 && (bk < 0 || sxl * sxl * bd > bn * s2)) {
            bk = c;
            bn = sxl * sxl;
            bd = s2;
        }
    }
    if (bk < 0) return;
    float best_s = s[bk];

    if (p->sweep > 0 && nc > 1) {
        int sign = best_s > 0 ? 1 : -1;
        sweep sw_;
        sw_.n = n;
        float mag[SMELT_QS_MAX];
        for (int i = 0; i < n; i++) {
            mag[i] = fabsf(x[i]);
            sw_.u[i] = mag[i];
            sw_.cap[i] = (x[i] > 0) == (sign > 0) ? hi : -lo;
        }
        float a_s = fabsf(best_s), half = p->sweep * step * (a_s / (p->win_lo + step * (float)(bk % nc)));
        float s_lo = a_s - half, s_hi = a_s + half;
        if (s_lo < 0) s_lo = 0;
        objective o = {0};
        double num, den;
        float sb = sweep_run(&sw_, &o, mag, w, s_lo, s_hi, &num, &den);
        if (sb > 0 && num * bd >= bn * den) best_s = (float)sign * sb;
    }

    /* levels at the chosen inverse scale, then fit / re-round while the error drops */
    float sums[3];
    int8_t T[SMELT_QS_MAX];
    k->sym_round(n, x, w, 0.f, best_s, lo, hi, T, sums);
    float a = sums[1] > 0 ? sums[2] / sums[1] : 0.f;
    float best_err = INFINITY;
    int rounds = p->polish < 1 ? 1 : p->polish;
    for (int r = 0; r < rounds && a != 0; r++) {
        float e = k->sym_round(n, x, w, a, 1.f / a, lo, hi, T, sums);
        if (!(e < best_err)) break;
        best_err = e;
        f->a = a;
        f->err = e;
        f->sl = sums[0];
        f->sl2 = sums[1];
        f->sxl = sums[2];
        for (int i = 0; i < n; i++) L[i] = T[i];
        if (!(sums[1] > 0)) break;
        a = sums[2] / sums[1];
        if (a == f->a) break;
    }
    if (best_err == INFINITY) {
        f->err = 0;
        for (int i = 0; i < n; i++) f->err += w[i] * x[i] * x[i];
    }
}

/* ==== exact sweeps for the lane searches ==== */

float smelt_qs_sweep_asym(int n, int nmax, const float *x, const float *w, float base, float s_lo, float s_hi,
                          bool b_nonpos)
{
    float ones[SMELT_QS_MAX];
    if (!w) {
        for (int i = 0; i < n; i++) ones[i] = 1.f;
        w = ones;
    }
    double S0 = 0, Sx = 0;
    for (int i = 0; i < n; i++) {
        S0 += w[i];
        Sx += (double)w[i] * x[i];
    }
    sweep sw_;
    sw_.n = n;
    for (int i = 0; i < n; i++) {
        sw_.u[i] = x[i] - base;
        sw_.cap[i] = nmax;
    }
    objective o = {S0, Sx, 0, 0, 0, true, b_nonpos};
    double num, den;
    return sweep_run(&sw_, &o, x, w, s_lo < 0 ? 0 : s_lo, s_hi, &num, &den);
}

/* ==== importance weights ==== */

float smelt_qs_weight_floor(const float *imx, int64_t row_len)
{
    double s = 0;
    for (int64_t j = 0; j < row_len; j++)
        if (imx[j] > 0 && isfinite(imx[j])) s += imx[j];
    double mean = row_len > 0 ? s / (double)row_len : 0;
    return mean > 0 ? (float)(mean * 1e-6) : 1e-30f;
}

float smelt_qs_weight_lift(float floor, float a)
{
    return a * floor * 1e6f; /* the floor is 1e-6 of the mean */
}

void smelt_qs_magnitude(const float *x, int n, float p, float c, float *w)
{
    float v[SMELT_QS_MAX_GROUP], lane[8] = {0};
    for (int i = 0; i < n; i++) v[i] = isfinite(x[i]) ? x[i] : 0.f;
    /* eight independent partial sums (a vectorizable loop, not one serial chain) */
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) lane[k] += v[i + k] * v[i + k];
    double s2 = 0;
    for (int k = 0; k < 8; k++) s2 += lane[k];
    for (int i = n8; i < n; i++) s2 += (double)v[i] * v[i];
    float base = c * (float)(s2 / n), e = 0.5f * p;
    /* p = 2 and p = 1 (the tuned models) as plain loops the compiler vectorizes */
    if (e == 1.0f)
        for (int i = 0; i < n; i++) w[i] *= (base + v[i] * v[i]) + 1e-30f;
    else if (e == 0.5f)
        for (int i = 0; i < n; i++) w[i] *= sqrtf(base + v[i] * v[i]) + 1e-30f;
    else
        for (int i = 0; i < n; i++) w[i] *= powf(base + v[i] * v[i], e) + 1e-30f;
}

void smelt_qs_block_weights(const float *imx, float fl, int n, float *w)
{
    if (!imx) {
        for (int j = 0; j < n; j++) w[j] = 1.f;
        return;
    }
    for (int j = 0; j < n; j++) {
        float v = imx[j];
        w[j] = (v > 0 && isfinite(v) ? v : 0.f) + fl;
    }
}

bool smelt_qs_sanitize(const float *x, int n, float *out)
{
    bool any = false;
    for (int j = 0; j < n; j++) {
        float v = x[j];
        if (!isfinite(v)) {
            v = 0;
            any = true;
        }
        out[j] = v;
    }
    return any;
}

/* ==== unbiased rows ==== */

void smelt_qs_unbias_sums(const float *x, const float *a, const float *q, int n, double s[2])
{
    float ax[SMELT_QS_MAX_GROUP], lx[8] = {0}, lq[8] = {0};
    if (a)
        for (int i = 0; i < n; i++) ax[i] = a[i] * x[i];
    else
        memcpy(ax, x, (size_t)n * sizeof(float));
    for (int i = 0; i < n; i += 8) /* independent lanes: vectorizable */
        for (int k = 0; k < 8; k++) {
            lx[k] += ax[i + k] * x[i + k];
            lq[k] += ax[i + k] * q[i + k];
        }
    for (int k = 0; k < 8; k++) s[0] += lx[k], s[1] += lq[k];
}

bool smelt_qs_unbias_scale(const double s[2], double *c)
{
    if (!(s[0] > 0) || !(s[1] > 0)) return false; /* an all-zero row, or no importance on it */
    *c = s[0] / s[1];
    return *c > 0.5 && *c < 2.0; /* otherwise not a shrinkage: leave such a row as encoded */
}

void smelt_qs_unbias_apply(uint8_t *blocks, int64_t nb, size_t bytes, const size_t *off, int nf, const double s[2])
{
    double c;
    if (!smelt_qs_unbias_scale(s, &c)) return;
    for (int64_t ib = 0; ib < nb; ib++)
        for (int f = 0; f < nf; f++) {
            uint8_t *p = blocks + ib * bytes + off[f];
            uint16_t h;
            memcpy(&h, p, 2);
            float v = (float)(smelt_f16_to_f32(h) * c);
            if (fabsf(v) > 65504.0f) continue; /* would overflow f16 */
            h = smelt_f32_to_f16(v);
            memcpy(p, &h, 2);
        }
}

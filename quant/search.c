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

static void heap_push(sweep *s, float t, int i)
{
    int k = s->hn++;
    while (k > 0) {
        int p = (k - 1) >> 1;
        if (s->h[p].t < t || (s->h[p].t == t && s->h[p].i < i)) break;
        s->h[k] = s->h[p];
        k = p;
    }
    s->h[k].t = t;
    s->h[k].i = i;
}

static qs_ev heap_pop(sweep *s)
{
    qs_ev top = s->h[0], last = s->h[--s->hn];
    int k = 0;
    for (;;) {
        int c = 2 * k + 1;
        if (c >= s->hn) break;
        if (c + 1 < s->hn && (s->h[c + 1].t < s->h[c].t || (s->h[c + 1].t == s->h[c].t && s->h[c + 1].i < s->h[c].i)))
            c++;
        if (last.t < s->h[c].t || (last.t == s->h[c].t && last.i < s->h[c].i)) break;
        s->h[k] = s->h[c];
        k = c;
    }
    s->h[k] = last;
    return top;
}

/* Levels at inverse scale s0 and the heap of the next thresholds. */
static void sweep_start(sweep *s, float s0)
{
    s->hn = 0;
    for (int i = 0; i < s->n; i++) {
        int l = 0;
        if (s->u[i] > 0) {
            l = q_nearest(s0 * s->u[i]);
            if (l > s->cap[i]) l = s->cap[i];
            if (l < 0) l = 0;
            if (l < s->cap[i]) heap_push(s, ((float)l + 0.5f) / s->u[i], i);
        }
        s->lv[i] = l;
    }
}

/* Objective state. Symmetric: maximise Sxl^2 / S2. With offset: maximise
 * (S0 Sxl^2 - 2 S1 Sx Sxl + S2 Sx^2) / (S0 S2 - S1^2), the error reduction of the joint
 * least-squares fit, subject to a > 0 (and b <= 0 when asked). */
typedef struct {
    double S0, Sx, S1, S2, Sxl;
    bool offset, b_nonpos;
} objective;

/* Score as a fraction num/den (den > 0); false if the state is not admissible. */
static bool score(const objective *o, double *num, double *den)
{
    if (!o->offset) {
        if (o->S2 <= 0 || o->Sxl <= 0) return false;
        *num = o->Sxl * o->Sxl;
        *den = o->S2;
        return true;
    }
    double D = o->S0 * o->S2 - o->S1 * o->S1;
    double an = o->S0 * o->Sxl - o->S1 * o->Sx;
    double bn = o->S2 * o->Sx - o->S1 * o->Sxl;
    if (D > 1e-30 * o->S0 * o->S2 && an > 0 && !(o->b_nonpos && bn > 0)) {
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

/* Walk thresholds in (s_lo, s_hi]; v[i] is the value multiplying the level in Sxl.
 * Returns the best inverse scale, or -1 if no admissible state was seen. */
static float sweep_run(sweep *s, objective *o, const float *v, const float *w, float s_lo, float s_hi,
                       double *best_num, double *best_den)
{
    sweep_start(s, s_lo);
    o->S1 = o->S2 = o->Sxl = 0;
    for (int i = 0; i < s->n; i++) {
        double l = s->lv[i];
        o->S1 += w[i] * l;
        o->S2 += w[i] * l * l;
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
        o->S2 += w[i] * (2 * l + 1);
        o->Sxl += (double)w[i] * v[i];
        s->lv[i]++;
        if (s->lv[i] < s->cap[i]) heap_push(s, ((float)s->lv[i] + 0.5f) / s->u[i], i);
        if (s->hn > 0 && s->h[0].t <= e.t) continue; /* ties: score once all moved */
        if (score(o, &num, &den) && (best < 0 || num * bd > bn * den)) {
            float next = s->hn > 0 && s->h[0].t < s_hi ? s->h[0].t : s_hi;
            best = next > e.t ? 0.5f * (e.t + next) : e.t;
            bn = num;
            bd = den;
        }
    }
    *best_num = bn;
    *best_den = bd;
    return best;
}

/* ==== symmetric ==== */

static float lsq_sym(int n, const float *x, const float *w, const int8_t *L)
{
    double sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        sxl += (double)w[i] * x[i] * L[i];
        sl2 += (double)w[i] * L[i] * L[i];
    }
    return sl2 > 0 ? (float)(sxl / sl2) : 0.f;
}

float smelt_qs_sym(int n, int lo, int hi, const float *x, const float *w, int8_t *L, float win_lo, float win_hi)
{
    float amax = 0;
    int im = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            im = i;
        }
    if (n <= 0) return 0.f;
    memset(L, 0, (size_t)n);
    if (!(amax > 1e-30f) || !isfinite(amax)) return 0.f;

    sweep s;
    s.n = n;
    float mag[SMELT_QS_MAX];
    for (int i = 0; i < n; i++) mag[i] = fabsf(x[i]);
    objective o = {0};
    double best_num = 0, best_den = 1;
    float best_s = -1;
    int best_sign = 0;
    for (int sign = 1; sign >= -1; sign -= 2) {
        /* sign = +1: positive x use [0, hi], negative x use [lo, 0]; mirrored for -1 */
        if (sign < 0 && lo == -hi) break;
        int cap_m = (x[im] > 0) == (sign > 0) ? hi : -lo;
        if (cap_m <= 0) continue;
        for (int i = 0; i < n; i++) {
            s.u[i] = mag[i];
            s.cap[i] = (x[i] > 0) == (sign > 0) ? hi : -lo;
        }
        float s0 = (float)cap_m / amax;
        double num, den;
        float sb = sweep_run(&s, &o, mag, w, s0 * win_lo, s0 * win_hi, &num, &den);
        if (sb > 0 && (best_s < 0 || num * best_den > best_num * den)) {
            best_s = sb;
            best_sign = sign;
            best_num = num;
            best_den = den;
        }
    }
    if (best_s < 0) return 0.f;
    for (int i = 0; i < n; i++) {
        int cap = (x[i] > 0) == (best_sign > 0) ? hi : -lo;
        int l = q_nearest(best_s * mag[i]);
        if (l > cap) l = cap;
        L[i] = (int8_t)(x[i] < 0 ? -best_sign * l : best_sign * l);
    }
    return lsq_sym(n, x, w, L);
}

/* ==== scale and offset ==== */

/* Least-squares a, b for fixed levels; b forced <= 0 when asked. Returns false if the
 * levels are all equal (no scale defined). */
static bool lsq_asym(int n, const float *x, const float *w, const uint8_t *L, bool b_nonpos, float *a, float *b)
{
    double S0 = 0, Sx = 0, S1 = 0, S2 = 0, Sxl = 0;
    for (int i = 0; i < n; i++) {
        double wi = w[i], l = L[i];
        S0 += wi;
        Sx += wi * x[i];
        S1 += wi * l;
        S2 += wi * l * l;
        Sxl += wi * x[i] * l;
    }
    double D = S0 * S2 - S1 * S1;
    if (D > 1e-30 * S0 * S2) {
        double aa = (S0 * Sxl - S1 * Sx) / D, bb = (S2 * Sx - S1 * Sxl) / D;
        if (!(b_nonpos && bb > 0)) {
            *a = (float)aa;
            *b = (float)bb;
            return aa > 0;
        }
    }
    if (S2 <= 0) return false;
    *a = (float)(Sxl / S2);
    *b = 0;
    return *a > 0;
}

double smelt_qs_err_asym(int n, const float *x, const float *w, float a, float b, const uint8_t *L)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        float d = a * (float)L[i] + b - x[i];
        e += (double)w[i] * d * d;
    }
    return e;
}

double smelt_qs_err_sym(int n, const float *x, const float *w, float d, const int8_t *L)
{
    double e = 0;
    for (int i = 0; i < n; i++) {
        float r = d * (float)L[i] - x[i];
        e += (double)w[i] * r * r;
    }
    return e;
}

double smelt_qs_round_asym(int n, int nmax, const float *x, const float *w, float a, float b, uint8_t *L)
{
    double e = 0;
    if (!(a > 0)) {
        for (int i = 0; i < n; i++) {
            L[i] = 0;
            float d = b - x[i];
            e += (double)w[i] * d * d;
        }
        return e;
    }
    float ia = 1.f / a;
    for (int i = 0; i < n; i++) {
        float t = (x[i] - b) * ia;
        int l = t <= 0 ? 0 : t >= (float)nmax ? nmax : q_nearest(t);
        L[i] = (uint8_t)l;
        float d = a * (float)l + b - x[i];
        e += (double)w[i] * d * d;
    }
    return e;
}

double smelt_qs_round_sym(int n, int lo, int hi, const float *x, const float *w, float d, int8_t *L)
{
    double e = 0;
    float id = d != 0 ? 1.f / d : 0.f;
    for (int i = 0; i < n; i++) {
        float t = x[i] * id;
        int l = t <= (float)lo ? lo : t >= (float)hi ? hi : q_nearest(t);
        L[i] = (int8_t)l;
        float r = d * (float)l - x[i];
        e += (double)w[i] * r * r;
    }
    return e;
}

/* Polish a candidate: fit a, b to the levels, re-round, keep whichever is better. */
static double polish_asym(int n, int nmax, const float *x, const float *w, bool b_nonpos, uint8_t *L, float *a,
                          float *b, int rounds)
{
    double err = smelt_qs_err_asym(n, x, w, *a, *b, L);
    uint8_t T[SMELT_QS_MAX];
    for (int r = 0; r < rounds; r++) {
        float na, nb;
        if (!lsq_asym(n, x, w, L, b_nonpos, &na, &nb)) break;
        double e = smelt_qs_round_asym(n, nmax, x, w, na, nb, T);
        if (!(e < err)) break;
        err = e;
        *a = na;
        *b = nb;
        memcpy(L, T, (size_t)n);
    }
    return err;
}

float smelt_qs_asym(int n, int nmax, const float *x, const float *w, uint8_t *L, float *b, bool b_nonpos,
                    float win_lo, float win_hi, int passes)
{
    float mn = x[0], mx = x[0];
    double S0 = 0, Sx = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        S0 += w[i];
        Sx += (double)w[i] * x[i];
    }
    if (b_nonpos && mn > 0) mn = 0;
    memset(L, 0, (size_t)n);
    *b = mn;
    if (!(mx - mn > 1e-30f) || !isfinite(mx - mn)) {
        if (b_nonpos && mn == 0 && mx > 0) { /* constant positive group, offset pinned */
            for (int i = 0; i < n; i++) L[i] = (uint8_t)nmax;
            return mx / (float)nmax;
        }
        return 0.f;
    }
    sweep s;
    s.n = n;
    objective o = {S0, Sx, 0, 0, 0, true, b_nonpos};
    float best_a = 0, best_b = mn, br = mn;
    double best_err = INFINITY;
    uint8_t T[SMELT_QS_MAX];
    for (int p = 0; p < passes; p++) {
        float umax = 0;
        for (int i = 0; i < n; i++) {
            s.u[i] = x[i] - br;
            s.cap[i] = nmax;
            if (s.u[i] > umax) umax = s.u[i];
        }
        if (!(umax > 0)) break;
        float s0 = (float)nmax / umax;
        double num, den;
        float sb = sweep_run(&s, &o, x, w, s0 * win_lo, s0 * win_hi, &num, &den);
        if (sb < 0) break;
        for (int i = 0; i < n; i++) {
            int l = s.u[i] > 0 ? q_nearest(sb * s.u[i]) : 0;
            T[i] = (uint8_t)(l > nmax ? nmax : l < 0 ? 0 : l);
        }
        float a, bb;
        if (!lsq_asym(n, x, w, T, b_nonpos, &a, &bb)) break;
        double e = polish_asym(n, nmax, x, w, b_nonpos, T, &a, &bb, 2);
        if (e < best_err) {
            best_err = e;
            best_a = a;
            best_b = bb;
            memcpy(L, T, (size_t)n);
        } else {
            break;
        }
        if (bb == br) break;
        br = bb;
    }
    *b = best_b;
    return best_a;
}

float smelt_qs_asym_grid(int n, int nmax, const float *x, const float *w, uint8_t *L, float *b, bool b_nonpos,
                         float win_lo, float win_hi, int ncand)
{
    float mn = x[0], mx = x[0];
    double S0 = 0, Sx = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        S0 += w[i];
        Sx += (double)w[i] * x[i];
    }
    if (b_nonpos && mn > 0) mn = 0;
    memset(L, 0, (size_t)n);
    *b = mn;
    if (!(mx - mn > 1e-30f) || !isfinite(mx - mn)) {
        if (b_nonpos && mn == 0 && mx > 0) {
            for (int i = 0; i < n; i++) L[i] = (uint8_t)nmax;
            return mx / (float)nmax;
        }
        return 0.f;
    }
    objective o = {S0, Sx, 0, 0, 0, true, b_nonpos};
    float s0 = (float)nmax / (mx - mn);
    float best_s = -1;
    double bn = 0, bd = 1;
    for (int k = 0; k < ncand; k++) {
        float f = ncand > 1 ? win_lo + (win_hi - win_lo) * (float)k / (float)(ncand - 1) : 1.f;
        float si = s0 * f;
        o.S1 = o.S2 = o.Sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = q_nearest(si * (x[i] - mn));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            double wl = (double)w[i] * l;
            o.S1 += wl;
            o.S2 += wl * l;
            o.Sxl += wl * x[i];
        }
        double num, den;
        if (score(&o, &num, &den) && (best_s < 0 || num * bd > bn * den)) {
            best_s = si;
            bn = num;
            bd = den;
        }
    }
    if (best_s < 0) return 0.f;
    for (int i = 0; i < n; i++) {
        int l = q_nearest(best_s * (x[i] - mn));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    }
    float a, bb;
    if (!lsq_asym(n, x, w, L, b_nonpos, &a, &bb)) return 0.f;
    polish_asym(n, nmax, x, w, b_nonpos, L, &a, &bb, 2);
    *b = bb;
    return a;
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

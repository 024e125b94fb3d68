/* iq4_xs.c — IQ4_XS: super-blocks of 256 in 8 groups of 32, an f16 factor times a 6-bit
 * scale per group, 4-bit indices into the IQ4_NL grid (layout in iquant.h). Decoder,
 * llama.cpp-exact reference encoder, smelt's encoder, portable dot with Q8_K, and the
 * type's descriptor. Includes quant/ only. */
#include <math.h>

#include "iquant_int.h"
#include "quant/kquant/kquant.h"

#define QK SMELT_QK_K
#define NG (QK / IQ4_GROUP) /* groups per super-block */

static int group_scale(const smelt_block_iq4_xs *b, int j)
{
    return ((b->scales_l[j / 2] >> 4 * (j % 2)) & 15) | ((b->scales_h >> 2 * j) & 3) << 4;
}

static void deq_iq4_xs(const void *src, float *y, size_t n)
{
    const smelt_block_iq4_xs *b = src;
    for (size_t i = 0; i < n / QK; i++) {
        float d = q_f16(&b[i].d);
        for (int j = 0; j < NG; j++, y += IQ4_GROUP) {
            float dl = d * (float)(group_scale(&b[i], j) - 32);
            const uint8_t *q = b[i].qs + 16 * j;
            for (int l = 0; l < 16; l++) {
                y[l] = dl * (float)smelt_iq4_grid[q[l] & 15];
                y[l + 16] = dl * (float)smelt_iq4_grid[q[l] >> 4];
            }
        }
    }
}

/* Reference: llama.cpp's encoder without importance (weights x^2): each group's scale from
 * 15 candidates, the largest scale on level -32 of the 6-bit ladder, levels re-picked. */
static void ref_iq4_xs(const float *x, void *dst, int64_t k)
{
    smelt_block_iq4_xs *y = dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < k / QK; i++)
        iq4_llama_block(NG, x + QK * i, NULL, 7, L, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l);
}

/* A candidate super-block factor: every group's 6-bit scale l (stored l + 32), its levels
 * and the total error. */
typedef struct {
    float d, err, t;
    int l[NG];
    uint8_t L[QK];
} cand;

/* Each group's scale rounded to the ladder of factor d (f16-exact); with `wide`, the
 * neighbouring rungs are tried too, each with its levels re-picked. */
static void eval(const float *x, const float *w, const float *s, float d, bool wide, cand *c)
{
    c->d = d;
    c->err = 0;
    for (int j = 0; j < NG; j++) {
        const float *xj = x + IQ4_GROUP * j, *wj = w + IQ4_GROUP * j;
        float r = s[j] / d; /* clamped first: q_nearest needs |r| < 2^22 */
        int l0 = q_nearest(r < -32.f ? -32.f : r > 31.f ? 31.f : r), best_l = l0;
        uint8_t Lt[IQ4_GROUP];
        float best = iq4_fit(xj, wj, d * (float)l0, c->L + IQ4_GROUP * j);
        for (int dl = -1; wide && dl <= 1; dl += 2) {
            int l = l0 + dl;
            if (l < -32 || l > 31) continue;
            float e = iq4_fit(xj, wj, d * (float)l, Lt);
            if (e < best) {
                best = e;
                best_l = l;
                memcpy(c->L + IQ4_GROUP * j, Lt, IQ4_GROUP);
            }
        }
        c->l[j] = best_l;
        c->err += best;
    }
}

static void put(const cand *c, smelt_block_iq4_xs *y)
{
    y->d = smelt_f32_to_f16(c->d);
    y->scales_h = 0;
    for (int j = 0; j < NG; j++) {
        int l = c->l[j] + 32;
        if (j % 2 == 0) y->scales_l[j / 2] = (uint8_t)(l & 15);
        else y->scales_l[j / 2] |= (uint8_t)((l & 15) << 4);
        y->scales_h |= (uint16_t)((l >> 4) << 2 * j);
    }
    iq4_pack(y->qs, c->L, NG);
}

#define KEEP 3 /* factors refined with the neighbouring rungs */

/* Score the factor that puts the largest group scale A on rung t, and keep it in the
 * sorted list of the KEEP best. */
static void consider(const float *x, const float *w, const float *s, float A, float t, cand *best, int *nbest)
{
    float d = q_as_f16(A / t);
    if (d == 0 || !isfinite(d)) return;
    cand c;
    eval(x, w, s, d, false, &c);
    c.t = t;
    int k;
    if (*nbest < KEEP) k = (*nbest)++;
    else if (c.err < best[KEEP - 1].err) k = KEEP - 1;
    else return;
    while (k > 0 && c.err < best[k - 1].err) {
        best[k] = best[k - 1];
        k--;
    }
    best[k] = c;
}

/* Smelt: each group's best continuous scale (iq4_group_scale); then factors that put the
 * largest of them on rungs -32 .. -24 or 24 .. 31 (rounded to f16), and quarter rungs
 * around the best, each scored with every group on its nearest rung; the best KEEP again
 * with each group also trying the rungs either side; llama.cpp's block when that is
 * better. */
static void enc_block(const float *x, const float *w, const float *qw, void *dst)
{
    smelt_block_iq4_xs *y = dst, ll;
    uint8_t Lt[QK];
    iq4_llama_block(NG, x, qw, 7, Lt, &ll.d, ll.qs, &ll.scales_h, ll.scales_l);
    float s[NG], A = 0;
    for (int j = 0; j < NG; j++) {
        s[j] = iq4_group_scale(x + IQ4_GROUP * j, w + IQ4_GROUP * j);
        if (fabsf(s[j]) > fabsf(A)) A = s[j];
    }
    *y = ll;
    if (A == 0) return;
    cand best[KEEP], tmp;
    int nbest = 0;
    for (int t = -32; t <= 31; t++)
        if (t <= -24 || t >= 24) consider(x, w, s, A, (float)t, best, &nbest);
    float t0 = nbest ? best[0].t : 0;
    for (int k = -3; nbest && k <= 3; k += 2) consider(x, w, s, A, t0 + 0.25f * (float)k, best, &nbest);
    if (nbest == 0) return;
    cand fin = best[0];
    for (int k = 0; k < nbest; k++) {
        eval(x, w, s, best[k].d, true, &tmp);
        if (tmp.err < fin.err) fin = tmp;
    }
    smelt_block_iq4_xs mine;
    put(&fin, &mine);
    float ym[QK], yl[QK];
    deq_iq4_xs(&mine, ym, QK);
    deq_iq4_xs(&ll, yl, QK);
    if (iq4_error(x, ym, w, QK) <= iq4_error(x, yl, w, QK)) *y = mine;
}

static const iq4_type k_type = {QK, sizeof(smelt_block_iq4_xs), enc_block, ref_iq4_xs, deq_iq4_xs};

const smelt_qtype_ops smelt_iq4_xs_ops = {
    .type = SMELT_TYPE_IQ4_XS,
    .dequantize = deq_iq4_xs,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq4_xs,
    .encode_cost = 10,
};

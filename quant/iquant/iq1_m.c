/* iq1_m.c — IQ1_M: super-blocks of 256, runs of 8 on the 2048-point {-1, 0, 1} codebook
 * of IQ1_S, a shift sign per run, a 3-bit scale per 16, the f16 factor spread over the
 * scales' top nibbles (layout in iq1.h). Decoder, llama.cpp's encoder (the candidate
 * smelt's encoder must never do worse than; ggml has no reference encoder), smelt's encoder
 * and the type's descriptor. Includes quant/ only. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "iq1.h"

#define QK 256
#define GS 16 /* elements per scale */

static inline unsigned sc16(const smelt_block_iq1_m *b, int u)
{
    return (unsigned)b->scales[2 * u] | (unsigned)b->scales[2 * u + 1] << 8;
}

/* The f16 factor from the scales' top nibbles. */
static float get_d(const smelt_block_iq1_m *b)
{
    unsigned dh = sc16(b, 0) >> 12 | (sc16(b, 1) >> 8 & 0xf0) | (sc16(b, 2) >> 4 & 0xf00) | (sc16(b, 3) & 0xf000);
    uint8_t h[2] = {(uint8_t)dh, (uint8_t)(dh >> 8)};
    return q_f16(h);
}

static void put_d(smelt_block_iq1_m *b, float d)
{
    unsigned dh = smelt_f32_to_f16(d);
    for (int u = 0; u < 4; u++) b->scales[2 * u + 1] = (uint8_t)((b->scales[2 * u + 1] & 15) | ((dh >> 4 * u) & 15) << 4);
}

/* Unbiased rows: the factor times c, unless that leaves f16's range. */
static void scale_d(void *blk, double c)
{
    float v = (float)(get_d(blk) * c);
    if (fabsf(v) <= 65504.0f) put_d(blk, v);
}

static void deq_iq1_m(const void *src, float *y, size_t n)
{
    const iqg_grid *g = iqg_get(IQG_1S);
    const smelt_block_iq1_m *b = src;
    for (size_t i = 0; i < n / QK; i++, b++) {
        float d = get_d(b);
        for (int h = 0; h < 16; h++) {
            float dl = d * (float)(2 * ((sc16(b, h / 4) >> 3 * (h % 4)) & 7) + 1);
            for (int r = 0; r < 2; r++, y += 8) {
                unsigned q = (unsigned)b->qh[h] >> 4 * r;
                iq1_run(g, b->qs[2 * h + r] | (int)(q & 7) << 8, dl, q & 8 ? -IQ1_DELTA : IQ1_DELTA, y);
            }
        }
    }
}

static void pack(const iq1_choice *c, void *dst)
{
    smelt_block_iq1_m *y = dst;
    memset(y, 0, sizeof *y);
    unsigned sc[4] = {0};
    for (int h = 0; h < 16; h++) {
        sc[h / 4] |= (unsigned)c->l[h] << 3 * (h % 4);
        for (int r = 0; r < 2; r++) {
            int k = 2 * h + r;
            y->qs[k] = (uint8_t)(c->pt[k] & 255);
            y->qh[h] |= (uint8_t)(((c->pt[k] >> 8) | (unsigned)c->neg[k] << 3) << 4 * r);
        }
    }
    for (int u = 0; u < 4; u++) {
        y->scales[2 * u] = (uint8_t)sc[u];
        y->scales[2 * u + 1] = (uint8_t)(sc[u] >> 8);
    }
    put_d(y, c->d);
}

/* ==== llama.cpp's encoder ====
 * Per group of 16 (weights qw * sqrt(2 mean(x^2) + x^2), x^2 without qw): the values
 * sorted, every split into levels -1 / 0 / 1 with the four shift pairs of its two runs
 * scored by least squares (sums in llama.cpp's order), the best split's runs moved to the
 * grid; the factor maps the largest scale on 15, then is refitted by least squares over the
 * whole block and stored times 1.1125. */
static void llama_block(const float *x, const float *qw, iq1_choice *c)
{
    const iqg_grid *g = iqg_get(IQG_1S);
    const float *xp = iq1_lev[0], *xm = iq1_lev[1];
    float scales[16], max_scale = 0, sumx2 = 0, w[GS];
    memset(c, 0, sizeof *c);
    for (int i = 0; i < QK; i++) sumx2 += x[i] * x[i];
    float sigma2 = 2 * sumx2 / QK;
    for (int ib = 0; ib < 16; ib++) {
        const float *xb = x + GS * ib;
        float max = fabsf(xb[0]);
        int idx[GS];
        int8_t L[GS];
        for (int i = 0; i < GS; i++) w[i] = qw ? qw[GS * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
        for (int i = 1; i < GS; i++) max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
        scales[ib] = 0;
        if (max < 1e-7f) continue; /* shifts +1/8, points 0 */
        iq1_sort(xb, GS, idx);
        float best = -FLT_MAX, scale = max;
        int b1 = -1, b2 = -1, bk = -1;
        for (int i1 = 0; i1 <= GS; i1++)
            for (int i2 = i1; i2 <= GS; i2++) {
                /* k: shift of the first run (bit 1: minus), of the second (bit 0) */
                float sqx[4] = {0}, sq2[4] = {0};
                for (int j = 0; j < GS; j++) {
                    int i = idx[j], lv = j < i1 ? 0 : j < i2 ? 1 : 2;
                    float wp = w[i] * xp[lv], wm = w[i] * xm[lv];
                    float ap = wp * xb[i], am = wm * xb[i], bp = wp * xp[lv], bm = wm * xm[lv];
                    bool second = i >= GS / 2;
                    sqx[0] += ap;
                    sqx[1] += second ? am : ap;
                    sqx[2] += second ? ap : am;
                    sqx[3] += am;
                    sq2[0] += bp;
                    sq2[1] += second ? bm : bp;
                    sq2[2] += second ? bp : bm;
                    sq2[3] += bm;
                }
                for (int k = 0; k < 4; k++)
                    if (sq2[k] > 0 && sqx[k] * sqx[k] > best * sq2[k]) {
                        scale = sqx[k] / sq2[k];
                        best = scale * sqx[k];
                        b1 = i1;
                        b2 = i2;
                        bk = k;
                    }
            }
        if (b1 < 0 || b2 < 0 || bk < 0) continue;
        for (int j = 0; j < GS; j++) L[idx[j]] = (int8_t)(j < b1 ? 0 : j < b2 ? 1 : 2);
        if (scale < 0) {
            for (int j = 0; j < GS; j++) L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            bk = 3 - bk;
        }
        bool all_on = true, on;
        c->neg[2 * ib] = bk >= 2;
        c->neg[2 * ib + 1] = bk % 2;
        for (int k = 0; k < 2; k++) {
            c->pt[2 * ib + k] = (uint16_t)iq1_llama_point(g, xb + 8 * k, w + 8 * k, scale, iq1_lev[c->neg[2 * ib + k]],
                                                          L + 8 * k, &on);
            all_on = all_on && on;
        }
        if (!all_on) scale = iq1_llama_refit_scale(g, c->pt + 2 * ib, c->neg + 2 * ib, 2, xb, w, scale);
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(c, 0, sizeof *c);
        return;
    }
    float d = max_scale / 15, id = 1 / d, sqx = 0, sq2 = 0;
    for (int ib = 0; ib < 16; ib++) {
        int l = q_clampi(q_nearest(0.5f * (id * scales[ib] - 1)), 0, 7);
        c->l[ib] = (uint8_t)l;
        const float *xb = x + GS * ib;
        for (int i = 0; i < GS; i++) w[i] = qw ? qw[GS * ib + i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
        iq1_llama_sums(g, c->pt + 2 * ib, c->neg + 2 * ib, 2, xb, w, (float)(2 * l + 1), &sqx, &sq2);
    }
    if (sq2 > 0) d = sqx / sq2;
    c->d = q_as_f16(d * 1.1125f);
}

static const iq1_type k_iq1 = {GS, true, sizeof(smelt_block_iq1_m), llama_block, pack, deq_iq1_m};

/* llama.cpp's encoder without importance (ggml_quantize_chunk with no imatrix). */
static void ref_iq1_m(const float *x, void *dst, int64_t k) { iq1_llama_rows(&k_iq1, x, dst, k); }

/* ==== smelt's encoder ==== */

static void enc_block(const float *x, const float *w, const float *qw, void *dst) { iq1_encode(&k_iq1, x, w, qw, dst); }

static const iq4_type k_type = {QK, sizeof(smelt_block_iq1_m), enc_block, ref_iq1_m, deq_iq1_m, NULL, scale_d};

const smelt_qtype_ops smelt_iq1_m_ops = {
    .type = SMELT_TYPE_IQ1_M,
    .dequantize = deq_iq1_m,
    .rows_encoder = &k_type,
    .quantize_ref = ref_iq1_m,
    .encode_cost = 40,
};

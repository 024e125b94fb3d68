/* test_qerr.c — error models (quant/qtypes.h smelt_qerr, `quantize_err`):
 *   - the zero model is the plain encoder, byte for byte;
 *   - every kernel set gives the same bytes under the tuned models;
 *   - each encoder minimizes the error it claims: on the sample model's weights, the
 *     model-weighted error of `quantize_err` is lower than the plain encoder's, and the
 *     plain squared error of `quantize` is lower than the model encoder's;
 *   - an unbiased model rescales each row to a weighted projection of 1 on its source row,
 *     touching only the super-block factors;
 *   - the tuned table covers the types docs/quantize.md lists, and no others. */
#include <inttypes.h>
#include <stddef.h>

#include "tests/common/qtypes_oracle.h"
#include "quant/iquant/iq1.h"
#include "quant/iquant/iquant.h"
#include "quant/kquant/kquant.h"
#include "quant/legacy/legacy.h"

#define NR (64 * 512)

static int *err_types(size_t *n)
{
    size_t k = smelt_q_n_types(), m = 0;
    int *p = cr_malloc(k * sizeof(int));
    for (size_t i = 0; i < k; i++) {
        int t = smelt_q_type_at(i);
        if (smelt_qtype_has_error_models(smelt_q_ops(t))) p[m++] = t;
    }
    *n = m;
    return p;
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* The weight of each element under model m, written out from the definition in qtypes.h
 * (imx NULL = ones; the block is the type's block). */
static void model_weights(const float *x, size_t n, size_t blck, const float *imx, size_t cols, const smelt_qerr *m,
                          float *w)
{
    double mean = 0;
    if (imx) {
        for (size_t c = 0; c < cols; c++) mean += imx[c];
        mean /= (double)cols;
    }
    for (size_t b = 0; b < n; b += blck) {
        double s2 = 0;
        for (size_t i = b; i < b + blck; i++) s2 += (double)x[i] * x[i];
        s2 /= (double)blck;
        for (size_t i = b; i < b + blck; i++) {
            double base = imx ? imx[i % cols] + m->a * mean : 1;
            w[i] = (float)(base * pow(m->c * s2 + (double)x[i] * x[i], 0.5 * m->p));
        }
    }
}

static double werr(const float *x, const float *y, const float *w, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        e += (w ? w[i] : 1) * d * d;
    }
    return e;
}

ParameterizedTestParameters(qerr, zero_model_is_plain)
{
    size_t n;
    int *p = err_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

ParameterizedTest(int *type, qerr, zero_model_is_plain)
{
    int t = *type;
    const smelt_qtype_ops *o = smelt_q_ops(t);
    const smelt_qerr zero = {0, 0, 0};
    float *x = malloc(NR * sizeof(float)), imx[512];
    size_t nb = qt_bytes(t, NR);
    uint8_t *a = malloc(nb), *b = malloc(nb), *c = malloc(nb);
    qt_imatrix(imx, 512, 5);
    for (int k = 0; k < QT_N_KINDS; k++) {
        qt_fill(x, NR, k, 700 + (uint64_t)k);
        for (int w = 0; w < 2; w++) {
            smelt_qtype_quantize(o, x, a, NR / 512, 512, w ? imx : NULL, NULL);
            smelt_qtype_quantize(o, x, b, NR / 512, 512, w ? imx : NULL, &zero);
            smelt_qtype_quantize(o, x, c, NR / 512, 512, w ? imx : NULL, NULL);
            cr_expect(first_diff(a, b, nb) == nb, "%s on %s data%s: the zero model differs from plain at byte %zu",
                      qt_name(t), qt_kind_name(k), w ? " (imatrix)" : "", first_diff(a, b, nb));
            cr_expect(first_diff(a, c, nb) == nb, "%s on %s data: a NULL model differs from plain", qt_name(t),
                      qt_kind_name(k));
        }
    }
    free(x);
    free(a);
    free(b);
    free(c);
}

ParameterizedTestParameters(qerr, avx2_matches_portable)
{
    size_t n;
    int *p = err_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

ParameterizedTest(int *type, qerr, avx2_matches_portable)
{
    int t = *type;
    const smelt_qtype_ops *p = smelt_q_ops_isa(t, SMELT_ISA_PORTABLE), *v = smelt_q_ops_isa(t, SMELT_ISA_AVX2);
    if (!v) cr_skip_test("this CPU cannot run the AVX2 kernels");
    if (p->quantize_err == v->quantize_err)
        cr_skip_test("%s has no AVX2 encoder (the same function serves both sets)", qt_name(t));
    const smelt_qerr models[] = {{2, 1, 0}, {1, 0.5f, 0.7f}, {2, 0.25f, 1}, {1, 1, 0.5f, false, true}};
    float *x = malloc(NR * sizeof(float)), imx[512];
    size_t nb = qt_bytes(t, NR);
    uint8_t *a = malloc(nb), *b = malloc(nb);
    qt_imatrix(imx, 512, 6);
    for (int k = 0; k < QT_N_KINDS; k++) {
        qt_fill(x, NR, k, 800 + (uint64_t)k);
        for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
            for (int w = 0; w < 2; w++) {
                smelt_qtype_quantize(p, x, a, NR / 512, 512, w ? imx : NULL, &models[m]);
                smelt_qtype_quantize(v, x, b, NR / 512, 512, w ? imx : NULL, &models[m]);
                cr_expect(first_diff(a, b, nb) == nb, "%s model %zu on %s data%s: AVX2 differs at byte %zu",
                          qt_name(t), m, qt_kind_name(k), w ? " (imatrix)" : "", first_diff(a, b, nb));
            }
    }
    free(x);
    free(a);
    free(b);
}

ParameterizedTestParameters(qerr, minimizes_its_error)
{
    size_t n;
    int *p = err_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

ParameterizedTest(int *type, qerr, minimizes_its_error)
{
    int t = *type;
    const smelt_qtype_ops *o = smelt_q_ops(t);
    qt_matrix *mats;
    size_t nm = qt_sample_matrices(&mats);
    if (!nm) cr_skip_test("samples/tiny-mixtral not found");
    const smelt_qerr m = {2, 1, 0}; /* weights (s2 + x^2): far enough from plain to tell */
    double e_plain[2] = {0}, e_model[2] = {0}; /* [0] plain error, [1] model error */
    for (size_t j = qt_sample_stride(t) / 2; j < nm; j += qt_sample_stride(t)) {
        size_t n = (size_t)(mats[j].rows * mats[j].cols), nb = qt_bytes(t, n);
        if (mats[j].cols % qt_blck(t)) continue;
        uint8_t *q = malloc(nb);
        float *y = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
        model_weights(mats[j].x, n, qt_blck(t), NULL, (size_t)mats[j].cols, &m, w);
        smelt_qtype_quantize(o, mats[j].x, q, mats[j].rows, mats[j].cols, NULL, NULL);
        o->dequantize(q, y, n);
        e_plain[0] += werr(mats[j].x, y, NULL, n);
        e_plain[1] += werr(mats[j].x, y, w, n);
        smelt_qtype_quantize(o, mats[j].x, q, mats[j].rows, mats[j].cols, NULL, &m);
        o->dequantize(q, y, n);
        e_model[0] += werr(mats[j].x, y, NULL, n);
        e_model[1] += werr(mats[j].x, y, w, n);
        free(q);
        free(y);
        free(w);
    }
    qt_free_matrices(mats, nm);
    cr_log_info("%s: plain encoder: SE %.6g, model error %.6g | model encoder: SE %.6g, model error %.6g", qt_name(t),
                e_plain[0], e_plain[1], e_model[0], e_model[1]);
    cr_expect(e_model[1] < e_plain[1], "%s: the model encoder's model error %.6g is not below the plain encoder's %.6g",
              qt_name(t), e_model[1], e_plain[1]);
    /* Magnitude weights alone use the same search as no weights, so the plain encoder must
     * win on plain error. */
    cr_expect(e_plain[0] < e_model[0], "%s: the plain encoder's squared error %.6g is not below the model encoder's %.6g",
              qt_name(t), e_plain[0], e_model[0]);
}

/* The bytes of a block that hold the f16 factors scaling the whole block: positions, count. */
static int kq_factor_bytes(int t, size_t pos[4])
{
    size_t off[2];
    int n;
    switch (t) {
    case SMELT_TYPE_Q4_0: off[0] = offsetof(smelt_block_q4_0, d), n = 1; break;
    case SMELT_TYPE_Q5_0: off[0] = offsetof(smelt_block_q5_0, d), n = 1; break;
    case SMELT_TYPE_Q4_1: off[0] = offsetof(smelt_block_q4_1, d), off[1] = offsetof(smelt_block_q4_1, m), n = 2; break;
    case SMELT_TYPE_Q5_1: off[0] = offsetof(smelt_block_q5_1, d), off[1] = offsetof(smelt_block_q5_1, m), n = 2; break;
    case SMELT_TYPE_Q2_K: off[0] = offsetof(smelt_block_q2_K, d), off[1] = offsetof(smelt_block_q2_K, dmin), n = 2; break;
    case SMELT_TYPE_Q3_K: off[0] = offsetof(smelt_block_q3_K, d), n = 1; break;
    case SMELT_TYPE_Q4_K: off[0] = offsetof(smelt_block_q4_K, d), off[1] = offsetof(smelt_block_q4_K, dmin), n = 2; break;
    case SMELT_TYPE_Q5_K: off[0] = offsetof(smelt_block_q5_K, d), off[1] = offsetof(smelt_block_q5_K, dmin), n = 2; break;
    case SMELT_TYPE_Q6_K: off[0] = offsetof(smelt_block_q6_K, d), n = 1; break;
    case SMELT_TYPE_IQ4_NL: off[0] = offsetof(smelt_block_iq4_nl, d), n = 1; break;
    case SMELT_TYPE_IQ1_S: off[0] = offsetof(smelt_block_iq1_s, d), n = 1; break;
    case SMELT_TYPE_IQ1_M: /* the top nibbles of the four 16-bit scale words (bytes shared with scales) */
        for (int u = 0; u < 4; u++) pos[u] = offsetof(smelt_block_iq1_m, scales) + 2 * (size_t)u + 1;
        return 4;
    default: return 0;
    }
    for (int f = 0; f < n; f++) pos[2 * f] = off[f], pos[2 * f + 1] = off[f] + 1;
    return 2 * n;
}

/* Not IQ4_XS: on the sample its super-block factor d (about a group scale / 32) lies in f16's
 * subnormal range, so a rescaled d is rounded far more coarsely than the 2^-11 the
 * expectations below allow; it unbiases, but only to about 5e-4. */
ParameterizedTestParameters(qerr, unbias)
{
    static int kq[] = {SMELT_TYPE_Q4_0, SMELT_TYPE_Q4_1, SMELT_TYPE_Q5_0, SMELT_TYPE_Q5_1, SMELT_TYPE_Q2_K,
                       SMELT_TYPE_Q3_K, SMELT_TYPE_Q4_K, SMELT_TYPE_Q5_K, SMELT_TYPE_Q6_K, SMELT_TYPE_IQ4_NL,
                       SMELT_TYPE_IQ1_S, SMELT_TYPE_IQ1_M};
    return cr_make_param_array(int, kq, sizeof kq / sizeof kq[0]);
}

/* Weighted projection sum a x y / sum a x x of row r. */
static double projection(const float *x, const float *y, const float *a, size_t cols)
{
    double xy = 0, xx = 0;
    for (size_t i = 0; i < cols; i++) {
        double w = a ? a[i] : 1;
        xy += w * x[i] * y[i];
        xx += w * x[i] * x[i];
    }
    return xy / xx;
}

ParameterizedTest(int *type, qerr, unbias)
{
    int t = *type;
    const smelt_qtype_ops *o = smelt_q_ops(t);
    size_t pos[4];
    int nf = kq_factor_bytes(t, pos), bb = (int)smelt_type_get(t)->bytes;
    qt_matrix *mats;
    size_t nm = qt_sample_matrices(&mats);
    if (!nm) cr_skip_test("samples/tiny-mixtral not found");
    const smelt_qerr m = {1, 1, 0, false, false}, mu = {1, 1, 0, false, true};
    float imx[4096];
    double shrink = 0, dev = 0, devu = 0, worst = 0;
    size_t rows = 0;
    for (size_t j = qt_sample_stride(t) / 2; j < nm; j += qt_sample_stride(t)) {
        size_t cols = (size_t)mats[j].cols, n = (size_t)mats[j].rows * cols, nb = qt_bytes(t, n);
        cr_assert(cols <= 4096);
        qt_imatrix(imx, cols, 40 + j);
        for (int w = 0; w < 2; w++) {
            const float *a = w ? imx : NULL;
            uint8_t *q = malloc(nb), *qu = malloc(nb);
            float *y = malloc(n * sizeof(float)), *yu = malloc(n * sizeof(float));
            smelt_qtype_quantize(o, mats[j].x, q, mats[j].rows, mats[j].cols, a, &m);
            smelt_qtype_quantize(o, mats[j].x, qu, mats[j].rows, mats[j].cols, a, &mu);
            o->dequantize(q, y, n);
            o->dequantize(qu, yu, n);
            for (size_t b = 0; b < nb; b++) { /* only the factors may differ */
                int k = (int)(b % (size_t)bb), factor = 0;
                for (int f = 0; f < nf; f++) factor |= k == (int)pos[f];
                if (!factor && q[b] != qu[b])
                    cr_assert_fail("%s %s: unbiasing changed byte %d of block %zu, which is not a factor", qt_name(t),
                                   mats[j].name, k, b / (size_t)bb);
            }
            for (size_t r = 0; r < (size_t)mats[j].rows; r++, rows++) {
                double p = projection(mats[j].x + r * cols, y + r * cols, a, cols);
                double pu = projection(mats[j].x + r * cols, yu + r * cols, a, cols);
                shrink += 1 - p;
                dev += fabs(p - 1);
                devu += fabs(pu - 1);
                if (fabs(pu - 1) > worst) worst = fabs(pu - 1);
            }
            free(q);
            free(qu);
            free(y);
            free(yu);
        }
    }
    qt_free_matrices(mats, nm);
    shrink /= (double)rows, dev /= (double)rows, devu /= (double)rows;
    cr_log_info("%s: biased rows: mean shrinkage %.2e, mean |projection - 1| %.2e; unbiased: %.2e (worst %.2e)",
                qt_name(t), shrink, dev, devu, worst);
    cr_expect(shrink > 0, "%s: error-minimizing rows should be shrunk (mean %.3g)", qt_name(t), shrink);
    cr_expect(worst < 1e-2, "%s: an unbiased row's projection is off 1 by %.3g", qt_name(t), worst);
    /* For the types the tuned models unbias, what is left is the f16 rounding of the factors
     * (2^-11 of each; where d and dmin scale opposite terms a few rows get more). Q5_K and
     * Q6_K shrink less than that rounding: unbiasing them is noise. */
    if (shrink > 1e-3) {
        cr_expect(devu < 3e-4, "%s: unbiased rows are off a projection of 1 by %.3g on average", qt_name(t), devu);
        cr_expect(devu < dev / 4, "%s: unbiasing left %.3g of a %.3g deviation", qt_name(t), devu, dev);
    }
}

Test(qerr, tuned_table)
{
    /* The defaults follow the decision table in docs/quantize.md ("Error models"): a model is
     * kept only where it beat the plain error on every validation text. */
    static const smelt_qerr_role roles[] = {SMELT_QERR_NOIMATRIX, SMELT_QERR_IMATRIX, SMELT_QERR_EMBEDDING};
    static const char *const role_name[] = {"", " (no imatrix)", " (imatrix)", " (embedding)"};
    static const int with[] = {SMELT_TYPE_Q2_K, SMELT_TYPE_Q3_K};
    for (size_t i = 0; i < sizeof with / sizeof with[0]; i++) {
        cr_expect(smelt_qtype_has_error_models(smelt_q_ops(with[i])), "%s: a tuned model but no error models", qt_name(with[i]));
        for (size_t r = 0; r < 3; r++) {
            const smelt_qerr *m = smelt_q_tuned_err(with[i], roles[r]);
            cr_expect(m && m->p > 0 && m->unbias, "%s%s: expected a magnitude model with unbiased rows", qt_name(with[i]),
                      role_name[roles[r]]);
        }
    }
    for (size_t r = 0; r < 3; r++) {
        const smelt_qerr *q8 = smelt_q_tuned_err(SMELT_TYPE_Q8_0, roles[r]);
        cr_expect(q8 && q8->ref, "Q8_0%s: ggml's reference encoding", role_name[roles[r]]);
    }
    cr_expect(smelt_q_ops(SMELT_TYPE_Q8_0)->quantize_ref, "Q8_0 has a reference encoder");
    const smelt_qerr *q41 = smelt_q_tuned_err(SMELT_TYPE_Q4_1, SMELT_QERR_IMATRIX);
    cr_expect(q41 && q41->p == 0 && q41->a == 0 && !q41->ref && q41->unbias, "Q4_1 with an imatrix: plain error, unbiased rows");
    cr_expect(smelt_q_tuned_err(SMELT_TYPE_Q4_1, SMELT_QERR_NOIMATRIX) == NULL, "Q4_1 without an imatrix is plain");
    cr_expect(smelt_q_tuned_err(SMELT_TYPE_Q4_1, SMELT_QERR_EMBEDDING) == NULL, "Q4_1's token embedding is plain");
    static const int without[] = {SMELT_TYPE_F32,  SMELT_TYPE_F16,  SMELT_TYPE_BF16, SMELT_TYPE_Q4_0, SMELT_TYPE_Q5_0,
                                  SMELT_TYPE_Q5_1, SMELT_TYPE_Q4_K, SMELT_TYPE_Q5_K, SMELT_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof without / sizeof without[0]; i++)
        for (size_t r = 0; r < 3; r++)
            cr_expect(smelt_q_tuned_err(without[i], roles[r]) == NULL, "%s%s: expected plain", qt_name(without[i]),
                      role_name[roles[r]]);
}

/* The legacy types rescale a row from the factors they kept while encoding it when the row
 * has up to 2048 blocks, and re-read the f16 factors beyond that; both paths, and a row
 * whose block count is not a multiple of 8, give an unbiased projection, and AVX2 equals
 * the portable path byte for byte. */
ParameterizedTestParameters(qerr, unbias_row_lengths)
{
    static int lt[] = {SMELT_TYPE_Q4_0, SMELT_TYPE_Q4_1};
    return cr_make_param_array(int, lt, sizeof lt / sizeof lt[0]);
}

ParameterizedTest(int *type, qerr, unbias_row_lengths)
{
    int t = *type;
    const smelt_qtype_ops *o = smelt_q_ops(t), *p = smelt_q_ops_isa(t, SMELT_ISA_PORTABLE),
                          *v = smelt_q_ops_isa(t, SMELT_ISA_AVX2);
    const smelt_qerr mu = {0, 0, 0, false, true};
    static const int64_t shapes[][2] = {{24, 352}, {2, 65536}, {2, 65632}}; /* rows, cols */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)(rows * cols), nb = qt_bytes(t, n);
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *imx = malloc((size_t)cols * sizeof(float));
        uint8_t *a = malloc(nb), *b = malloc(nb);
        qt_fill(x, n, QT_NORMAL, 900 + s);
        qt_imatrix(imx, (size_t)cols, 77 + s);
        for (int w = 0; w < 2; w++) {
            const float *im = w ? imx : NULL;
            smelt_qtype_quantize(o, x, a, rows, cols, im, NULL);
            o->dequantize(a, y, n);
            double dev = 0, devu = 0, worst = 0;
            for (int64_t r = 0; r < rows; r++)
                dev += fabs(projection(x + r * cols, y + r * cols, im, (size_t)cols) - 1);
            smelt_qtype_quantize(o, x, a, rows, cols, im, &mu);
            o->dequantize(a, y, n);
            for (int64_t r = 0; r < rows; r++) {
                double d = fabs(projection(x + r * cols, y + r * cols, im, (size_t)cols) - 1);
                devu += d;
                if (d > worst) worst = d;
            }
            cr_expect(worst < 1e-3, "%s, rows of %" PRId64 "%s: an unbiased row's projection is off 1 by %.3g",
                      qt_name(t), cols, w ? " (imatrix)" : "", worst);
            cr_expect(devu < dev / 4, "%s, rows of %" PRId64 "%s: unbiasing left %.3g of a %.3g deviation", qt_name(t),
                      cols, w ? " (imatrix)" : "", devu / (double)rows, dev / (double)rows);
            if (v) {
                smelt_qtype_quantize(p, x, a, rows, cols, im, &mu);
                smelt_qtype_quantize(v, x, b, rows, cols, im, &mu);
                cr_expect(first_diff(a, b, nb) == nb, "%s, rows of %" PRId64 "%s: AVX2 differs at byte %zu",
                          qt_name(t), cols, w ? " (imatrix)" : "", first_diff(a, b, nb));
            }
        }
        free(x), free(y), free(imx), free(a), free(b);
    }
}

/* test_qerr.c — error models (quant/qtypes.h smelt_qerr, `quantize_err`):
 *   - the zero model is the plain encoder, byte for byte;
 *   - every kernel set gives the same bytes under the tuned models;
 *   - each encoder minimizes the error it claims: on the sample model's weights, the
 *     model-weighted error of `quantize_err` is lower than the plain encoder's, and the
 *     plain squared error of `quantize` is lower than the model encoder's;
 *   - the tuned table covers the types docs/quantize.md lists, and no others. */
#include "qtest.h"

#define NR (64 * 512)

static int *err_types(size_t *n)
{
    size_t k = smelt_q_n_types(), m = 0;
    int *p = cr_malloc(k * sizeof(int));
    for (size_t i = 0; i < k; i++) {
        int t = smelt_q_type_at(i);
        if (smelt_q_ops(t)->quantize_err) p[m++] = t;
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
            o->quantize(x, a, NR / 512, 512, w ? imx : NULL);
            o->quantize_err(x, b, NR / 512, 512, w ? imx : NULL, &zero);
            o->quantize_err(x, c, NR / 512, 512, w ? imx : NULL, NULL);
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
    const smelt_qerr models[] = {{2, 1, 0}, {1, 0.5f, 0.7f}, {2, 0.25f, 1}};
    float *x = malloc(NR * sizeof(float)), imx[512];
    size_t nb = qt_bytes(t, NR);
    uint8_t *a = malloc(nb), *b = malloc(nb);
    qt_imatrix(imx, 512, 6);
    for (int k = 0; k < QT_N_KINDS; k++) {
        qt_fill(x, NR, k, 800 + (uint64_t)k);
        for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
            for (int w = 0; w < 2; w++) {
                p->quantize_err(x, a, NR / 512, 512, w ? imx : NULL, &models[m]);
                v->quantize_err(x, b, NR / 512, 512, w ? imx : NULL, &models[m]);
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
    for (size_t j = 0; j < nm; j++) {
        size_t n = (size_t)(mats[j].rows * mats[j].cols), nb = qt_bytes(t, n);
        if (mats[j].cols % qt_blck(t)) continue;
        uint8_t *q = malloc(nb);
        float *y = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
        model_weights(mats[j].x, n, qt_blck(t), NULL, (size_t)mats[j].cols, &m, w);
        o->quantize(mats[j].x, q, mats[j].rows, mats[j].cols, NULL);
        o->dequantize(q, y, n);
        e_plain[0] += werr(mats[j].x, y, NULL, n);
        e_plain[1] += werr(mats[j].x, y, w, n);
        o->quantize_err(mats[j].x, q, mats[j].rows, mats[j].cols, NULL, &m);
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

Test(qerr, tuned_table)
{
    /* the types with a tuned model (docs/quantize.md, "Error models") */
    static const int with[] = {SMELT_TYPE_Q2_K, SMELT_TYPE_Q3_K, SMELT_TYPE_Q4_K, SMELT_TYPE_Q5_K};
    for (size_t i = 0; i < sizeof with / sizeof with[0]; i++) {
        const smelt_qerr *m = smelt_q_tuned_err(with[i], false);
        cr_expect(m && m->p > 0, "%s: expected a tuned model without an imatrix", qt_name(with[i]));
        cr_expect(smelt_q_ops(with[i])->quantize_err, "%s: a tuned model but no quantize_err", qt_name(with[i]));
    }
    for (int w = 0; w < 2; w++) {
        const smelt_qerr *q8 = smelt_q_tuned_err(SMELT_TYPE_Q8_0, w);
        cr_expect(q8 && q8->ref, "Q8_0%s: ggml's reference encoding", w ? " (imatrix)" : "");
        cr_expect(smelt_q_ops(SMELT_TYPE_Q8_0)->quantize_ref, "Q8_0 has a reference encoder");
    }
    cr_expect(smelt_q_tuned_err(SMELT_TYPE_Q6_K, false) == NULL, "Q6_K without an imatrix is plain");
    const smelt_qerr *q6 = smelt_q_tuned_err(SMELT_TYPE_Q6_K, true);
    cr_expect(q6 && q6->p == 0 && q6->a > 0, "Q6_K with an imatrix: a lifted imatrix, no magnitude term");
    const smelt_qerr *q5 = smelt_q_tuned_err(SMELT_TYPE_Q5_0, false);
    cr_expect(q5 && q5->ref, "Q5_0 without an imatrix: ggml's reference encoding");
    cr_expect(smelt_q_tuned_err(SMELT_TYPE_Q5_0, true) == NULL, "Q5_0 with an imatrix is plain");
    static const int without[] = {SMELT_TYPE_F32, SMELT_TYPE_F16, SMELT_TYPE_BF16, SMELT_TYPE_Q4_0,
                                  SMELT_TYPE_Q4_1, SMELT_TYPE_Q5_1};
    for (size_t i = 0; i < sizeof without / sizeof without[0]; i++)
        for (int w = 0; w < 2; w++)
            cr_expect(smelt_q_tuned_err(without[i], w) == NULL, "%s%s: expected plain", qt_name(without[i]),
                      w ? " (imatrix)" : "");
}

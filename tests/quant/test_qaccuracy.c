/* test_qaccuracy.c — smelt's encoders are at least as accurate as llama.cpp's
 * ggml_quantize_chunk, tensor by tensor, for every type (parameterized over the table):
 *   - without an imatrix: RMSE of the decoded weights;
 *   - with one: the importance-weighted RMSE, sqrt(sum_j w_j (x - xhat)^2 / sum_j w_j),
 *     w = per-column importance (a synthetic, realistically skewed imatrix: mean squared
 *     activations with log-normal channel scales and outlier channels).
 * On every 2-D weight of samples/tiny-mixtral and on synthetic matrices of several
 * shapes of distribution. Each test logs the mean and worst ratio smelt/ggml per type
 * (and appends them to $SMELT_QUANT_REPORT when set). */
#include "tests/common/qtypes_oracle.h"

#if defined(__SANITIZE_ADDRESS__)
#define ROW_STEP 8 /* sanitizer builds: every 8th row, to keep `make check` quick */
#else
#define ROW_STEP 1
#endif

typedef struct {
    double sum_ratio, worst;
    char worst_name[160];
    int n;
} ratios;

static void add_ratio(ratios *r, double v, const char *name)
{
    r->sum_ratio += v;
    r->n++;
    if (v > r->worst || r->n == 1) {
        r->worst = v;
        snprintf(r->worst_name, sizeof r->worst_name, "%s", name);
    }
}

static void report(int t, const char *what, const ratios *plain, const ratios *imx)
{
    char line[600];
    snprintf(line, sizeof line,
             "%-5s %-14s RMSE ratio smelt/ggml: mean %.4f worst %.4f (%s) | weighted: mean %.4f worst %.4f (%s) | "
             "%d tensors",
             qt_name(t), what, plain->n ? plain->sum_ratio / plain->n : NAN, plain->worst, plain->worst_name, imx->sum_ratio / imx->n,
             imx->worst, imx->worst_name, imx->n);
    cr_log_info("%s", line);
    const char *path = getenv("SMELT_QUANT_REPORT");
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f, "%s\n", line);
            fclose(f);
        }
    }
}

/* Weighted squared error of a decoded matrix (w NULL: unweighted) and the weight sum. */
static double sq_err(const float *x, const float *y, int64_t rows, int64_t cols, const float *w, double *wsum)
{
    double e = 0, s = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)x[r * cols + c] - y[r * cols + c], wc = w ? w[c] : 1;
            e += wc * d * d;
            s += wc;
        }
    *wsum = s;
    return e;
}

/* Quantize one matrix both ways, with and without weights; expect smelt <= ggml. */
static void compare(int t, const char *name, const float *x, int64_t rows, int64_t cols, const float *imx,
                    ratios *plain, ratios *weighted)
{
    const smelt_qtype_ops *o = smelt_q_ops(t);
    qt_chunk_fn chunk = qt_ggml_chunk();
    size_t n = (size_t)(rows * cols), nb = qt_bytes(t, n);
    uint8_t *qa = malloc(nb), *qb = malloc(nb);
    float *ya = malloc(n * 4), *yb = malloc(n * 4);
    bool (*req)(int) = (bool (*)(int))qt_ggml_sym("ggml_quantize_requires_imatrix");
    for (int w = req && req(t) ? 1 : 0; w < 2; w++) { /* ggml aborts without weights there */
        const float *im = w ? imx : NULL;
        chunk(t, x, qa, 0, rows, cols, im);
        cr_assert(smelt_q_quantize_rows(t, x, qb, rows, cols, im, NULL, NULL) == 0);
        o->dequantize(qa, ya, n);
        o->dequantize(qb, yb, n);
        double ws, eg = sq_err(x, ya, rows, cols, im, &ws), es = sq_err(x, yb, rows, cols, im, &ws);
        double ratio = eg > 0 ? sqrt(es / eg) : (es > 0 ? INFINITY : 1.0);
        cr_expect(es <= eg, "%s on %s%s: smelt RMSE %.6g > ggml %.6g (ratio %.5f)", qt_name(t), name,
                  w ? " with imatrix" : "", sqrt(es / ws), sqrt(eg / ws), ratio);
        add_ratio(w ? weighted : plain, ratio, name);
    }
    free(qa);
    free(qb);
    free(ya);
    free(yb);
}

ParameterizedTestParameters(qaccuracy, sample_model)
{
    size_t n;
    int *p = qt_quant_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

ParameterizedTest(int *type, qaccuracy, sample_model, .timeout = 600)
{
    int t = *type;
    QT_NEED_ORACLE();
    cr_assert(qt_ggml_chunk(), "libggml-base lacks ggml_quantize_chunk");
    qt_matrix *m;
    size_t nm = qt_sample_matrices(&m);
    cr_assert(nm > 0, "samples/tiny-mixtral not readable");
    ratios plain = {0}, weighted = {0};
    for (size_t j = qt_sample_stride(t) / 2; j < nm; j += qt_sample_stride(t)) {
        if (m[j].cols % qt_blck(t)) continue;
        int step = m[j].rows >= 64 ? ROW_STEP : 1; /* small matrices whole */
        int64_t rows = (m[j].rows + step - 1) / step;
        float *x = m[j].x;
        if (step > 1) {
            x = malloc((size_t)(rows * m[j].cols) * 4);
            for (int64_t r = 0; r < rows; r++)
                memcpy(x + r * m[j].cols, m[j].x + r * step * m[j].cols, (size_t)m[j].cols * 4);
        }
        float *imx = malloc((size_t)m[j].cols * 4);
        qt_imatrix(imx, (size_t)m[j].cols, j + 1);
        compare(t, m[j].name, x, rows, m[j].cols, imx, &plain, &weighted);
        free(imx);
        if (x != m[j].x) free(x);
    }
    cr_assert(weighted.n > 0);
    report(t, "tiny-mixtral", &plain, &weighted);
    qt_free_matrices(m, nm);
}

ParameterizedTestParameters(qaccuracy, synthetic)
{
    size_t n;
    int *p = qt_quant_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

ParameterizedTest(int *type, qaccuracy, synthetic, .timeout = 600)
{
    int t = *type;
    QT_NEED_ORACLE();
    static const int kinds[] = {QT_NORMAL, QT_HEAVY, QT_OUTLIER, QT_SHIFTED, QT_ZERO_BLOCKS, QT_TINY, QT_LARGE};
    const int64_t rows = 64 / ROW_STEP + 1, cols = 1024;
    float *x = malloc((size_t)(rows * cols) * 4), imx[1024];
    ratios plain = {0}, weighted = {0};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        qt_fill(x, (size_t)(rows * cols), kinds[k], 900 + k);
        qt_imatrix(imx, (size_t)cols, 950 + k);
        compare(t, qt_kind_name(kinds[k]), x, rows, cols, imx, &plain, &weighted);
    }
    report(t, "synthetic", &plain, &weighted);
    free(x);
}

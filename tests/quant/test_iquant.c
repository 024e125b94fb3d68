/* test_iquant.c — the i-quants (IQ4_NL, IQ4_XS, the grid types, IQ1_S, IQ1_M), the ternary types (TQ1_0,
 * TQ2_0) and MXFP4 at the edges the table-wide tests do not
 * reach, against libggml-base: rows of 256·k elements for odd k, and matrices whose rows
 * are all zero, have zero groups next to full ones, values whose scale leaves the f16
 * range at either end, single outliers, constant and alternating groups. For each:
 *   - ggml's dequantize_row_* gives exactly smelt's floats on smelt's blocks (with and
 *     without importance weights), and they are finite;
 *   - smelt's reference encoder gives ggml's quantize_row_*_ref bytes;
 *   - smelt's (weighted) squared error is <= ggml_quantize_chunk's, row by row. */
#include "tests/common/qtypes_oracle.h"

#include "quant/iquant/iqgrid.h"

#define ROWS 10

/* Row 0 is not the zero row: ggml's IQ4_NL reference encoder leaves the levels of a zero
 * block as those of the block before it, which do not exist for the first block. */
static const char *const k_rows[ROWS] = {"normal", "zero groups", "huge",        "beyond f16", "tiny",
                                         "one outlier", "const", "alternating", "all zero",   "heavy-tailed"};

static void fill_edges(float *x, int64_t cols, uint64_t seed)
{
    qt_rng r = {seed * 0x9E3779B97F4A7C15ull + 7};
    for (int64_t row = 0; row < ROWS; row++) {
        float *y = x + row * cols;
        for (int64_t i = 0; i < cols; i++) {
            double n = qt_norm(&r);
            double v = 0.02 * n;
            switch (row) {
            case 8: v = 0; break;
            case 1: v = (i / 32) % 2 ? 0 : (i / 32) % 4 == 2 && i % 32 ? 0 : v; break;
            case 2: v = n * 2e5; break;                 /* scales near the top of f16 */
            case 3: v = n * 3e7; break;                 /* scales beyond it */
            case 4: v = n * 1e-7; break;                /* subnormal f16 scales */
            case 5: v = i % 32 == 5 ? 1e4 * v : v; break; /* one outlier per group */
            case 6: v = 0.01 + 0.001 * (double)((i / 32) % 5); break;
            case 7: v = i % 2 ? 0.03 : -0.03; break;
            case 9: v = 0.01 * n / (fabs(qt_norm(&r)) + 0.05); break;
            default: break;
            }
            y[i] = (float)v;
        }
    }
}

static double row_err(const float *x, const float *y, int64_t n, const float *w)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        e += (w ? w[i] : 1.0) * d * d;
    }
    return isnan(e) ? INFINITY : e;
}

static void check_type(int t)
{
    const smelt_qtype_ops *o = smelt_q_ops(t);
    qt_deq_fn gdeq = qt_ggml_deq(t);
    qt_ref_fn gref = qt_ggml_ref(t);
    qt_chunk_fn chunk = qt_ggml_chunk();
    cr_assert(o && smelt_qtype_encodes(o) && gdeq && chunk, "%s: smelt or ggml lacks an entry point", qt_name(t));
    bool (*req)(int) = (bool (*)(int))qt_ggml_sym("ggml_quantize_requires_imatrix");
    bool need = req && req(t); /* ggml aborts without importance weights */
    static const int ks[] = {1, 3, 5, 7};
    for (size_t kk = 0; kk < sizeof ks / sizeof ks[0]; kk++) {
        int64_t cols = 256 * ks[kk], n = ROWS * cols;
        size_t rb = qt_bytes(t, (size_t)cols), nb = rb * ROWS;
        float *x = malloc((size_t)n * 4), *ya = malloc((size_t)n * 4), *yb = malloc((size_t)n * 4);
        float *imx = malloc((size_t)cols * 4);
        uint8_t *qa = malloc(nb), *qb = malloc(nb);
        fill_edges(x, cols, (uint64_t)kk + 1);
        qt_imatrix(imx, (size_t)cols, (uint64_t)kk + 40);
        /* reference bytes (the types ggml has no reference encoder for are skipped) */
        if (gref) gref(x, qa, n);
        o->quantize_ref(x, qb, n);
        for (int r = 0; r < ROWS && gref; r++)
            cr_expect(memcmp(qa + r * rb, qb + r * rb, rb) == 0, "%s ref, %lld columns, row '%s': bytes differ",
                      qt_name(t), (long long)cols, k_rows[r]);
        for (int w = 0; w < 2; w++) {
            const float *im = w ? imx : NULL;
            if (need && !im) continue;
            smelt_qtype_quantize(o, x, qb, ROWS, cols, im, NULL);
            chunk(t, x, qa, 0, ROWS, cols, im);
            gdeq(qb, ya, n);
            o->dequantize(qb, yb, n);
            for (int64_t i = 0; i < n; i++) {
                cr_assert(memcmp(&ya[i], &yb[i], 4) == 0, "%s, %lld columns%s: element %lld decodes to %a (ggml) vs %a",
                          qt_name(t), (long long)cols, w ? ", imatrix" : "", (long long)i, ya[i], yb[i]);
                cr_assert(isfinite(yb[i]), "%s, %lld columns, row '%s': element %lld decodes to %g", qt_name(t),
                          (long long)cols, k_rows[i / cols], (long long)(i % cols), yb[i]);
            }
            gdeq(qa, ya, n);
            for (int r = 0; r < ROWS; r++) {
                double es = row_err(x + r * cols, yb + r * cols, cols, im),
                       eg = row_err(x + r * cols, ya + r * cols, cols, im);
                cr_expect(es <= eg, "%s, %lld columns%s, row '%s': smelt error %.9g > ggml %.9g", qt_name(t),
                          (long long)cols, w ? ", imatrix" : "", k_rows[r], es, eg);
            }
        }
        free(x);
        free(ya);
        free(yb);
        free(imx);
        free(qa);
        free(qb);
    }
}

Test(iquant, iq4_nl_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ4_NL);
}

Test(iquant, iq4_xs_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ4_XS);
}

Test(iquant, tq1_0_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_TQ1_0);
}

Test(iquant, tq2_0_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_TQ2_0);
}

Test(iquant, mxfp4_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_MXFP4);
}

Test(iquant, iq3_xxs_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ3_XXS);
}

Test(iquant, iq2_xxs_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ2_XXS);
}

Test(iquant, iq2_xs_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ2_XS);
}

Test(iquant, iq3_s_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ3_S);
}

Test(iquant, iq2_s_edges)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ2_S);
}

/* One test for both: they share ggml's search tables, whose first use costs about 10 s of
 * CPU in each process. */
Test(iquant, iq1_s_m_edges, .timeout = 300)
{
    QT_NEED_ORACLE();
    check_type(SMELT_TYPE_IQ1_S);
    check_type(SMELT_TYPE_IQ1_M);
}

/* The grid types' search tables fill their static arrays exactly (sizes counted once
 * offline: a codebook or shell change must show here, not as silently shortened lists). */
Test(iquant, grid_tables)
{
    for (int w = 0; w < IQG_COUNT; w++) {
        const iqg_grid *g = iqg_get(w);
        cr_assert(g);
        cr_expect_eq(g->nbr_len, g->nbr_cap, "grid %d: neighbour lists take %zu of %zu entries", w, g->nbr_len,
                     g->nbr_cap);
        for (int p = 0; p < g->n; p++) cr_expect_eq(g->map[g->code[p]], p, "grid %d: point %d not mapped", w, p);
    }
}

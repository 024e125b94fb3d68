/* test_qtypes.c — the traits table against llama.cpp, type by type (parameterized over
 * the table, so a new type is covered as soon as it is registered):
 *   - quantize_ref is bit-exact with ggml's quantize_row_*_ref;
 *   - ggml's dequantize_row_* decodes smelt's blocks to exactly smelt's floats, on the
 *     sample model's weights and on random data of many shapes, and on random bytes;
 *   - the AVX2 kernel set gives the same bytes and floats as the portable one;
 *   - encoders are row-independent, thread-count independent and NaN-safe. */
#include "tests/common/qtypes_oracle.h"

#define N_RAND (64 * 512)

ParameterizedTestParameters(qtypes, ref_bit_exact)
{
    size_t n;
    int *p = qt_all_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

/* quantize_ref == ggml's reference encoder, byte for byte, on every data set. */
ParameterizedTest(int *type, qtypes, ref_bit_exact)
{
    int t = *type;
    QT_NEED_ORACLE();
    const smelt_qtype_ops *o = smelt_q_ops(t);
    qt_ref_fn g = qt_ggml_ref(t);
    if (t == SMELT_TYPE_F32) cr_skip_test("f32 has no encoder to compare");
    /* ggml has no reference encoder for some grid types: there quantize_ref is
     * ggml_quantize_chunk, with unit importance where ggml requires an imatrix (IQ2_XXS,
     * IQ2_XS, IQ1_S), without one otherwise (IQ1_M) */
    bool (*req)(int) = (bool (*)(int))qt_ggml_sym("ggml_quantize_requires_imatrix");
    bool ones = !g;
    cr_assert(g || req, "libggml-base has no reference encoder for %s", qt_name(t));
    cr_assert(o->quantize_ref, "%s has no quantize_ref", qt_name(t));
    float *x = malloc(N_RAND * sizeof(float)), unit[256];
    for (int i = 0; i < 256; i++) unit[i] = 1;
    const float *imp = ones && req(t) ? unit : NULL;
    size_t nb = qt_bytes(t, N_RAND);
    uint8_t *a = malloc(nb), *b = malloc(nb);
    for (int k = 0; k < QT_N_KINDS; k++) {
        qt_fill(x, N_RAND, k, 100 + (uint64_t)k);
        memset(a, 0, nb);
        memset(b, 0, nb);
        if (ones) qt_ggml_chunk()(t, x, a, 0, N_RAND / 256, 256, imp);
        else g(x, a, N_RAND);
        o->quantize_ref(x, b, N_RAND);
        size_t i = 0;
        while (i < nb && a[i] == b[i]) i++;
        cr_expect(i == nb, "%s ref on %s data: first differing byte %zu (block %zu): ggml %02x smelt %02x",
                  qt_name(t), qt_kind_name(k), i, i / smelt_type_get(t)->bytes, i < nb ? a[i] : 0,
                  i < nb ? b[i] : 0);
    }
    qt_matrix *m;
    size_t nm = qt_sample_matrices(&m);
    cr_assert(nm > 0, "samples/tiny-mixtral not readable");
    for (size_t j = qt_sample_stride(t) / 2; j < nm; j += qt_sample_stride(t)) {
        size_t n = (size_t)(m[j].rows * m[j].cols), bytes = qt_bytes(t, n);
        if (ones && (m[j].cols % 256)) continue;
        uint8_t *p = calloc(1, bytes), *q = calloc(1, bytes);
        if (ones) qt_ggml_chunk()(t, m[j].x, p, 0, (int64_t)n / 256, 256, imp);
        else g(m[j].x, p, (int64_t)n);
        o->quantize_ref(m[j].x, q, (int64_t)n);
        cr_expect(memcmp(p, q, bytes) == 0, "%s ref differs from ggml on %s", qt_name(t), m[j].name);
        free(p);
        free(q);
    }
    qt_free_matrices(m, nm);
    free(x);
    free(a);
    free(b);
}

ParameterizedTestParameters(qtypes, ggml_decodes_smelt_blocks)
{
    size_t n;
    int *p = qt_all_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

/* Compare ggml's and smelt's decoding of n elements of blocks; report the first diff. */
static void expect_same_decode(int t, qt_deq_fn g, const void *blocks, size_t n, const char *what)
{
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    g(blocks, a, (int64_t)n);
    cr_assert(smelt_q_dequantize_row(t, blocks, b, n) == 0);
    size_t i = 0;
    while (i < n && (memcmp(&a[i], &b[i], 4) == 0 || (isnan(a[i]) && isnan(b[i])))) i++;
    cr_expect(i == n, "%s on %s: element %zu decodes to %a (ggml) vs %a (smelt)", qt_name(t), what, i,
              i < n ? a[i] : 0.f, i < n ? b[i] : 0.f);
    free(a);
    free(b);
}

/* ggml's decoder on smelt's blocks gives exactly smelt's floats: blocks from smelt's
 * encoder (with and without importance weights) and from the reference encoder. */
ParameterizedTest(int *type, qtypes, ggml_decodes_smelt_blocks)
{
    int t = *type;
    QT_NEED_ORACLE();
    const smelt_qtype_ops *o = smelt_q_ops(t);
    qt_deq_fn g = qt_ggml_deq(t);
    if (!g && t == SMELT_TYPE_F32) cr_skip_test("f32 needs no decoder");
    if (!g && t == SMELT_TYPE_Q8_1) cr_skip_test("libggml-base has no dequantize_row_q8_1 (activation-only type)");
    cr_assert(g, "libggml-base has no decoder for %s", qt_name(t));
    float *x = malloc(N_RAND * sizeof(float)), imx[512];
    size_t nb = qt_bytes(t, N_RAND);
    uint8_t *q = malloc(nb);
    char what[256];
    qt_imatrix(imx, 512, 7);
    for (int k = 0; k < QT_N_KINDS; k++) {
        qt_fill(x, N_RAND, k, 200 + (uint64_t)k);
        o->quantize_ref(x, q, N_RAND);
        snprintf(what, sizeof what, "reference blocks of %s data", qt_kind_name(k));
        expect_same_decode(t, g, q, N_RAND, what);
        if (!smelt_qtype_encodes(o)) continue;
        for (int w = 0; w < 2; w++) {
            smelt_qtype_quantize(o, x, q, N_RAND / 512, 512, w ? imx : NULL, NULL);
            snprintf(what, sizeof what, "smelt blocks of %s data%s", qt_kind_name(k), w ? " (imatrix)" : "");
            expect_same_decode(t, g, q, N_RAND, what);
        }
    }
    qt_matrix *m;
    size_t nm = qt_sample_matrices(&m);
    cr_assert(nm > 0, "samples/tiny-mixtral not readable");
    for (size_t j = qt_sample_stride(t) / 2; j < nm && smelt_qtype_encodes(o); j += qt_sample_stride(t)) {
        size_t n = (size_t)(m[j].rows * m[j].cols);
        if (m[j].cols % qt_blck(t)) continue;
        uint8_t *p = malloc(qt_bytes(t, n));
        smelt_qtype_quantize(o, m[j].x, p, m[j].rows, m[j].cols, NULL, NULL);
        snprintf(what, sizeof what, "smelt blocks of %s", m[j].name);
        expect_same_decode(t, g, p, n, what);
        free(p);
    }
    qt_free_matrices(m, nm);
    /* arbitrary block bytes (scales may be subnormal, huge, infinite or NaN) */
    qt_rng r = {12345};
    for (size_t i = 0; i < nb; i++) q[i] = (uint8_t)qt_next(&r);
    if (t != SMELT_TYPE_F32) expect_same_decode(t, g, q, N_RAND, "random block bytes");
    free(x);
    free(q);
}

/* ==== AVX2 == portable ==== */

ParameterizedTestParameters(qtypes, avx2_matches_portable)
{
    size_t n;
    int *p = qt_all_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

ParameterizedTest(int *type, qtypes, avx2_matches_portable)
{
    int t = *type;
    const smelt_qtype_ops *p = smelt_q_ops_isa(t, SMELT_ISA_PORTABLE), *v = smelt_q_ops_isa(t, SMELT_ISA_AVX2);
    if (!v) cr_skip_test("this CPU cannot run the AVX2 kernels");
    cr_assert(p);
    if (p->quantize == v->quantize && p->rows_encoder == v->rows_encoder && p->quantize_ref == v->quantize_ref && p->dequantize == v->dequantize &&
        p->quantize_err == v->quantize_err)
        cr_skip_test("%s has no AVX2 encoders or decoder (the same functions serve both sets)", qt_name(t));
    float *x = malloc(N_RAND * sizeof(float)), *fa = malloc(N_RAND * 4), *fb = malloc(N_RAND * 4), imx[512];
    size_t nb = qt_bytes(t, N_RAND);
    uint8_t *a = malloc(nb), *b = malloc(nb);
    qt_imatrix(imx, 512, 9);
    for (int k = 0; k < QT_N_KINDS; k++) {
        qt_fill(x, N_RAND, k, 300 + (uint64_t)k);
        for (int w = 0; w < 2 && smelt_qtype_encodes(p); w++) {
            memset(a, 0, nb);
            memset(b, 0, nb);
            smelt_qtype_quantize(p, x, a, N_RAND / 512, 512, w ? imx : NULL, NULL);
            smelt_qtype_quantize(v, x, b, N_RAND / 512, 512, w ? imx : NULL, NULL);
            size_t i = 0;
            while (i < nb && a[i] == b[i]) i++;
            cr_expect(i == nb, "%s encoder on %s data%s: AVX2 differs from portable at byte %zu", qt_name(t),
                      qt_kind_name(k), w ? " (imatrix)" : "", i);
        }
        p->quantize_ref(x, a, N_RAND);
        v->quantize_ref(x, b, N_RAND);
        cr_expect(memcmp(a, b, nb) == 0, "%s reference encoder: AVX2 differs from portable", qt_name(t));
        p->dequantize(a, fa, N_RAND);
        v->dequantize(a, fb, N_RAND);
        cr_expect(memcmp(fa, fb, N_RAND * 4) == 0, "%s decoder: AVX2 differs from portable", qt_name(t));
    }
    qt_matrix *m;
    size_t nm = qt_sample_matrices(&m);
    for (size_t j = 0; j < nm && smelt_qtype_encodes(p); j += 3) {
        size_t n = (size_t)(m[j].rows * m[j].cols), bytes = qt_bytes(t, n);
        if (m[j].cols % qt_blck(t)) continue;
        uint8_t *c = malloc(bytes), *d = malloc(bytes);
        smelt_qtype_quantize(p, m[j].x, c, m[j].rows, m[j].cols, NULL, NULL);
        smelt_qtype_quantize(v, m[j].x, d, m[j].rows, m[j].cols, NULL, NULL);
        cr_expect(memcmp(c, d, bytes) == 0, "%s encoder: AVX2 differs from portable on %s", qt_name(t), m[j].name);
        free(c);
        free(d);
    }
    qt_free_matrices(m, nm);
    free(x);
    free(fa);
    free(fb);
    free(a);
    free(b);
}

/* ==== encoder properties ==== */

ParameterizedTestParameters(qtypes, rows_and_threads_independent)
{
    size_t n;
    int *p = qt_quant_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

/* One call over all rows == row by row == 1, 2 and 3 threads. */
ParameterizedTest(int *type, qtypes, rows_and_threads_independent)
{
    int t = *type;
    const smelt_qtype_ops *o = smelt_q_ops(t);
    const int64_t rows = 37, cols = 768;
    float *x = malloc((size_t)(rows * cols) * 4), imx[768];
    qt_fill(x, (size_t)(rows * cols), QT_HEAVY, 77);
    qt_imatrix(imx, 768, 78);
    size_t rb = qt_bytes(t, (size_t)cols), nb = rb * (size_t)rows;
    uint8_t *a = malloc(nb), *b = malloc(nb), *c = malloc(nb);
    for (int w = 0; w < 2; w++) {
        const float *im = w ? imx : NULL;
        smelt_qtype_quantize(o, x, a, rows, cols, im, NULL);
        for (int64_t r = 0; r < rows; r++) smelt_qtype_quantize(o, x + r * cols, b + (size_t)r * rb, 1, cols, im, NULL);
        cr_expect(memcmp(a, b, nb) == 0, "%s: row-by-row encoding differs%s", qt_name(t), w ? " (imatrix)" : "");
        for (int th = 1; th <= 3; th++) {
            smelt_pool *pool = smelt_pool_new(th);
            smelt_err e = {0};
            memset(c, 0, nb);
            cr_assert(smelt_q_quantize_rows(t, x, c, rows, cols, im, pool, &e) == 0);
            cr_expect(memcmp(a, c, nb) == 0, "%s: %d threads give different bytes", qt_name(t), th);
            smelt_pool_free(pool);
        }
    }
    free(x);
    free(a);
    free(b);
    free(c);
}

ParameterizedTestParameters(qtypes, non_finite_inputs)
{
    size_t n;
    int *p = qt_quant_types(&n);
    return cr_make_param_array(int, p, n, qt_free_params);
}

/* NaN and infinities encode as 0; the rest of the block is still encoded well and the
 * output decodes to finite values. */
ParameterizedTest(int *type, qtypes, non_finite_inputs)
{
    int t = *type;
    const smelt_qtype_ops *o = smelt_q_ops(t);
    const int n = 1024;
    float x[1024], z[1024], d[1024];
    qt_fill(x, n, QT_NORMAL, 5);
    memcpy(z, x, sizeof z);
    for (int i = 0; i < n; i += 97) {
        x[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
        z[i] = 0;
    }
    uint8_t *a = malloc(qt_bytes(t, n)), *b = malloc(qt_bytes(t, n));
    smelt_qtype_quantize(o, x, a, 1, n, NULL, NULL);
    smelt_qtype_quantize(o, z, b, 1, n, NULL, NULL);
    cr_expect(memcmp(a, b, qt_bytes(t, n)) == 0, "%s: non-finite values are not encoded as 0", qt_name(t));
    o->dequantize(a, d, n);
    for (int i = 0; i < n; i++) cr_assert(isfinite(d[i]), "%s: element %d decodes to %g", qt_name(t), i, d[i]);
    free(a);
    free(b);
}

Test(qtypes, table_matches_ggml_traits)
{
    cr_expect(smelt_q_n_types() >= 15);
    bool (*req)(int) = (bool (*)(int))qt_ggml_sym("ggml_quantize_requires_imatrix");
    for (size_t i = 0; i < smelt_q_n_types(); i++) {
        int t = smelt_q_type_at(i);
        const smelt_qtype_ops *o = smelt_q_ops(t);
        cr_assert(o && o->type == t, "table entry %zu", i);
        cr_expect(o->dequantize && smelt_qtype_encodes(o) && o->quantize_ref, "%s lacks a decoder, an encoder or a reference encoder",
                  qt_name(t));
        if (req) cr_expect_eq(o->needs_imatrix, req(t), "%s needs_imatrix", qt_name(t));
    }
    size_t (*tsize)(int) = (size_t(*)(int))qt_ggml_sym("ggml_type_size");
    int64_t (*bsize)(int) = (int64_t(*)(int))qt_ggml_sym("ggml_blck_size");
    for (int t = 0; t < SMELT_TYPE_COUNT && tsize && bsize; t++) {
        const smelt_type_info *ti = smelt_type_get(t);
        if (!ti || ti->removed) continue;
        cr_expect(ti->blck == (uint32_t)bsize(t) && ti->bytes == tsize(t), "%s: smelt %u/%u, ggml %lld/%zu", ti->name,
                  ti->blck, ti->bytes, (long long)bsize(t), tsize(t));
    }
    cr_expect_null(smelt_q_ops(SMELT_TYPE_Q8_1));
    cr_expect_null(smelt_q_ops(-1));
    cr_expect_null(smelt_q_ops(SMELT_TYPE_COUNT));
}

Test(qtypes, quantize_rows_errors)
{
    smelt_err e = {0};
    float x[300] = {0};
    uint8_t y[512];
    char buf[600];
    cr_expect_eq(smelt_q_quantize_rows(SMELT_TYPE_Q4_K, x, y, 1, 300, NULL, NULL, &e), SMELT_EMISMATCH);
    smelt_err_format(&e, buf, sizeof buf);
    cr_expect_str_eq(buf, "a row of 300 elements cannot be quantized to q4_K: rows must be a positive multiple of "
                          "its block size 256");
    cr_expect_eq(smelt_q_quantize_rows(SMELT_TYPE_Q8_K, x, y, 1, 256, NULL, NULL, &e), SMELT_EUNSUPPORTED);
    smelt_err_format(&e, buf, sizeof buf);
    cr_expect_str_eq(buf, "smelt cannot quantize to q8_K");
    cr_expect_eq(smelt_q_quantize_rows(SMELT_TYPE_Q8_1, x, y, 1, 32, NULL, NULL, &e), SMELT_EUNSUPPORTED);
    cr_expect_eq(smelt_q_quantize_rows(SMELT_TYPE_Q4_0, x, y, 0, 32, NULL, NULL, &e), 0);
}

/* F16C (AVX2 set) and smelt's scalar f32 -> f16 agree on every rounding case we can
 * reach cheaply: all f16 neighbourhoods, subnormals, ties, overflow. */
Test(qtypes, f16_conversions_agree_with_ggml)
{
    QT_NEED_ORACLE();
    uint16_t (*g)(float) = (uint16_t(*)(float))qt_ggml_sym("ggml_fp32_to_fp16");
    cr_assert(g);
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float f = smelt_f16_to_f32((uint16_t)h);
        uint32_t u = smelt_f32_bits(f);
        for (int d = -3; d <= 3; d++) {
            float v = smelt_bits_f32(u + (uint32_t)(d * 4096 + (d < 0 ? 1 : 0)));
            if (!isfinite(v)) continue;
            cr_assert_eq(smelt_f32_to_f16(v), g(v), "f32 %a", v);
            cr_assert_eq(smelt_f32_to_f16(-v), g(-v), "f32 %a", -v);
        }
    }
}

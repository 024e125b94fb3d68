/* qtypes_oracle.c — see qtypes_oracle.h. */
#include "qtypes_oracle.h"

int *qt_all_types(size_t *n)
{
    size_t k = smelt_q_n_types();
    int *p = cr_malloc(k * sizeof(int));
    for (size_t i = 0; i < k; i++) p[i] = smelt_q_type_at(i);
    *n = k;
    return p;
}

int *qt_quant_types(size_t *n)
{
    size_t k = smelt_q_n_types(), m = 0;
    int *p = cr_malloc(k * sizeof(int));
    for (size_t i = 0; i < k; i++) {
        int t = smelt_q_type_at(i);
        const smelt_qtype_ops *o = smelt_q_ops(t);
        if (smelt_qtype_encodes(o) && smelt_type_is_quantized(t)) p[m++] = t;
    }
    *n = m;
    return p;
}

void qt_free_params(struct criterion_test_params *p) { cr_free(p->params); }

const char *qt_name(int t) { return smelt_type_name(t); }

uint32_t qt_blck(int t) { return smelt_type_get(t)->blck; }

size_t qt_bytes(int t, size_t n) { return n / smelt_type_get(t)->blck * smelt_type_get(t)->bytes; }

uint64_t qt_next(qt_rng *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}

double qt_unif(qt_rng *r) { return (double)(qt_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double qt_norm(qt_rng *r)
{
    double u = qt_unif(r) + 1e-300, v = qt_unif(r);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

const char *qt_kind_name(int k)
{
    static const char *n[] = {"normal", "heavy-tailed", "zero blocks", "tiny", "tinier",
                              "outliers", "shifted", "large", "constant blocks"};
    return n[k];
}

void qt_fill(float *x, size_t n, int kind, uint64_t seed)
{
    qt_rng r = {seed * 0x9E3779B97F4A7C15ull + 88172645463325252ull};
    for (size_t i = 0; i < n; i++) {
        double v = qt_norm(&r) * 0.02;
        switch (kind) {
        case QT_HEAVY: {
            double c = qt_norm(&r), d = qt_norm(&r);
            v = 0.01 * qt_norm(&r) / sqrt((c * c + d * d) / 2 + 1e-12);
            break;
        }
        case QT_ZERO_BLOCKS: v = (i / 256) % 3 == 1 ? 0 : v; break;
        case QT_TINY: v *= 5e-5; break;
        case QT_TINIER: v *= 5e-8; break;
        case QT_OUTLIER: v = i % 32 == (i / 32) % 32 ? v * 40 : v; break;
        case QT_SHIFTED: v = 0.05 + fabs(v); break;
        case QT_LARGE: v *= 15000; break;
        case QT_CONSTANT: {
            qt_rng b = {(i / 32 + 1) * 0x2545F4914F6CDD1Dull};
            v = qt_norm(&b) * 0.02;
            break;
        }
        default: break;
        }
        x[i] = (float)v;
    }
}

void qt_imatrix(float *w, size_t ncols, uint64_t seed)
{
    qt_rng r = {seed * 0xD1B54A32D192ED03ull + 1};
    for (size_t j = 0; j < ncols; j++) {
        double sc = exp(0.8 * qt_norm(&r)) * (qt_unif(&r) < 0.01 ? 12 : 1);
        double s = 0;
        for (int t = 0; t < 64; t++) {
            double a = sc * qt_norm(&r);
            s += a * a;
        }
        w[j] = (float)(s / 64);
    }
}

size_t qt_sample_matrices(qt_matrix **out)
{
    char dir[4096];
    tu_path(dir, sizeof dir, "samples/tiny-mixtral");
    smelt_stset *set = NULL;
    smelt_err e = {0};
    *out = NULL;
    if (smelt_stset_open(dir, &set, &e)) return 0;
    uint64_t nt = smelt_stset_n_tensors(set);
    qt_matrix *m = calloc(nt, sizeof *m);
    size_t k = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const smelt_st_tensor *t = smelt_stset_tensor_at(set, i);
        if (t->n_dims != 2 || t->dtype != SMELT_DT_BF16) continue;
        qt_matrix *q = &m[k++];
        snprintf(q->name, sizeof q->name, "%s", t->name);
        q->rows = (int64_t)t->shape[0];
        q->cols = (int64_t)t->shape[1];
        q->x = malloc((size_t)(q->rows * q->cols) * sizeof(float));
        smelt_row_bf16_to_f32((const uint16_t *)t->data, q->x, (size_t)(q->rows * q->cols));
    }
    smelt_stset_close(set);
    *out = m;
    return k;
}

void qt_free_matrices(qt_matrix *m, size_t n)
{
    for (size_t i = 0; i < n; i++) free(m[i].x);
    free(m);
}

void *qt_ggml_sym(const char *name)
{
    void *h = tu_oracle_ggml();
    return h ? dlsym(h, name) : NULL;
}

qt_ref_fn qt_ggml_ref(int t)
{
    char n[96];
    if (t == SMELT_TYPE_F16) return (qt_ref_fn)qt_ggml_sym("ggml_fp32_to_fp16_row");
    if (t == SMELT_TYPE_BF16) return (qt_ref_fn)qt_ggml_sym("ggml_fp32_to_bf16_row_ref");
    snprintf(n, sizeof n, "quantize_row_%s_ref", qt_name(t));
    void (*init)(int) = (void (*)(int))qt_ggml_sym("ggml_quantize_init");
    if (init) init(t); /* the grid types' tables (a no-op for the others) */
    return (qt_ref_fn)qt_ggml_sym(n);
}

qt_deq_fn qt_ggml_deq(int t)
{
    char n[96];
    if (t == SMELT_TYPE_F16) return (qt_deq_fn)qt_ggml_sym("ggml_fp16_to_fp32_row");
    if (t == SMELT_TYPE_BF16) return (qt_deq_fn)qt_ggml_sym("ggml_bf16_to_fp32_row");
    snprintf(n, sizeof n, "dequantize_row_%s", qt_name(t));
    return (qt_deq_fn)qt_ggml_sym(n);
}

size_t qt_sample_stride(int t)
{
    switch (t) {
    case SMELT_TYPE_IQ3_XXS: case SMELT_TYPE_IQ3_S: case SMELT_TYPE_IQ2_XXS: case SMELT_TYPE_IQ2_XS:
    case SMELT_TYPE_IQ2_S: case SMELT_TYPE_IQ1_S: case SMELT_TYPE_IQ1_M: return 24;
    default: return 1;
    }
}

qt_chunk_fn qt_ggml_chunk(void) { return (qt_chunk_fn)qt_ggml_sym("ggml_quantize_chunk"); }


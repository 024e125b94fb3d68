/* test_fp8src.c — the block-scaled FP8 tensor source over an in-memory source: values at
 * block edges (partial blocks, F32 and BF16 scales), what it shows and hides, and the
 * refusals of config.json's quantization_config and of broken checkpoints with their
 * exact lines. The end-to-end check on a real fixture is tests/e2e/fp8.sh. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/half.h"
#include "formats/fp8src.h"

/* ==== a source of tensors held in memory ==== */

#define MAXT 8
typedef struct {
    smelt_tinfo t[MAXT];
    const void *data[MAXT];
    char names[MAXT][96];
    uint64_t n;
    int closed;
} memsrc;

static uint64_t m_count(void *s) { return ((memsrc *)s)->n; }
static const smelt_tinfo *m_info(void *s, uint64_t i) { return i < ((memsrc *)s)->n ? &((memsrc *)s)->t[i] : NULL; }
static int64_t m_find(void *self, const char *name)
{
    memsrc *s = self;
    for (uint64_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return (int64_t)i;
    return -1;
}
static int m_read(void *s, uint64_t i, const void **d, smelt_scratch *sc, smelt_err *e)
{
    (void)sc;
    (void)e;
    *d = ((memsrc *)s)->data[i];
    return 0;
}
static void m_close(void *s) { ((memsrc *)s)->closed = 1; }
static const smelt_tsrc_vt m_vt = {m_count, m_info, m_find, m_read, NULL, m_close};

static void add(memsrc *s, const char *name, smelt_dtype dt, uint32_t nd, uint64_t r, uint64_t c, const void *data)
{
    smelt_tinfo *t = &s->t[s->n];
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    t->name = s->names[s->n];
    t->dtype = dt;
    t->n_dims = nd;
    t->shape[0] = r;
    t->shape[1] = c;
    t->nelements = nd == 1 ? r : r * c;
    t->nbytes = t->nelements * smelt_dtype_size(dt);
    t->file = "m.safetensors";
    s->data[s->n++] = data;
}

static const smelt_fp8_cfg on = {1, 128, 128};

static void line_of(const smelt_err *e, char *buf, size_t n) { smelt_err_format(e, buf, n); }

/* ==== values ==== */

Test(fp8src, dequantizes_partial_blocks_and_hides_scales)
{
    enum { R = 130, C = 260 }; /* 2 × 3 blocks, the last row and column blocks partial */
    uint8_t *q = malloc(R * C);
    for (int i = 0; i < R * C; i++) {
        uint8_t b = (uint8_t)(i * 37 + 11);
        q[i] = (b & 0x7f) == 0x7f ? 0x3c : b; /* no NaN */
    }
    float s32[6] = {0.5f, 1.0f / 3, 3e-3f, 7.25f, 1e-5f, 2.0f};
    uint16_t s16[6];
    for (int i = 0; i < 6; i++) s16[i] = smelt_f32_to_bf16(s32[i]);
    float norm[4] = {1, 2, 3, 4};
    for (int variant = 0; variant < 2; variant++) {
        memsrc m = {0};
        add(&m, "a.weight", SMELT_DT_F8_E4M3, 2, R, C, q);
        add(&m, "norm.weight", SMELT_DT_F32, 1, 4, 0, norm);
        add(&m, "a.weight_scale_inv", variant ? SMELT_DT_BF16 : SMELT_DT_F32, 2, 2, 3, variant ? (void *)s16 : (void *)s32);
        smelt_tsrc src = {&m_vt, &m};
        smelt_err e;
        smelt_err_clear(&e);
        cr_assert_eq(smelt_tsrc_wrap_fp8(&src, &on, &e), 0, "%s", e.msg);
        cr_assert_eq(smelt_tsrc_count(&src), 2);
        cr_assert_eq(smelt_tsrc_find(&src, "a.weight_scale_inv"), -1);
        cr_assert_eq(smelt_tsrc_find(&src, "norm.weight"), 1);
        const smelt_tinfo *t = smelt_tsrc_info(&src, (uint64_t)smelt_tsrc_find(&src, "a.weight"));
        cr_assert_eq(t->dtype, SMELT_DT_F32);
        cr_assert_eq(t->nbytes, (uint64_t)R * C * 4);
        cr_assert_eq(t->block_scaled, 1);
        cr_assert_eq(smelt_tsrc_info(&src, 1)->block_scaled, 0);
        float *w;
        cr_assert_eq(smelt_tsrc_load_f32(&src, 0, &w, &e), 0, "%s", e.msg);
        int bad = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                float s = variant ? smelt_bf16_to_f32(s16[(r / 128) * 3 + c / 128]) : s32[(r / 128) * 3 + c / 128];
                float want = smelt_f8e4m3_to_f32(q[r * C + c]) * s;
                bad += memcmp(&w[r * C + c], &want, 4) != 0;
            }
        cr_assert_eq(bad, 0, "variant %d: %d values differ", variant, bad);
        free(w);
        const void *d;
        smelt_scratch sc = {0};
        cr_assert_eq(smelt_tsrc_read(&src, 1, &d, &sc, &e), 0);
        cr_assert_eq(d, (const void *)norm, "an unscaled tensor is passed through");
        smelt_scratch_free(&sc);
        smelt_tsrc_close(&src);
        cr_assert(m.closed, "the wrapper closes the source it took");
    }
    free(q);
}

Test(fp8src, hand_values)
{
    uint8_t q[2 * 129] = {0};
    q[0] = 0x38;       /* 1.0 */
    q[128] = 0xc0;     /* -2.0, second column block */
    q[129 + 5] = 0x01; /* 2^-9, smallest subnormal */
    float s[2] = {0.25f, 3.0f};
    memsrc m = {0};
    add(&m, "w.weight", SMELT_DT_F8_E4M3, 2, 2, 129, q);
    add(&m, "w.weight_scale_inv", SMELT_DT_F32, 2, 1, 2, s);
    smelt_tsrc src = {&m_vt, &m};
    smelt_err e;
    cr_assert_eq(smelt_tsrc_wrap_fp8(&src, &on, &e), 0);
    float *w;
    cr_assert_eq(smelt_tsrc_load_f32(&src, 0, &w, &e), 0);
    cr_expect_eq(w[0], 0.25f);
    cr_expect_eq(w[128], -6.0f);
    cr_expect_eq(w[129 + 5], 0x1p-11f);
    cr_expect_eq(w[1], 0.0f);
    free(w);
    smelt_tsrc_close(&src);
}

Test(fp8src, no_config_no_scales_is_left_alone)
{
    float x[4] = {0};
    memsrc m = {0};
    add(&m, "a.weight", SMELT_DT_F32, 2, 2, 2, x);
    smelt_tsrc src = {&m_vt, &m};
    smelt_fp8_cfg off = {0};
    smelt_err e;
    cr_assert_eq(smelt_tsrc_wrap_fp8(&src, &off, &e), 0);
    cr_assert_eq(src.self, (void *)&m);
}

/* ==== refusals ==== */

typedef struct {
    const char *what;
    smelt_dtype wdt, sdt;
    uint32_t wnd;
    uint64_t sr, sc;
    const char *wname, *sname, *extra;
    int cfg_off;
    int code;
    const char *line;
} bad_case;

Test(fp8src, refusals_exact_lines)
{
    static uint8_t buf[1 << 16];
    const bad_case cases[] = {
        {"scale shape", SMELT_DT_F8_E4M3, SMELT_DT_F32, 2, 2, 1, "a.weight", "a.weight_scale_inv", NULL, 0, SMELT_EFORMAT,
         "m.safetensors: 'a.weight_scale_inv': block scales of shape [2, 1] do not fit weight 'a.weight' [200, 300] in 128 × "
         "128 blocks (expected [2, 3])"},
        {"scale dtype", SMELT_DT_F8_E4M3, SMELT_DT_F8_E4M3, 2, 2, 3, "a.weight", "a.weight_scale_inv", NULL, 0, SMELT_EFORMAT,
         "m.safetensors: 'a.weight_scale_inv': block scales of dtype F8_E4M3 (expected F32, BF16 or F16)"},
        {"e5m2", SMELT_DT_F8_E5M2, SMELT_DT_F32, 2, 2, 3, "a.weight", "a.weight_scale_inv", NULL, 0, SMELT_EUNSUPPORTED,
         "m.safetensors: 'a.weight': F8_E5M2 weights with block scales are not supported (expected F8_E4M3)"},
        {"bf16 weight", SMELT_DT_BF16, SMELT_DT_F32, 2, 2, 3, "a.weight", "a.weight_scale_inv", NULL, 0, SMELT_EFORMAT,
         "m.safetensors: 'a.weight': has block scales 'a.weight_scale_inv' but is BF16 (expected F8_E4M3)"},
        {"1-D weight", SMELT_DT_F8_E4M3, SMELT_DT_F32, 1, 2, 3, "a.weight", "a.weight_scale_inv", NULL, 0, SMELT_EUNSUPPORTED,
         "m.safetensors: 'a.weight': block scales on a 1-dimensional weight (expected a 2-D matrix)"},
        {"orphan scale", SMELT_DT_F8_E4M3, SMELT_DT_F32, 2, 2, 3, "a.weight", "b.weight_scale_inv", NULL, 0, SMELT_EFORMAT,
         "m.safetensors: 'b.weight_scale_inv': block scales of 'b.weight', which the checkpoint does not have"},
        {"no config", SMELT_DT_F8_E4M3, SMELT_DT_F32, 2, 2, 3, "a.weight", "a.weight_scale_inv", NULL, 1, SMELT_EFORMAT,
         "m.safetensors: 'a.weight_scale_inv': block scales, but config.json has no quantization_config (expected "
         "{\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]})"},
        {"per-tensor scale", SMELT_DT_F8_E4M3, SMELT_DT_F32, 2, 2, 3, "a.weight", "a.weight_scale_inv", "a.input_scale", 0,
         SMELT_EUNSUPPORTED,
         "m.safetensors: 'a.input_scale': a per-tensor fp8 scale: only block scales ('….weight_scale_inv', "
         "{\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]}) are supported"},
        {"unscaled fp8", SMELT_DT_F8_E4M3, SMELT_DT_F32, 2, 2, 3, "a.weight", "a.weight_scale_inv", "c.weight", 0,
         SMELT_EFORMAT,
         "m.safetensors: 'c.weight': F8_E4M3 weight without block scales (expected a tensor 'c.weight_scale_inv' of [2, 3] "
         "block scales)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const bad_case *c = &cases[k];
        memsrc m = {0};
        add(&m, c->wname, c->wdt, c->wnd, 200, 300, buf);
        add(&m, c->sname, c->sdt, 2, c->sr, c->sc, buf);
        if (c->extra) add(&m, c->extra, strstr(c->extra, "scale") ? SMELT_DT_F32 : SMELT_DT_F8_E4M3, 2, 200, 300, buf);
        smelt_tsrc src = {&m_vt, &m};
        smelt_fp8_cfg off = {0};
        smelt_err e;
        smelt_err_clear(&e);
        cr_expect_eq(smelt_tsrc_wrap_fp8(&src, c->cfg_off ? &off : &on, &e), c->code, "%s: code %d", c->what, e.code);
        cr_expect_eq(src.self, (void *)&m, "%s: the source is left as it was", c->what);
        char line[512];
        line_of(&e, line, sizeof line);
        cr_expect_str_eq(line, c->line, "%s", c->what);
        cr_expect_not(m.closed);
    }
}

Test(fp8src, config_refusals_exact_lines)
{
    const struct {
        const char *qc;
        int code;
        const char *line; /* after "config.json: " */
    } cases[] = {
        {"{\"quant_method\": \"gptq\", \"bits\": 4}", SMELT_EUNSUPPORTED,
         "'quantization_config.quant_method': 'gptq' is not supported: smelt reads unquantized checkpoints and "
         "block-scaled fp8 ({\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]})"},
        {"{\"quant_method\": \"fp8\", \"fmt\": \"e5m2\", \"weight_block_size\": [128, 128]}", SMELT_EUNSUPPORTED,
         "'quantization_config.fmt': 'e5m2' is not supported: only e4m3 weights have block scales ({\"quant_method\": "
         "\"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]})"},
        {"{\"quant_method\": \"fp8\", \"activation_scheme\": \"static\"}", SMELT_EUNSUPPORTED,
         "'quantization_config.weight_block_size': missing: per-tensor and per-channel fp8 scales are not supported "
         "({\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]})"},
        {"{\"quant_method\": \"fp8\", \"weight_block_size\": [128, 64]}", SMELT_EUNSUPPORTED,
         "'quantization_config.weight_block_size': [128, 64] is not supported: only 128 × 128 blocks (the layout of "
         "DeepSeek-V3 and the Qwen3 FP8 releases)"},
        {"{\"quant_method\": \"fp8\", \"weight_block_size\": 128}", SMELT_EFORMAT,
         "'quantization_config.weight_block_size': expected two positive integers, e.g. [128, 128]"},
        {"{\"weight_block_size\": [128, 128]}", SMELT_EFORMAT,
         "'quantization_config.quant_method': expected a string (e.g. \"fp8\")"},
        {"\"fp8\"", SMELT_EFORMAT, "'quantization_config': expected an object"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char text[512];
        snprintf(text, sizeof text, "{\"quantization_config\": %s}", cases[k].qc);
        json_t *cfg = json_loads(text, 0, NULL);
        cr_assert_not_null(cfg);
        smelt_fp8_cfg out;
        smelt_err e;
        smelt_err_clear(&e);
        cr_expect_eq(smelt_fp8_cfg_read(cfg, "config.json", &out, &e), cases[k].code, "%s", cases[k].qc);
        char line[512], want[600];
        line_of(&e, line, sizeof line);
        snprintf(want, sizeof want, "config.json: %s", cases[k].line);
        cr_expect_str_eq(line, want);
        json_decref(cfg);
    }
    json_t *cfg = json_loads("{\"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", "
                             "\"activation_scheme\": \"dynamic\", \"weight_block_size\": [128, 128]}, \"x\": 1}",
                             0, NULL);
    smelt_fp8_cfg out;
    smelt_err e;
    cr_assert_eq(smelt_fp8_cfg_read(cfg, "config.json", &out, &e), 0);
    cr_expect(out.on && out.block_rows == 128 && out.block_cols == 128);
    json_decref(cfg);
    cfg = json_loads("{\"quantization_config\": null}", 0, NULL);
    cr_assert_eq(smelt_fp8_cfg_read(cfg, "config.json", &out, &e), 0);
    cr_expect_not(out.on);
    json_decref(cfg);
}

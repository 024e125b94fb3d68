/* test_quantize.c — smelt_quantize_run() end to end: plans equal to llama_model_quantize's
 * own (--dry-run log) for every ftype on a tiny-Mixtral-shaped model and on a
 * Mixtral-8x7B-shaped metadata-only GGUF, with and without an imatrix; outputs laid out
 * like llama.cpp's (byte-identical for the float ftypes) and loadable by llama.cpp;
 * --keep-split; thread independence; and the error corpus with exact messages. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/base/file.h"
#include "formats/imatrix.h"
#include "quant/qtypes.h"
#include "quant/quantize.h"
#include "tests/common/quantize_plans.h"

#define TOK_SRC "tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf"
#define FIX_IMX "tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf"

/* ==== running smelt ==== */

typedef struct srun {
    char names[QR_MAX_TENSORS][64];
    int types[QR_MAX_TENSORS];
    size_t n;
    char warn[16][1024];
    size_t n_warn;
    uint64_t nonfinite;
    uint64_t out_bytes;
    bool can_run;
} srun;

static void s_warn(void *u, const char *msg)
{
    srun *r = u;
    if (r->n_warn < 16) snprintf(r->warn[r->n_warn++], 1024, "%s", msg);
}

static void s_plan(void *u, const smelt_qplan *p)
{
    srun *r = u;
    r->n = p->n;
    r->can_run = p->can_run;
    r->out_bytes = p->out_bytes;
    for (size_t i = 0; i < p->n && i < QR_MAX_TENSORS; i++) {
        snprintf(r->names[i], 64, "%s", p->t[i].name);
        r->types[i] = p->t[i].new_type;
    }
}

static void s_done(void *u, const smelt_qplan *p)
{
    srun *r = u;
    r->nonfinite = 0;
    for (size_t i = 0; i < p->n; i++) r->nonfinite += p->t[i].nonfinite;
}

static void opts_init(smelt_quantize_opts *o, srun *r, const char *ftype)
{
    smelt_quantize_opts_default(o);
    memset(r, 0, sizeof *r);
    o->ftype = ftype;
    o->n_threads = 2;
    o->notes = (smelt_notes){s_warn, r};
    o->on_plan = s_plan;
    o->on_done = s_done;
    o->user = r;
}

static const char *line_of(const smelt_err *e)
{
    static char line[1500];
    smelt_err_format(e, line, sizeof line);
    return line;
}

/* A scratch directory with the test models, made once per test. */
typedef struct env {
    char dir[4096];
    char tiny[4200];  /* moe-tiny with random weights and the Llama-2 vocabulary */
    char imx[4096];   /* llama-imatrix's reference imatrix for the tiny Mixtral shapes, or "" */
} env;

static void env_make(env *v)
{
    cr_assert_eq(tu_mkdtemp(v->dir, sizeof v->dir), 0);
    char tok[4096];
    tu_path(tok, sizeof tok, TOK_SRC);
    snprintf(v->tiny, sizeof v->tiny, "%s/tiny-f16.gguf", v->dir);
    (void)tok;
    cr_assert_eq(qr_write_model(v->tiny, &qr_tiny_mixtral, QR_DATA, QR_SMALL_VOCAB), 0);
    tu_path(v->imx, sizeof v->imx, FIX_IMX);
    if (!smelt_file_exists(v->imx)) v->imx[0] = 0;
}

/* ==== plans against llama_model_quantize --dry-run ==== */

static size_t llama_dry_run(const lq_api *a, const char *in, int ftype, bool imx, char (*names)[64], char (*types)[16])
{
    static const float one[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    lq_imx im[2] = {{"blk.0.attn_q.weight", one, 8}, {NULL, NULL, 0}};
    lq_params p = a->default_params();
    p.ftype = ftype;
    p.dry_run = true;
    p.imatrix = imx ? im : NULL; /* in a dry run llama.cpp only asks whether there is one */
    char *log = NULL, out[4200];
    snprintf(out, sizeof out, "%s.never-written", in);
    cr_assert_eq(lq_quantize(a, in, out, &p, &log), 0, "llama_model_quantize --dry-run failed on %s", in);
    size_t n = lq_parse_dry_run(log, names, types, QR_MAX_TENSORS);
    free(log);
    return n;
}

static void compare_plans(const lq_api *a, const char *smelt_in, const char *llama_in, const char *imx, const char *what)
{
    static char names[QR_MAX_TENSORS][64], types[QR_MAX_TENSORS][16];
    static srun r;
    const smelt_ftype_info *fts[64];
    size_t nf = qr_snapshot_ftypes(fts), bad = 0, checked = 0;
    for (size_t f = 0; f < nf; f++) {
        smelt_quantize_opts o;
        opts_init(&o, &r, fts[f]->name);
        o.dry_run = true;
        o.imatrix = imx;
        smelt_err e;
        cr_assert_eq(smelt_quantize_run(&o, smelt_in, NULL, NULL, &e), 0, "%s %s: %s", what, fts[f]->name, line_of(&e));
        size_t n = llama_dry_run(a, llama_in, fts[f]->ftype, imx != NULL, names, types);
        cr_assert_eq(n, r.n, "%s %s: llama.cpp lists %zu tensors, smelt %zu", what, fts[f]->name, n, r.n);
        for (size_t i = 0; i < n; i++) {
            checked++;
            if (strcmp(names[i], r.names[i]) || strcmp(types[i], smelt_type_name(r.types[i]))) {
                if (bad++ < 10)
                    cr_log_error("%s %s #%zu: llama.cpp %s %s, smelt %s %s", what, fts[f]->name, i, names[i], types[i],
                                 r.names[i], smelt_type_name(r.types[i]));
            }
        }
    }
    cr_assert_eq(bad, 0, "%s: %zu of %zu planned tensors differ (name, order or type)", what, bad, checked);
}

Test(quantize, plan_equals_llama_on_tiny_moe, .timeout = 300)
{
    const lq_api *a = lq_get();
    if (!a) cr_skip_test("llama.cpp oracle not installed");
    env v;
    env_make(&v);
    compare_plans(a, v.tiny, v.tiny, NULL, "moe-tiny");
    if (v.imx[0]) compare_plans(a, v.tiny, v.tiny, v.imx, "moe-tiny + imatrix");
    tu_rmtree(v.dir);
    if (!v.imx[0]) cr_skip_test("compared without an imatrix only: %s not present", FIX_IMX);
}

/* Mixtral-8x7B shapes: smelt plans from a metadata-only GGUF; llama.cpp refuses those
 * ("data is not within the file bounds") even for --dry-run, so it gets the same header
 * followed by a hole as large as the data (a sparse file: no disk space used). */
Test(quantize, plan_equals_llama_on_mixtral_8x7b, .timeout = 300)
{
    const lq_api *a = lq_get();
    if (!a) cr_skip_test("llama.cpp oracle not installed");
    char dir[4096], meta[4200], sparse[4200], imx[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(meta, sizeof meta, "%s/mixtral-meta.gguf", dir);
    snprintf(sparse, sizeof sparse, "%s/mixtral-sparse.gguf", dir);
    cr_assert_eq(qr_write_model(meta, &qr_shapes[1], QR_META, NULL), 0);
    cr_assert_eq(qr_write_model(sparse, &qr_shapes[1], QR_SPARSE, NULL), 0);
    struct stat st;
    cr_assert_eq(stat(sparse, &st), 0);
    cr_assert_gt(st.st_size, 90000000000LL, "the sparse file has the full f16 size");
    /* an imatrix for every weight of the model */
    smelt_imx *m = smelt_imx_new();
    static float sums[14336 * 8];
    int64_t counts[8] = {5, 7, 0, 9, 11, 3, 4, 2};
    for (size_t i = 0; i < sizeof sums / sizeof sums[0]; i++) sums[i] = 1.0f + (float)(i % 7);
    static const char *w[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    smelt_err e;
    for (int l = 0; l < 32; l++)
        for (int k = 0; k < 7; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, w[k]);
            uint64_t cols = k == 6 ? 14336 : 4096, nmat = k >= 4 ? 8 : 1;
            cr_assert_eq(smelt_imx_add(m, nm, cols * nmat, nmat, sums, counts, &e), 0);
        }
    cr_assert_eq(smelt_imx_add_dataset(m, "synthetic", &e), 0);
    m->chunk_count = 3;
    m->chunk_size = 512;
    snprintf(imx, sizeof imx, "%s/mixtral.imatrix.gguf", dir);
    cr_assert_eq(smelt_imx_write(m, imx, SMELT_IMX_GGUF, &e), 0, "%s", e.msg);
    smelt_imx_free(m);
    compare_plans(a, meta, sparse, NULL, "mixtral-8x7b");
    compare_plans(a, meta, sparse, imx, "mixtral-8x7b + imatrix");
    tu_rmtree(dir);
}

/* ==== outputs against llama.cpp's ==== */

static void gguf_same_layout(const char *a_path, const char *b_path, bool same_data)
{
    smelt_gguf *a, *b;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(a_path, 0, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(smelt_gguf_open(b_path, 0, &b, &e), 0, "%s", e.msg);
    cr_assert_eq(smelt_gguf_n_kv(a), smelt_gguf_n_kv(b));
    for (uint64_t i = 0; i < smelt_gguf_n_kv(a); i++) {
        const smelt_gguf_kv *x = smelt_gguf_kv_at(a, i), *y = smelt_gguf_kv_at(b, i);
        cr_assert_str_eq(x->key, y->key);
        cr_assert(x->value_size == y->value_size && !memcmp(x->data, y->data, x->value_size), "%s", x->key);
    }
    cr_assert_eq(smelt_gguf_n_tensors(a), smelt_gguf_n_tensors(b));
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(a); i++) {
        const smelt_gguf_tensor *x = smelt_gguf_tensor_at(a, i), *y = smelt_gguf_tensor_at(b, i);
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(x->type, y->type, "%s", x->name);
        cr_assert_eq(x->offset, y->offset, "%s", x->name);
        cr_assert_eq(x->n_dims, y->n_dims, "%s", x->name);
        if (same_data || !smelt_type_is_quantized(x->type))
            cr_assert(!memcmp(x->data, y->data, x->nbytes), "%s: data differ", x->name);
    }
    cr_assert_eq(smelt_gguf_file_size(a), smelt_gguf_file_size(b));
    smelt_gguf_close(a);
    smelt_gguf_close(b);
}

/* llama_model_params of the bundled libllama (include/llama.h). */
typedef struct lm_params {
    void *devices;
    const void *buft;
    int32_t n_gpu_layers;
    int split_mode, load_mode, lazy_mode;
    int32_t main_gpu;
    const float *tensor_split;
    void *progress_cb, *progress_ud;
    const void *kv_overrides;
    bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
} lm_params;

/* llama_model_kv_override */
typedef struct lq_kv {
    int tag; /* 0 int, 1 float, 2 bool, 3 str */
    char key[128];
    union {
        int64_t i64;
        double f64;
        bool b;
        char str[128];
    } v;
} lq_kv;

/* What llama-quantize hands llama_model_quantize for --imatrix FILE: the weights
 * (sums / counts, 1 for an expert without tokens) and the provenance overrides. */
typedef struct lq_imx_set {
    lq_imx *e;
    float **w;
    size_t n;
    lq_kv kv[5];
} lq_imx_set;

static void lq_imx_load(lq_imx_set *s, const char *path)
{
    smelt_imx *m;
    smelt_err e;
    cr_assert_eq(smelt_imx_read(path, &m, &e), 0);
    s->n = m->n_entries;
    s->e = calloc(s->n + 1, sizeof *s->e);
    s->w = calloc(s->n, sizeof *s->w);
    for (size_t i = 0; i < s->n; i++) {
        const smelt_imx_entry *en = &m->entries[i];
        s->w[i] = malloc(en->n_values * sizeof(float));
        cr_assert_eq(smelt_imx_weights(m, en, s->w[i], NULL, &e), 0);
        s->e[i] = (lq_imx){strdup(en->name), s->w[i], en->n_values};
    }
    memset(s->kv, 0, sizeof s->kv);
    s->kv[0].tag = 3;
    strcpy(s->kv[0].key, "quantize.imatrix.file");
    snprintf(s->kv[0].v.str, 128, "%.127s", path);
    s->kv[1].tag = 3;
    strcpy(s->kv[1].key, "quantize.imatrix.dataset");
    snprintf(s->kv[1].v.str, 128, "%.127s", m->datasets[0]);
    s->kv[2].tag = 0;
    strcpy(s->kv[2].key, "quantize.imatrix.entries_count");
    s->kv[2].v.i64 = (int64_t)m->n_entries;
    s->kv[3].tag = 0;
    strcpy(s->kv[3].key, "quantize.imatrix.chunks_count");
    s->kv[3].v.i64 = m->chunk_count;
    smelt_imx_free(m);
}

static void lq_imx_free(lq_imx_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free((char *)s->e[i].name);
        free(s->w[i]);
    }
    free(s->e);
    free(s->w);
}

typedef struct lm_api {
    lm_params (*defp)(void);
    void *(*load)(const char *, lm_params);
    void (*mfree)(void *);
} lm_api;

static bool lm_get(lm_api *m)
{
    void *l = tu_oracle_llama();
    if (!l || !tu_oracle_load_backends()) return false;
    m->defp = (lm_params(*)(void))dlsym(l, "llama_model_default_params");
    m->load = (void *(*)(const char *, lm_params))dlsym(l, "llama_model_load_from_file");
    m->mfree = (void (*)(void *))dlsym(l, "llama_model_free");
    return m->defp && m->load && m->mfree;
}

/* Every ftype smelt can produce (importance weights where the mix needs them, and one
 * extra Q4_K_M run with them): the output has llama.cpp's metadata, tensor order, types
 * and offsets (float ftypes: byte-identical), and llama.cpp loads it, checking every
 * block (check_tensors). In three parts (every third ftype) so that the runner's jobs
 * share the work. */
enum { LOAD_PARTS = 3 };
static void outputs_match_llama_and_load(size_t part)
{
    const lq_api *a = lq_get();
    lm_api lm;
    if (!a || !lm_get(&lm)) cr_skip_test("llama.cpp oracle not installed");
    env v;
    env_make(&v);
    lq_imx_set li = {0};
    if (v.imx[0]) lq_imx_load(&li, v.imx);
    const smelt_ftype_info *fts[64];
    size_t nf = qr_snapshot_ftypes(fts), ran = 0, skipped_imx = 0;
    fts[nf++] = smelt_ftype_find("COPY");
    fts[nf++] = smelt_ftype_find("Q4_K_M"); /* again, with an imatrix */
    static srun r;
    for (size_t f = part; f < nf; f += LOAD_PARTS) {
        const smelt_ftype_info *fi = fts[f];
        smelt_quantize_opts o;
        opts_init(&o, &r, fi->name);
        o.dry_run = true;
        smelt_err e;
        cr_assert_eq(smelt_quantize_run(&o, v.tiny, NULL, NULL, &e), 0);
        if (!r.can_run) continue;
        bool use_imx = f == nf - 1;
        for (size_t i = 0; i < r.n_warn; i++) use_imx |= strstr(r.warn[i], "will need an importance matrix") != NULL;
        if (use_imx && !v.imx[0]) {
            skipped_imx++;
            continue;
        }
        char ours[4200], theirs[4200];
        snprintf(ours, sizeof ours, "%s/smelt-%s.gguf", v.dir, fi->name);
        snprintf(theirs, sizeof theirs, "%s/llama-%s.gguf", v.dir, fi->name);
        opts_init(&o, &r, fi->name);
        o.imatrix = use_imx ? v.imx : NULL;
        cr_assert_eq(smelt_quantize_run(&o, v.tiny, ours, NULL, &e), 0, "%s: %s", fi->name, line_of(&e));
        lq_params p = a->default_params();
        p.ftype = fi->ftype;
        p.only_copy = fi->copy;
        p.nthread = 2;
        if (use_imx) {
            p.imatrix = li.e;
            p.kv_overrides = li.kv;
        }
        cr_assert_eq(lq_quantize(a, v.tiny, theirs, &p, NULL), 0);
        bool floats = fi->copy || !smelt_type_is_quantized(fi->default_type);
        gguf_same_layout(ours, theirs, floats);
        if (floats) cr_assert_eq(tu_cmp_files(ours, theirs), 0, "%s: files differ", fi->name);
        lm_params mp = lm.defp();
        cr_assert_eq(mp.n_gpu_layers, -1, "llama_model_params layout does not match this libllama");
        mp.check_tensors = true;
        void *model = lm.load(ours, mp);
        cr_assert(model, "llama.cpp cannot load smelt's %s output", fi->name);
        lm.mfree(model);
        unlink(ours);
        unlink(theirs);
        ran++;
    }
    lq_imx_free(&li);
    cr_assert_geq(ran, 2, "part %zu ran %zu ftypes", part, ran);
    tu_rmtree(v.dir);
    if (skipped_imx) cr_skip_test("%zu ftypes needing an imatrix not checked: %s absent", skipped_imx, FIX_IMX);
}

Test(quantize, outputs_match_llama_and_load_part_1, .timeout = 600) { outputs_match_llama_and_load(0); }
Test(quantize, outputs_match_llama_and_load_part_2, .timeout = 600) { outputs_match_llama_and_load(1); }
Test(quantize, outputs_match_llama_and_load_part_3, .timeout = 600) { outputs_match_llama_and_load(2); }

/* ==== --keep-split ==== */

/* Split a model into `n` shards the way gguf-split does (first shard: every KV). */
static void split_model(const char *in, const char *prefix, int n)
{
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(in, 0, &g, &e), 0);
    uint64_t nt = smelt_gguf_n_tensors(g), per = (nt + (uint64_t)n - 1) / (uint64_t)n;
    for (int s = 0; s < n; s++) {
        smelt_gguf_writer *w = smelt_gguf_writer_new();
        if (s == 0) cr_assert_eq(smelt_gguf_writer_copy_all_kv(w, g, &e), 0);
        smelt_gguf_writer_set_u16(w, "split.no", (uint16_t)s, &e);
        smelt_gguf_writer_set_u16(w, "split.count", (uint16_t)n, &e);
        smelt_gguf_writer_set_i32(w, "split.tensors.count", (int32_t)nt, &e);
        for (uint64_t i = s * per; i < nt && i < (s + 1) * per; i++) {
            const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
            cr_assert_eq(smelt_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, &e), 0);
        }
        char p[4300];
        smelt_gguf_split_path(p, sizeof p, prefix, s, n);
        cr_assert_eq(smelt_gguf_writer_begin(w, p, &e), 0);
        for (uint64_t i = s * per; i < nt && i < (s + 1) * per; i++) {
            const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
            cr_assert_eq(smelt_gguf_writer_write(w, t->data, t->nbytes, &e), 0);
        }
        cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
        smelt_gguf_writer_free(w);
    }
    smelt_gguf_close(g);
}

Test(quantize, keep_split_round_trip, .timeout = 120)
{
    env v;
    env_make(&v);
    char prefix[4200], first[4300], out[4300], whole[4300], one[4300];
    snprintf(prefix, sizeof prefix, "%s/sharded", v.dir);
    split_model(v.tiny, prefix, 3);
    smelt_gguf_split_path(first, sizeof first, prefix, 0, 3);
    static srun r;
    smelt_quantize_opts o;
    smelt_err e;
    /* split in, split out: same shards, same tensors in each */
    opts_init(&o, &r, "F32");
    o.keep_split = true;
    snprintf(out, sizeof out, "%s/q.gguf", v.dir);
    cr_assert_eq(smelt_quantize_run(&o, first, out, NULL, &e), 0, "%s", line_of(&e));
    for (int s = 0; s < 3; s++) {
        char ip[4400], op[4400], opref[4300];
        smelt_gguf_split_path(ip, sizeof ip, prefix, s, 3);
        snprintf(opref, sizeof opref, "%s/q", v.dir);
        smelt_gguf_split_path(op, sizeof op, opref, s, 3);
        smelt_gguf *gi, *go;
        cr_assert_eq(smelt_gguf_open(ip, SMELT_GGUF_ONE_FILE, &gi, &e), 0);
        cr_assert_eq(smelt_gguf_open(op, SMELT_GGUF_ONE_FILE, &go, &e), 0, "%s missing", op);
        cr_assert_eq(smelt_gguf_n_tensors(gi), smelt_gguf_n_tensors(go));
        for (uint64_t i = 0; i < smelt_gguf_n_tensors(gi); i++) {
            const smelt_gguf_tensor *x = smelt_gguf_tensor_at(gi, i), *y = smelt_gguf_tensor_at(go, i);
            cr_assert_str_eq(x->name, y->name, "shard order kept");
            cr_assert_eq(y->type, x->n_dims >= 2 ? SMELT_TYPE_F32 : x->type);
        }
        uint32_t no, cnt;
        int64_t tot;
        cr_assert_eq(smelt_gguf_get_u32(go, "split.no", &no, &e), 0);
        cr_assert_eq(smelt_gguf_get_u32(go, "split.count", &cnt, &e), 0);
        cr_assert_eq(smelt_gguf_get_i64(go, "split.tensors.count", &tot, &e), 0);
        cr_assert(no == (uint32_t)s && cnt == 3 && tot == (int64_t)smelt_gguf_n_tensors(gi) * 0 + tot);
        cr_assert_eq(smelt_gguf_find_kv(go, "general.architecture") >= 0, s == 0, "metadata in the first shard only");
        smelt_gguf_close(gi);
        smelt_gguf_close(go);
    }
    /* split in, one file out: the same bytes as quantizing the unsplit model */
    opts_init(&o, &r, "BF16");
    snprintf(whole, sizeof whole, "%s/merged.gguf", v.dir);
    cr_assert_eq(smelt_quantize_run(&o, first, whole, NULL, &e), 0, "%s", line_of(&e));
    opts_init(&o, &r, "BF16");
    snprintf(one, sizeof one, "%s/one.gguf", v.dir);
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, one, NULL, &e), 0);
    cr_assert_eq(tu_cmp_files(whole, one), 0);
    /* and llama.cpp's --keep-split gives the same shards, byte for byte */
    const lq_api *a = lq_get();
    if (a) {
        lq_params p = a->default_params();
        p.ftype = SMELT_FTYPE_F32;
        p.keep_split = true;
        char lpref[4300];
        snprintf(lpref, sizeof lpref, "%s/l", v.dir);
        cr_assert_eq(lq_quantize(a, first, lpref, &p, NULL), 0);
        for (int s = 0; s < 3; s++) {
            char lp[4400], op[4400], opref[4300];
            smelt_gguf_split_path(lp, sizeof lp, lpref, s, 3);
            snprintf(opref, sizeof opref, "%s/q", v.dir);
            smelt_gguf_split_path(op, sizeof op, opref, s, 3);
            cr_assert_eq(tu_cmp_files(lp, op), 0, "shard %d differs from llama.cpp's", s + 1);
        }
    }
    /* a missing shard */
    char p2[4400];
    smelt_gguf_split_path(p2, sizeof p2, prefix, 2, 3);
    unlink(p2);
    opts_init(&o, &r, "F16");
    cr_assert_eq(smelt_quantize_run(&o, first, one, NULL, &e), SMELT_EIO);
    char want[9000];
    snprintf(want, sizeof want, "%s: shard 3 of 3 is missing (%s says the model has 3 files)", p2, first);
    cr_assert_str_eq(line_of(&e), want);
    tu_rmtree(v.dir);
    if (!a) cr_skip_test("split round trip checked; llama.cpp comparison skipped (oracle not installed)");
}

/* ==== threads, NaN, requantizing ==== */

Test(quantize, same_bytes_for_any_thread_count, .timeout = 300)
{
    env v;
    env_make(&v);
    static const char *types[] = {"Q4_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q6_K", "BF16"};
    size_t n = 0;
    static srun r;
    for (size_t f = 0; f < sizeof types / sizeof types[0]; f++) {
        char p1[4300], p3[4300];
        snprintf(p1, sizeof p1, "%s/t1.gguf", v.dir);
        snprintf(p3, sizeof p3, "%s/t3.gguf", v.dir);
        smelt_quantize_opts o;
        smelt_err e;
        opts_init(&o, &r, types[f]);
        o.imatrix = v.imx[0] ? v.imx : NULL;
        o.n_threads = 1;
        if (smelt_quantize_run(&o, v.tiny, p1, NULL, &e)) continue; /* not producible yet */
        opts_init(&o, &r, types[f]);
        o.imatrix = v.imx[0] ? v.imx : NULL;
        o.n_threads = 3;
        cr_assert_eq(smelt_quantize_run(&o, v.tiny, p3, NULL, &e), 0);
        cr_assert_eq(tu_cmp_files(p1, p3), 0, "%s: output depends on the thread count", types[f]);
        n++;
    }
    cr_assert_geq(n, 1);
    tu_rmtree(v.dir);
}

/* A small F32 model with non-finite weights and a Q8_0 tensor, written by hand. Its two
 * tensors are no complete llama model, so it names another architecture (which the model
 * check of formats/model_check.h lets through). */
static void write_odd_inputs(const char *path)
{
    smelt_err e;
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    smelt_gguf_writer_set_str(w, "general.architecture", "odd", &e);
    smelt_gguf_writer_set_u32(w, "odd.block_count", 1, &e);
    smelt_gguf_writer_set_u32(w, "odd.attention.head_count", 4, &e);
    uint64_t ne[2] = {64, 4};
    smelt_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 2, ne, SMELT_TYPE_F32, &e);
    smelt_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", 2, ne, SMELT_TYPE_Q8_0, &e);
    cr_assert_eq(smelt_gguf_writer_begin(w, path, &e), 0);
    float f[256];
    for (int i = 0; i < 256; i++) f[i] = (float)i / 256;
    f[3] = NAN;
    f[100] = INFINITY;
    f[101] = -INFINITY;
    f[255] = NAN;
    cr_assert_eq(smelt_gguf_writer_write(w, f, sizeof f, &e), 0);
    uint8_t q[8 * 34];
    for (int b = 0; b < 8; b++) {
        uint16_t d = smelt_f32_to_f16(0.5f);
        memcpy(q + 34 * b, &d, 2);
        for (int j = 0; j < 32; j++) q[34 * b + 2 + j] = (uint8_t)(int8_t)(j - 16 + b);
    }
    cr_assert_eq(smelt_gguf_writer_write(w, q, sizeof q, &e), 0);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0);
    smelt_gguf_writer_free(w);
}

Test(quantize, nonfinite_weights_reported_and_requantize_gate)
{
    char dir[4096], in[4200], out[4200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(in, sizeof in, "%s/odd.gguf", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    write_odd_inputs(in);
    static srun r;
    smelt_quantize_opts o;
    smelt_err e;
    opts_init(&o, &r, "F16");
    cr_assert_eq(smelt_quantize_run(&o, in, out, NULL, &e), SMELT_EUNSUPPORTED);
    char want[10000];
    snprintf(want, sizeof want, "%s: 'blk.0.attn_k.weight': already quantized (q8_0 → f16); requantizing loses quality, "
                                "pass --allow-requantize to do it anyway", in);
    cr_assert_str_eq(line_of(&e), want);
    cr_assert_not(smelt_file_exists(out), "nothing written");
    opts_init(&o, &r, "F16");
    o.allow_requantize = true;
    o.allow_nonfinite = true; /* the values are written as they are, with a warning */
    cr_assert_eq(smelt_quantize_run(&o, in, out, NULL, &e), 0, "%s", line_of(&e));
    cr_assert_eq(r.nonfinite, 4);
    bool saw_nan = false, saw_req = false;
    for (size_t i = 0; i < r.n_warn; i++) {
        saw_nan |= !strcmp(r.warn[i], "tensor 'blk.0.attn_q.weight': 4 NaN/Inf values in the input, kept as they are");
        saw_req |= !strncmp(r.warn[i], "requantizing 1 already-quantized tensor (quality is lower", 56);
    }
    cr_assert(saw_nan && saw_req, "warnings: %s | %s", r.warn[0], r.n_warn > 1 ? r.warn[1] : "");
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0);
    const smelt_gguf_tensor *k = smelt_gguf_find_tensor(g, "blk.0.attn_k.weight");
    cr_assert_eq(k->type, SMELT_TYPE_F16);
    uint16_t h;
    memcpy(&h, k->data + 2 * (32 * 2 + 5), 2);
    cr_assert_eq(smelt_f16_to_f32(h), 0.5f * (5 - 16 + 2), "dequantized exactly");
    const smelt_gguf_tensor *q = smelt_gguf_find_tensor(g, "blk.0.attn_q.weight");
    memcpy(&h, q->data + 2 * 100, 2);
    cr_assert_eq(smelt_f16_to_f32(h), INFINITY);
    smelt_gguf_close(g);
    tu_rmtree(dir);
}

/* Overwrite element `index` of tensor `name` of a GGUF in place with the es bytes at v. */
static void poke(const char *path, const char *name, uint64_t index, const void *v, size_t es)
{
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(path, 0, &g, &e), 0, "%s", e.msg);
    const smelt_gguf_tensor *t = smelt_gguf_find_tensor(g, name);
    cr_assert(t && index < t->nelements, "%s", name);
    uint64_t off = smelt_gguf_data_offset(g) + t->offset + index * es;
    smelt_gguf_close(g);
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    cr_assert_eq(fseek(f, (long)off, SEEK_SET), 0);
    cr_assert_eq(fwrite(v, es, 1, f), 1);
    fclose(f);
}

/* One NaN/Inf in a valid model: refused (file, tensor, flat index), nothing written; then
 * written with allow_nonfinite, with the per-tensor and the total warning. */
static void nonfinite_case(const char *dir, const char *in, const char *ftype, const char *tensor, uint64_t index,
                           const char *kind, const char *kept)
{
    char out[4200], want[10000];
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    static srun r;
    smelt_quantize_opts o;
    smelt_err e;
    opts_init(&o, &r, ftype);
    cr_assert_eq(smelt_quantize_run(&o, in, out, NULL, &e), SMELT_EFORMAT, "%s", line_of(&e));
    snprintf(want, sizeof want, "%s: '%s': value %llu is %s; smelt refuses non-finite weights (--allow-nonfinite "
                                "writes them anyway)",
             in, tensor, (unsigned long long)index, kind);
    cr_expect_str_eq(line_of(&e), want);
    cr_expect_not(smelt_file_exists(out), "nothing written");
    char cmd[4400], *ls = NULL;
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c smelt-tmp", dir);
    tu_run(cmd, &ls);
    cr_expect_eq(atoi(ls ? ls : "-1"), 0, "temporary file left");
    free(ls);
    opts_init(&o, &r, ftype);
    o.allow_nonfinite = true;
    cr_assert_eq(smelt_quantize_run(&o, in, out, NULL, &e), 0, "%s", line_of(&e));
    cr_expect_eq(r.nonfinite, 1);
    snprintf(want, sizeof want, "tensor '%s': 1 NaN/Inf value in the input, %s", tensor, kept);
    bool saw = false, saw_total = false;
    for (size_t i = 0; i < r.n_warn; i++) {
        saw |= !strcmp(r.warn[i], want);
        saw_total |= !strcmp(r.warn[i], "wrote 1 NaN/Inf value in 1 tensor (--allow-nonfinite)");
    }
    cr_expect(saw && saw_total, "%zu warnings: %s", r.n_warn, r.n_warn ? r.warn[0] : "");
    unlink(out);
}

Test(quantize, nonfinite_weights_refused_f16_f32_and_copied, .timeout = 300)
{
    env v;
    env_make(&v);
    char f16[4300], f32[4300];
    uint16_t h;
    float x;
    /* F16 input: +Inf in a weight decoded and quantized */
    snprintf(f16, sizeof f16, "%s/inf-f16.gguf", v.dir);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", v.tiny, f16);
    cr_assert_eq(tu_run(cmd, NULL), 0);
    h = 0x7c00;
    poke(f16, "blk.0.attn_q.weight", 70, &h, 2);
    nonfinite_case(v.dir, f16, "Q8_0", "blk.0.attn_q.weight", 70, "+Inf", "quantized as 0");
    /* F32 input (the model made F32 by smelt itself): NaN in a stacked expert tensor */
    static srun r;
    smelt_quantize_opts o;
    smelt_err e;
    snprintf(f32, sizeof f32, "%s/nan-f32.gguf", v.dir);
    opts_init(&o, &r, "F32");
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, f32, NULL, &e), 0, "%s", line_of(&e));
    x = NAN;
    poke(f32, "blk.1.ffn_down_exps.weight", 123456, &x, 4);
    nonfinite_case(v.dir, f32, "Q8_0", "blk.1.ffn_down_exps.weight", 123456, "NaN", "quantized as 0");
    /* an F32 norm, copied as it is */
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, f32, NULL, &e), 0, "%s", line_of(&e));
    x = -INFINITY;
    poke(f32, "blk.2.ffn_norm.weight", 7, &x, 4);
    nonfinite_case(v.dir, f32, "Q8_0", "blk.2.ffn_norm.weight", 7, "-Inf", "kept as they are");
    tu_rmtree(v.dir);
}

/* ==== the error corpus ==== */

Test(quantize, errors_exact_messages)
{
    env v;
    env_make(&v);
    static srun r;
    smelt_quantize_opts o;
    smelt_err e;
    char out[4300], want[10000], tmp[4300];
    snprintf(out, sizeof out, "%s/out.gguf", v.dir);

    opts_init(&o, &r, "Q4_K_Z");
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EUSAGE);
    cr_assert_str_eq(line_of(&e),
                     "unknown quantization type 'Q4_K_Z'; valid types: Q4_0 Q4_1 MXFP4_MOE Q5_0 Q5_1 IQ2_XXS IQ2_XS "
                     "IQ2_S IQ2_M IQ1_S IQ1_M TQ1_0 TQ2_0 Q2_K Q2_K_S IQ3_XXS IQ3_S IQ3_M Q3_K IQ3_XS Q3_K_S Q3_K_M "
                     "Q3_K_L IQ4_NL IQ4_XS Q4_K Q4_K_S Q4_K_M Q5_K Q5_K_S Q5_K_M Q6_K Q8_0 F16 BF16 F32 COPY");

    opts_init(&o, &r, "F16");
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, v.tiny, NULL, &e), SMELT_EUSAGE);
    snprintf(want, sizeof want, "%s: output is the same file as the input %s (the model); choose another output name", v.tiny, v.tiny);
    cr_assert_str_eq(line_of(&e), want);
    snprintf(tmp, sizeof tmp, "%s/link.gguf", v.dir);
    cr_assert_eq(link(v.tiny, tmp), 0);
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, tmp, NULL, &e), SMELT_EUSAGE, "a hard link is the same file");
    unlink(tmp);

    const char *inc[1] = {"attn"}, *exc[1] = {"ffn"};
    opts_init(&o, &r, "F16");
    o.include_weights = inc;
    o.n_include = 1;
    o.exclude_weights = exc;
    o.n_exclude = 1;
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EUSAGE);
    cr_assert_str_eq(line_of(&e), "--include-weights and --exclude-weights cannot be used together");

    opts_init(&o, &r, "Q2_K_S");
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EUNSUPPORTED);
    snprintf(want, sizeof want, "%s: 'blk.0.attn_k.weight': Q2_K_S q2_K needs importance weights (pass --imatrix FILE; "
                                "make one with: smelt-imatrix -m %s -f CALIB.txt -o FILE); quantizing it without them "
                                "gives garbage", v.tiny, v.tiny);
    cr_assert_str_eq(line_of(&e), want);
    opts_init(&o, &r, "Q2_K_S");
    o.dry_run = true;
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, NULL, NULL, &e), 0, "a dry run only warns");
    cr_assert_str_eq(r.warn[0], "Q2_K_S: 24 tensors will need an importance matrix (--imatrix) when quantizing for real");

    opts_init(&o, &r, "IQ2_XXS");
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EUNSUPPORTED);
    snprintf(want, sizeof want, "%s: 'blk.0.attn_k.weight': IQ2_XXS iq2_xxs needs importance weights (pass --imatrix "
                                "FILE; make one with: smelt-imatrix -m %s -f CALIB.txt -o FILE); quantizing it "
                                "without them gives garbage", v.tiny, v.tiny);
    cr_assert_str_eq(line_of(&e), want);

    /* the 1-bit types, as llama-quantize: refused without an imatrix, nothing written */
    opts_init(&o, &r, "IQ1_S");
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EUNSUPPORTED);
    snprintf(want, sizeof want, "%s: 'blk.0.attn_k.weight': IQ1_S iq1_s needs importance weights (pass --imatrix "
                                "FILE; make one with: smelt-imatrix -m %s -f CALIB.txt -o FILE); quantizing it "
                                "without them gives garbage", v.tiny, v.tiny);
    cr_assert_str_eq(line_of(&e), want);
    cr_assert_not(smelt_file_exists(out));

    opts_init(&o, &r, "IQ1_M");
    o.pure = true; /* every weight iq1_m; the output and embedding need no imatrix, the rest does */
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EUNSUPPORTED);
    snprintf(want, sizeof want, "%s: 'blk.0.attn_k.weight': IQ1_M iq1_m needs importance weights (pass --imatrix "
                                "FILE; make one with: smelt-imatrix -m %s -f CALIB.txt -o FILE); quantizing it "
                                "without them gives garbage", v.tiny, v.tiny);
    cr_assert_str_eq(line_of(&e), want);
    cr_assert_not(smelt_file_exists(out));

    opts_init(&o, &r, "F16");
    o.assume_free_bytes = 1000000;
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EIO);
    snprintf(want, sizeof want, "%s: not enough free space: the output needs 18214208 bytes (0.02 GB), the filesystem "
                                "has 1000000 bytes (0.00 GB) free", out);
    cr_assert_str_eq(line_of(&e), want);
    cr_assert_not(smelt_file_exists(out));

    /* a metadata-only GGUF can be planned, not quantized */
    char meta[4300];
    snprintf(meta, sizeof meta, "%s/meta.gguf", v.dir);
    cr_assert_eq(qr_write_model(meta, &qr_shapes[0], QR_META, NULL), 0);
    opts_init(&o, &r, "F16");
    cr_assert_eq(smelt_quantize_run(&o, meta, out, NULL, &e), SMELT_EFORMAT);
    opts_init(&o, &r, "Q4_K_M");
    o.dry_run = true;
    cr_assert_eq(smelt_quantize_run(&o, meta, NULL, NULL, &e), 0, "%s", line_of(&e));

    /* split naming */
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/model-part1.gguf", v.dir);
    split_model(v.tiny, bad, 2);
    snprintf(bad, sizeof bad, "%s/model-part1.gguf-00001-of-00002.gguf", v.dir);
    snprintf(tmp, sizeof tmp, "%s/renamed.gguf", v.dir);
    cr_assert_eq(rename(bad, tmp), 0);
    opts_init(&o, &r, "F16");
    cr_assert_eq(smelt_quantize_run(&o, tmp, out, NULL, &e), SMELT_EUSAGE);
    snprintf(want, sizeof want, "%s: the first of 2 shards must be named PREFIX-00001-of-00002.gguf (llama.cpp split naming)", tmp);
    cr_assert_str_eq(line_of(&e), want);
    tu_rmtree(v.dir);
}

/* imatrix problems: sizes, names, metadata, filters. */
Test(quantize, imatrix_errors_and_provenance)
{
    env v;
    env_make(&v);
    static srun r;
    smelt_quantize_opts o;
    smelt_err e;
    char out[4300], imx[4300], want[10000];
    snprintf(out, sizeof out, "%s/out.gguf", v.dir);
    snprintf(imx, sizeof imx, "%s/x.imatrix", v.dir);
    float s[1024];
    int64_t c[4] = {3, 3, 3, 3};
    for (int i = 0; i < 1024; i++) s[i] = 1;
    /* an entry with the wrong column count */
    smelt_imx *m = smelt_imx_new();
    cr_assert_eq(smelt_imx_add(m, "blk.1.attn_q.weight", 128, 1, s, c, &e), 0);
    cr_assert_eq(smelt_imx_add_dataset(m, "d.txt", &e), 0);
    m->chunk_count = 1;
    m->chunk_size = 3;
    cr_assert_eq(smelt_imx_write(m, imx, SMELT_IMX_GGUF, &e), 0);
    smelt_imx_free(m);
    opts_init(&o, &r, "BF16");
    o.imatrix = imx;
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EMISMATCH);
    snprintf(want, sizeof want, "%s: 'blk.1.attn_q.weight': imatrix entry has 128 values (1 matrices), the tensor in %s "
                                "needs 256 (256 columns x 1 experts)", imx, v.tiny);
    cr_assert_str_eq(line_of(&e), want);
    /* names of another model */
    m = smelt_imx_new();
    cr_assert_eq(smelt_imx_add(m, "model.layers.0.mlp.w1.weight", 256, 1, s, c, &e), 0);
    cr_assert_eq(smelt_imx_add_dataset(m, "d.txt", &e), 0);
    m->chunk_size = 3;
    cr_assert_eq(smelt_imx_write(m, imx, SMELT_IMX_GGUF, &e), 0);
    smelt_imx_free(m);
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EMISMATCH);
    snprintf(want, sizeof want, "%s: no imatrix entry matches a tensor of %s (imatrix has e.g. "
                                "'model.layers.0.mlp.w1.weight', the model e.g. 'output.weight')", imx, v.tiny);
    cr_assert_str_eq(line_of(&e), want);
    cr_assert_not(smelt_file_exists(out));
    /* a GGUF imatrix without its metadata keys, like llama-quantize */
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    uint64_t ne[1] = {256}, nc[1] = {1};
    smelt_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.in_sum2", 1, ne, SMELT_TYPE_F32, &e);
    smelt_gguf_writer_add_tensor(w, "blk.0.attn_q.weight.counts", 1, nc, SMELT_TYPE_F32, &e);
    cr_assert_eq(smelt_gguf_writer_begin(w, imx, &e), 0);
    smelt_gguf_writer_write(w, s, 1024, &e);
    smelt_gguf_writer_write(w, s, 4, &e);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0);
    smelt_gguf_writer_free(w);
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), SMELT_EFORMAT);
    snprintf(want, sizeof want, "%s: GGUF imatrix without its metadata (imatrix.datasets, imatrix.chunk_count, "
                                "imatrix.chunk_size)", imx);
    cr_assert_str_eq(line_of(&e), want);
    /* the reference imatrix: provenance keys as llama-quantize writes them */
    if (!v.imx[0]) {
        tu_rmtree(v.dir);
        cr_skip_test("%s not present", FIX_IMX);
    }
    const char *exc[1] = {"attn_q"};
    opts_init(&o, &r, "F32");
    o.imatrix = v.imx;
    o.exclude_weights = exc;
    o.n_exclude = 1;
    cr_assert_eq(smelt_quantize_run(&o, v.tiny, out, NULL, &e), 0, "%s", line_of(&e));
    smelt_gguf *g;
    cr_assert_eq(smelt_gguf_open(out, 0, &g, &e), 0);
    smelt_str str;
    uint32_t u;
    cr_assert_eq(smelt_gguf_get_str(g, "quantize.imatrix.file", &str, &e), 0);
    cr_assert(str.n == strlen(v.imx) && !memcmp(str.p, v.imx, str.n));
    cr_assert_eq(smelt_gguf_get_str(g, "quantize.imatrix.dataset", &str, &e), 0);
    cr_assert(str.n == 22 && !memcmp(str.p, "samples/text/calib.txt", 22));
    cr_assert_eq(smelt_gguf_get_u32(g, "quantize.imatrix.entries_count", &u, &e), 0);
    cr_assert_eq(u, 28, "32 entries minus the 4 attn_q ones");
    cr_assert_eq(smelt_gguf_get_u32(g, "quantize.imatrix.chunks_count", &u, &e), 0);
    cr_assert_eq(u, 93);
    cr_assert_eq(smelt_gguf_get_u32(g, "general.file_type", &u, &e), 0);
    cr_assert_eq(u, 0);
    cr_assert_str_eq(smelt_gguf_kv_at(g, smelt_gguf_n_kv(g) - 1)->key, "quantize.imatrix.chunks_count");
    smelt_gguf_close(g);
    tu_rmtree(v.dir);
}

/* quantize_plans.c — see quantize_plans.h. */
#include "quantize_plans.h"

#define L(x) (snprintf(nm, sizeof nm, "blk.%u.%s", l, x), nm)
#define SYM(h, f, s) (*(void **)&a.f = dlsym(h, s))

void qr_add(qr_tensor *t, size_t *n, const char *name, uint64_t a, uint64_t b, uint64_t c, int type)
{
    snprintf(t[*n].name, sizeof t[*n].name, "%s", name);
    t[*n].ne[0] = a;
    t[*n].ne[1] = b;
    t[*n].ne[2] = c;
    t[*n].ne[3] = 1;
    t[*n].type = type;
    (*n)++;
}

size_t qr_shape_tensors(const qr_shape *s, qr_tensor *t)
{
    size_t n = 0;
    char nm[64];
    uint64_t kv = (uint64_t)s->n_embd / s->n_head * s->n_head_kv;
    qr_add(t, &n, "token_embd.weight", s->n_embd, s->n_vocab, 1, SMELT_TYPE_F16);
    if (s->rope_freqs) qr_add(t, &n, "rope_freqs.weight", s->n_embd / s->n_head / 2, 1, 1, SMELT_TYPE_F32);
    for (uint32_t l = 0; l < s->n_layer; l++) {
#define L(x) (snprintf(nm, sizeof nm, "blk.%u.%s", l, x), nm)
        qr_add(t, &n, L("attn_norm.weight"), s->n_embd, 1, 1, SMELT_TYPE_F32);
        qr_add(t, &n, L("attn_q.weight"), s->n_embd, s->n_embd, 1, SMELT_TYPE_F16);
        qr_add(t, &n, L("attn_k.weight"), s->n_embd, kv, 1, SMELT_TYPE_F16);
        qr_add(t, &n, L("attn_v.weight"), s->n_embd, kv, 1, SMELT_TYPE_F16);
        qr_add(t, &n, L("attn_output.weight"), s->n_embd, s->n_embd, 1, SMELT_TYPE_F16);
        qr_add(t, &n, L("ffn_norm.weight"), s->n_embd, 1, 1, SMELT_TYPE_F32);
        if (s->n_expert > 0) {
            qr_add(t, &n, L("ffn_gate_inp.weight"), s->n_embd, s->n_expert, 1, SMELT_TYPE_F32);
            qr_add(t, &n, L("ffn_gate_exps.weight"), s->n_embd, s->n_ff, s->n_expert, SMELT_TYPE_F16);
            qr_add(t, &n, L("ffn_down_exps.weight"), s->n_ff, s->n_embd, s->n_expert, SMELT_TYPE_F16);
            qr_add(t, &n, L("ffn_up_exps.weight"), s->n_embd, s->n_ff, s->n_expert, SMELT_TYPE_F16);
        } else {
            qr_add(t, &n, L("ffn_gate.weight"), s->n_embd, s->n_ff, 1, SMELT_TYPE_F16);
            qr_add(t, &n, L("ffn_down.weight"), s->n_ff, s->n_embd, 1, SMELT_TYPE_F16);
            qr_add(t, &n, L("ffn_up.weight"), s->n_embd, s->n_ff, 1, SMELT_TYPE_F16);
        }
#undef L
    }
    qr_add(t, &n, "output_norm.weight", s->n_embd, 1, 1, SMELT_TYPE_F32);
    if (!s->tied) qr_add(t, &n, "output.weight", s->n_embd, s->n_vocab, 1, SMELT_TYPE_F16);
    return n;
}

uint32_t qr_ndims(const uint64_t ne[4])
{
    uint32_t d = 4;
    while (d > 1 && ne[d - 1] == 1) d--;
    return d;
}

uint64_t qr_nbytes(const qr_tensor *t)
{
    uint64_t rb = 0;
    smelt_type_row_bytes(t->type, t->ne[0], &rb, NULL);
    return rb * t->ne[1] * t->ne[2] * t->ne[3];
}

void qr_kv_str(tb_buf *b, const char *k, const char *v)
{
    tb_gstr(b, k);
    tb_u32(b, SMELT_GGUF_STRING);
    tb_gstr(b, v);
}

void qr_kv_u32(tb_buf *b, const char *k, uint32_t v)
{
    tb_gstr(b, k);
    tb_u32(b, SMELT_GGUF_U32);
    tb_u32(b, v);
}

float qr_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    double u = (double)(*s >> 11) / 9007199254740992.0;
    return (float)((u - 0.5) * 0.07);
}

int qr_write_model(const char *path, const qr_shape *s, int mode, const char *tok_src)
{
    static qr_tensor t[QR_MAX_TENSORS];
    size_t n = qr_shape_tensors(s, t);
    if (mode == QR_DATA) {
        smelt_err e;
        smelt_gguf_writer *w = smelt_gguf_writer_new();
        smelt_gguf *tok = NULL;
        int rc = 0;
        rc |= smelt_gguf_writer_set_str(w, "general.architecture", "llama", &e);
        rc |= smelt_gguf_writer_set_str(w, "general.name", s->name, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.block_count", s->n_layer, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.context_length", 4096, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.embedding_length", s->n_embd, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.feed_forward_length", s->n_ff, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.attention.head_count", s->n_head, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.attention.head_count_kv", s->n_head_kv, &e);
        rc |= smelt_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &e);
        rc |= smelt_gguf_writer_set_u32(w, "llama.rope.dimension_count", s->n_embd / s->n_head, &e);
        if (s->n_expert > 0) {
            rc |= smelt_gguf_writer_set_u32(w, "llama.expert_count", s->n_expert, &e);
            rc |= smelt_gguf_writer_set_u32(w, "llama.expert_used_count", s->n_expert < 2 ? s->n_expert : 2, &e);
        }
        rc |= smelt_gguf_writer_set_u32(w, "general.file_type", 1, &e);
        if (tok_src && !strcmp(tok_src, QR_SMALL_VOCAB)) {
            /* a small SentencePiece vocabulary llama.cpp accepts: specials, the 256 byte
             * tokens, then plain pieces (n_vocab of the shape) */
            const char **toks = calloc(s->n_vocab, sizeof *toks);
            char (*txt)[16] = calloc(s->n_vocab, sizeof *txt);
            float *scores = calloc(s->n_vocab, sizeof *scores);
            int32_t *types = calloc(s->n_vocab, sizeof *types);
            for (uint32_t i = 0; i < s->n_vocab; i++) {
                if (i < 3) snprintf(txt[i], 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
                else if (i < 259) snprintf(txt[i], 16, "<0x%02X>", i - 3);
                else snprintf(txt[i], 16, "\xe2\x96\x81t%u", i);
                toks[i] = txt[i];
                types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
                scores[i] = i < 259 ? 0.0f : -(float)i;
            }
            rc |= smelt_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e);
            rc |= smelt_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, s->n_vocab, &e);
            rc |= smelt_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SMELT_GGUF_F32, scores, s->n_vocab, &e);
            rc |= smelt_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SMELT_GGUF_I32, types, s->n_vocab, &e);
            rc |= smelt_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &e);
            rc |= smelt_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, &e);
            rc |= smelt_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, &e);
            free(toks);
            free(txt);
            free(scores);
            free(types);
        } else if (tok_src) {
            rc |= smelt_gguf_open(tok_src, 0, &tok, &e);
            for (uint64_t i = 0; !rc && i < smelt_gguf_n_kv(tok); i++) {
                const smelt_gguf_kv *kv = smelt_gguf_kv_at(tok, i);
                if (!strncmp(kv->key, "tokenizer.", 10)) rc |= smelt_gguf_writer_copy_kv(w, kv, &e);
            }
        }
        for (size_t i = 0; !rc && i < n; i++) rc |= smelt_gguf_writer_add_tensor(w, t[i].name, qr_ndims(t[i].ne), t[i].ne, t[i].type, &e);
        if (!rc) rc = smelt_gguf_writer_begin(w, path, &e);
        uint64_t seed = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; !rc && i < n; i++) { /* a row at a time: a tensor may be GBs */
            uint64_t rows = t[i].ne[1] * t[i].ne[2];
            size_t esz = t[i].type == SMELT_TYPE_F32 ? 4 : 2;
            uint8_t *buf = malloc((size_t)t[i].ne[0] * esz);
            if (!buf) rc = -1;
            for (uint64_t r = 0; !rc && r < rows; r++) {
                for (uint64_t j = 0; j < t[i].ne[0]; j++) {
                    float v = qr_rand(&seed);
                    if (strstr(t[i].name, "_norm")) v = 1.0f + v;
                    if (esz == 4) memcpy(buf + 4 * j, &v, 4);
                    else {
                        uint16_t h = smelt_f32_to_f16(v);
                        memcpy(buf + 2 * j, &h, 2);
                    }
                }
                rc = smelt_gguf_writer_write(w, buf, (size_t)t[i].ne[0] * esz, &e);
            }
            free(buf);
        }
        if (!rc) rc = smelt_gguf_writer_commit(w, &e);
        smelt_gguf_writer_free(w);
        smelt_gguf_close(tok);
        return rc;
    }
    tb_buf b = {0};
    tb_put(&b, "GGUF", 4);
    tb_u32(&b, 3);
    tb_u64(&b, n);
    tb_u64(&b, s->n_expert > 0 ? 12 : 10);
    qr_kv_str(&b, "general.architecture", "llama");
    qr_kv_str(&b, "general.name", s->name);
    qr_kv_u32(&b, "llama.block_count", s->n_layer);
    qr_kv_u32(&b, "llama.context_length", 4096);
    qr_kv_u32(&b, "llama.embedding_length", s->n_embd);
    qr_kv_u32(&b, "llama.feed_forward_length", s->n_ff);
    qr_kv_u32(&b, "llama.attention.head_count", s->n_head);
    qr_kv_u32(&b, "llama.attention.head_count_kv", s->n_head_kv);
    tb_gstr(&b, "llama.attention.layer_norm_rms_epsilon");
    tb_u32(&b, SMELT_GGUF_F32);
    tb_f32(&b, 1e-5f);
    if (s->n_expert > 0) {
        qr_kv_u32(&b, "llama.expert_count", s->n_expert);
        qr_kv_u32(&b, "llama.expert_used_count", s->n_expert < 2 ? s->n_expert : 2);
    }
    qr_kv_u32(&b, "general.file_type", 1);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        tb_gstr(&b, t[i].name);
        uint32_t nd = qr_ndims(t[i].ne);
        tb_u32(&b, nd);
        for (uint32_t d = 0; d < nd; d++) tb_u64(&b, t[i].ne[d]);
        tb_u32(&b, (uint32_t)t[i].type);
        tb_u64(&b, off);
        off = smelt_pad_u64(off + qr_nbytes(&t[i]), 32);
    }
    tb_pad(&b, 32);
    size_t header = b.len;
    int rc = tu_write(path, b.p, b.len);
    tb_free(&b);
    if (!rc && mode == QR_SPARSE) rc = truncate(path, (off_t)(header + off));
    return rc;
}

void qr_schema_free(qr_schema *sc)
{
    for (size_t i = 0; i < sc->n; i++) {
        free(sc->s[i].name);
        free(sc->s[i].type);
    }
    sc->n = 0;
}

int qr_schema_read(const char *path, qr_schema *sc)
{
    memset(sc, 0, sizeof *sc);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    qr_section *cur = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (line[0] == '[') {
            if (sc->n == 64) break;
            cur = &sc->s[sc->n++];
            memset(cur, 0, sizeof *cur);
            sscanf(line, "[%15[^]]] %15s", cur->ftype, cur->deflt);
            cur->name = calloc(QR_MAX_TENSORS, sizeof *cur->name);
            cur->type = calloc(QR_MAX_TENSORS, sizeof *cur->type);
            continue;
        }
        char *sp = strrchr(line, ' ');
        if (!cur || !sp || cur->n == QR_MAX_TENSORS) continue;
        *sp = 0;
        snprintf(cur->name[cur->n], 64, "%.63s", line);
        snprintf(cur->type[cur->n], 16, "%.15s", sp + 1);
        cur->n++;
    }
    fclose(f);
    return 0;
}

const qr_section *qr_schema_find(const qr_schema *sc, const char *ftype)
{
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->s[i].ftype, ftype)) return &sc->s[i];
    return NULL;
}

const char *qr_section_type(const qr_section *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name)) return s->type[i];
    return s->deflt;
}

size_t qr_snapshot_ftypes(const smelt_ftype_info **out)
{
    size_t n = 0;
    for (int id = 0; id < 1024; id++) {
        const smelt_ftype_info *f = smelt_ftype_by_id(id);
        if (f) out[n++] = f;
    }
    return n;
}

void lq_quiet_cb(int level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
}

const lq_api *lq_get(void)
{
    static lq_api a;
    static int done, ok;
    if (done) return ok ? &a : NULL;
    done = 1;
    void *g = tu_oracle_ggml(), *l = g ? tu_oracle_llama() : NULL;
    if (!l) return NULL;
#define SYM(h, f, s) (*(void **)&a.f = dlsym(h, s))
    SYM(l, default_params, "llama_model_quantize_default_params");
    SYM(l, quantize, "llama_model_quantize");
    SYM(l, log_set, "llama_log_set");
    SYM(l, backend_init, "llama_backend_init");
    SYM(l, model_from_meta, "_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc");
    SYM(l, qinit, "_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params");
    SYM(l, qfree, "_Z16llama_quant_freeP19quantize_state_impl");
    SYM(l, compute, "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem");
    SYM(l, model_free, "llama_model_free");
    SYM(g, ggml_init, "ggml_init");
    SYM(g, ggml_free, "ggml_free");
    SYM(g, ggml_overhead, "ggml_tensor_overhead");
    SYM(g, new4d, "ggml_new_tensor_4d");
    SYM(g, set_name, "ggml_set_name");
#undef SYM
    ok = a.default_params && a.quantize && a.log_set && a.backend_init && a.model_from_meta && a.qinit && a.qfree &&
         a.compute && a.model_free && a.ggml_init && a.ggml_free && a.ggml_overhead && a.new4d && a.set_name;
    if (ok) {
        a.backend_init();
        a.log_set(lq_quiet_cb, NULL);
    }
    return ok ? &a : NULL;
}

int lq_mock_plan(const lq_api *a, const qr_shape *s, const qr_tensor *t, size_t n, int ftype,
                       void (*tweak)(lq_params *, void *), void *ud, int *types)
{
    lq_desc d = {"llama", s->n_embd, s->n_ff, s->n_layer, s->n_head, s->n_head_kv, s->n_expert,
                 s->n_embd / s->n_head, s->n_embd / s->n_head};
    void *model = a->model_from_meta(&d);
    lq_params p = a->default_params();
    if (tweak) tweak(&p, ud);
    void *qs = a->qinit(model, &p);
    ggml_init_p ip = {a->ggml_overhead() * (n + 1), NULL, true};
    void *ctx = a->ggml_init(ip);
    void **ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        ts[i] = a->new4d(ctx, SMELT_TYPE_F32, (int64_t)t[i].ne[0], (int64_t)t[i].ne[1], (int64_t)t[i].ne[2],
                         (int64_t)t[i].ne[3]);
        a->set_name(ts[i], t[i].name);
    }
    a->compute(qs, ftype, ts, types, n);
    free(ts);
    a->ggml_free(ctx);
    a->qfree(qs);
    a->model_free(model);
    return 0;
}

void lq_log_cb(int level, const char *msg, void *ud)
{
    (void)level;
    lq_log *l = ud;
    size_t k = strlen(msg);
    if (l->len + k + 1 > l->cap) {
        l->cap = (l->len + k + 1) * 2;
        l->text = realloc(l->text, l->cap);
    }
    memcpy(l->text + l->len, msg, k + 1);
    l->len += k;
}

uint32_t lq_quantize(const lq_api *a, const char *in, const char *out, const lq_params *p, char **log)
{
    lq_log l = {0};
    a->log_set(log ? lq_log_cb : lq_quiet_cb, &l);
    uint32_t rc = a->quantize(in, out, p);
    a->log_set(lq_quiet_cb, NULL);
    if (log) *log = l.text ? l.text : strdup("");
    else free(l.text);
    return rc;
}

size_t lq_parse_dry_run(const char *log, char (*names)[64], char (*types)[16], size_t max)
{
    size_t n = 0;
    for (const char *p = log; (p = strstr(p, "] ")) && n < max; p++) {
        const char *dash = strstr(p, " - [");
        const char *eol = strchr(p, '\n');
        if (!dash || !eol || dash > eol || p[-1] == '[') continue;
        const char *nm = p + 2;
        while (*nm == ' ') nm++;
        const char *ne = dash;
        while (ne > nm && ne[-1] == ' ') ne--;
        const char *ty = strstr(p, "type = ");
        if (!ty || ty > eol) continue;
        ty += 7;
        while (*ty == ' ') ty++;
        size_t tl = strcspn(ty, ", ");
        snprintf(names[n], 64, "%.*s", (int)(ne - nm), nm);
        const char *arrow = strstr(p, "->");
        if (arrow && arrow < eol) {
            const char *open = NULL;
            for (const char *q = arrow; q < eol; q++)
                if (*q == '(') open = q;
            if (open) snprintf(types[n], 16, "%.*s", (int)(strcspn(open + 1, ")")), open + 1);
        } else {
            snprintf(types[n], 16, "%.*s", (int)tl, ty);
        }
        n++;
        p = eol;
    }
    return n;
}

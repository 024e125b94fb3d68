/* vocab.c — tokenizer files → tokenizer.ggml.* KVs (see vocab.h). Includes kvs.h,
 * formats/tokfiles.h. The rules are llama.cpp's converter's, restated; comments name the
 * Python behaviour each block reproduces where it is not obvious. */
#include "vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== token table ==== */

typedef struct {
    char **tok;
    size_t *len;
    float *score;
    int32_t *type;
    uint64_t n;
} table;

static void table_free(table *t)
{
    if (t->tok)
        for (uint64_t i = 0; i < t->n; i++) free(t->tok[i]);
    free(t->tok);
    free(t->len);
    free(t->score);
    free(t->type);
}

static int set_tok(table *t, uint64_t id, const char *s, size_t len, smelt_err *e)
{
    char *c = malloc(len + 1);
    if (!c) return SMELT_NOMEM(e, "vocabulary");
    memcpy(c, s, len);
    c[len] = 0;
    free(t->tok[id]);
    t->tok[id] = c;
    t->len[id] = len;
    return 0;
}

static int looks_special(const char *s)
{
    size_t l = strlen(s);
#define PRE(p) (l >= strlen(p) && !strncmp(s, p, strlen(p)))
#define SUF(p) (l >= strlen(p) && !strcmp(s + l - strlen(p), p))
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]")) return 1;
    if (l >= 4 && PRE("<|") && SUF("|>")) return 1;
    if (l >= 8 && PRE("<\xef\xbd\x9c") && SUF("\xef\xbd\x9c>")) return 1; /* <｜…｜> */
    if (PRE("<unused") && SUF(">")) return 1;
    return 0;
#undef PRE
#undef SUF
}

/* "▁" (U+2581) → " " in user-defined added tokens */
static char *spaces_for_underscores(const char *s, size_t *len)
{
    size_t l = strlen(s), o = 0;
    char *r = malloc(l + 1);
    if (!r) return NULL;
    for (size_t i = 0; i < l;) {
        if (i + 2 < l + 0 && (unsigned char)s[i] == 0xe2 && (unsigned char)s[i + 1] == 0x96 && (unsigned char)s[i + 2] == 0x81) {
            r[o++] = ' ';
            i += 3;
        } else {
            r[o++] = s[i++];
        }
    }
    r[o] = 0;
    *len = o;
    return r;
}

static int token_type_of(int spm_type)
{
    switch (spm_type) {
    case SMELT_SPM_UNKNOWN: return 2;
    case SMELT_SPM_CONTROL: return 3;
    case SMELT_SPM_UNUSED: return 5;
    case SMELT_SPM_BYTE: return 6;
    default: return 1; /* NORMAL, and USER_DEFINED pieces too: the converter only asks the four above */
    }
}

static int build_table(const smelt_tokfiles *tf, uint64_t n, table *t, const smelt_notes *notes, smelt_err *e)
{
    t->n = n;
    t->tok = calloc((size_t)n + 1, sizeof *t->tok);
    t->len = calloc((size_t)n + 1, sizeof *t->len);
    t->score = calloc((size_t)n + 1, sizeof *t->score);
    t->type = calloc((size_t)n + 1, sizeof *t->type);
    if (!t->tok || !t->len || !t->score || !t->type) return SMELT_NOMEM(e, "vocabulary");
    int rc;
    for (uint64_t i = 0; i < n; i++) {
        char pad[32];
        int l = snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
        if ((rc = set_tok(t, i, pad, (size_t)l, e))) return rc;
        t->score[i] = -10000.0f;
        t->type[i] = 5;
    }
    const smelt_spm *s = tf->spm;
    for (uint64_t i = 0; i < s->n_pieces && i < n; i++) {
        if ((rc = set_tok(t, i, s->pieces[i].piece, s->pieces[i].len, e))) return rc;
        t->score[i] = s->pieces[i].score;
        t->type[i] = token_type_of(s->pieces[i].type);
    }
    if (tf->added_tokens_json) {
        const char *k;
        json_t *v;
        json_object_foreach(tf->added_tokens_json, k, v)
        {
            json_int_t id = json_integer_value(v);
            if (id < 0 || (uint64_t)id >= n) continue; /* refused earlier (size check) */
            if ((rc = set_tok(t, (uint64_t)id, k, strlen(k), e))) return rc;
            t->score[id] = -1000.0f;
            t->type[id] = 4;
        }
    }
    for (size_t i = 0; i < tf->n_decoder; i++) {
        const smelt_added_token *a = &tf->decoder[i];
        if (a->id < 0 || (uint64_t)a->id >= n) continue;
        uint64_t id = (uint64_t)a->id;
        size_t cl = strlen(a->content);
        if (t->type[id] != 5 && (t->len[id] != cl || memcmp(t->tok[id], a->content, cl) != 0))
            smelt_note(notes, "tokenizer_config.json: added_tokens_decoder replaces token %llu '%s' with '%s'",
                       (unsigned long long)id, t->tok[id], a->content);
        if (a->special == 1 || looks_special(a->content)) {
            t->type[id] = 3;
            rc = set_tok(t, id, a->content, cl, e);
        } else {
            size_t nl;
            char *c = spaces_for_underscores(a->content, &nl);
            if (!c) return SMELT_NOMEM(e, "vocabulary");
            t->type[id] = 4;
            rc = set_tok(t, id, c, nl, e);
            free(c);
        }
        if (rc) return rc;
        t->score[id] = -1000.0f;
    }
    return 0;
}

/* ==== special tokens (llama.cpp's SpecialVocab) ==== */

#define MAX_TYPES 16

typedef struct {
    const char *types[MAX_TYPES];
    size_t n_types;
    const char *id_order[MAX_TYPES]; /* insertion order of special_token_ids */
    int64_t ids[MAX_TYPES];
    size_t n_ids;
    const char *add_order[MAX_TYPES]; /* insertion order of add_special_token */
    int add_val[MAX_TYPES];
    size_t n_add;
    uint64_t n_vocab;
    const smelt_notes *notes;
} special;

static int truthy(json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    if (json_is_real(v)) return json_real_value(v) != 0.0;
    if (json_is_array(v)) return json_array_size(v) > 0;
    if (json_is_object(v)) return json_object_size(v) > 0;
    return 1;
}

/* Python ==, with a JSON null and an absent value both None */
static int py_eq(json_t *a, json_t *b)
{
    if (a && json_is_null(a)) a = NULL;
    if (b && json_is_null(b)) b = NULL;
    if (!a || !b) return !a && !b;
    return json_equal(a, b);
}

static void add_type(special *sp, const char *t)
{
    for (size_t i = 0; i < sp->n_types; i++)
        if (!strcmp(sp->types[i], t)) return;
    if (sp->n_types < MAX_TYPES) sp->types[sp->n_types++] = t;
}

static int has_type(const special *sp, const char *t)
{
    for (size_t i = 0; i < sp->n_types; i++)
        if (!strcmp(sp->types[i], t)) return 1;
    return 0;
}

static void set_add(special *sp, const char *typ, int v)
{
    for (size_t i = 0; i < sp->n_add; i++)
        if (!strcmp(sp->add_order[i], typ)) {
            sp->add_val[i] = v;
            return;
        }
    if (sp->n_add < MAX_TYPES) {
        sp->add_order[sp->n_add] = typ;
        sp->add_val[sp->n_add++] = v;
    }
}

static void set_special(special *sp, const char *typ, json_t *tid, const char *from)
{
    if (!json_is_integer(tid)) return;
    json_int_t id = json_integer_value(tid);
    if (id < 0) {
        smelt_note(sp->notes, "%s: negative %s token id %lld ignored", from, typ, (long long)id);
        return;
    }
    if ((uint64_t)id >= sp->n_vocab) {
        smelt_note(sp->notes, "%s: %s token id %lld is outside the vocabulary (%llu tokens), ignored", from, typ, (long long)id,
                   (unsigned long long)sp->n_vocab);
        return;
    }
    for (size_t i = 0; i < sp->n_ids; i++)
        if (!strcmp(sp->id_order[i], typ)) return; /* the first source wins */
    if (sp->n_ids < MAX_TYPES) {
        sp->id_order[sp->n_ids] = typ;
        sp->ids[sp->n_ids++] = id;
    }
}

static json_t *special_token_of(json_t *tmpl_entry)
{
    json_t *st = json_object_get(tmpl_entry, "SpecialToken");
    return json_is_object(st) ? json_object_get(st, "id") : NULL;
}

static json_t *seq_id_of(json_t *tmpl_entry)
{
    json_t *st = json_object_get(tmpl_entry, "Sequence");
    return json_is_object(st) ? json_object_get(st, "id") : NULL;
}

static int jstr_is(json_t *v, const char *s) { return json_is_string(v) && !strcmp(json_string_value(v), s); }

/* tokenizer.json's post_processor: RobertaProcessing and TemplateProcessing decide which
 * special tokens are added, and may fill in tokenizer_config's bos/cls/eos/sep/eot. */
static void post_processor(special *sp, json_t *tokenizer, json_t *tc)
{
    json_t *sbos = tc ? json_object_get(tc, "bos_token") : NULL, *scls = tc ? json_object_get(tc, "cls_token") : NULL;
    json_t *seos = tc ? json_object_get(tc, "eos_token") : NULL, *ssep = tc ? json_object_get(tc, "sep_token") : NULL;
    if (!truthy(sbos) && truthy(scls) && truthy(tc)) json_object_set(tc, "bos_token", scls), sbos = json_object_get(tc, "bos_token");
    if (!truthy(seos) && truthy(ssep) && truthy(tc)) json_object_set(tc, "eos_token", ssep), seos = json_object_get(tc, "eos_token");
    json_t *pp = json_object_get(tokenizer, "post_processor");
    if (!truthy(pp) || !json_is_object(pp)) return;
    json_t *procs = json_object_get(pp, "processors");
    json_t *one = NULL;
    if (!procs) {
        one = json_array();
        json_array_append(one, pp);
        procs = one;
    }
    size_t i;
    json_t *proc;
    json_array_foreach(procs, i, proc)
    {
        json_t *type = json_object_get(proc, "type");
        if (jstr_is(type, "RobertaProcessing")) {
            set_add(sp, "bos", 1);
            set_add(sp, "eos", 1);
            set_add(sp, "sep", 1);
            if (!truthy(scls) && truthy(tc)) {
                json_t *c = json_object_get(proc, "cls");
                json_t *v = json_is_array(c) && json_array_size(c) ? json_array_get(c, 0) : sbos;
                json_object_set(tc, "cls_token", v ? v : json_null());
                scls = json_object_get(tc, "cls_token");
            }
            if (!truthy(ssep) && truthy(tc)) {
                json_t *c = json_object_get(proc, "sep");
                json_t *v = json_is_array(c) && json_array_size(c) ? json_array_get(c, 0) : seos;
                json_object_set(tc, "sep_token", v ? v : json_null());
                ssep = json_object_get(tc, "sep_token");
            }
            continue;
        }
        if (!jstr_is(type, "TemplateProcessing")) continue;
        json_t *single = json_object_get(proc, "single"), *pair = json_object_get(proc, "pair");
        json_t *first = NULL, *last = NULL;
        size_t ns = json_array_size(single);
        if (ns > 1) {
            first = special_token_of(json_array_get(single, 0));
            if (truthy(first)) {
                if (!truthy(tc)) {
                    sbos = first;
                } else if (!py_eq(first, sbos) && !py_eq(first, scls)) {
                    if (!truthy(sbos)) json_object_set(tc, "bos_token", first), sbos = json_object_get(tc, "bos_token");
                    if (!truthy(scls)) json_object_set(tc, "cls_token", first), scls = json_object_get(tc, "cls_token");
                }
                int in = py_eq(first, sbos) || py_eq(first, scls);
                set_add(sp, "bos", in);
                if (!in) smelt_note(sp->notes, "tokenizer.json: unknown leading special token in TemplateProcessing");
            }
            last = special_token_of(json_array_get(single, ns - 1));
            if (truthy(last)) {
                if (!truthy(tc)) {
                    seos = last;
                } else if (!py_eq(last, seos)) {
                    if (!has_type(sp, "eot")) {
                        add_type(sp, "eot");
                        json_object_set(tc, "eot_token", seos ? seos : json_null());
                    } else if (!has_type(sp, "eom")) {
                        add_type(sp, "eom");
                        json_object_set(tc, "eom_token", seos ? seos : json_null());
                    }
                    json_object_set(tc, "eos_token", last);
                    seos = json_object_get(tc, "eos_token");
                }
                set_add(sp, "eos", py_eq(last, seos));
            }
        } else {
            first = last = NULL;
        }
        size_t np = json_array_size(pair);
        if (np) {
            size_t start = (truthy(first) && py_eq(special_token_of(json_array_get(pair, 0)), first)) ? 1 : 0;
            size_t stop = (truthy(last) && py_eq(special_token_of(json_array_get(pair, np - 1)), last)) ? np - 1 : np;
            if (stop > start) {
                json_t *a = seq_id_of(json_array_get(pair, start)), *b = seq_id_of(json_array_get(pair, stop - 1));
                /* "A [sep] [eos] B": the entries between the two sequences */
                if (jstr_is(a, "A") && jstr_is(b, "B") && stop - start > 2) {
                    size_t mid0 = start + 1, nmid = stop - start - 2;
                    int add_sep = 0;
                    json_t *ent = special_token_of(json_array_get(pair, mid0));
                    if (truthy(ent) && (py_eq(ent, ssep) || py_eq(ent, seos)) && !truthy(last)) add_sep = 1;
                    if (nmid == 2) {
                        ent = special_token_of(json_array_get(pair, mid0 + 1));
                        if (truthy(ent) && (py_eq(ent, ssep) || py_eq(ent, seos))) add_sep = 1;
                    }
                    set_add(sp, "sep", add_sep);
                    if (add_sep && !truthy(ssep) && truthy(tc)) json_object_set(tc, "sep_token", seos ? seos : json_null());
                }
            }
        }
    }
    json_decref(one);
}

static json_t *content_of(json_t *entry)
{
    if (json_is_string(entry)) return entry;
    if (json_is_object(entry)) {
        json_t *c = json_object_get(entry, "content");
        return json_is_string(c) ? c : NULL;
    }
    return NULL;
}

static const char *id_key(const char *typ)
{
    static const char *k[][2] = {{"bos", "tokenizer.ggml.bos_token_id"},      {"eos", "tokenizer.ggml.eos_token_id"},
                                 {"unk", "tokenizer.ggml.unknown_token_id"},  {"sep", "tokenizer.ggml.seperator_token_id"},
                                 {"pad", "tokenizer.ggml.padding_token_id"},  {"mask", "tokenizer.ggml.mask_token_id"},
                                 {"eot", "tokenizer.ggml.eot_token_id"},      {"eom", "tokenizer.ggml.eom_token_id"}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(k[i][0], typ)) return k[i][1];
    return NULL; /* cls, prefix, suffix, middle: llama.cpp's writer has no key for them */
}

/* Chat template value (string, or list of {name, template}) → KVs. */
static int chat_template_kvs(smelt_kvs *kv, json_t *ct, const char *src, smelt_err *e)
{
    if (json_is_string(ct)) {
        if (json_string_length(ct) == 0) return 0;
        return smelt_kvs_set_str(kv, "tokenizer.chat_template", json_string_value(ct), json_string_length(ct), e);
    }
    if (!json_is_array(ct)) return 0;
    json_t *def = NULL;
    const char *names[256];
    char namebuf[256][128];
    size_t nn = 0, i;
    json_t *c;
    int rc;
    json_array_foreach(ct, i, c)
    {
        if (!json_is_object(c)) return SMELT_ERR(e, SMELT_EFORMAT, src, "chat_template", "list entries must be objects");
        json_t *nm = json_object_get(c, "name"), *tp = json_object_get(c, "template");
        const char *n0 = json_is_string(nm) ? json_string_value(nm) : "";
        char name[128];
        size_t k = 0;
        for (; n0[k] && k < sizeof name - 1; k++) {
            char ch = n0[k];
            name[k] = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) ? ch : '_';
        }
        name[k] = 0;
        if (!name[0] || !tp || json_is_null(tp)) continue;
        if (!strcmp(name, "default")) {
            def = tp;
            continue;
        }
        if (!json_is_string(tp)) return SMELT_ERR(e, SMELT_EFORMAT, src, "chat_template", "template '%s' is not a string", name);
        char key[200];
        snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
        if (json_string_length(tp) && (rc = smelt_kvs_set_str(kv, key, json_string_value(tp), json_string_length(tp), e)))
            return rc;
        size_t j;
        for (j = 0; j < nn && strcmp(names[j], name); j++) {}
        if (j == nn && nn < 256) {
            snprintf(namebuf[nn], sizeof namebuf[nn], "%s", name);
            names[nn] = namebuf[nn];
            nn++;
        }
    }
    if (nn && (rc = smelt_kvs_set_arr_str(kv, "tokenizer.chat_templates", names, NULL, nn, e))) return rc;
    if (def && json_is_string(def) && json_string_length(def))
        return smelt_kvs_set_str(kv, "tokenizer.chat_template", json_string_value(def), json_string_length(def), e);
    return 0;
}

static void parse_normalizer(json_t *n, int *lower, int *strip, int depth)
{
    if (!json_is_object(n) || depth > 32) return;
    json_t *t = json_object_get(n, "type");
    if (jstr_is(t, "Lowercase")) *lower = 1;
    else if (jstr_is(t, "StripAccents")) *strip = 1;
    else if (jstr_is(t, "BertNormalizer")) {
        json_t *l = json_object_get(n, "lowercase"), *s = json_object_get(n, "strip_accents");
        if (l) *lower = json_is_boolean(l) ? json_is_true(l) : -1;
        if (s) *strip = json_is_boolean(s) ? json_is_true(s) : -1;
    } else if (jstr_is(t, "Sequence")) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(n, "normalizers"), i, x) parse_normalizer(x, lower, strip, depth + 1);
    }
}

/* One SpecialVocab pass over the files for the given token types; writes its KVs. */
static int special_vocab(const smelt_tokfiles *tf, json_t *config, const char *cfg_path, const char *const *types, size_t ntypes,
                         const int64_t *forced, uint64_t n_vocab, smelt_kvs *kv, const smelt_notes *notes, smelt_err *e)
{
    special sp;
    memset(&sp, 0, sizeof sp);
    sp.n_vocab = n_vocab;
    sp.notes = notes;
    for (size_t i = 0; i < ntypes; i++) add_type(&sp, types[i]);
    json_t *tc = tf->tokenizer_config ? json_deep_copy(tf->tokenizer_config) : NULL;
    json_t *tok = tf->tokenizer_json;
    json_t *added = tok ? json_object_get(tok, "added_tokens") : NULL;
    int lower = -1, strip = -1;
    if (tok) {
        json_t *norm = json_object_get(tok, "normalizer");
        if (truthy(norm)) parse_normalizer(norm, &lower, &strip, 0);
    }
    if (truthy(tok)) post_processor(&sp, tok, tc);
    json_t *ct = NULL;
    const char *ct_src = "tokenizer_config.json";
    json_t *alt = NULL;
    if (truthy(tc)) {
        if (tf->chat_template_jinja) {
            if (tf->n_extra_templates) {
                alt = json_array();
                json_array_append_new(alt, json_pack("{s:s,s:s}", "name", "default", "template", tf->chat_template_jinja));
                for (size_t i = 0; i < tf->n_extra_templates; i++)
                    json_array_append_new(alt, json_pack("{s:s,s:s}", "name", tf->extra_template_names[i], "template",
                                                         tf->extra_templates[i]));
            } else {
                alt = json_string(tf->chat_template_jinja);
            }
        } else if (tf->chat_template_json) {
            alt = json_incref(json_object_get(tf->chat_template_json, "chat_template"));
        }
        ct = json_object_get(tc, "chat_template");
        if (!ct) {
            ct = alt;
            ct_src = "chat_template";
        }
        if (ct && !json_is_null(ct) && !json_is_string(ct) && !json_is_array(ct)) {
            smelt_note(notes, "%s: chat_template is neither a string nor a list, ignored", ct_src);
            ct = NULL;
        }
        for (size_t k = 0; k < sp.n_types; k++) {
            const char *typ = sp.types[k];
            char key[64];
            snprintf(key, sizeof key, "add_%s_token", typ);
            json_t *a = json_object_get(tc, key);
            if (json_is_boolean(a)) set_add(&sp, typ, json_is_true(a));
            snprintf(key, sizeof key, "%s_token", typ);
            json_t *c = content_of(json_object_get(tc, key));
            if (!c) continue;
            size_t i;
            json_t *at, *found = NULL;
            json_array_foreach(added, i, at) if (py_eq(json_object_get(at, "content"), c))
            {
                found = json_object_get(at, "id");
                break;
            }
            set_special(&sp, typ, found, "tokenizer.json");
        }
    }
    for (size_t k = 0; k < sp.n_types; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s_token_id", sp.types[k]);
        set_special(&sp, sp.types[k], json_object_get(config, key), cfg_path);
    }
    if (forced)
        for (size_t k = 0; k < ntypes; k++) {
            json_t *v = json_integer(forced[k]);
            set_special(&sp, types[k], v, "llama.cpp's CodeLlama rule");
            json_decref(v);
        }
    int rc = 0;
    for (size_t i = 0; i < sp.n_ids && !rc; i++) {
        const char *key = id_key(sp.id_order[i]);
        if (key) rc = smelt_kvs_set_u32(kv, key, (uint32_t)sp.ids[i], e);
    }
    for (size_t i = 0; i < sp.n_add && !rc; i++) {
        const char *t = sp.add_order[i];
        char key[64];
        if (strcmp(t, "bos") && strcmp(t, "eos") && strcmp(t, "sep")) continue; /* no GGUF key for the others */
        snprintf(key, sizeof key, "tokenizer.ggml.add_%s_token", t);
        rc = smelt_kvs_set_bool(kv, key, sp.add_val[i] != 0, e);
    }
    if (!rc && ct && !json_is_null(ct)) rc = chat_template_kvs(kv, ct, ct_src, e);
    if (!rc && lower >= 0) rc = smelt_kvs_set_bool(kv, "tokenizer.ggml.normalizer.lowercase", lower, e);
    if (!rc && strip >= 0) rc = smelt_kvs_set_bool(kv, "tokenizer.ggml.normalizer.strip_accents", strip, e);
    json_decref(alt);
    json_decref(tc);
    return rc;
}

/* ==== entry point ==== */

int smelt_cv_vocab_kvs(const smelt_tokfiles *tf, json_t *config, const char *cfg_path, int64_t vocab_size, smelt_kvs *kv,
                    smelt_cv_vocab_info *info, const smelt_notes *notes, smelt_err *e)
{
    memset(info, 0, sizeof *info);
    char p[4096];
    snprintf(p, sizeof p, "%s", tf->dir);
    if (tf->tokenizer_config) {
        json_t *cls = json_object_get(tf->tokenizer_config, "tokenizer_class");
        if (jstr_is(cls, "HybridDNATokenizer"))
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, tf->dir, "tokenizer_class", "HybridDNATokenizer vocabularies are not supported");
    }
    if (!tf->spm)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, tf->dir, NULL,
                         "no tokenizer.model: smelt-convert reads SentencePiece vocabularies (Llama 1/2, Mistral, Mixtral); "
                         "tokenizer.json-only (BPE, e.g. Llama 3) vocabularies are not supported yet");
    uint64_t n = (uint64_t)vocab_size;
    /* the tokenizer's own size: its pieces plus every added token id beyond them */
    uint64_t ntok = tf->spm->n_pieces, maxid = 0;
    const char *who = NULL;
    if (tf->added_tokens_json) {
        const char *k;
        json_t *v;
        json_object_foreach(tf->added_tokens_json, k, v) if (json_integer_value(v) >= 0 &&
                                                             (uint64_t)json_integer_value(v) + 1 > maxid)
        {
            maxid = (uint64_t)json_integer_value(v) + 1;
            who = "added_tokens.json";
        }
    }
    for (size_t i = 0; i < tf->n_decoder; i++)
        if ((uint64_t)tf->decoder[i].id + 1 > maxid) {
            maxid = (uint64_t)tf->decoder[i].id + 1;
            who = "tokenizer_config.json added_tokens_decoder";
        }
    for (size_t i = 0; i < tf->n_added; i++)
        if (tf->added[i].id >= 0 && (uint64_t)tf->added[i].id + 1 > maxid) {
            maxid = (uint64_t)tf->added[i].id + 1;
            who = "tokenizer.json added_tokens";
        }
    if (maxid > ntok) ntok = maxid;
    else who = NULL;
    if (ntok > n) {
        char detail[300];
        if (who)
            snprintf(detail, sizeof detail, "tokenizer.model has %zu pieces and %s reaches id %llu", tf->spm->n_pieces, who,
                     (unsigned long long)(ntok - 1));
        else
            snprintf(detail, sizeof detail, "tokenizer.model has %zu pieces", tf->spm->n_pieces);
        return SMELT_ERR(e, SMELT_EMISMATCH, cfg_path, "vocab_size",
                         "the tokenizer defines %llu tokens (%s) but vocab_size is %llu: the embeddings have only %llu rows, "
                         "so those tokens could never be used. vocab_size may exceed the tokenizer (resized embeddings: the "
                         "extra rows become [PADn] tokens) but never fall short of it; resize the embeddings to the tokenizer "
                         "(model.resize_token_embeddings(len(tokenizer))) and save the checkpoint again",
                         (unsigned long long)ntok, detail, (unsigned long long)n, (unsigned long long)n);
    }
    info->n_vocab = n;
    info->n_tokenizer = ntok;
    info->n_pad = n - ntok;
    if (info->n_pad)
        smelt_note(notes, "vocab_size %llu exceeds the tokenizer's %llu tokens: ids %llu..%llu are written as [PADn] tokens (unused)",
                   (unsigned long long)n, (unsigned long long)ntok, (unsigned long long)ntok, (unsigned long long)(n - 1));

    int rc = 0;
    if (tf->add_prefix_space >= 0 && (rc = smelt_kvs_set_bool(kv, "tokenizer.ggml.add_space_prefix", tf->add_prefix_space, e)))
        return rc;
    table t;
    memset(&t, 0, sizeof t);
    rc = build_table(tf, n, &t, notes, e);
    if (!rc) rc = smelt_kvs_set_str(kv, "tokenizer.ggml.model", "llama", 5, e);
    if (!rc) rc = smelt_kvs_set_str(kv, "tokenizer.ggml.pre", "default", 7, e);
    if (!rc) rc = smelt_kvs_set_arr_str(kv, "tokenizer.ggml.tokens", (const char *const *)t.tok, t.len, n, e);
    if (!rc) rc = smelt_kvs_set_arr(kv, "tokenizer.ggml.scores", SMELT_GGUF_F32, t.score, n, e);
    if (!rc) rc = smelt_kvs_set_arr(kv, "tokenizer.ggml.token_type", SMELT_GGUF_I32, t.type, n, e);
    table_free(&t);
    static const char *const base_types[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    if (!rc) rc = special_vocab(tf, config, cfg_path, base_types, 7, NULL, n, kv, notes, e);
    /* llama.cpp's family rules keyed on vocab_size: CodeLlama's infill tokens, Granite's BOS */
    if (!rc && vocab_size == 32016) {
        static const char *const fim[] = {"prefix", "suffix", "middle", "eot"};
        static const int64_t ids[] = {32007, 32008, 32009, 32010};
        rc = special_vocab(tf, config, cfg_path, fim, 4, ids, n, kv, notes, e);
    }
    if (!rc && vocab_size == 49152) rc = smelt_kvs_set_bool(kv, "tokenizer.ggml.add_bos_token", false, e);
    return rc;
}

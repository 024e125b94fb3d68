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
                         const int64_t *forced, bool bos_unsaid_false, uint64_t n_vocab, smelt_kvs *kv,
                         const smelt_notes *notes, smelt_err *e)
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
    if (bos_unsaid_false) {
        size_t i = 0;
        while (i < sp.n_add && strcmp(sp.add_order[i], "bos")) i++;
        if (i == sp.n_add) set_add(&sp, "bos", 0);
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

/* The tokenizer defines ntok tokens but config.json's vocab_size n is smaller. */
static int too_few_rows(const char *cfg_path, uint64_t ntok, const char *detail, uint64_t n, smelt_err *e)
{
    return SMELT_ERR(e, SMELT_EMISMATCH, cfg_path, "vocab_size",
                     "the tokenizer defines %llu tokens (%s) but vocab_size is %llu: the embeddings have only %llu rows, "
                     "so those tokens could never be used. vocab_size may exceed the tokenizer (resized embeddings: the "
                     "extra rows become [PADn] tokens) but never fall short of it; resize the embeddings to the tokenizer "
                     "(model.resize_token_embeddings(len(tokenizer))) and save the checkpoint again",
                     (unsigned long long)ntok, detail, (unsigned long long)n, (unsigned long long)n);
}

static void note_padding(const smelt_cv_vocab_info *info, const smelt_notes *notes)
{
    if (info->n_pad)
        smelt_note(notes, "vocab_size %llu exceeds the tokenizer's %llu tokens: ids %llu..%llu are written as [PADn] tokens (unused)",
                   (unsigned long long)info->n_vocab, (unsigned long long)info->n_tokenizer,
                   (unsigned long long)info->n_tokenizer, (unsigned long long)(info->n_vocab - 1));
}

/* ==== byte-level BPE (tokenizer.json) ==== */

/* The split expressions of tokenizer.json pre-tokenizers that llama.cpp implements, as
 * the files spell them, and the pre-tokenizer names it knows them by. */
static const char RE_LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *jtype(json_t *o)
{
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : "(no type)";
}

static int not_bpe(const smelt_tokfiles *tf, const char *part, smelt_err *e, const char *fmt, const char *arg)
{
    char path[4200], msg[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", tf->dir);
    snprintf(msg, sizeof msg, fmt, arg);
    return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, part,
                     "%s; smelt-convert reads byte-level BPE tokenizers whose pre-tokenizer is the llama3 or qwen2 "
                     "split expression followed by ByteLevel (Llama 3, Qwen2/2.5/3), and SentencePiece tokenizer.model files",
                     msg);
}

static int bool_is(json_t *o, const char *k, int want)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 1;
    return json_is_boolean(v) && json_is_true(v) == want;
}

/* tokenizer.json's description → llama.cpp's pre-tokenizer name, or an error naming the
 * part that has no llama.cpp equivalent. */
static int bpe_pre_name(const smelt_tokfiles *tf, const char **pre, smelt_err *e)
{
    json_t *tj = tf->tokenizer_json, *model = json_object_get(tj, "model");
    if (!json_is_object(model)) return not_bpe(tf, "model", e, "%s", "there is no model object");
    if (strcmp(jtype(model), "BPE")) return not_bpe(tf, "model.type", e, "model type '%s' is not BPE", jtype(model));
    if (!bool_is(model, "byte_fallback", 0))
        return not_bpe(tf, "model.byte_fallback", e, "%s", "a BPE model with byte fallback (SentencePiece-style BPE)");
    static const char *const AFFIX[][2] = {{"continuing_subword_prefix", "model.continuing_subword_prefix"},
                                           {"end_of_word_suffix", "model.end_of_word_suffix"}};
    for (int i = 0; i < 2; i++) {
        json_t *a = json_object_get(model, AFFIX[i][0]);
        if (a && !json_is_null(a) && !(json_is_string(a) && json_string_length(a) == 0))
            return not_bpe(tf, AFFIX[i][1], e, "%s", "subword prefixes and suffixes are not byte-level BPE");
    }
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0.0))
        return not_bpe(tf, "model.dropout", e, "%s", "BPE dropout is set");
    json_t *norm = json_object_get(tj, "normalizer");
    if (norm && !json_is_null(norm) && strcmp(jtype(norm), "NFC"))
        return not_bpe(tf, "normalizer", e, "normalizer '%s' has no llama.cpp equivalent", jtype(norm));
    json_t *dec = json_object_get(tj, "decoder");
    if (!json_is_object(dec) || strcmp(jtype(dec), "ByteLevel"))
        return not_bpe(tf, "decoder", e, "decoder '%s' is not ByteLevel", json_is_object(dec) ? jtype(dec) : "(none)");
    json_t *pt = json_object_get(tj, "pre_tokenizer");
    if (!json_is_object(pt)) return not_bpe(tf, "pre_tokenizer", e, "%s", "there is no pre_tokenizer");
    json_t *seq = json_object_get(pt, "pretokenizers");
    if (strcmp(jtype(pt), "Sequence") || json_array_size(seq) != 2)
        return not_bpe(tf, "pre_tokenizer", e, "pre_tokenizer '%s' is not a Sequence of Split and ByteLevel", jtype(pt));
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    if (strcmp(jtype(split), "Split") || strcmp(jtype(bl), "ByteLevel"))
        return not_bpe(tf, "pre_tokenizer.pretokenizers", e, "the sequence starts with '%s', not Split then ByteLevel",
                       jtype(split));
    json_t *behavior = json_object_get(split, "behavior");
    if (!jstr_is(behavior, "Isolated") || !bool_is(split, "invert", 0))
        return not_bpe(tf, "pre_tokenizer.pretokenizers[0].behavior", e, "%s", "the Split is not 'Isolated' without invert");
    if (!bool_is(bl, "add_prefix_space", 0) || !bool_is(bl, "use_regex", 0))
        return not_bpe(tf, "pre_tokenizer.pretokenizers[1]", e, "%s",
                       "the ByteLevel step adds a prefix space or splits again with GPT-2's expression");
    json_t *re = json_object_get(json_object_get(split, "pattern"), "Regex");
    if (!json_is_string(re))
        return not_bpe(tf, "pre_tokenizer.pretokenizers[0].pattern", e, "%s", "the Split pattern is not a Regex");
    bool ignore = json_is_true(json_object_get(model, "ignore_merges"));
    const char *r = json_string_value(re);
    if (!strcmp(r, RE_LLAMA3)) *pre = ignore ? "llama-bpe" : "smaug-bpe";
    else if (!strcmp(r, RE_QWEN2) && !ignore) *pre = "qwen2";
    else if (!strcmp(r, RE_QWEN2))
        return not_bpe(tf, "model.ignore_merges", e, "%s", "the qwen2 expression with ignore_merges has no llama.cpp name");
    else
        return not_bpe(tf, "pre_tokenizer.pretokenizers[0].pattern", e, "split expression '%.200s' is not llama3's or qwen2's",
                       r);
    return 0;
}

/* "a b" (or ["a", "b"], whose spaces become U+0120 as llama.cpp's converter writes them) */
static char *merge_text(json_t *m, size_t *len)
{
    if (json_is_string(m)) {
        *len = json_string_length(m);
        char *c = malloc(*len + 1);
        if (c) memcpy(c, json_string_value(m), *len + 1);
        return c;
    }
    if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(json_array_get(m, 0)) ||
        !json_is_string(json_array_get(m, 1)))
        return NULL;
    size_t la = json_string_length(json_array_get(m, 0)), lb = json_string_length(json_array_get(m, 1));
    char *c = malloc(2 * (la + lb) + 2);
    if (!c) return NULL;
    size_t o = 0;
    for (int k = 0; k < 2; k++) {
        if (k) c[o++] = ' ';
        const char *s = json_string_value(json_array_get(m, (size_t)k));
        size_t l = k ? lb : la;
        for (size_t i = 0; i < l; i++) {
            if (s[i] == ' ') {
                c[o++] = (char)0xC4; /* U+0120 */
                c[o++] = (char)0xA0;
            } else {
                c[o++] = s[i];
            }
        }
    }
    c[o] = 0;
    *len = o;
    return c;
}

static int bpe_merges_kv(const smelt_tokfiles *tf, json_t *merges, smelt_kvs *kv, smelt_err *e)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", tf->dir);
    size_t n = json_array_size(merges);
    if (!json_is_array(merges) || n == 0)
        return SMELT_ERR(e, SMELT_EFORMAT, path, "model.merges", "expected a non-empty array of merges");
    char **m = calloc(n, sizeof *m);
    size_t *ml = calloc(n, sizeof *ml);
    int rc = (!m || !ml) ? SMELT_NOMEM(e, "merges") : 0;
    bool first_is_str = json_is_string(json_array_get(merges, 0));
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *x = json_array_get(merges, i);
        if (json_is_string(x) != first_is_str || !(m[i] = merge_text(x, &ml[i])))
            rc = SMELT_ERR(e, SMELT_EFORMAT, path, "model.merges",
                           "merge %zu is not a \"left right\" string or a [left, right] pair like the first one", i);
    }
    if (!rc) rc = smelt_kvs_set_arr_str(kv, "tokenizer.ggml.merges", (const char *const *)m, ml, n, e);
    for (size_t i = 0; m && i < n; i++) free(m[i]);
    free(m);
    free(ml);
    return rc;
}

/* llama.cpp's _set_vocab_gpt2: token texts by id ([PADn] where no token), types (added
 * tokens are control when special or special-looking, else user-defined), the
 * pre-tokenizer name, merges, then SpecialVocab's ids, flags and chat template. */
static int bpe_vocab_kvs(const smelt_tokfiles *tf, json_t *config, const char *cfg_path, int64_t vocab_size, smelt_kvs *kv,
                         smelt_cv_vocab_info *info, const smelt_notes *notes, smelt_err *e)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", tf->dir);
    const char *pre = NULL;
    int rc = bpe_pre_name(tf, &pre, e);
    if (rc) return rc;
    json_t *tj = tf->tokenizer_json, *model = json_object_get(tj, "model"), *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return SMELT_ERR(e, SMELT_EFORMAT, path, "model.vocab", "expected a non-empty object of token → id");
    /* the tokenizer's size: model vocabulary plus added tokens (both files) */
    uint64_t ntok = 0;
    const char *k;
    json_t *jv;
    json_object_foreach(vocab, k, jv)
    {
        if (!json_is_integer(jv) || json_integer_value(jv) < 0 || json_integer_value(jv) >= INT32_MAX)
            return SMELT_ERR(e, SMELT_EFORMAT, path, "model.vocab", "token '%.64s' has no valid id", k);
        if ((uint64_t)json_integer_value(jv) + 1 > ntok) ntok = (uint64_t)json_integer_value(jv) + 1;
    }
    uint64_t nmodel = ntok;
    for (size_t i = 0; i < tf->n_added; i++)
        if (tf->added[i].id >= 0 && (uint64_t)tf->added[i].id + 1 > ntok) ntok = (uint64_t)tf->added[i].id + 1;
    for (size_t i = 0; i < tf->n_decoder; i++)
        if (tf->decoder[i].id >= 0 && (uint64_t)tf->decoder[i].id + 1 > ntok) ntok = (uint64_t)tf->decoder[i].id + 1;
    uint64_t n = (uint64_t)vocab_size;
    if (ntok > n) {
        char detail[300];
        snprintf(detail, sizeof detail, "tokenizer.json's vocabulary reaches id %llu%s", (unsigned long long)(nmodel - 1),
                 ntok > nmodel ? " and its added tokens go further" : "");
        return too_few_rows(cfg_path, ntok, detail, n, e);
    }
    info->n_vocab = n;
    info->n_tokenizer = ntok;
    info->n_pad = n - ntok;
    note_padding(info, notes);

    table t;
    memset(&t, 0, sizeof t);
    t.n = n;
    t.tok = calloc((size_t)n + 1, sizeof *t.tok);
    t.len = calloc((size_t)n + 1, sizeof *t.len);
    t.type = calloc((size_t)n + 1, sizeof *t.type);
    if (!t.tok || !t.len || !t.type) rc = SMELT_NOMEM(e, "vocabulary");
    json_object_foreach(vocab, k, jv)
    {
        if (rc) break;
        uint64_t id = (uint64_t)json_integer_value(jv);
        if (t.tok[id]) {
            rc = SMELT_ERR(e, SMELT_EFORMAT, path, "model.vocab", "tokens '%.64s' and '%.64s' share id %llu", t.tok[id], k,
                           (unsigned long long)id);
            break;
        }
        rc = set_tok(&t, id, k, strlen(k), e);
        t.type[id] = 1;
    }
    /* added tokens: tokenizer.json's, with tokenizer_config.json's added_tokens_decoder
     * taking precedence as transformers does */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        const smelt_added_token *a = pass ? tf->decoder : tf->added;
        size_t na = pass ? tf->n_decoder : tf->n_added;
        for (size_t i = 0; i < na && !rc; i++) {
            if (a[i].id < 0) continue;
            uint64_t id = (uint64_t)a[i].id;
            size_t cl = strlen(a[i].content);
            if (a[i].special == 1 || looks_special(a[i].content)) {
                t.type[id] = 3;
                rc = set_tok(&t, id, a[i].content, cl, e);
            } else {
                size_t nl;
                char *c = spaces_for_underscores(a[i].content, &nl);
                if (!c) rc = SMELT_NOMEM(e, "vocabulary");
                t.type[id] = 4;
                if (!rc) rc = set_tok(&t, id, c, nl, e);
                free(c);
            }
        }
    }
    for (uint64_t i = 0; i < n && !rc; i++) {
        if (t.tok[i]) continue;
        char pad[32];
        int l = snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
        rc = set_tok(&t, i, pad, (size_t)l, e);
        t.type[i] = 5;
    }
    /* llama.cpp's Llama converter writes tokenizer_config's add_prefix_space first; its Qwen
     * converters do not */
    json_t *archs = json_object_get(config, "architectures");
    const char *arch = json_string_value(json_array_get(archs, 0));
    if (!rc && tf->add_prefix_space >= 0 && !(arch && !strncmp(arch, "Qwen", 4)))
        rc = smelt_kvs_set_bool(kv, "tokenizer.ggml.add_space_prefix", tf->add_prefix_space, e);
    if (!rc) rc = smelt_kvs_set_str(kv, "tokenizer.ggml.model", "gpt2", 4, e);
    if (!rc) rc = smelt_kvs_set_str(kv, "tokenizer.ggml.pre", pre, strlen(pre), e);
    if (!rc) rc = smelt_kvs_set_arr_str(kv, "tokenizer.ggml.tokens", (const char *const *)t.tok, t.len, n, e);
    if (!rc) rc = smelt_kvs_set_arr(kv, "tokenizer.ggml.token_type", SMELT_GGUF_I32, t.type, n, e);
    table_free(&t);
    if (!rc) rc = bpe_merges_kv(tf, json_object_get(model, "merges"), kv, e);
    static const char *const base_types[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    /* llama.cpp adds BOS for llama-bpe unless the file says otherwise; files whose
     * post-processor adds none (Meta's first Llama 3 upload) get add_bos_token = false */
    if (!rc) rc = special_vocab(tf, config, cfg_path, base_types, 7, NULL, !strcmp(pre, "llama-bpe"), n, kv, notes, e);
    if (!rc && json_object_get(tj, "normalizer") && !json_is_null(json_object_get(tj, "normalizer")))
        smelt_note(notes, "%s: the NFC normalizer is not applied by llama.cpp's tokenizer (nor smelt's): text that is not "
                   "in NFC may tokenize differently than with Hugging Face tokenizers", path);
    return rc;
}


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
    if (!tf->spm && tf->tokenizer_json) return bpe_vocab_kvs(tf, config, cfg_path, vocab_size, kv, info, notes, e);
    if (!tf->spm)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, tf->dir, NULL,
                         "no tokenizer.model or tokenizer.json: smelt-convert reads SentencePiece vocabularies (Llama 1/2, "
                         "Mistral, Mixtral) and byte-level BPE tokenizer.json files (Llama 3, Qwen2/3)");
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
        char pieces[64], detail[300];
        snprintf(pieces, sizeof pieces, "tokenizer.model has %zu pieces", tf->spm->n_pieces);
        if (who) snprintf(detail, sizeof detail, "%s and %s reaches id %llu", pieces, who, (unsigned long long)(ntok - 1));
        else snprintf(detail, sizeof detail, "%s", pieces);
        return too_few_rows(cfg_path, ntok, detail, n, e);
    }
    info->n_vocab = n;
    info->n_tokenizer = ntok;
    info->n_pad = n - ntok;
    note_padding(info, notes);

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
    if (!rc) rc = special_vocab(tf, config, cfg_path, base_types, 7, NULL, false, n, kv, notes, e);
    /* llama.cpp's family rules keyed on vocab_size: CodeLlama's infill tokens, Granite's BOS */
    if (!rc && vocab_size == 32016) {
        static const char *const fim[] = {"prefix", "suffix", "middle", "eot"};
        static const int64_t ids[] = {32007, 32008, 32009, 32010};
        rc = special_vocab(tf, config, cfg_path, fim, 4, ids, false, n, kv, notes, e);
    }
    if (!rc && vocab_size == 49152) rc = smelt_kvs_set_bool(kv, "tokenizer.ggml.add_bos_token", false, e);
    return rc;
}

/* tokfiles.c — tokenizer.model protobuf reader and the tokenizer JSON files.
 * Includes base/, hfdir.h (JSON loading), jansson.
 *
 * Protobuf wire format: each field is a varint key (field_number << 3 | wire_type)
 * followed by a varint (type 0), 8 bytes (1), a varint length + bytes (2) or 4 bytes (5).
 *   ModelProto      1: repeated SentencePiece  2: TrainerSpec  3: NormalizerSpec
 *   SentencePiece   1: piece (string)  2: score (float)  3: type (enum)
 * Unknown fields are skipped, as every protobuf reader does. */
#include "tokfiles.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/names.h"
#include "hfdir.h"

/* ==== protobuf ==== */

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    uint64_t base; /* file offset of p[0] */
    const char *file;
    smelt_err *e;
} pb;

#define PBFAIL(b, obj, ...) SMELT_CORRUPT((b)->e, (b)->file, (b)->base + (b)->pos, (obj), __VA_ARGS__)

static int pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    size_t start = b->pos;
    for (int i = 0; i < 10; i++) {
        if (b->pos >= b->n) return PBFAIL(b, NULL, "truncated protobuf: varint runs past the end of its message");
        uint8_t c = b->p[b->pos++];
        r |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    b->pos = start;
    return PBFAIL(b, NULL, "malformed protobuf: varint longer than 10 bytes");
}

static int pb_key(pb *b, uint32_t *field, int *wt)
{
    uint64_t k;
    int rc = pb_varint(b, &k);
    if (rc) return rc;
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    if (*field == 0) return PBFAIL(b, NULL, "malformed protobuf: field number 0");
    return 0;
}

/* Length-delimited payload: sub-reader over it. */
static int pb_bytes(pb *b, pb *sub)
{
    size_t at = b->pos;
    uint64_t len;
    int rc = pb_varint(b, &len);
    if (rc) return rc;
    if (len > b->n - b->pos) {
        size_t left = b->n - b->pos;
        b->pos = at;
        return PBFAIL(b, NULL, "truncated protobuf: a %llu-byte field runs past the end of its message (%zu bytes left)",
                      (unsigned long long)len, left);
    }
    *sub = *b;
    sub->p = b->p + b->pos;
    sub->n = (size_t)len;
    sub->pos = 0;
    sub->base = b->base + b->pos;
    b->pos += (size_t)len;
    return 0;
}

static int pb_skip(pb *b, int wt)
{
    uint64_t v;
    pb sub;
    switch (wt) {
    case 0: return pb_varint(b, &v);
    case 1:
    case 5: {
        size_t k = wt == 1 ? 8 : 4;
        if (b->n - b->pos < k) return PBFAIL(b, NULL, "truncated protobuf: fixed-size field runs past the end of its message");
        b->pos += k;
        return 0;
    }
    case 2: return pb_bytes(b, &sub);
    default: return PBFAIL(b, NULL, "malformed protobuf: wire type %d is not supported (groups are deprecated)", wt);
    }
}

static int pb_want(pb *b, uint32_t field, int wt, int want, const char *msg)
{
    if (wt != want) return PBFAIL(b, msg, "malformed protobuf: field %u has wire type %d, expected %d", field, wt, want);
    return 0;
}

static int pb_bool(pb *b, bool *out)
{
    uint64_t v;
    int rc = pb_varint(b, &v);
    if (!rc) *out = v != 0;
    return rc;
}

static int pb_i32(pb *b, int32_t *out)
{
    uint64_t v;
    int rc = pb_varint(b, &v);
    if (!rc) *out = (int32_t)(uint32_t)v;
    return rc;
}

/* ==== SentencePiece ==== */

static int parse_piece(pb *b, smelt_spm *s, smelt_err *e)
{
    smelt_spm_piece pc = {NULL, 0, 0.0f, SMELT_SPM_NORMAL};
    const uint8_t *str = NULL;
    size_t sl = 0;
    uint64_t at = b->base;
    while (b->pos < b->n) {
        uint32_t f;
        int wt, rc = pb_key(b, &f, &wt);
        if (rc) return rc;
        if (f == 1) {
            pb sub;
            if ((rc = pb_want(b, f, wt, 2, "piece")) || (rc = pb_bytes(b, &sub))) return rc;
            str = sub.p;
            sl = sub.n;
        } else if (f == 2) {
            if ((rc = pb_want(b, f, wt, 5, "score"))) return rc;
            if (b->n - b->pos < 4) return PBFAIL(b, "score", "truncated protobuf: score runs past the end of its piece");
            memcpy(&pc.score, b->p + b->pos, 4);
            b->pos += 4;
        } else if (f == 3) {
            uint64_t v;
            if ((rc = pb_want(b, f, wt, 0, "type")) || (rc = pb_varint(b, &v))) return rc;
            pc.type = v > 100 ? 100 : (int)v;
        } else if ((rc = pb_skip(b, wt))) {
            return rc;
        }
    }
    size_t id = s->n_pieces;
    char obj[64];
    snprintf(obj, sizeof obj, "piece %zu", id);
    if (!str || sl == 0) return SMELT_CORRUPT(e, b->file, at, obj, "empty piece (SentencePiece rejects such a model)");
    if (memchr(str, 0, sl)) return SMELT_CORRUPT(e, b->file, at, obj, "piece contains a NUL byte");
    if (sl > UINT32_MAX) return SMELT_CORRUPT(e, b->file, at, obj, "piece too long");
    if (pc.type < SMELT_SPM_NORMAL || pc.type > SMELT_SPM_BYTE)
        return SMELT_CORRUPT(e, b->file, at, obj, "unknown piece type %d (expected 1..6)", pc.type);
    char *copy = malloc(sl + 1);
    if (!copy) return SMELT_NOMEM(e, "piece");
    memcpy(copy, str, sl);
    copy[sl] = 0;
    pc.piece = copy;
    pc.len = (uint32_t)sl;
    s->pieces[s->n_pieces++] = pc;
    return 0;
}

static int parse_trainer(pb *b, smelt_spm *s)
{
    while (b->pos < b->n) {
        uint32_t f;
        int wt, rc = pb_key(b, &f, &wt);
        if (rc) return rc;
        uint64_t v;
        switch (f) {
        case 3:
            if ((rc = pb_want(b, f, wt, 0, "trainer_spec.model_type")) || (rc = pb_varint(b, &v))) return rc;
            s->model_type = (int)(v > 100 ? 100 : v);
            break;
        case 4:
            if ((rc = pb_want(b, f, wt, 0, "trainer_spec.vocab_size")) || (rc = pb_varint(b, &v))) return rc;
            s->trainer_vocab_size = (int64_t)(int32_t)(uint32_t)v;
            break;
        case 35:
            if ((rc = pb_want(b, f, wt, 0, "trainer_spec.byte_fallback")) || (rc = pb_bool(b, &s->byte_fallback))) return rc;
            break;
        case 25:
            if ((rc = pb_want(b, f, wt, 0, "trainer_spec.split_digits")) || (rc = pb_bool(b, &s->split_digits))) return rc;
            break;
        case 24:
            if ((rc = pb_want(b, f, wt, 0, "trainer_spec.treat_whitespace_as_suffix")) ||
                (rc = pb_bool(b, &s->treat_whitespace_as_suffix)))
                return rc;
            break;
        case 40:
        case 41:
        case 42:
        case 43: {
            int32_t *dst = f == 40 ? &s->unk_id : f == 41 ? &s->bos_id : f == 42 ? &s->eos_id : &s->pad_id;
            if ((rc = pb_want(b, f, wt, 0, "trainer_spec id")) || (rc = pb_i32(b, dst))) return rc;
            break;
        }
        default:
            if ((rc = pb_skip(b, wt))) return rc;
        }
    }
    return 0;
}

static int parse_normalizer(pb *b, smelt_spm *s, smelt_err *e)
{
    while (b->pos < b->n) {
        uint32_t f;
        int wt, rc = pb_key(b, &f, &wt);
        if (rc) return rc;
        pb sub;
        switch (f) {
        case 1:
            if ((rc = pb_want(b, f, wt, 2, "normalizer_spec.name")) || (rc = pb_bytes(b, &sub))) return rc;
            free((char *)s->normalizer_name);
            s->normalizer_name = strndup((const char *)sub.p, sub.n);
            if (!s->normalizer_name) return SMELT_NOMEM(e, "normalizer name");
            break;
        case 2:
            if ((rc = pb_want(b, f, wt, 2, "normalizer_spec.precompiled_charsmap")) || (rc = pb_bytes(b, &sub))) return rc;
            s->has_precompiled_charsmap = sub.n > 0;
            break;
        case 3:
            if ((rc = pb_want(b, f, wt, 0, "normalizer_spec.add_dummy_prefix")) || (rc = pb_bool(b, &s->add_dummy_prefix)))
                return rc;
            break;
        case 4:
            if ((rc = pb_want(b, f, wt, 0, "normalizer_spec.remove_extra_whitespaces")) ||
                (rc = pb_bool(b, &s->remove_extra_whitespaces)))
                return rc;
            break;
        case 5:
            if ((rc = pb_want(b, f, wt, 0, "normalizer_spec.escape_whitespaces")) || (rc = pb_bool(b, &s->escape_whitespaces)))
                return rc;
            break;
        default:
            if ((rc = pb_skip(b, wt))) return rc;
        }
    }
    return 0;
}

static int parse_model(pb *b, smelt_spm *s, smelt_err *e)
{
    /* count pieces first so the table is allocated once */
    size_t count = 0;
    pb scan = *b;
    while (scan.pos < scan.n) {
        uint32_t f;
        int wt, rc = pb_key(&scan, &f, &wt);
        if (rc) return rc;
        if (f == 1 && wt == 2) count++;
        if ((rc = pb_skip(&scan, wt))) return rc;
    }
    s->pieces = calloc(count + 1, sizeof *s->pieces);
    if (!s->pieces) return SMELT_NOMEM(e, "piece table");
    while (b->pos < b->n) {
        uint32_t f;
        int wt, rc = pb_key(b, &f, &wt);
        if (rc) return rc;
        pb sub;
        if (f >= 1 && f <= 3) {
            if ((rc = pb_want(b, f, wt, 2, f == 1 ? "pieces" : f == 2 ? "trainer_spec" : "normalizer_spec")) ||
                (rc = pb_bytes(b, &sub)))
                return rc;
            rc = f == 1 ? parse_piece(&sub, s, e) : f == 2 ? parse_trainer(&sub, s) : parse_normalizer(&sub, s, e);
            if (rc) return rc;
        } else if ((rc = pb_skip(b, wt))) {
            return rc;
        }
    }
    return 0;
}

static int validate(const smelt_spm *s, const char *file, smelt_err *e)
{
    if (s->n_pieces == 0) return SMELT_CORRUPT(e, file, SMELT_NO_OFFSET, NULL, "no pieces: not a SentencePiece model");
    smelt_names m;
    if (smelt_names_init(&m, s->n_pieces)) return SMELT_NOMEM(e, "piece index");
    int rc = 0;
    int64_t unk = -1;
    for (size_t i = 0; i < s->n_pieces && !rc; i++) {
        long prev = smelt_names_add(&m, s->pieces[i].piece, i);
        if (prev == SMELT_NAMES_NOMEM) rc = SMELT_NOMEM(e, "piece index");
        else if (prev != SMELT_NAMES_ADDED)
            rc = SMELT_CORRUPT(e, file, SMELT_NO_OFFSET, s->pieces[i].piece, "piece is defined twice (ids %ld and %zu)", prev, i);
        if (!rc && s->pieces[i].type == SMELT_SPM_UNKNOWN) {
            if (unk >= 0)
                rc = SMELT_CORRUPT(e, file, SMELT_NO_OFFSET, s->pieces[i].piece,
                                   "a second unknown piece (id %zu; the first is id %lld)", i, (long long)unk);
            unk = (int64_t)i;
        }
    }
    smelt_names_free(&m);
    if (!rc && unk < 0) rc = SMELT_CORRUPT(e, file, SMELT_NO_OFFSET, NULL, "no piece of type UNKNOWN (SentencePiece requires one)");
    return rc;
}

int smelt_spm_load_mem(const void *buf, size_t len, const char *name, smelt_spm **out, smelt_err *e)
{
    *out = NULL;
    smelt_spm *s = calloc(1, sizeof *s);
    if (!s) return SMELT_NOMEM(e, "tokenizer model");
    s->model_type = SMELT_SPM_UNIGRAM;
    s->trainer_vocab_size = 8000;
    s->unk_id = 0;
    s->bos_id = 1;
    s->eos_id = 2;
    s->pad_id = -1;
    s->add_dummy_prefix = s->remove_extra_whitespaces = s->escape_whitespaces = true;
    pb b = {buf, len, 0, 0, name, e};
    int rc = parse_model(&b, s, e);
    if (!rc && !s->normalizer_name && !(s->normalizer_name = strdup(""))) rc = SMELT_NOMEM(e, "normalizer name");
    if (!rc) rc = validate(s, name, e);
    if (rc) {
        smelt_spm_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int smelt_spm_load(const char *path, smelt_spm **out, smelt_err *e)
{
    *out = NULL;
    smelt_map m;
    int rc = smelt_map_open(&m, path, e);
    if (rc) return rc;
    rc = smelt_spm_load_mem(m.data, (size_t)m.size, path, out, e);
    smelt_map_close(&m);
    return rc;
}

void smelt_spm_free(smelt_spm *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_pieces; i++) free((char *)s->pieces[i].piece);
    free(s->pieces);
    free((char *)s->normalizer_name);
    free(s);
}

int64_t smelt_spm_find(const smelt_spm *s, const char *piece)
{
    for (size_t i = 0; i < s->n_pieces; i++)
        if (!strcmp(s->pieces[i].piece, piece)) return (int64_t)i;
    return -1;
}

/* ==== JSON files ==== */

const char *smelt_tok_kind_name(int kind)
{
    static const char *n[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    return kind >= 0 && kind < SMELT_TOK_N_KINDS ? n[kind] : "?";
}

/* A token given as "<s>" or as {"content": "<s>", …}; NULL otherwise. */
static const char *token_content(json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) {
        json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) return json_string_value(c);
    }
    return NULL;
}

static int flag_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

static int load_opt_json(const char *dir, const char *name, json_t **out, smelt_err *e)
{
    char p[4096];
    *out = NULL;
    if (!smelt_path_join(p, sizeof p, dir, name) || !smelt_file_exists(p)) return 0;
    int rc = smelt_json_load(p, out, e);
    if (rc) return rc;
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return SMELT_ERR(e, SMELT_EFORMAT, p, NULL, "expected a JSON object");
    }
    return 0;
}

static int read_text(const char *path, char **out, smelt_err *e)
{
    size_t len;
    return smelt_read_file(path, 16u << 20, out, &len, e);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_extra_templates(smelt_tokfiles *t, smelt_err *e)
{
    char d[4096];
    if (!smelt_path_join(d, sizeof d, t->dir, "additional_chat_templates") || !smelt_is_dir(d)) return 0;
    DIR *dh = opendir(d);
    if (!dh) return 0;
    struct dirent *de;
    size_t cap = 0;
    int rc = 0;
    while (!rc && (de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (l <= 6 || strcmp(de->d_name + l - 6, ".jinja") != 0) continue;
        if (t->n_extra_templates == cap) {
            cap = cap ? cap * 2 : 8;
            char **n1 = realloc(t->extra_template_names, cap * sizeof *n1);
            if (n1) t->extra_template_names = n1;
            char **n2 = n1 ? realloc(t->extra_templates, cap * sizeof *n2) : NULL;
            if (n2) t->extra_templates = n2;
            if (!n1 || !n2) {
                rc = SMELT_NOMEM(e, "chat templates");
                break;
            }
        }
        t->extra_template_names[t->n_extra_templates] = strdup(de->d_name);
        t->extra_templates[t->n_extra_templates] = NULL;
        t->n_extra_templates++;
    }
    closedir(dh);
    if (rc) return rc;
    qsort(t->extra_template_names, t->n_extra_templates, sizeof(char *), cmp_str);
    for (size_t i = 0; i < t->n_extra_templates && !rc; i++) {
        char *nm = t->extra_template_names[i];
        if (!nm) return SMELT_NOMEM(e, "chat templates");
        char p[4096];
        smelt_path_join(p, sizeof p, d, nm);
        rc = read_text(p, &t->extra_templates[i], e);
        nm[strlen(nm) - 6] = 0; /* the name is the file stem */
    }
    return rc;
}

static int parse_added(const char *file, json_t *arr, smelt_added_token **out, size_t *n, smelt_err *e)
{
    size_t cnt = json_array_size(arr);
    *out = calloc(cnt + 1, sizeof **out);
    if (!*out) return SMELT_NOMEM(e, "added tokens");
    for (size_t i = 0; i < cnt; i++) {
        json_t *o = json_array_get(arr, i);
        json_t *id = json_object_get(o, "id");
        json_t *c = json_object_get(o, "content");
        char obj[48];
        snprintf(obj, sizeof obj, "added_tokens[%zu]", i);
        if (!json_is_object(o) || !json_is_integer(id) || !json_is_string(c))
            return SMELT_ERR(e, SMELT_EFORMAT, file, obj, "expected an object with an integer 'id' and a string 'content'");
        smelt_added_token *a = &(*out)[(*n)++];
        a->id = json_integer_value(id);
        a->content = json_string_value(c);
        a->special = flag_of(o, "special");
        a->normalized = flag_of(o, "normalized");
    }
    return 0;
}

static int parse_decoder(const char *file, json_t *obj, smelt_added_token **out, size_t *n, smelt_err *e)
{
    *out = calloc(json_object_size(obj) + 1, sizeof **out);
    if (!*out) return SMELT_NOMEM(e, "added tokens");
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        char *end;
        long long id = strtoll(k, &end, 10);
        char where[200];
        snprintf(where, sizeof where, "added_tokens_decoder.%.160s", k);
        if (!k[0] || *end || id < 0)
            return SMELT_ERR(e, SMELT_EFORMAT, file, where, "key is not a token id (a non-negative integer)");
        json_t *c = json_object_get(v, "content");
        if (!json_is_object(v) || !json_is_string(c))
            return SMELT_ERR(e, SMELT_EFORMAT, file, where, "expected an object with a string 'content'");
        smelt_added_token *a = &(*out)[(*n)++];
        a->id = id;
        a->content = json_string_value(c);
        a->special = flag_of(v, "special");
        a->normalized = flag_of(v, "normalized");
    }
    return 0;
}

int smelt_tokfiles_load(const char *dir, smelt_tokfiles **out, smelt_err *e)
{
    *out = NULL;
    smelt_tokfiles *t = calloc(1, sizeof *t);
    if (!t) return SMELT_NOMEM(e, "tokenizer files");
    t->add_bos = t->add_eos = t->add_prefix_space = -1;
    t->dir = strdup(dir);
    int rc = t->dir ? 0 : SMELT_NOMEM(e, "path");
    char p[4096];
    if (!rc && smelt_path_join(p, sizeof p, dir, "tokenizer.model") && smelt_file_exists(p)) rc = smelt_spm_load(p, &t->spm, e);
    if (!rc) rc = load_opt_json(dir, "tokenizer.json", &t->tokenizer_json, e);
    if (!rc) rc = load_opt_json(dir, "tokenizer_config.json", &t->tokenizer_config, e);
    if (!rc) rc = load_opt_json(dir, "special_tokens_map.json", &t->special_tokens_map, e);
    if (!rc) rc = load_opt_json(dir, "added_tokens.json", &t->added_tokens_json, e);
    if (!rc) rc = load_opt_json(dir, "chat_template.json", &t->chat_template_json, e);
    if (!rc) {
        smelt_err ge;
        smelt_err_clear(&ge);
        if (load_opt_json(dir, "generation_config.json", &t->generation_config, &ge)) {
            smelt_err_format(&ge, t->gen_config_error, sizeof t->gen_config_error);
            t->generation_config = NULL;
        }
    }
    if (!rc && smelt_path_join(p, sizeof p, dir, "chat_template.jinja") && smelt_file_exists(p))
        rc = read_text(p, &t->chat_template_jinja, e);
    if (!rc) rc = load_extra_templates(t, e);
    if (!rc && t->tokenizer_json) {
        smelt_path_join(p, sizeof p, dir, "tokenizer.json");
        json_t *at = json_object_get(t->tokenizer_json, "added_tokens");
        if (at && !json_is_array(at)) rc = SMELT_ERR(e, SMELT_EFORMAT, p, "added_tokens", "expected an array");
        else if (at) rc = parse_added(p, at, &t->added, &t->n_added, e);
    }
    if (!rc && t->tokenizer_config) {
        json_t *tc = t->tokenizer_config;
        smelt_path_join(p, sizeof p, dir, "tokenizer_config.json");
        t->add_bos = flag_of(tc, "add_bos_token");
        t->add_eos = flag_of(tc, "add_eos_token");
        json_t *aps = json_object_get(tc, "add_prefix_space");
        if (json_is_boolean(aps)) t->add_prefix_space = json_is_true(aps);
        else if (aps && !json_is_null(aps)) rc = SMELT_ERR(e, SMELT_EFORMAT, p, "add_prefix_space", "expected true, false or null");
        for (int k = 0; k < SMELT_TOK_N_KINDS; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_token", smelt_tok_kind_name(k));
            t->special[k] = token_content(json_object_get(tc, key));
        }
        json_t *dec = json_object_get(tc, "added_tokens_decoder");
        if (!rc && dec && !json_is_object(dec)) rc = SMELT_ERR(e, SMELT_EFORMAT, p, "added_tokens_decoder", "expected an object");
        else if (!rc && dec) rc = parse_decoder(p, dec, &t->decoder, &t->n_decoder, e);
    }
    if (!rc && t->special_tokens_map)
        for (int k = 0; k < SMELT_TOK_N_KINDS; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_token", smelt_tok_kind_name(k));
            t->map_special[k] = token_content(json_object_get(t->special_tokens_map, key));
        }
    if (!rc && t->added_tokens_json) {
        smelt_path_join(p, sizeof p, dir, "added_tokens.json");
        const char *k;
        json_t *v;
        json_object_foreach(t->added_tokens_json, k, v) if (!json_is_integer(v))
        {
            rc = SMELT_ERR(e, SMELT_EFORMAT, p, k, "expected an integer token id");
            break;
        }
    }
    if (rc) {
        smelt_tokfiles_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void smelt_tokfiles_free(smelt_tokfiles *t)
{
    if (!t) return;
    smelt_spm_free(t->spm);
    json_decref(t->tokenizer_json);
    json_decref(t->tokenizer_config);
    json_decref(t->special_tokens_map);
    json_decref(t->generation_config);
    json_decref(t->added_tokens_json);
    json_decref(t->chat_template_json);
    free(t->chat_template_jinja);
    for (size_t i = 0; i < t->n_extra_templates; i++) {
        free(t->extra_template_names[i]);
        free(t->extra_templates[i]);
    }
    free(t->extra_template_names);
    free(t->extra_templates);
    free(t->added);
    free(t->decoder);
    free((char *)t->dir);
    free(t);
}

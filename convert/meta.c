/* meta.c — general.* keys (see meta.h): a small reader for the YAML front matter of
 * model cards (top-level scalars, flow and block lists, one level of nested maps — what
 * Hugging Face model cards use), gguf-py's name heuristics, and the size label. */
#include "meta.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/file.h"

/* ==== YAML front matter (subset) ==== */

static int ieq(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* YAML 1.1 scalar resolution as PyYAML's safe_load does for plain scalars. */
static json_t *yaml_scalar(const char *s, int quoted)
{
    if (quoted) return json_string(s);
    if (!s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")) return json_null();
    static const char *t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *f[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!strcmp(s, t[i])) return json_true();
        if (!strcmp(s, f[i])) return json_false();
    }
    char *end;
    const char *d = s + (s[0] == '-' || s[0] == '+');
    if (isdigit((unsigned char)d[0])) {
        int all = 1;
        for (const char *q = d; *q; q++)
            if (!isdigit((unsigned char)*q)) all = 0;
        if (all && !(d[0] == '0' && d[1])) return json_integer(strtoll(s, NULL, 10));
    }
    if ((isdigit((unsigned char)d[0]) || (d[0] == '.' && isdigit((unsigned char)d[1]))) && strchr(s, '.')) {
        double v = strtod(s, &end);
        if (!*end) return json_real(v);
    }
    return json_string(s);
}

/* Trim, strip a trailing comment, unquote. Returns a JSON value; NULL if unreadable. */
static json_t *parse_value(char *v)
{
    while (*v == ' ') v++;
    size_t l = strlen(v);
    while (l && (v[l - 1] == ' ' || v[l - 1] == '\r')) v[--l] = 0;
    if (v[0] == '"' || v[0] == '\'') {
        char q = v[0];
        char *out = malloc(l + 1), *o = out;
        if (!out) return NULL;
        size_t i = 1;
        for (; i < l; i++) {
            if (v[i] == q) {
                if (q == '\'' && v[i + 1] == '\'') {
                    *o++ = '\'';
                    i++;
                    continue;
                }
                break;
            }
            if (q == '"' && v[i] == '\\' && i + 1 < l) {
                char c = v[++i];
                *o++ = c == 'n' ? '\n' : c == 't' ? '\t' : c;
                continue;
            }
            *o++ = v[i];
        }
        *o = 0;
        json_t *r = i < l ? json_string(out) : NULL; /* closing quote required */
        free(out);
        return r;
    }
    char *hash = strstr(v, " #");
    if (hash) {
        *hash = 0;
        l = strlen(v);
        while (l && v[l - 1] == ' ') v[--l] = 0;
    }
    if (v[0] == '#') v[0] = 0;
    if (v[0] == '[') {
        if (l < 2 || v[l - 1] != ']') return NULL;
        v[l - 1] = 0;
        json_t *arr = json_array();
        char *p = v + 1;
        while (*p) {
            char *c = p;
            int inq = 0;
            for (; *c && (inq || *c != ','); c++)
                if (*c == '"' || *c == '\'') inq = !inq;
            char save = *c;
            *c = 0;
            char *item = p;
            while (*item == ' ') item++;
            if (*item) {
                json_t *x = parse_value(item);
                if (!x || json_is_array(x) || json_is_object(x)) {
                    json_decref(x);
                    json_decref(arr);
                    return NULL;
                }
                json_array_append_new(arr, x);
            }
            if (!save) break;
            p = c + 1;
        }
        return arr;
    }
    if (v[0] == '{' || v[0] == '|' || v[0] == '>' || v[0] == '&' || v[0] == '*' || v[0] == '!') return NULL;
    return yaml_scalar(v, 0);
}

static int indent_of(const char *s)
{
    int i = 0;
    while (s[i] == ' ') i++;
    return i;
}

static int blank(const char *s)
{
    s += indent_of(s);
    return !*s || *s == '#' || *s == '\r';
}

/* "key: value" → splits in place; 0 if the line is not a mapping entry */
static int split_kv(char *s, char **k, char **v)
{
    char *c = s;
    if (*c == '"' || *c == '\'') return 0;
    for (; *c; c++)
        if (*c == ':' && (c[1] == ' ' || c[1] == 0 || c[1] == '\r')) break;
    if (!*c) return 0;
    *c = 0;
    *k = s;
    *v = c + 1;
    size_t l = strlen(s);
    while (l && s[l - 1] == ' ') s[--l] = 0;
    return l > 0;
}

/* Parse the front matter lines into a JSON object; keys it cannot read are recorded in
 * *skipped (comma-separated) and left out. */
static json_t *yaml_front_matter(char **lines, size_t n, char *skipped, size_t skn)
{
    json_t *root = json_object();
    size_t i = 0;
    while (i < n) {
        char *line = lines[i];
        if (blank(line)) {
            i++;
            continue;
        }
        char *k, *v;
        if (indent_of(line) != 0 || !split_kv(line, &k, &v)) {
            i++;
            continue; /* stray continuation: ignored */
        }
        i++;
        char *vv = v;
        while (*vv == ' ') vv++;
        json_t *val = NULL;
        int bad = 0;
        if (*vv && *vv != '#') {
            val = parse_value(vv);
            if (!val) bad = 1;
            /* a block scalar or multi-line value: skip its indented lines */
            while (i < n && (blank(lines[i]) || indent_of(lines[i]) > 0)) i++;
        } else {
            /* block: a list of "- item" or a nested map */
            json_t *list = NULL, *map = NULL;
            while (i < n && (blank(lines[i]) || indent_of(lines[i]) > 0 || lines[i][0] == '-')) {
                if (blank(lines[i])) {
                    i++;
                    continue;
                }
                char *s = lines[i] + indent_of(lines[i]);
                int ind = indent_of(lines[i]);
                i++;
                if (s[0] == '-' && (s[1] == ' ' || s[1] == 0)) {
                    if (map) bad = 1;
                    if (!list) list = json_array();
                    char *item = s + 1;
                    while (*item == ' ') item++;
                    char *ik, *iv;
                    if (*item && split_kv(item, &ik, &iv)) {
                        /* a list of maps: "- key: v" then "  key: v" lines */
                        json_t *o = json_object();
                        json_t *x = parse_value(iv);
                        if (!x) bad = 1;
                        else json_object_set_new(o, ik, x);
                        int iind = ind + (int)(item - s);
                        while (i < n && !blank(lines[i]) && indent_of(lines[i]) == iind) {
                            char *s2 = lines[i] + iind, *k2, *v2;
                            if (!split_kv(s2, &k2, &v2)) break;
                            json_t *y = parse_value(v2);
                            if (!y) bad = 1;
                            else json_object_set_new(o, k2, y);
                            i++;
                        }
                        json_array_append_new(list, o);
                    } else {
                        json_t *x = parse_value(item);
                        if (!x) bad = 1;
                        else json_array_append_new(list, x);
                    }
                } else {
                    char *mk, *mv;
                    if (list || !split_kv(s, &mk, &mv)) {
                        bad = 1;
                        continue;
                    }
                    if (!map) map = json_object();
                    char *mvv = mv;
                    while (*mvv == ' ') mvv++;
                    json_t *x = *mvv ? parse_value(mvv) : NULL;
                    if (x) json_object_set_new(map, mk, x); /* deeper levels are not needed */
                }
            }
            val = list ? list : map ? map : json_null();
            if (list && map) json_decref(map);
        }
        if (bad) {
            json_decref(val);
            size_t used = strlen(skipped);
            snprintf(skipped + used, skn - used, "%s%s", used ? ", " : "", k);
            continue;
        }
        json_object_set_new(root, k, val);
    }
    return root;
}

/* README.md front matter as JSON (NULL when there is none). */
static json_t *load_model_card(const char *dir, const smelt_notes *notes)
{
    char p[4096];
    if (!dir || !smelt_path_join(p, sizeof p, dir, "README.md") || !smelt_file_exists(p)) return NULL;
    char *text;
    size_t len;
    smelt_err e;
    if (smelt_read_file(p, 64u << 20, &text, &len, &e)) {
        smelt_note(notes, "%s: unreadable, model card metadata skipped", p);
        return NULL;
    }
    /* Python splitlines() on the whole file, then front matter between the first two "---" */
    size_t cap = 64, n = 0;
    char **lines = malloc(cap * sizeof *lines);
    char *s = text;
    while (lines && *s) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        if (n == cap) {
            cap *= 2;
            char **l2 = realloc(lines, cap * sizeof *l2);
            if (!l2) break;
            lines = l2;
        }
        size_t l = strlen(s);
        if (l && s[l - 1] == '\r') s[l - 1] = 0;
        lines[n++] = s;
        if (!nl) break;
        s = nl + 1;
    }
    json_t *card = NULL;
    if (lines && n > 0 && !strcmp(lines[0], "---")) {
        size_t end = 1;
        while (end < n && strcmp(lines[end], "---")) end++;
        /* gguf-py's fixes: tabs become two spaces, "- no" (Norway) stays a string */
        char **fm = calloc(end + 1, sizeof *fm);
        for (size_t i = 1; fm && i < end; i++) {
            const char *src = lines[i];
            size_t tabs = 0;
            for (const char *q = src; *q; q++) tabs += *q == '\t';
            char *d = malloc(strlen(src) + tabs + 8), *o = d;
            if (!d) continue;
            int ind = indent_of(src);
            if (!strcmp(src + ind, "- no")) {
                sprintf(d, "%.*s- \"no\"", ind, src);
            } else {
                for (const char *q = src; *q; q++) {
                    if (*q == '\t') *o++ = ' ', *o++ = ' ';
                    else *o++ = *q;
                }
                *o = 0;
            }
            fm[i - 1] = d;
        }
        if (fm) {
            char skipped[512] = "";
            size_t nfm = end - 1;
            for (size_t i = 0; i < nfm; i++)
                if (!fm[i]) fm[i] = strdup("");
            card = yaml_front_matter(fm, nfm, skipped, sizeof skipped);
            if (skipped[0]) smelt_note(notes, "%s: model card keys not understood and skipped: %s", p, skipped);
            for (size_t i = 0; i < nfm; i++) free(fm[i]);
            free(fm);
        }
    }
    free(lines);
    free(text);
    return card;
}

/* ==== gguf-py's model id heuristics ==== */

/* (v|iter)?\d+([.]\d+)* */
static int is_version(const char *s)
{
    if (!strncasecmp(s, "iter", 4) && isdigit((unsigned char)s[4])) s += 4;
    else if ((s[0] == 'v' || s[0] == 'V') && isdigit((unsigned char)s[1])) s += 1;
    for (;;) {
        size_t k = 0;
        while (isdigit((unsigned char)s[k])) k++;
        if (!k) return 0;
        s += k;
        if (!*s) return 1;
        if (*s != '.') return 0;
        s++;
    }
}

static int is_word(int c) { return isalnum(c) || c == '_'; }

/* i?q\d(_\w)*|b?fp?(16|32) */
static int is_quant_type(const char *s)
{
    const char *p = s;
    if (*p == 'i' || *p == 'I') p++;
    if ((*p == 'q' || *p == 'Q') && isdigit((unsigned char)p[1])) {
        p += 2;
        while (p[0] == '_' && is_word((unsigned char)p[1])) p += 2;
        if (!*p) return 1;
    }
    p = s;
    if (*p == 'b' || *p == 'B') p++;
    if (*p != 'f' && *p != 'F') return 0;
    p++;
    if (*p == 'p' || *p == 'P') p++;
    return !strcmp(p, "16") || !strcmp(p, "32");
}

static int size_tail(const char *p)
{
    size_t k = 0;
    while (isdigit((unsigned char)p[k])) k++;
    if (!k) return 0;
    p += k;
    if ((*p == '.' || *p == '_') && isdigit((unsigned char)p[1])) {
        p++;
        while (isdigit((unsigned char)*p)) p++;
    }
    if (!*p || !strchr("kmbtKMBT", *p)) return 0;
    p++;
    if (isdigit((unsigned char)*p)) p++;
    return *p == 0;
}

/* (([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl) */
static int is_size(const char *s)
{
    if (ieq(s, "small") || ieq(s, "mini") || ieq(s, "medium") || ieq(s, "large") || ieq(s, "xl") || ieq(s, "xxl")) return 1;
    if (size_tail(s)) return 1;
    if ((s[0] == 'a' || s[0] == 'A') && size_tail(s + 1)) return 1;
    size_t k = 0;
    while (isdigit((unsigned char)s[k])) k++;
    return k && (s[k] == 'x' || s[k] == 'X') && size_tail(s + k + 1);
}

enum { T_BASENAME = 1, T_SIZE = 2, T_FINETUNE = 4, T_VERSION = 8, T_TYPE = 16 };

typedef struct {
    char *full, *org, *basename, *finetune, *version, *size_label;
} id_parts;

static void id_free(id_parts *p)
{
    free(p->full);
    free(p->org);
    free(p->basename);
    free(p->finetune);
    free(p->version);
    free(p->size_label);
    memset(p, 0, sizeof *p);
}

/* join the parts having flag `want` (and not `unless`) with '-'; NULL if none */
static char *join(char **parts, const int *types, size_t n, int want, int unless, int dedupe)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) cap += strlen(parts[i]) + 1;
    char *r = calloc(cap, 1);
    if (!r) return NULL;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(types[i] & want) || (types[i] & unless)) continue;
        if (dedupe) {
            int seen = 0;
            for (size_t j = 0; j < i; j++)
                if ((types[j] & want) && !(types[j] & unless) && !strcmp(parts[j], parts[i])) seen = 1;
            if (seen) continue;
        }
        if (any) strcat(r, "-");
        strcat(r, parts[i]);
        any = 1;
    }
    if (!any) {
        free(r);
        return NULL;
    }
    return r;
}

static void model_id_components(const char *id, int64_t total, id_parts *out)
{
    memset(out, 0, sizeof *out);
    if (!id) return;
    if (strchr(id, ' ')) {
        out->full = strdup(id);
        return;
    }
    const char *slash = strchr(id, '/');
    const char *full = slash ? slash + 1 : id;
    if (slash && slash > id && id[0] != '.') out->org = strndup(id, (size_t)(slash - id));
    if (slash && slash == id) out->org = strdup(""); /* Python keeps an empty org component */
    out->full = strdup(full);
    /* split on '-', dropping empty parts */
    size_t cap = strlen(full) + 1, n = 0;
    char **parts = calloc(cap, sizeof *parts);
    int *types = calloc(cap, sizeof *types);
    char *buf = strdup(full);
    if (!parts || !types || !buf) goto done;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "-", &save); tok; tok = strtok_r(NULL, "-", &save)) {
        parts[n] = malloc(strlen(tok) + 4);
        if (!parts[n]) goto done;
        strcpy(parts[n++], tok);
    }
    for (size_t i = 0; i < n; i++) {
        char *p = parts[i];
        if (is_version(p)) {
            types[i] |= T_VERSION;
        } else if (is_quant_type(p)) {
            types[i] |= T_TYPE;
            for (char *c = p; *c; c++) *c = (char)toupper((unsigned char)*c);
        } else if (i > 0 && is_size(p)) {
            for (char *c = p; *c; c++)
                if (*c == '_') *c = '.';
            size_t l = strlen(p);
            if (isdigit((unsigned char)p[l - 1]) && l >= 2) { /* bloom-7b1 → 7.1b */
                char a = p[l - 2], b = p[l - 1];
                p[l - 2] = '.';
                p[l - 1] = b;
                p[l] = a;
                p[l + 1] = 0;
                l++;
            }
            if (l > 1 && isdigit((unsigned char)p[l - 2]) && strchr("kmbt", p[l - 1])) p[l - 1] = (char)toupper((unsigned char)p[l - 1]);
            if (total != 0) {
                char num[64];
                snprintf(num, sizeof num, "%.*s", (int)(l - 1), p);
                char *end;
                double f = strtod(num, &end);
                const char *units = " KMBT";
                const char *u = strchr(units, p[l - 1]);
                if (num[0] && !*end && !isspace((unsigned char)num[0])) {
                    double label = f * (u ? pow(1000.0, (double)(u - units)) : 0.001);
                    int64_t a = total < 0 ? -total : total;
                    if ((total < 0 && label < (double)(a / 8)) || (total > 0 && fabs(label - (double)total) > (double)(7 * total / 8))) {
                        types[i] |= T_FINETUNE;
                        p[l - 1] = (char)tolower((unsigned char)p[l - 1]);
                    }
                }
            }
            if (!types[i]) types[i] |= T_SIZE;
        } else if (i > 0 && (ieq(p, "chat") || ieq(p, "instruct") || ieq(p, "vision") || ieq(p, "lora"))) {
            types[i] |= (total < 0 && ieq(p, "lora")) ? T_TYPE : T_FINETUNE;
        }
    }
    /* word-based size labels go when a number-based one exists */
    int numeric = 0;
    for (size_t i = 0; i < n; i++)
        if (types[i] & T_SIZE)
            for (char *c = parts[i]; *c; c++)
                if (isdigit((unsigned char)*c)) numeric = 1;
    if (numeric)
        for (size_t i = 0; i < n; i++)
            if (types[i] & T_SIZE) {
                int alpha = 1;
                for (char *c = parts[i]; *c; c++)
                    if (!isalpha((unsigned char)*c)) alpha = 0;
                if (alpha) types[i] &= ~T_SIZE;
            }
    int at_start = 1;
    for (size_t i = 0; i < n; i++) {
        if (at_start && ((types[i] == 0 && isalpha((unsigned char)parts[i][0])) || (types[i] & T_VERSION))) {
            types[i] |= T_BASENAME;
        } else {
            at_start = 0;
            if (!types[i]) types[i] |= T_FINETUNE;
        }
    }
    for (size_t i = n; i-- > 0;) {
        if ((types[i] & T_BASENAME) && (types[i] & ~T_BASENAME)) types[i] &= ~T_BASENAME;
        else break;
    }
    out->basename = join(parts, types, n, T_BASENAME, 0, 0);
    out->size_label = join(parts, types, n, T_SIZE, 0, 1);
    out->finetune = join(parts, types, n, T_FINETUNE, 0, 0);
    out->version = join(parts, types, n, T_VERSION, T_BASENAME, 0);
    if (!out->size_label && !out->finetune && !out->version) {
        free(out->basename);
        out->basename = NULL;
    }
done:
    for (size_t i = 0; i < n; i++) free(parts[i]);
    free(parts);
    free(types);
    free(buf);
}

char *smelt_meta_title(const char *id)
{
    size_t l = strlen(id);
    char *r = malloc(l + 1), *o = r;
    if (!r) return NULL;
    char *w = malloc(l + 1);
    if (!w) {
        free(r);
        return NULL;
    }
    const char *p = id;
    int first = 1;
    for (;;) {
        while (*p == ' ' || *p == '-' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        size_t k = 0;
        while (p[k] && p[k] != ' ' && p[k] != '-' && p[k] != '\t' && p[k] != '\n' && p[k] != '\r') k++;
        memcpy(w, p, k);
        w[k] = 0;
        p += k;
        /* title-case only all-lowercase words that are not versions or numbers */
        int cased = 0, lower = 1;
        for (size_t i = 0; i < k; i++)
            if (isalpha((unsigned char)w[i])) {
                cased = 1;
                if (isupper((unsigned char)w[i])) lower = 0;
            }
        int keep = isdigit((unsigned char)w[0]) || ((w[0] == 'v') && is_version(w) && w[0] == 'v');
        if (cased && lower && !keep) {
            int prev_alpha = 0;
            for (size_t i = 0; i < k; i++) {
                unsigned char c = (unsigned char)w[i];
                if (isalpha(c)) {
                    w[i] = (char)(prev_alpha ? tolower(c) : toupper(c));
                    prev_alpha = 1;
                } else {
                    prev_alpha = (c & 0x80) != 0; /* non-ASCII letters stay as they are */
                }
            }
        }
        if (!first) *o++ = ' ';
        memcpy(o, w, k);
        o += k;
        first = 0;
    }
    *o = 0;
    free(w);
    return r;
}

/* ==== size label ==== */

static void rounded(int64_t count, int min_digits, char *buf, size_t n)
{
    double c = (double)count, s;
    const char *suf;
    if (c > 1e12) s = c * 1e-12, suf = "T";
    else if (c > 1e9) s = c * 1e-9, suf = "B";
    else if (c > 1e6) s = c * 1e-6, suf = "M";
    else s = c * 1e-3, suf = "K";
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", nearbyint(s)); /* Python round(): half to even */
    const char *d = digits;
    while (*d == '0') d++;
    int fix = min_digits - (int)strlen(d);
    if (fix < 0) fix = 0;
    snprintf(buf, n, "%.*f%s", fix, s, suf);
}

void smelt_meta_size_label(const smelt_param_count *pc, char *buf, size_t n)
{
    if (pc->expert_count > 0) {
        char pretty[64];
        rounded(llabs(pc->shared) + llabs(pc->expert), 2, pretty, sizeof pretty);
        snprintf(buf, n, "%lldx%s", (long long)pc->expert_count, pretty);
    } else {
        rounded(llabs(pc->total), 2, buf, n);
    }
}

/* ==== assembling ==== */

enum {
    M_NAME, M_AUTHOR, M_VERSION, M_ORG, M_FINETUNE, M_BASENAME, M_DESC, M_QUANT_BY, M_SIZE, M_LICENSE_NAME, M_LICENSE_LINK,
    M_URL, M_DOI, M_UUID, M_REPO, M_SRC_URL, M_SRC_DOI, M_SRC_UUID, M_SRC_REPO, M_COUNT
};

typedef struct {
    json_t *f[M_COUNT]; /* NULL = None */
    json_t *license, *base_models, *datasets, *tags, *languages;
} meta;

static void use_card(meta *m, int field, json_t *card, const char *key)
{
    json_t *v = json_object_get(card, key);
    if (v && !m->f[field] && !json_is_null(v)) m->f[field] = json_incref(v);
}

static void fill_str(meta *m, int field, const char *s)
{
    if (s && !m->f[field]) m->f[field] = json_string(s);
}

static void append_list(json_t **dst, json_t *v)
{
    if (!v || json_is_null(v)) return;
    if (!*dst) *dst = json_array();
    if (json_is_array(v)) json_array_extend(*dst, v);
    else json_array_append(*dst, v);
}

/* base_model / dataset entries: ids and URLs → {name, organization, version, repo_url} */
static json_t *source_entries(json_t *v, int64_t total)
{
    json_t *ids = json_array();
    append_list(&ids, v);
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(ids, i, x)
    {
        if (json_is_object(x)) {
            json_array_append(out, x);
            continue;
        }
        if (!json_is_string(x)) continue;
        const char *s = json_string_value(x);
        json_t *o = json_object();
        id_parts ip;
        int url = !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8) || !strncmp(s, "ssh://", 6);
        const char *id = s;
        char tmp[1024];
        if (url) {
            json_object_set_new(o, "repo_url", json_string(s));
            id = NULL;
            const char *h = strstr(s, "huggingface.co/");
            if (h && (!strncmp(s, "http://huggingface.co/", 22) || !strncmp(s, "https://huggingface.co/", 23))) {
                const char *rest = h + 15;
                const char *sl = strchr(rest, '/');
                if (sl && sl > rest && sl[1] && !strchr(sl + 1, '/')) {
                    snprintf(tmp, sizeof tmp, "%s", rest);
                    id = tmp;
                }
            }
        }
        if (id) {
            model_id_components(id, total, &ip);
            if (ip.full) {
                char *t = smelt_meta_title(ip.full);
                json_object_set_new(o, "name", json_string(t ? t : ip.full));
                free(t);
            }
            if (ip.org) {
                char *t = smelt_meta_title(ip.org);
                json_object_set_new(o, "organization", json_string(t ? t : ip.org));
                free(t);
            }
            if (ip.version) json_object_set_new(o, "version", json_string(ip.version));
            if (!url && ip.org && ip.full) {
                char u[1200];
                snprintf(u, sizeof u, "https://huggingface.co/%s/%s", ip.org, ip.full);
                json_object_set_new(o, "repo_url", json_string(u));
            }
            id_free(&ip);
        }
        json_array_append_new(out, o);
    }
    json_decref(ids);
    return out;
}

static void heuristics_from_id(meta *m, const char *id, int64_t total)
{
    id_parts ip;
    model_id_components(id, total, &ip);
    if (ip.full && !m->f[M_NAME]) {
        char *t = smelt_meta_title(ip.full);
        if (t) m->f[M_NAME] = json_string(t);
        free(t);
    }
    if (ip.org && !m->f[M_ORG]) {
        char *t = smelt_meta_title(ip.org);
        if (t) m->f[M_ORG] = json_string(t);
        free(t);
    }
    fill_str(m, M_BASENAME, ip.basename);
    fill_str(m, M_FINETUNE, ip.finetune);
    fill_str(m, M_VERSION, ip.version);
    fill_str(m, M_SIZE, ip.size_label);
    id_free(&ip);
}

static int put_str(smelt_kvs *kv, const char *key, json_t *v, const smelt_notes *notes, smelt_err *e)
{
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        smelt_note(notes, "model card: %s is not a string, skipped", key);
        return 0;
    }
    if (!json_string_length(v)) return 0; /* gguf-py never writes empty strings */
    return smelt_kvs_set_str(kv, key, json_string_value(v), json_string_length(v), e);
}

static int put_str_list(smelt_kvs *kv, const char *key, json_t *arr, const smelt_notes *notes, smelt_err *e)
{
    if (!arr || !json_array_size(arr)) return 0;
    size_t n = json_array_size(arr);
    const char **s = calloc(n, sizeof *s);
    if (!s) return SMELT_NOMEM(e, "metadata");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(arr, i);
        if (!json_is_string(x)) {
            smelt_note(notes, "model card: an entry of %s is not a string, the list is skipped", key);
            free(s);
            return 0;
        }
        s[i] = json_string_value(x);
    }
    int rc = smelt_kvs_set_arr_str(kv, key, s, NULL, n, e);
    free(s);
    return rc;
}

static int sampling(smelt_kvs *kv, json_t *g, const smelt_notes *notes, smelt_err *e)
{
    static const struct {
        const char *key, *gguf;
        int type; /* 0 string, 1 int32, 2 f32 */
    } k[] = {
        {"sequence", "general.sampling.sequence", 0},         {"top_k", "general.sampling.top_k", 1},
        {"top_p", "general.sampling.top_p", 2},               {"min_p", "general.sampling.min_p", 2},
        {"xtc_probability", "general.sampling.xtc_probability", 2},
        {"xtc_threshold", "general.sampling.xtc_threshold", 2}, {"temperature", "general.sampling.temp", 2},
        {"penalty_last_n", "general.sampling.penalty_last_n", 1}, {"penalty_repeat", "general.sampling.penalty_repeat", 2},
        {"mirostat", "general.sampling.mirostat", 1},          {"mirostat_tau", "general.sampling.mirostat_tau", 2},
        {"mirostat_eta", "general.sampling.mirostat_eta", 2},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof k / sizeof k[0] && !rc; i++) {
        json_t *v = json_object_get(g, k[i].key);
        if (!v && !strcmp(k[i].key, "penalty_repeat")) v = json_object_get(g, "repetition_penalty");
        if (!v || json_is_null(v)) continue;
        if (k[i].type == 0) {
            if (json_is_string(v) && json_string_length(v)) rc = smelt_kvs_set_str(kv, k[i].gguf, json_string_value(v), json_string_length(v), e);
        } else if (k[i].type == 1) {
            if (json_is_integer(v)) rc = smelt_kvs_set_i32(kv, k[i].gguf, (int32_t)json_integer_value(v), e);
            else smelt_note(notes, "generation_config.json: %s is not an integer, skipped", k[i].key);
        } else {
            if (json_is_number(v)) rc = smelt_kvs_set_f32(kv, k[i].gguf, (float)json_number_value(v), e);
            else smelt_note(notes, "generation_config.json: %s is not a number, skipped", k[i].key);
        }
    }
    return rc;
}

int smelt_meta_kvs(const smelt_meta_src *src, const smelt_param_count *pc, smelt_kvs *kv, const smelt_notes *notes, smelt_err *e)
{
    meta m;
    memset(&m, 0, sizeof m);
    json_t *card = load_model_card(src->card_dir, notes);
    if (card) {
        static const struct {
            int f;
            const char *k;
        } direct[] = {
            {M_NAME, "name"},           {M_AUTHOR, "author"},         {M_VERSION, "version"},
            {M_ORG, "organization"},    {M_DESC, "description"},      {M_FINETUNE, "finetune"},
            {M_BASENAME, "basename"},   {M_SIZE, "size_label"},       {M_SRC_URL, "url"},
            {M_SRC_DOI, "doi"},         {M_SRC_UUID, "uuid"},         {M_SRC_REPO, "repo_url"},
            {M_NAME, "model_name"},     {M_AUTHOR, "model_author"},   {M_VERSION, "model_version"},
            {M_ORG, "model_organization"}, {M_DESC, "model_description"}, {M_FINETUNE, "model_finetune"},
            {M_BASENAME, "model_basename"}, {M_SIZE, "model_size_label"}, {M_SRC_URL, "model_url"},
            {M_SRC_DOI, "model_doi"},   {M_SRC_UUID, "model_uuid"},   {M_SRC_REPO, "model_repo_url"},
            {M_NAME, "model_name"},     {M_AUTHOR, "model_creator"},  {M_BASENAME, "model_type"},
        };
        for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) use_card(&m, direct[i].f, card, direct[i].k);
        json_t *bm = json_object_get(card, "base_model");
        if (!bm) bm = json_object_get(card, "base_models");
        if (!bm) bm = json_object_get(card, "base_model_sources");
        if (json_object_get(card, "base_model") || json_object_get(card, "base_models") || json_object_get(card, "base_model_sources"))
            m.base_models = source_entries(bm, pc->total);
        json_t *ds = json_object_get(card, "datasets");
        if (!ds) ds = json_object_get(card, "dataset");
        if (!ds) ds = json_object_get(card, "dataset_sources");
        if (json_object_get(card, "datasets") || json_object_get(card, "dataset") || json_object_get(card, "dataset_sources"))
            m.datasets = source_entries(ds, pc->total);
        json_t *lic = json_object_get(card, "license");
        if (lic && !json_is_null(lic)) m.license = json_incref(lic);
        use_card(&m, M_LICENSE_NAME, card, "license_name");
        use_card(&m, M_LICENSE_LINK, card, "license_link");
        append_list(&m.tags, json_object_get(card, "tags"));
        append_list(&m.tags, json_object_get(card, "pipeline_tag"));
        append_list(&m.languages, json_object_get(card, "languages"));
        append_list(&m.languages, json_object_get(card, "language"));
    }
    json_t *nop = src->config ? json_object_get(src->config, "_name_or_path") : NULL;
    if (json_is_string(nop)) {
        const char *s = json_string_value(nop);
        int slashes = 0;
        for (const char *c = s; *c; c++) slashes += *c == '/';
        if (slashes <= 1) heuristics_from_id(&m, s, pc->total);
    }
    const char *base = NULL;
    char last[512];
    if (src->name_path) {
        /* Path(dir).name: the last non-empty component */
        size_t l = strlen(src->name_path);
        while (l > 1 && src->name_path[l - 1] == '/') l--;
        size_t b = l;
        while (b > 0 && src->name_path[b - 1] != '/') b--;
        snprintf(last, sizeof last, "%.*s", (int)(l - b), src->name_path + b);
        if (!strcmp(last, ".") || !strcmp(last, "/")) last[0] = 0;
        base = last;
        heuristics_from_id(&m, base, pc->total);
    }
    if (src->name_override) {
        json_decref(m.f[M_NAME]);
        m.f[M_NAME] = json_string(src->name_override);
    }
    if (!m.f[M_NAME] && base) m.f[M_NAME] = json_string(base);
    if (!m.f[M_SIZE] && pc->total > 0) {
        char sl[64];
        smelt_meta_size_label(pc, sl, sizeof sl);
        m.f[M_SIZE] = json_string(sl);
    }

    int rc = src->gen_config ? sampling(kv, src->gen_config, notes, e) : 0;
    static const char *keys[M_COUNT] = {
        [M_NAME] = "general.name", [M_AUTHOR] = "general.author", [M_VERSION] = "general.version",
        [M_ORG] = "general.organization", [M_FINETUNE] = "general.finetune", [M_BASENAME] = "general.basename",
        [M_DESC] = "general.description", [M_QUANT_BY] = "general.quantized_by", [M_SIZE] = "general.size_label",
        [M_LICENSE_NAME] = "general.license.name", [M_LICENSE_LINK] = "general.license.link", [M_URL] = "general.url",
        [M_DOI] = "general.doi", [M_UUID] = "general.uuid", [M_REPO] = "general.repo_url", [M_SRC_URL] = "general.source.url",
        [M_SRC_DOI] = "general.source.doi", [M_SRC_UUID] = "general.source.uuid", [M_SRC_REPO] = "general.source.repo_url",
    };
    static const int order1[] = {M_NAME, M_AUTHOR, M_VERSION, M_ORG, M_FINETUNE, M_BASENAME, M_DESC, M_QUANT_BY, M_SIZE};
    for (size_t i = 0; i < sizeof order1 / sizeof order1[0] && !rc; i++) rc = put_str(kv, keys[order1[i]], m.f[order1[i]], notes, e);
    if (!rc && m.license) {
        if (json_is_array(m.license)) {
            size_t len = 1, i;
            json_t *x;
            json_array_foreach(m.license, i, x) len += json_is_string(x) ? json_string_length(x) + 1 : 0;
            char *j = calloc(len, 1);
            if (!j) rc = SMELT_NOMEM(e, "metadata");
            json_array_foreach(m.license, i, x) if (j && json_is_string(x))
            {
                if (i) strcat(j, ",");
                strcat(j, json_string_value(x));
            }
            if (j && j[0]) rc = smelt_kvs_set_str(kv, "general.license", j, strlen(j), e);
            free(j);
        } else {
            rc = put_str(kv, "general.license", m.license, notes, e);
        }
    }
    static const int order2[] = {M_LICENSE_NAME, M_LICENSE_LINK, M_URL, M_DOI, M_UUID, M_REPO, M_SRC_URL, M_SRC_DOI, M_SRC_UUID, M_SRC_REPO};
    for (size_t i = 0; i < sizeof order2 / sizeof order2[0] && !rc; i++) rc = put_str(kv, keys[order2[i]], m.f[order2[i]], notes, e);
    static const char *sub[] = {"name", "author", "version", "organization", "description", "url", "doi", "uuid", "repo_url"};
    for (int which = 0; which < 2 && !rc; which++) {
        json_t *list = which ? m.datasets : m.base_models;
        const char *kind = which ? "dataset" : "base_model";
        if (!list) continue;
        char key[128];
        snprintf(key, sizeof key, "general.%s.count", kind);
        rc = smelt_kvs_set_u32(kv, key, (uint32_t)json_array_size(list), e);
        size_t i;
        json_t *ent;
        json_array_foreach(list, i, ent) for (size_t s = 0; s < sizeof sub / sizeof sub[0] && !rc; s++)
        {
            snprintf(key, sizeof key, "general.%s.%zu.%s", kind, i, sub[s]);
            rc = put_str(kv, key, json_object_get(ent, sub[s]), notes, e);
        }
    }
    if (!rc) rc = put_str_list(kv, "general.tags", m.tags, notes, e);
    if (!rc) rc = put_str_list(kv, "general.languages", m.languages, notes, e);
    for (int i = 0; i < M_COUNT; i++) json_decref(m.f[i]);
    json_decref(m.license);
    json_decref(m.base_models);
    json_decref(m.datasets);
    json_decref(m.tags);
    json_decref(m.languages);
    json_decref(card);
    return rc;
}

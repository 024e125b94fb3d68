/* peft.c — PEFT LoRA adapter directories: config validation, key layout, pairing,
 * PEFT's target / pattern matching rules. Includes base/, safetensors.h, torchbin.h,
 * jansson, POSIX <regex.h> (Python patterns are translated to POSIX ERE). */
#include "peft.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/hash.h"
#include "base/names.h"
#include "base/strbuf.h"
#include "hfdir.h"
#include "safetensors.h"
#include "torchbin.h"

#define BASE_PREFIX "base_model.model."

struct smelt_peft {
    char *dir;
    char *cfg_path;
    char *weights_path;
    json_t *cfg;
    smelt_st *st; /* adapter_model.safetensors (NULL for .bin) */
    smelt_tsrc src;
    /* config */
    int64_t r;
    double alpha;
    bool rslora, dora, fifo;
    const char *bias;
    const char *base_name;
    json_t *target_modules;  /* array, string or NULL */
    json_t *exclude_modules; /* array, string or NULL */
    json_t *layers_to_transform;
    json_t *layers_pattern;
    json_t *rank_pattern, *alpha_pattern;
    char **mts;
    size_t n_mts;
    /* layout */
    smelt_peft_module *mods;
    size_t n_mods, cap_mods;
    smelt_names mod_index;
    smelt_peft_full *full;
    size_t n_full, cap_full;
    char hash[17];
};

/* ==== Python regular expressions → POSIX ERE ==== */


/* Translate; `out` receives "^(" translated ")$" when full, else the bare translation. */
static int py_to_posix(const char *py, bool full, smelt_strbuf *out, smelt_err *e)
{
    if (full) smelt_strbuf_puts(out, "^(");
    bool in_class = false;
    /* glibc's regcomp expands bounded repetitions by copying the sub-pattern: nested counts
     * multiply, so a hostile config could exhaust memory. Keep the product small. */
    uint64_t repeat_budget = 1;
    bool after_quant = false; /* Python: "multiple repeat"; glibc would duplicate the tree per '+' */
    if (strlen(py) > 4096) return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, NULL, "regular expression longer than 4096 characters");
    for (const char *s = py; *s; s++) {
        char c = *s;
        bool quant = !in_class && (c == '*' || c == '+' || c == '?' ||
                                   (c == '{' && ((s[1] >= '0' && s[1] <= '9') || s[1] == ',')));
        if (quant && after_quant)
            return SMELT_ERR(e, SMELT_EFORMAT, NULL, py, "multiple repeat at position %zu (as Python's re says)",
                             (size_t)(s - py));
        after_quant = quant;
        if (!in_class && c == '{') {
            const char *q = s + 1;
            uint64_t a = 0, b = 0;
            bool have_a = false, have_b = false, comma = false, big = false;
            while (*q >= '0' && *q <= '9') {
                a = a * 10 + (uint64_t)(*q++ - '0');
                have_a = true;
                big |= a > 100000;
            }
            if (*q == ',') {
                comma = true;
                q++;
                while (*q >= '0' && *q <= '9') {
                    b = b * 10 + (uint64_t)(*q++ - '0');
                    have_b = true;
                    big |= b > 100000;
                }
            }
            if (*q == '}' && (have_a || have_b)) { /* a quantifier */
                uint64_t count = have_b ? b : a;
                repeat_budget *= count + 1;
                if (big || count > 255 || repeat_budget > 4096)
                    return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, py,
                                     "regular expression repetition counts are too large for smelt (at most 255, "
                                     "and their product at most 4096)");
                char t[64];
                if (comma) snprintf(t, sizeof t, "{%" PRIu64 ",%s}", have_a ? a : 0, have_b ? "" : "");
                else snprintf(t, sizeof t, "{%" PRIu64 "}", a);
                if (comma && have_b) snprintf(t, sizeof t, "{%" PRIu64 ",%" PRIu64 "}", have_a ? a : 0, b);
                smelt_strbuf_puts(out, t);
                s = q;
                if (s[1] == '?') s++; /* non-greedy */
                continue;
            }
            smelt_strbuf_puts(out, "\\{"); /* Python takes a brace that starts no quantifier literally */
            continue;
        }
        if (!in_class && c == '}') {
            smelt_strbuf_puts(out, "\\}");
            continue;
        }
        if (c == '\\') {
            char d = s[1];
            if (!d) return SMELT_ERR(e, SMELT_EFORMAT, NULL, py, "regular expression ends with a backslash");
            s++;
            const char *cls = NULL;
            if (d == 'd') cls = "0-9";
            else if (d == 'w') cls = "A-Za-z0-9_";
            else if (d == 's') cls = "[:space:]";
            if (cls) {
                if (in_class) smelt_strbuf_puts(out, cls);
                else {
                    smelt_strbuf_puts(out, "[");
                    smelt_strbuf_puts(out, cls);
                    smelt_strbuf_puts(out, "]");
                }
                continue;
            }
            if (d == 'D' || d == 'W' || d == 'S') {
                if (in_class)
                    return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, py,
                                     "\\%c inside a character class is not supported", d);
                smelt_strbuf_puts(out, d == 'D' ? "[^0-9]" : d == 'W' ? "[^A-Za-z0-9_]" : "[^[:space:]]");
                continue;
            }
            if (isdigit((unsigned char)d) || d == 'b' || d == 'B' || d == 'A' || d == 'Z' || d == 'z')
                return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, py,
                                 "regular expression escape \\%c (back-reference or anchor) is not supported", d);
            char lit = d == 'n' ? '\n' : d == 't' ? '\t' : d == 'r' ? '\r' : d;
            if (in_class) {
                if (lit == ']' || lit == '\\' || lit == '-' || lit == '^')
                    return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, py,
                                     "escaped '%c' inside a character class is not supported", lit);
                smelt_strbuf_add(out, &lit, 1);
            } else if (strchr(".[]()*+?{}|^$\\", lit)) {
                char t[3] = {'\\', lit, 0};
                smelt_strbuf_puts(out, t);
            } else {
                smelt_strbuf_add(out, &lit, 1);
            }
            continue;
        }
        if (in_class) {
            smelt_strbuf_add(out, &c, 1);
            if (c == ']') in_class = false;
            continue;
        }
        if (c == '[') {
            in_class = true;
            smelt_strbuf_add(out, &c, 1);
            if (s[1] == '^') smelt_strbuf_add(out, ++s, 1);
            if (s[1] == ']') smelt_strbuf_add(out, ++s, 1); /* leading ']' is literal */
            continue;
        }
        if (c == '(' && s[1] == '?') {
            if (s[2] == ':') {
                smelt_strbuf_puts(out, "(");
                s += 2;
                continue;
            }
            if (s[2] == 'P' && s[3] == '<') {
                const char *end = strchr(s + 4, '>');
                if (!end) return SMELT_ERR(e, SMELT_EFORMAT, NULL, py, "unterminated (?P<name> group");
                smelt_strbuf_puts(out, "(");
                s = end;
                continue;
            }
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, py,
                             "regular expression construct '(?%c' (look-around, flags) is not supported", s[2]);
        }
        if ((c == '*' || c == '+' || c == '?') && s[1] == '?') {
            smelt_strbuf_add(out, &c, 1); /* non-greedy: same set of full matches */
            s++;
            continue;
        }
        smelt_strbuf_add(out, &c, 1);
    }
    if (in_class) return SMELT_ERR(e, SMELT_EFORMAT, NULL, py, "unterminated character class");
    if (full) smelt_strbuf_puts(out, ")$");
    return out->oom ? SMELT_NOMEM(e, "regular expression") : 0;
}

static int regex_compile(regex_t *re, const char *py, const char *prefix, const char *suffix, smelt_err *e)
{
    smelt_strbuf b = {0};
    smelt_strbuf_puts(&b, prefix);
    int rc = py_to_posix(py, false, &b, e);
    smelt_strbuf_puts(&b, suffix);
    if (!rc && b.oom) rc = SMELT_NOMEM(e, "regular expression");
    if (!rc) {
        int r = regcomp(re, b.text, REG_EXTENDED);
        if (r) {
            char msg[128];
            regerror(r, re, msg, sizeof msg);
            rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, py, "invalid regular expression: %s", msg);
        }
    }
    smelt_strbuf_free(&b);
    return rc;
}

int smelt_peft_regex_fullmatch(const char *pattern, const char *text, smelt_err *e)
{
    regex_t re;
    int rc = regex_compile(&re, pattern, "^(", ")$", e);
    if (rc) return rc;
    rc = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return rc;
}

const char *smelt_peft_pattern_key(json_t *patterns, const char *module)
{
    if (!json_is_object(patterns)) return NULL;
    const char *key;
    json_t *v;
    json_object_foreach(patterns, key, v) {
        regex_t re;
        if (regex_compile(&re, key, "^(.*\\.)?(", ")$", NULL)) continue;
        int m = regexec(&re, module, 0, NULL, 0) == 0;
        regfree(&re);
        if (m) return key;
    }
    return NULL;
}

int64_t smelt_peft_layer_index(const char *module, const char *layers_pattern)
{
    regex_t re;
    bool have_re = false;
    if (layers_pattern && *layers_pattern) {
        if (regex_compile(&re, layers_pattern, "^\\.(", ")\\.([0-9]+)\\.", NULL)) return -1;
        have_re = true;
    }
    int64_t found = -1;
    for (const char *p = strchr(module, '.'); p && found < 0; p = strchr(p + 1, '.')) {
        if (have_re) {
            regmatch_t m[3];
            if (regexec(&re, p, 3, m, 0) == 0 && m[2].rm_so >= 0)
                found = strtoll(p + m[2].rm_so, NULL, 10);
            continue;
        }
        const char *seg_end = strchr(p + 1, '.');
        if (!seg_end) break;
        const char *d = seg_end + 1;
        const char *q = d;
        while (isdigit((unsigned char)*q)) q++;
        if (q > d && *q == '.') found = strtoll(d, NULL, 10);
    }
    if (have_re) regfree(&re);
    return found;
}

/* ==== targeting ==== */

static bool json_str_in(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    return false;
}

static bool ends_with_dot(const char *key, const char *name)
{
    size_t kl = strlen(key), nl = strlen(name);
    return kl > nl && key[kl - nl - 1] == '.' && !strcmp(key + kl - nl, name);
}

static bool list_match(json_t *arr, const char *key)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) continue;
        const char *t = json_string_value(v);
        if (!strcmp(key, t) || ends_with_dot(key, t)) return true;
    }
    return false;
}

bool smelt_peft_is_module_to_save(const smelt_peft *p, const char *module)
{
    for (size_t i = 0; i < p->n_mts; i++) {
        regex_t re;
        if (regex_compile(&re, p->mts[i], "^(.*\\.)?(", ")(\\..*)?$", NULL)) continue;
        int m = regexec(&re, module, 0, NULL, 0) == 0;
        regfree(&re);
        if (m) return true;
    }
    return false;
}

static bool layer_ok(const smelt_peft *p, const char *module)
{
    json_t *lt = p->layers_to_transform;
    if (!lt || json_is_null(lt)) return true;
    if (json_is_array(lt) && json_array_size(lt) == 0) return true;
    int64_t idx = -1;
    json_t *lp = p->layers_pattern;
    if (!lp || json_is_null(lp) || (json_is_string(lp) && !*json_string_value(lp)) ||
        (json_is_array(lp) && json_array_size(lp) == 0)) {
        idx = smelt_peft_layer_index(module, NULL);
    } else if (json_is_string(lp)) {
        idx = smelt_peft_layer_index(module, json_string_value(lp));
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(lp, i, v) {
            if (!json_is_string(v)) continue;
            idx = smelt_peft_layer_index(module, json_string_value(v));
            if (idx >= 0) break;
        }
    }
    if (idx < 0) return false;
    if (json_is_integer(lt)) return json_integer_value(lt) == idx;
    size_t i;
    json_t *v;
    json_array_foreach(lt, i, v) if (json_is_integer(v) && json_integer_value(v) == idx) return true;
    return false;
}

bool smelt_peft_targets(const smelt_peft *p, const char *module, int flags)
{
    json_t *ex = p->exclude_modules;
    if (json_is_string(ex) && smelt_peft_regex_fullmatch(json_string_value(ex), module, NULL) == 1) return false;
    if (json_is_array(ex) && list_match(ex, module)) return false;
    if (smelt_peft_is_module_to_save(p, module)) return false;
    json_t *tm = p->target_modules;
    if (!tm || json_is_null(tm)) return smelt_names_find(&p->mod_index, module) >= 0;
    if (json_is_string(tm)) {
        const char *t = json_string_value(tm);
        if (!strcmp(t, "all-linear")) return !(flags & (SMELT_PEFT_OUTPUT_LAYER | SMELT_PEFT_EMBEDDING_LAYER));
        return smelt_peft_regex_fullmatch(t, module, NULL) == 1;
    }
    if (json_str_in(tm, module)) return true;
    size_t i;
    json_t *v;
    bool found = false;
    json_array_foreach(tm, i, v) if (json_is_string(v) && ends_with_dot(module, json_string_value(v))) found = true;
    return found && layer_ok(p, module);
}

/* ==== config ==== */

static const char *cfg_name(const smelt_peft *p) { return p->cfg_path; }

static int cfg_bool(smelt_peft *p, const char *key, bool *out, smelt_err *e)
{
    json_t *v = json_object_get(p->cfg, key);
    *out = false;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return SMELT_ERR(e, SMELT_EFORMAT, cfg_name(p), key, "expected true or false");
    *out = json_is_true(v);
    return 0;
}

static bool nonempty(json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v)) return false;
    if (json_is_array(v) || json_is_object(v)) return json_is_array(v) ? json_array_size(v) > 0 : json_object_size(v) > 0;
    if (json_is_string(v)) return *json_string_value(v) != 0;
    return true;
}

static int refuse_not_peft(const char *dir, json_t *cfg, smelt_err *e)
{
    char p[4096];
    bool mlx_weights = smelt_path_join(p, sizeof p, dir, "adapters.safetensors") && smelt_file_exists(p);
    bool mlx_cfg = cfg && json_object_get(cfg, "lora_parameters");
    if (mlx_weights || mlx_cfg)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, dir, NULL,
                         "this is an MLX-LM adapter (found %s%s%s; MLX stores lora_a [in, r] and lora_b [r, out] "
                         "without the base_model.model. prefix), not a PEFT adapter: smelt expects adapter_config.json "
                         "with \"peft_type\": \"LORA\" and adapter_model.safetensors or adapter_model.bin holding "
                         "lora_A [r, in] / lora_B [out, r]",
                         mlx_cfg ? "adapter_config.json with lora_parameters and no peft_type" : "",
                         mlx_cfg && mlx_weights ? ", " : "", mlx_weights ? "adapters.safetensors" : "");
    return SMELT_ERR(e, SMELT_EUNSUPPORTED, dir, NULL,
                     "not a PEFT adapter: adapter_config.json has no \"peft_type\" (expected \"LORA\")");
}

/* A pattern error from regex_compile() restated against the config file and key. */
static int regex_err(smelt_err *e, int rc, const char *file, const char *key, const char *pattern)
{
    if (!e) return rc;
    char msg[sizeof e->msg];
    snprintf(msg, sizeof msg, "%s", e->msg);
    return smelt_err_set_(e, rc, file, key, SMELT_NO_OFFSET, __FILE__, __LINE__, "pattern \"%s\": %s", pattern, msg);
}

static int parse_config(smelt_peft *p, smelt_err *e)
{
    json_t *c = p->cfg;
    const char *f = cfg_name(p);
    if (!json_is_object(c)) return SMELT_ERR(e, SMELT_EFORMAT, f, NULL, "adapter_config.json is not a JSON object");
    json_t *pt = json_object_get(c, "peft_type");
    if (!pt) return refuse_not_peft(p->dir, c, e);
    if (!json_is_string(pt)) return SMELT_ERR(e, SMELT_EFORMAT, f, "peft_type", "expected a string");
    const char *type = json_string_value(pt);
    if (strcmp(type, "LORA"))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, f, "peft_type",
                         "peft_type \"%s\" is not supported: smelt merges LoRA adapters (peft_type \"LORA\") only", type);
    json_t *r = json_object_get(c, "r");
    if (!json_is_integer(r) || json_integer_value(r) <= 0)
        return SMELT_ERR(e, SMELT_EFORMAT, f, "r", "expected a positive integer rank");
    p->r = json_integer_value(r);
    json_t *a = json_object_get(c, "lora_alpha");
    if (!a || json_is_null(a)) p->alpha = 8; /* LoraConfig default */
    else if (!json_is_number(a)) return SMELT_ERR(e, SMELT_EFORMAT, f, "lora_alpha", "expected a number");
    else p->alpha = json_number_value(a);
    /* PEFT would accept it, but a zero, negative or non-finite scaling (lora_alpha / r) only
     * ever yields a no-op, a sign-flipped or a NaN/Inf merge */
    if (!(p->alpha > 0) || !isfinite(p->alpha))
        return SMELT_ERR(e, SMELT_EFORMAT, f, "lora_alpha",
                         "expected a positive number (the LoRA scaling is lora_alpha / r), found %g", p->alpha);
    int rc;
    if ((rc = cfg_bool(p, "use_rslora", &p->rslora, e)) || (rc = cfg_bool(p, "use_dora", &p->dora, e)) ||
        (rc = cfg_bool(p, "fan_in_fan_out", &p->fifo, e)))
        return rc;
    json_t *b = json_object_get(c, "bias");
    p->bias = "none";
    if (b && !json_is_null(b)) {
        if (!json_is_string(b)) return SMELT_ERR(e, SMELT_EFORMAT, f, "bias", "expected \"none\", \"all\" or \"lora_only\"");
        p->bias = json_string_value(b);
        if (strcmp(p->bias, "none") && strcmp(p->bias, "all") && strcmp(p->bias, "lora_only"))
            return SMELT_ERR(e, SMELT_EFORMAT, f, "bias", "expected \"none\", \"all\" or \"lora_only\", found \"%s\"", p->bias);
    }
    json_t *bn = json_object_get(c, "base_model_name_or_path");
    p->base_name = json_is_string(bn) ? json_string_value(bn) : "";
    p->target_modules = json_object_get(c, "target_modules");
    if (p->target_modules && !json_is_null(p->target_modules) && !json_is_array(p->target_modules) &&
        !json_is_string(p->target_modules))
        return SMELT_ERR(e, SMELT_EFORMAT, f, "target_modules", "expected a list of names or a regular expression string");
    if (json_is_string(p->target_modules)) {
        regex_t re;
        const char *t = json_string_value(p->target_modules);
        if (strcmp(t, "all-linear")) {
            if ((rc = regex_compile(&re, t, "^(", ")$", e))) return regex_err(e, rc, f, "target_modules", t);
            regfree(&re);
        }
    }
    p->exclude_modules = json_object_get(c, "exclude_modules");
    p->layers_to_transform = json_object_get(c, "layers_to_transform");
    p->layers_pattern = json_object_get(c, "layers_pattern");
    json_t *lt = p->layers_to_transform;
    if (lt && !json_is_null(lt) && !json_is_integer(lt) && !json_is_array(lt))
        return SMELT_ERR(e, SMELT_EFORMAT, f, "layers_to_transform", "expected an integer or a list of integers");
    p->rank_pattern = json_object_get(c, "rank_pattern");
    p->alpha_pattern = json_object_get(c, "alpha_pattern");
    const char *pats[2] = {"rank_pattern", "alpha_pattern"};
    json_t *pv[2] = {p->rank_pattern, p->alpha_pattern};
    for (int k = 0; k < 2; k++) {
        if (!pv[k] || json_is_null(pv[k])) continue;
        if (!json_is_object(pv[k])) return SMELT_ERR(e, SMELT_EFORMAT, f, pats[k], "expected an object");
        const char *key;
        json_t *v;
        json_object_foreach(pv[k], key, v) {
            if (k == 0 ? !json_is_integer(v) || json_integer_value(v) <= 0 : !json_is_number(v))
                return SMELT_ERR(e, SMELT_EFORMAT, f, pats[k], "value for \"%s\" is not %s", key,
                                 k == 0 ? "a positive integer" : "a number");
            if (k == 1 && (!(json_number_value(v) > 0) || !isfinite(json_number_value(v))))
                return SMELT_ERR(e, SMELT_EFORMAT, f, pats[k],
                                 "value for \"%s\" must be a positive lora_alpha (the LoRA scaling is alpha / r), found %g",
                                 key, json_number_value(v));
            regex_t re;
            if ((rc = regex_compile(&re, key, "^(.*\\.)?(", ")$", e))) return regex_err(e, rc, f, pats[k], key);
            regfree(&re);
        }
    }
    json_t *mts = json_object_get(c, "modules_to_save");
    if (mts && !json_is_null(mts)) {
        if (!json_is_array(mts)) return SMELT_ERR(e, SMELT_EFORMAT, f, "modules_to_save", "expected a list of names");
        p->mts = calloc(json_array_size(mts) + 1, sizeof *p->mts);
        if (!p->mts) return SMELT_NOMEM(e, "modules_to_save");
        size_t i;
        json_t *v;
        json_array_foreach(mts, i, v) {
            if (!json_is_string(v)) return SMELT_ERR(e, SMELT_EFORMAT, f, "modules_to_save", "entry %zu is not a string", i);
            p->mts[p->n_mts++] = (char *)json_string_value(v);
        }
    }
    /* Variants whose merge is not W + scaling * B @ A on the original base. */
    json_t *init = json_object_get(c, "init_lora_weights");
    if (json_is_string(init)) {
        const char *s = json_string_value(init);
        static const char *const mut[] = {"pissa", "olora", "corda", "loftq", "lora_ga"};
        for (size_t i = 0; i < sizeof mut / sizeof *mut; i++)
            if (!strncmp(s, mut[i], strlen(mut[i])))
                return SMELT_ERR(e, SMELT_EUNSUPPORTED, f, "init_lora_weights",
                                 "init_lora_weights \"%s\" trains against a modified base (residual) model; merging it "
                                 "into the original base would be wrong. Convert it to a plain LoRA with PEFT "
                                 "(save_pretrained(path_initial_model_for_weight_conversion=...)) first",
                                 s);
    }
    static const struct {
        const char *key, *what;
    } refuse[] = {
        {"layer_replication", "layer_replication duplicates base layers"},
        {"target_parameters", "target_parameters (LoRA on nn.Parameter)"},
        {"trainable_token_indices", "trainable_token_indices (trainable tokens)"},
        {"alora_invocation_tokens", "aLoRA (alora_invocation_tokens) applies only after its invocation tokens"},
        {"megatron_config", "megatron_config (Megatron parallel layers)"},
        {"use_qalora", "QA-LoRA (use_qalora)"},
        {"use_bdlora", "BD-LoRA (use_bdlora)"},
        {"arrow_config", "Arrow routing (arrow_config)"},
        {"velora_config", "VeLoRA (velora_config)"},
        {"monteclora_config", "MonteCLoRA (monteclora_config)"},
        {"kasa_config", "KaSA (kasa_config)"},
        {"mica", "MiCA"},
    };
    for (size_t i = 0; i < sizeof refuse / sizeof *refuse; i++)
        if (nonempty(json_object_get(c, refuse[i].key)))
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, f, refuse[i].key,
                             "%s: this LoRA variant cannot be merged as W + scaling * B @ A; not supported",
                             refuse[i].what);
    return 0;
}

/* ==== key layout ==== */

static bool ends_with(const char *s, const char *suf, size_t *stem)
{
    size_t n = strlen(s), m = strlen(suf);
    if (n <= m || strcmp(s + n - m, suf)) return false;
    *stem = n - m;
    return true;
}

static smelt_peft_module *module_get(smelt_peft *p, const char *name, size_t len, smelt_peft_kind kind,
                                     const char *key, smelt_err *e, int *rc)
{
    char *nm = strndup(name, len);
    if (!nm) {
        *rc = SMELT_NOMEM(e, "module name");
        return NULL;
    }
    long found = smelt_names_find(&p->mod_index, nm);
    if (found >= 0) {
        free(nm);
        smelt_peft_module *m = &p->mods[found];
        if (m->kind != kind) {
            *rc = SMELT_ERR(e, SMELT_EFORMAT, p->weights_path, key,
                            "module '%s' has both Linear (lora_A/lora_B) and Embedding (lora_embedding_A/B) tensors",
                            m->name);
            return NULL;
        }
        return m;
    }
    if (p->n_mods == p->cap_mods) {
        size_t nc = p->cap_mods ? p->cap_mods * 2 : 64;
        smelt_peft_module *nm2 = realloc(p->mods, nc * sizeof *nm2);
        if (!nm2) {
            free(nm);
            *rc = SMELT_NOMEM(e, "modules");
            return NULL;
        }
        p->mods = nm2;
        p->cap_mods = nc;
        /* the index stores borrowed names, which live in the module structs' strings */
    }
    smelt_peft_module *m = &p->mods[p->n_mods];
    memset(m, 0, sizeof *m);
    m->name = nm;
    const char *dot = strrchr(nm, '.');
    m->kind_name = dot ? dot + 1 : nm;
    m->kind = kind;
    m->a = m->b = m->magnitude = m->b_bias = -1;
    if (smelt_names_add(&p->mod_index, nm, p->n_mods) == SMELT_NAMES_NOMEM) {
        free(nm);
        *rc = SMELT_NOMEM(e, "modules");
        return NULL;
    }
    p->n_mods++;
    return m;
}

static int add_full(smelt_peft *p, const char *target, size_t len, const char *suffix, int64_t t, const char *why,
                    smelt_err *e)
{
    if (p->n_full == p->cap_full) {
        size_t nc = p->cap_full ? p->cap_full * 2 : 8;
        smelt_peft_full *nf = realloc(p->full, nc * sizeof *nf);
        if (!nf) return SMELT_NOMEM(e, "replacement tensors");
        p->full = nf;
        p->cap_full = nc;
    }
    size_t sl = strlen(suffix);
    char *name = malloc(len + sl + 1);
    if (!name) return SMELT_NOMEM(e, "replacement tensors");
    memcpy(name, target, len);
    memcpy(name + len, suffix, sl + 1);
    p->full[p->n_full++] = (smelt_peft_full){name, t, why};
    return 0;
}

static bool is_magnitude_key(const char *key)
{
    size_t stem;
    return ends_with(key, ".lora_magnitude_vector", &stem) || ends_with(key, ".lora_magnitude_vector.weight", &stem);
}

static int classify(smelt_peft *p, int64_t ti, const char *key, smelt_err *e)
{
    const char *n = key;
    if (!strncmp(n, BASE_PREFIX, strlen(BASE_PREFIX))) n += strlen(BASE_PREFIX);
    size_t stem;
    int rc = 0;
    smelt_peft_module *m;
    static const struct {
        const char *suffix;
        smelt_peft_kind kind;
        int role; /* 0 A, 1 B, 2 magnitude, 3 B bias */
    } roles[] = {
        {".lora_A.weight", SMELT_PEFT_LINEAR, 0},
        {".lora_B.weight", SMELT_PEFT_LINEAR, 1},
        {".lora_B.bias", SMELT_PEFT_LINEAR, 3},
        {".lora_embedding_A", SMELT_PEFT_EMBEDDING, 0},
        {".lora_embedding_B", SMELT_PEFT_EMBEDDING, 1},
    };
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++) {
        if (!ends_with(n, roles[i].suffix, &stem)) continue;
        if (!(m = module_get(p, n, stem, roles[i].kind, key, e, &rc))) return rc;
        int64_t *slot = roles[i].role == 0 ? &m->a : roles[i].role == 1 ? &m->b : &m->b_bias;
        if (*slot >= 0) return SMELT_ERR(e, SMELT_EFORMAT, p->weights_path, key, "tensor appears twice");
        *slot = ti;
        return 0;
    }
    if (ends_with(n, ".lora_magnitude_vector", &stem) || ends_with(n, ".lora_magnitude_vector.weight", &stem)) {
        /* DoRA: the kind is fixed by the A/B keys; look the module up without creating a kind clash */
        char *nm = strndup(n, stem);
        if (!nm) return SMELT_NOMEM(e, "module name");
        long f = smelt_names_find(&p->mod_index, nm);
        smelt_peft_kind kind = f >= 0 ? p->mods[f].kind : SMELT_PEFT_LINEAR;
        free(nm);
        if (!(m = module_get(p, n, stem, kind, key, e, &rc))) return rc;
        if (m->magnitude >= 0) return SMELT_ERR(e, SMELT_EFORMAT, p->weights_path, key, "tensor appears twice");
        m->magnitude = ti;
        return 0;
    }
    if (strstr(n, ".lora_A.") || strstr(n, ".lora_B.") || strstr(n, ".lora_embedding_") ||
        strstr(n, ".lora_magnitude_vector."))
        return SMELT_ERR(e, SMELT_EFORMAT, p->weights_path, key,
                         "unexpected LoRA key layout (an adapter name left in the key?): expected "
                         "'<module>.lora_A.weight', '<module>.lora_B.weight', '<module>.lora_embedding_A/B' or "
                         "'<module>.lora_magnitude_vector'");
    if (strstr(n, "lora_E") || strstr(n, "ranknum"))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, p->weights_path, key,
                         "AdaLoRA tensors (lora_E, ranknum) are not supported");
    if (strstr(n, ".lora_"))
        return SMELT_ERR(e, SMELT_EFORMAT, p->weights_path, key,
                         "unknown LoRA tensor: expected lora_A/lora_B, lora_embedding_A/B or lora_magnitude_vector");
    if (ends_with(n, ".base_layer.weight", &stem)) return add_full(p, n, stem, ".weight", ti, "base_layer", e);
    if (ends_with(n, ".base_layer.bias", &stem)) return add_full(p, n, stem, ".bias", ti, "bias", e);
    const char *dot = strrchr(n, '.');
    if (!dot) return add_full(p, n, strlen(n), "", ti, "saved layer", e);
    char *mod = strndup(n, (size_t)(dot - n));
    if (!mod) return SMELT_NOMEM(e, "module name");
    const char *why = smelt_peft_is_module_to_save(p, mod) ? "modules_to_save"
                      : !strcmp(dot, ".bias")              ? "bias"
                                                           : "saved layer";
    free(mod);
    return add_full(p, n, strlen(n), "", ti, why, e);
}

static const char *dims_str(char *buf, size_t n, const smelt_tinfo *t)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (uint32_t i = 0; i < t->n_dims && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ", %" PRIu64 : "%" PRIu64, t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static int finish_module(smelt_peft *p, smelt_peft_module *m, smelt_err *e)
{
    const smelt_tsrc *s = &p->src;
    const char *W = p->weights_path;
    const char *an = m->kind == SMELT_PEFT_LINEAR ? "lora_A" : "lora_embedding_A";
    const char *bn = m->kind == SMELT_PEFT_LINEAR ? "lora_B" : "lora_embedding_B";
    if (m->a < 0 && m->b < 0)
        return SMELT_ERR(e, SMELT_EFORMAT, W, m->name, "module has a lora_magnitude_vector but no %s / %s", an, bn);
    if (m->a < 0 || m->b < 0)
        return SMELT_ERR(e, SMELT_EFORMAT, W, m->name, "module has %s but no %s", m->a < 0 ? bn : an,
                         m->a < 0 ? an : bn);
    const smelt_tinfo *A = smelt_tsrc_info(s, (uint64_t)m->a), *B = smelt_tsrc_info(s, (uint64_t)m->b);
    char da[96], db[96];
    if (!smelt_dtype_is_float(A->dtype) || !smelt_dtype_is_float(B->dtype))
        return SMELT_ERR(e, SMELT_EFORMAT, W, A->name, "LoRA factors must be floating point (found %s and %s)",
                         smelt_dtype_name(A->dtype), smelt_dtype_name(B->dtype));
    if (A->n_dims != 2 || B->n_dims != 2)
        return SMELT_ERR(e, A->n_dims > 2 ? SMELT_EUNSUPPORTED : SMELT_EFORMAT, W, A->name,
                         "expected 2-D %s/%s, found %s %s and %s %s%s", an, bn, an, dims_str(da, sizeof da, A), bn,
                         dims_str(db, sizeof db, B), A->n_dims > 2 ? " (LoRA on convolutions is not supported)" : "");
    if (A->shape[0] != B->shape[1])
        return SMELT_ERR(e, SMELT_EFORMAT, W, A->name, "ranks of %s %s and %s %s do not agree", an,
                         dims_str(da, sizeof da, A), bn, dims_str(db, sizeof db, B));
    m->r = A->shape[0];
    if (m->kind == SMELT_PEFT_LINEAR) {
        m->rows = B->shape[0];
        m->cols = A->shape[1];
    } else {
        m->rows = A->shape[1]; /* num_embeddings */
        m->cols = B->shape[0]; /* embedding_dim */
    }
    if (m->magnitude >= 0) {
        const smelt_tinfo *M = smelt_tsrc_info(s, (uint64_t)m->magnitude);
        uint64_t want = m->kind == SMELT_PEFT_LINEAR ? m->rows : m->cols;
        if (M->n_dims != 1 || M->shape[0] != want || !smelt_dtype_is_float(M->dtype))
            return SMELT_ERR(e, SMELT_EFORMAT, W, M->name, "DoRA magnitude must be a float vector of %" PRIu64
                             " elements, found %s %s", want, smelt_dtype_name(M->dtype), dims_str(da, sizeof da, M));
        if (!p->dora)
            return SMELT_ERR(e, SMELT_EFORMAT, W, M->name, "lora_magnitude_vector present but use_dora is false");
    } else if (p->dora) {
        return SMELT_ERR(e, SMELT_EFORMAT, W, m->name, "use_dora is true but the module has no lora_magnitude_vector");
    }
    if (m->b_bias >= 0) {
        const smelt_tinfo *Bb = smelt_tsrc_info(s, (uint64_t)m->b_bias);
        if (Bb->n_dims != 1 || Bb->shape[0] != m->rows)
            return SMELT_ERR(e, SMELT_EFORMAT, W, Bb->name, "lora_B.bias must have %" PRIu64 " elements, found %s",
                             m->rows, dims_str(da, sizeof da, Bb));
    }
    const char *rk = smelt_peft_pattern_key(p->rank_pattern, m->name);
    const char *ak = smelt_peft_pattern_key(p->alpha_pattern, m->name);
    m->r_config = rk ? json_integer_value(json_object_get(p->rank_pattern, rk)) : p->r;
    m->alpha = ak ? json_number_value(json_object_get(p->alpha_pattern, ak)) : p->alpha;
    if ((uint64_t)m->r_config != m->r)
        return SMELT_ERR(e, SMELT_EMISMATCH, W, A->name,
                         "rank %" PRIu64 " (from %s %s) is inconsistent with the config: %s gives r = %" PRId64, m->r,
                         an, dims_str(da, sizeof da, A), rk ? "rank_pattern" : "adapter_config.json", m->r_config);
    m->scaling = p->rslora ? m->alpha / sqrt((double)m->r) : m->alpha / (double)m->r;
    m->targeted = smelt_peft_targets(p, m->name,
                                     (m->kind == SMELT_PEFT_EMBEDDING ? SMELT_PEFT_EMBEDDING_LAYER : 0) |
                                         (!strcmp(m->kind_name, "lm_head") ? SMELT_PEFT_OUTPUT_LAYER : 0));
    return 0;
}

/* ==== open ==== */

/* Keys → modules and replacements, then every module checked. */
static int read_layout(smelt_peft *p, smelt_err *e)
{
    uint64_t n = smelt_tsrc_count(&p->src);
    if (n == 0) return SMELT_ERR(e, SMELT_EFORMAT, p->weights_path, NULL, "the adapter holds no tensors");
    int rc;
    /* magnitudes last: a module's kind comes from its A/B keys */
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t i = 0; i < n; i++) {
            const char *key = smelt_tsrc_info(&p->src, i)->name;
            if (is_magnitude_key(key) != (pass == 1)) continue;
            if ((rc = classify(p, (int64_t)i, key, e))) return rc;
        }
    for (size_t i = 0; i < p->n_mods; i++)
        if ((rc = finish_module(p, &p->mods[i], e))) return rc;
    return 0;
}

int smelt_peft_open(const char *dir, smelt_peft **out, smelt_err *e)
{
    *out = NULL;
    if (!smelt_is_dir(dir)) return SMELT_ERR(e, SMELT_EIO, dir, NULL, "adapter directory does not exist");
    smelt_peft *p = calloc(1, sizeof *p);
    if (!p) return SMELT_NOMEM(e, "adapter");
    int rc = 0;
    char path[4096];
    p->dir = strdup(dir);
    if (!p->dir || smelt_names_init(&p->mod_index, 256)) {
        rc = SMELT_NOMEM(e, "adapter");
        goto fail;
    }
    if (!smelt_path_join(path, sizeof path, dir, "adapter_config.json") || !smelt_file_exists(path)) {
        char q[4096];
        if (smelt_path_join(q, sizeof q, dir, "adapters.safetensors") && smelt_file_exists(q)) {
            rc = refuse_not_peft(dir, NULL, e);
            goto fail;
        }
        rc = SMELT_ERR(e, SMELT_EIO, dir, NULL, "no adapter_config.json: not a PEFT adapter directory");
        goto fail;
    }
    p->cfg_path = strdup(path);
    if (!p->cfg_path) {
        rc = SMELT_NOMEM(e, "adapter");
        goto fail;
    }
    if ((rc = smelt_json_load(path, &p->cfg, e))) goto fail;
    if ((rc = parse_config(p, e))) goto fail;
    if (smelt_path_join(path, sizeof path, dir, "adapter_model.safetensors") && smelt_file_exists(path)) {
        p->weights_path = strdup(path);
        if (!p->weights_path) {
            rc = SMELT_NOMEM(e, "adapter");
            goto fail;
        }
        if ((rc = smelt_st_open(path, &p->st, e)) || (rc = smelt_tsrc_open_st(&p->src, p->st, e))) goto fail;
    } else if (smelt_path_join(path, sizeof path, dir, "adapter_model.bin") && smelt_file_exists(path)) {
        p->weights_path = strdup(path);
        if (!p->weights_path) {
            rc = SMELT_NOMEM(e, "adapter");
            goto fail;
        }
        if ((rc = smelt_torchbin_open_file(path, &p->src, e))) goto fail;
    } else {
        char q[4096];
        if (smelt_path_join(q, sizeof q, dir, "adapters.safetensors") && smelt_file_exists(q)) {
            rc = refuse_not_peft(dir, p->cfg, e);
            goto fail;
        }
        rc = SMELT_ERR(e, SMELT_EIO, dir, NULL,
                       "no adapter weights: expected adapter_model.safetensors or adapter_model.bin");
        goto fail;
    }
    if ((rc = read_layout(p, e))) goto fail;
    *out = p;
    return 0;
fail:
    smelt_peft_close(p);
    return rc;
}

int smelt_peft_open_mem(const char *name, const char *config, size_t config_len, const void *weights,
                        size_t weights_len, smelt_peft **out, smelt_err *e)
{
    *out = NULL;
    smelt_peft *p = calloc(1, sizeof *p);
    if (!p) return SMELT_NOMEM(e, "adapter");
    int rc = 0;
    if (!(p->dir = strdup(name)) || asprintf(&p->cfg_path, "%s/adapter_config.json", name) < 0 ||
        asprintf(&p->weights_path, "%s/adapter_model.safetensors", name) < 0 || smelt_names_init(&p->mod_index, 64)) {
        rc = SMELT_NOMEM(e, "adapter");
        goto fail;
    }
    json_error_t je;
    p->cfg = json_loadb(config, config_len, 0, &je);
    if (!p->cfg) {
        rc = SMELT_ERR_AT(e, SMELT_EFORMAT, p->cfg_path, (uint64_t)(je.position > 0 ? je.position : 0), NULL,
                          "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        goto fail;
    }
    if ((rc = parse_config(p, e))) goto fail;
    if ((rc = smelt_st_open_mem(weights, weights_len, p->weights_path, &p->st, e)) || (rc = smelt_tsrc_open_st(&p->src, p->st, e)))
        goto fail;
    if ((rc = read_layout(p, e))) goto fail;
    smelt_xxh64_state *st = smelt_xxh64_new();
    if (st) {
        smelt_xxh64_update(st, config, config_len);
        smelt_xxh64_update(st, weights, weights_len);
        snprintf(p->hash, sizeof p->hash, "%016" PRIx64, smelt_xxh64_digest(st));
        smelt_xxh64_free(st);
    }
    *out = p;
    return 0;
fail:
    smelt_peft_close(p);
    return rc;
}

void smelt_peft_close(smelt_peft *p)
{
    if (!p) return;
    smelt_tsrc_close(&p->src);
    smelt_st_close(p->st);
    for (size_t i = 0; i < p->n_mods; i++) free((char *)p->mods[i].name);
    free(p->mods);
    smelt_names_free(&p->mod_index);
    for (size_t i = 0; i < p->n_full; i++) free((char *)p->full[i].target);
    free(p->full);
    free(p->mts);
    json_decref(p->cfg);
    free(p->cfg_path);
    free(p->weights_path);
    free(p->dir);
    free(p);
}

const char *smelt_peft_dir(const smelt_peft *p) { return p->dir; }
const char *smelt_peft_weights_path(const smelt_peft *p) { return p->weights_path; }
json_t *smelt_peft_config(const smelt_peft *p) { return p->cfg; }
const smelt_tsrc *smelt_peft_tensors(const smelt_peft *p) { return &p->src; }
size_t smelt_peft_n_modules(const smelt_peft *p) { return p->n_mods; }
const smelt_peft_module *smelt_peft_module_at(const smelt_peft *p, size_t i) { return i < p->n_mods ? &p->mods[i] : NULL; }
size_t smelt_peft_n_full(const smelt_peft *p) { return p->n_full; }
const smelt_peft_full *smelt_peft_full_at(const smelt_peft *p, size_t i) { return i < p->n_full ? &p->full[i] : NULL; }
int64_t smelt_peft_r(const smelt_peft *p) { return p->r; }
double smelt_peft_alpha(const smelt_peft *p) { return p->alpha; }
bool smelt_peft_use_rslora(const smelt_peft *p) { return p->rslora; }
bool smelt_peft_use_dora(const smelt_peft *p) { return p->dora; }
bool smelt_peft_fan_in_fan_out(const smelt_peft *p) { return p->fifo; }
const char *smelt_peft_base_name(const smelt_peft *p) { return p->base_name; }
size_t smelt_peft_n_modules_to_save(const smelt_peft *p) { return p->n_mts; }
const char *smelt_peft_module_to_save(const smelt_peft *p, size_t i) { return i < p->n_mts ? p->mts[i] : NULL; }

const char *smelt_peft_hash(const smelt_peft *p)
{
    smelt_peft *q = (smelt_peft *)p;
    if (q->hash[0]) return q->hash;
    smelt_xxh64_state *st = smelt_xxh64_new();
    if (!st) return "0000000000000000";
    const char *files[2] = {p->cfg_path, p->weights_path};
    for (int i = 0; i < 2; i++) {
        smelt_map m;
        if (smelt_map_open(&m, files[i], NULL) == 0) {
            for (uint64_t off = 0; off < m.size; off += 16u << 20) { /* pages dropped as we go */
                uint64_t len = m.size - off < (16u << 20) ? m.size - off : (16u << 20);
                smelt_xxh64_update(st, m.data + off, (size_t)len);
                smelt_map_release(&m, off, len);
            }
            smelt_map_close(&m);
        }
    }
    snprintf(q->hash, sizeof q->hash, "%016" PRIx64, smelt_xxh64_digest(st));
    smelt_xxh64_free(st);
    return q->hash;
}

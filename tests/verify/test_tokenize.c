/* test_tokenize.c — the SPM tokenizer: llama.cpp's test vectors, the fixture texts against
 * reference.json, identical ids to libllama's llama_tokenize/llama_detokenize on texts and
 * tricky strings, vocabularies without byte tokens, and malformed vocabularies. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "tests/common/testutil.h"
#include "verify/eval/tokenize.h"

/* ==== helpers ==== */

static smelt_gguf *open_gguf(const char *path)
{
    smelt_gguf *g = NULL;
    smelt_err e = {0};
    cr_assert_eq(smelt_gguf_open(path, SMELT_GGUF_META_ONLY, &g, &e), 0, "%s: %s", path, e.msg);
    return g;
}

static smelt_vocab *load_vocab(const char *path)
{
    smelt_gguf *g = open_gguf(path);
    smelt_vocab *v = NULL;
    smelt_err e = {0};
    cr_assert_eq(smelt_vocab_from_gguf(g, &v, &e), 0, "%s: %s", path, e.msg);
    smelt_gguf_close(g); /* the vocab owns its copy */
    return v;
}


/* A vocabulary-only GGUF of samples/tiny-mixtral made by llama.cpp's converter (cached in
 * the build directory), or NULL when the converter cannot run here. */
static const char *tiny_vocab_path(void)
{
    static char p[4200];
    static int state; /* 0 unknown, 1 ok, -1 unavailable */
    if (state) return state > 0 ? p : NULL;
    const char *b = getenv("SMELT_BUILD");
    if (b && *b) snprintf(p, sizeof p, "%s/fixtures/tiny-mixtral-vocab.gguf", b);
    else tu_path(p, sizeof p, "build/release/fixtures/tiny-mixtral-vocab.gguf");
    if (access(p, R_OK) != 0) {
        char script[4200], model[4200], cmd[13000];
        tu_path(script, sizeof script, "tests/verify/mk-vocab-gguf");
        tu_path(model, sizeof model, "samples/tiny-mixtral");
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", script, model, p);
        char *out = NULL;
        int rc = tu_run(cmd, &out);
        if (rc != 0) {
            if (rc != 77) cr_log_warn("mk-vocab-gguf failed (%d): %s", rc, out ? out : "");
            free(out);
            state = -1;
            return NULL;
        }
        free(out);
    }
    state = 1;
    return p;
}

static char *read_text(const char *rel, size_t *len)
{
    char p[4200];
    tu_path(p, sizeof p, rel);
    uint8_t *b = tu_read(p, len);
    cr_assert(b, "cannot read %s", p);
    b[*len] = 0;
    return (char *)b;
}

static void tok(const smelt_vocab *v, const char *s, size_t n, bool add, bool parse, int32_t **ids, size_t *nids)
{
    smelt_err e = {0};
    cr_assert_eq(smelt_tokenize(v, s, n, add, parse, ids, nids, &e), 0, "%s", e.msg);
}

static json_t *reference(void)
{
    char p[4200];
    tu_path(p, sizeof p, "samples/reference.json");
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    cr_assert(j, "reference.json: %s", je.text);
    return j;
}

static void assert_ids_json(const int32_t *ids, size_t n, json_t *arr, size_t from, const char *what)
{
    cr_assert_leq(from + json_array_size(arr), n, "%s: too few tokens", what);
    for (size_t i = 0; i < json_array_size(arr); i++)
        cr_assert_eq(ids[from + i], json_integer_value(json_array_get(arr, i)), "%s: id %zu is %d, expected %lld",
                     what, from + i, ids[from + i], (long long)json_integer_value(json_array_get(arr, i)));
}

/* ==== llama.cpp's SPM test vectors ==== */

static const char *model_vocab_path(const char *name)
{
    static char p[4200];
    const char *src = tu_oracle_src();
    if (!src) return NULL;
    snprintf(p, sizeof p, "%s/models/ggml-vocab-%s.gguf", src, name);
    return access(p, R_OK) == 0 ? p : NULL;
}

/* llama.cpp's test vectors for a models/ggml-vocab-<name>.gguf: inputs separated by
 * "\n__ggml_vocab_test__\n", outputs one line each (test-tokenizer-0.cpp: add_special =
 * false, parse_special = false). Returns the number of cases; all must pass. */
static size_t run_vectors(const char *name)
{
    const char *vp = model_vocab_path(name);
    if (!vp) cr_skip_test("llama.cpp source (models/ggml-vocab-%s.gguf) not installed (make oracle)", name);
    char inp[4300], outp[4300];
    snprintf(inp, sizeof inp, "%s.inp", vp);
    snprintf(outp, sizeof outp, "%s.out", vp);
    size_t il, ol;
    char *in = (char *)tu_read(inp, &il), *out = (char *)tu_read(outp, &ol);
    cr_assert(in && out);
    in[il] = 0;
    out[ol] = 0;
    smelt_vocab *v = load_vocab(vp);
    static const char SEP[] = "\n__ggml_vocab_test__\n";
    size_t n_cases = 0, n_pass = 0, pos = 0;
    char *line = out;
    while (pos < il) {
        char *next = strstr(in + pos, SEP);
        size_t clen = next ? (size_t)(next - (in + pos)) : il - pos;
        cr_assert(line && *line, "more inputs than output lines");
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        int32_t expect[4096];
        size_t ne = 0;
        for (char *p = line, *end; *p; p = end) {
            long t = strtol(p, &end, 10);
            if (end == p) break;
            cr_assert_lt(ne, 4096);
            expect[ne++] = (int32_t)t;
        }
        int32_t *ids;
        size_t n;
        tok(v, in + pos, clen, false, false, &ids, &n);
        bool ok = n == ne && memcmp(ids, expect, n * sizeof *ids) == 0;
        if (!ok) cr_log_error("%s case %zu '%.*s': %zu tokens, expected %zu", name, n_cases, (int)clen, in + pos, n, ne);
        n_pass += ok;
        n_cases++;
        free(ids);
        line = eol ? eol + 1 : NULL;
        pos = next ? (size_t)(next - in) + sizeof SEP - 1 : il;
    }
    cr_log_info("llama.cpp %s test vectors: %zu of %zu pass", name, n_pass, n_cases);
    cr_assert_eq(n_pass, n_cases, "%s: %zu of %zu test vectors pass", name, n_pass, n_cases);
    smelt_vocab_free(v);
    free(in);
    free(out);
    return n_cases;
}

Test(tokenize, llama_spm_test_vectors) { cr_assert_eq(run_vectors("llama-spm"), 46); }
Test(tokenize, llama_bpe_test_vectors) { cr_assert_eq(run_vectors("llama-bpe"), 46); }
Test(tokenize, qwen2_test_vectors) { cr_assert_eq(run_vectors("qwen2"), 46); }

Test(tokenize, llama_spm_vocab_metadata)
{
    const char *vp = model_vocab_path("llama-spm");
    if (!vp) cr_skip_test("llama.cpp source not installed (make oracle)");
    smelt_vocab *v = load_vocab(vp);
    cr_assert_eq(smelt_vocab_n_tokens(v), 32000);
    cr_assert_eq(smelt_vocab_bos(v), 1);
    cr_assert_eq(smelt_vocab_eos(v), 2);
    cr_assert_eq(smelt_vocab_unk(v), 0);
    cr_assert(smelt_vocab_add_bos(v));
    cr_assert(!smelt_vocab_add_eos(v));
    cr_assert(smelt_vocab_add_space_prefix(v));
    size_t l;
    const char *p = smelt_vocab_piece(v, 1, &l);
    cr_assert(l == 3 && memcmp(p, "<s>", 3) == 0);
    p = smelt_vocab_piece(v, 13, &l);
    cr_assert(l == 6 && memcmp(p, "<0x0A>", 6) == 0);
    cr_assert_null(smelt_vocab_piece(v, 32000, &l));
    cr_assert_null(smelt_vocab_piece(v, -1, NULL));
    cr_assert_eq(smelt_vocab_find(v, "<0x0A>", 6), 13);
    cr_assert_eq(smelt_vocab_attr(v, 1), SMELT_TOKATTR_CONTROL);
    cr_assert_eq(smelt_vocab_attr(v, 0), SMELT_TOKATTR_UNKNOWN);
    cr_assert_eq(smelt_vocab_attr(v, 13), SMELT_TOKATTR_BYTE);
    /* rendering: control tokens only with special, bytes as their byte, U+2581 as space */
    p = smelt_token_to_piece(v, 1, false, &l);
    cr_assert_eq(l, 0);
    p = smelt_token_to_piece(v, 1, true, &l);
    cr_assert(l == 3 && memcmp(p, "<s>", 3) == 0);
    p = smelt_token_to_piece(v, 13, false, &l);
    cr_assert(l == 1 && p[0] == '\n');
    int32_t hello = smelt_vocab_find(v, "\xe2\x96\x81Hello", 8);
    cr_assert_eq(hello, 15043);
    p = smelt_token_to_piece(v, hello, false, &l);
    cr_assert(l == 6 && memcmp(p, " Hello", 6) == 0);
    smelt_vocab_free(v);
}

/* ==== the fixture texts and prompts against reference.json ==== */

static void check_text(const smelt_vocab *v, json_t *ref, const char *name)
{
    char rel[64];
    snprintf(rel, sizeof rel, "samples/text/%s.txt", name);
    size_t len;
    char *text = read_text(rel, &len);
    json_t *t = json_object_get(json_object_get(ref, "texts"), name);
    cr_assert_eq((long long)len, json_integer_value(json_object_get(t, "bytes")));
    if (len && text[len - 1] == '\n') len--; /* llama-perplexity drops one trailing newline */
    int32_t *ids;
    size_t n;
    tok(v, text, len, true, false, &ids, &n);
    long long want = json_integer_value(json_object_get(t, "n_tokens_with_bos"));
    cr_log_info("%s: %zu tokens with BOS (reference.json: %lld)", name, n, want);
    cr_assert_eq((long long)n, want, "%s: %zu tokens, reference.json says %lld", name, n, want);
    json_t *first = json_object_get(t, "first_16_token_ids_with_bos"), *last = json_object_get(t, "last_8_token_ids");
    cr_assert_eq(json_array_size(first), 16);
    assert_ids_json(ids, n, first, 0, name);
    assert_ids_json(ids, n, last, n - json_array_size(last), name);
    free(ids);
    free(text);
}

Test(tokenize, fixture_texts_match_reference)
{
    const char *vp = tiny_vocab_path();
    if (!vp) cr_skip_test("no vocabulary GGUF of samples/tiny-mixtral (llama.cpp converter unavailable)");
    smelt_vocab *v = load_vocab(vp);
    cr_assert_eq(smelt_vocab_n_tokens(v), 4096);
    json_t *ref = reference();
    check_text(v, ref, "eval-en");
    check_text(v, ref, "eval-zh");
    json_decref(ref);
    smelt_vocab_free(v);
}

Test(tokenize, prompts_match_reference)
{
    const char *vp = tiny_vocab_path();
    if (!vp) cr_skip_test("no vocabulary GGUF of samples/tiny-mixtral (llama.cpp converter unavailable)");
    smelt_vocab *v = load_vocab(vp);
    json_t *ref = reference();
    json_t *prompts = json_object_get(json_object_get(ref, "prompts"), "base");
    cr_assert_gt(json_array_size(prompts), 0);
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        json_t *p = json_array_get(prompts, i);
        const char *s = json_string_value(json_object_get(p, "prompt"));
        json_t *want = json_object_get(p, "token_ids");
        int32_t *ids;
        size_t n;
        tok(v, s, strlen(s), true, false, &ids, &n);
        cr_assert_eq(n, json_array_size(want), "prompt '%s'", s);
        assert_ids_json(ids, n, want, 0, s);
        /* and back: the pieces reference.json lists */
        json_t *pieces = json_object_get(p, "pieces");
        for (size_t k = 0; k < n; k++) {
            size_t l;
            const char *pc = smelt_vocab_piece(v, ids[k], &l);
            const char *w = json_string_value(json_array_get(pieces, k));
            cr_assert(l == strlen(w) && memcmp(pc, w, l) == 0, "piece %zu of '%s'", k, s);
        }
        /* and back to the prompt (without BOS, the dummy-prefix space is dropped) */
        char *back;
        smelt_err e = {0};
        cr_assert_eq(smelt_detokenize(v, ids + 1, n - 1, &back, &e), 0, "%s", e.msg);
        cr_assert_str_eq(back, s);
        free(back);
        free(ids);
    }
    json_decref(ref);
    smelt_vocab_free(v);
}

/* ==== libllama as the oracle ==== */

/* llama_model_params of the bundled libllama (include/llama.h, node-llama-cpp 3.21.1):
 * declared here so the test builds without llama.cpp's headers. */
struct o_model_params {
    void *devices;
    const void *tensor_buft_overrides;
    int32_t n_gpu_layers;
    int split_mode, load_mode, lazy_mode;
    int32_t main_gpu;
    const float *tensor_split;
    void *progress_callback, *progress_callback_user_data;
    const void *kv_overrides;
    bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
};

typedef struct {
    void *model;
    const void *vocab;
    int32_t (*tokenize)(const void *, const char *, int32_t, int32_t *, int32_t, bool, bool);
    int32_t (*detokenize)(const void *, const int32_t *, int32_t, char *, int32_t, bool, bool);
    int32_t (*to_piece)(const void *, int32_t, char *, int32_t, int32_t, bool);
    void (*model_free)(void *);
} oracle;

/* libllama's warnings (GGML_LOG_LEVEL_WARN) while loading, kept for the tests that ask */
static char g_warnings[4096];

static void quiet_log(int level, const char *text, void *user)
{
    (void)user;
    if (level == 3 && strlen(g_warnings) + strlen(text) < sizeof g_warnings) strcat(g_warnings, text);
}

/* Load a vocabulary with libllama (vocab_only), or skip the test. */
static oracle oracle_open(const char *path)
{
    oracle o = {0};
    void *h = tu_oracle_llama();
    if (!h) cr_skip_test("libllama not installed (make oracle)");
    struct o_model_params (*defp)(void) = (struct o_model_params(*)(void))dlsym(h, "llama_model_default_params");
    void *(*load)(const char *, struct o_model_params) =
        (void *(*)(const char *, struct o_model_params))dlsym(h, "llama_model_load_from_file");
    const void *(*get_vocab)(const void *) = (const void *(*)(const void *))dlsym(h, "llama_model_get_vocab");
    void (*log_set)(void (*)(int, const char *, void *), void *) =
        (void (*)(void (*)(int, const char *, void *), void *))dlsym(h, "llama_log_set");
    void (*backend_init)(void) = (void (*)(void))dlsym(h, "llama_backend_init");
    o.tokenize = (int32_t(*)(const void *, const char *, int32_t, int32_t *, int32_t, bool, bool))dlsym(h, "llama_tokenize");
    o.detokenize = (int32_t(*)(const void *, const int32_t *, int32_t, char *, int32_t, bool, bool))dlsym(h, "llama_detokenize");
    o.to_piece = (int32_t(*)(const void *, int32_t, char *, int32_t, int32_t, bool))dlsym(h, "llama_token_to_piece");
    o.model_free = (void (*)(void *))dlsym(h, "llama_model_free");
    cr_assert(defp && load && get_vocab && log_set && backend_init && o.tokenize && o.detokenize && o.to_piece &&
              o.model_free);
    log_set(quiet_log, NULL);
    backend_init();
    struct o_model_params p = defp();
    cr_assert_eq(p.n_gpu_layers, -1, "llama_model_params layout does not match this libllama");
    p.vocab_only = true;
    o.model = load(path, p);
    cr_assert(o.model, "libllama could not load %s", path);
    o.vocab = get_vocab(o.model);
    return o;
}

static void oracle_close(oracle *o) { o->model_free(o->model); }

static int32_t *oracle_tok(const oracle *o, const char *s, size_t n, bool add, bool parse, size_t *nout)
{
    int32_t cap = (int32_t)n + 16;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    int32_t k = o->tokenize(o->vocab, s, (int32_t)n, ids, cap, add, parse);
    cr_assert_geq(k, 0);
    *nout = (size_t)k;
    return ids;
}

/* smelt and libllama agree on s (all four add_special × parse_special settings), and on
 * detokenizing the result (all four remove_special × unparse_special settings). */
static size_t agree(const smelt_vocab *v, const oracle *o, const char *s, size_t n, const char *label)
{
    size_t checked = 0;
    for (int f = 0; f < 4; f++) {
        bool add = f & 1, parse = f & 2;
        size_t nl, ns;
        int32_t *want = oracle_tok(o, s, n, add, parse, &nl), *got;
        tok(v, s, n, add, parse, &got, &ns);
        size_t first = 0;
        while (first < nl && first < ns && want[first] == got[first]) first++;
        cr_assert(ns == nl && first == ns, "%s (add_special %d, parse_special %d): %zu tokens vs libllama's %zu, first difference at %zu (%d vs %d)",
                  label, add, parse, ns, nl, first, first < ns ? got[first] : -1, first < nl ? want[first] : -1);
        for (int d = 0; d < 4; d++) {
            bool rm = d & 1, unparse = d & 2;
            size_t cap = n * 2 + 64;
            char *buf = malloc(cap);
            int32_t k = o->detokenize(o->vocab, want, (int32_t)nl, buf, (int32_t)cap, rm, unparse);
            cr_assert_geq(k, 0);
            char *mine;
            size_t ml;
            smelt_err e = {0};
            cr_assert_eq(smelt_detokenize_ex(v, got, ns, rm, unparse, &mine, &ml, &e), 0, "%s", e.msg);
            cr_assert(ml == (size_t)k && memcmp(mine, buf, ml) == 0,
                      "%s: detokenize(remove_special %d, unparse_special %d) differs from libllama", label, rm, unparse);
            free(mine);
            free(buf);
        }
        free(want);
        free(got);
        checked++;
    }
    return checked;
}

/* Strings that exercise spaces, newlines, byte fallback, special tokens and bad UTF-8. */
static const struct {
    const char *s;
    size_t n; /* 0: strlen */
} TRICKY[] = {
    {"", 0}, {" ", 0}, {"  ", 0}, {"   ", 0}, {"\t", 0}, {"\n", 0}, {"\n\n", 0}, {" \n ", 0},
    {"Hello", 0}, {" Hello", 0}, {"Hello ", 0}, {"Hello  world", 0}, {"  leading and trailing  ", 0},
    {"a\tb\tc", 0}, {"line1\nline2\n", 0}, {"crlf\r\nline", 0}, {"emoji \xf0\x9f\x98\x80\xf0\x9f\xa6\x99!", 0},
    {"rare CJK \xf0\xa0\x80\x80\xf0\xaa\x9a\xa5\xe9\xbe\x98", 0}, {"\xe4\xb8\xad\xe6\x96\x87\xe6\xb7\xb7\xe5\x90\x88", 0},
    {"<s>", 0}, {"</s>", 0}, {"<unk>", 0}, {"<s>Hello</s>", 0}, {" <s> x", 0}, {"a<s>b", 0}, {"<s><s>", 0},
    {"x </s>\n<s> y", 0}, {"bad \xff\xfe utf8 \xc3", 0}, {"\xe4\xb8", 0}, {"\x80\x81\x82", 0}, {"a\0b", 3},
    {"\xe2\x96\x81literal U+2581", 0}, {"<0x0A>", 0}, {"[EMPTY_0]", 0}, {"1234567890 3.14159", 0},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0}, {"don't won't y'all", 0},
    {"ied 4 \xc2\xbd months", 0}, {"\xc3\x84pfel", 0}, {"   Hello\n    Hello", 0}, {"(((\"'[]{}", 0},
};

static void agree_tricky(const char *vocab_path)
{
    smelt_vocab *v = load_vocab(vocab_path);
    oracle o = oracle_open(vocab_path);
    size_t checked = 0;
    for (size_t i = 0; i < sizeof TRICKY / sizeof TRICKY[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "tricky string %zu", i);
        checked += agree(v, &o, TRICKY[i].s, TRICKY[i].n ? TRICKY[i].n : strlen(TRICKY[i].s), label);
    }
    cr_log_info("%s: %zu tokenizations identical to libllama", vocab_path, checked);
    oracle_close(&o);
    smelt_vocab_free(v);
}

Test(tokenize_oracle, tricky_strings_llama_spm)
{
    const char *vp = model_vocab_path("llama-spm");
    if (!vp) cr_skip_test("llama.cpp source not installed (make oracle)");
    agree_tricky(vp);
}

Test(tokenize_oracle, tricky_strings_tiny_mixtral)
{
    const char *vp = tiny_vocab_path();
    if (!vp) cr_skip_test("no vocabulary GGUF of samples/tiny-mixtral (llama.cpp converter unavailable)");
    agree_tricky(vp);
}

/* The fixture texts the libllama and JS comparisons tokenize whole. */
static const char *const FIXTURE_TEXTS[] = {"samples/text/eval-en.txt", "samples/text/eval-zh.txt", "samples/text/calib.txt"};

Test(tokenize_oracle, fixture_texts_and_prompts)
{
    const char *vp = tiny_vocab_path();
    if (!vp) cr_skip_test("no vocabulary GGUF of samples/tiny-mixtral (llama.cpp converter unavailable)");
    smelt_vocab *v = load_vocab(vp);
    oracle o = oracle_open(vp);
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char *t = read_text(FIXTURE_TEXTS[i], &len);
        agree(v, &o, t, len, FIXTURE_TEXTS[i]);
        free(t);
    }
    json_t *ref = reference();
    json_t *prompts = json_object_get(json_object_get(ref, "prompts"), "base");
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        const char *s = json_string_value(json_object_get(json_array_get(prompts, i), "prompt"));
        agree(v, &o, s, strlen(s), s);
    }
    json_decref(ref);
    oracle_close(&o);
    smelt_vocab_free(v);
}

Test(tokenize_oracle, llama_spm_vectors_and_eval_text)
{
    const char *vp = model_vocab_path("llama-spm");
    if (!vp) cr_skip_test("llama.cpp source not installed (make oracle)");
    smelt_vocab *v = load_vocab(vp);
    oracle o = oracle_open(vp);
    size_t len;
    char *t = read_text("samples/text/eval-zh.txt", &len);
    agree(v, &o, t, len, "eval-zh.txt with the llama-spm vocabulary");
    free(t);
    char inp[4300];
    snprintf(inp, sizeof inp, "%s.inp", vp);
    char *in = (char *)tu_read(inp, &len);
    agree(v, &o, in, len, "the whole .inp file");
    free(in);
    oracle_close(&o);
    smelt_vocab_free(v);
}

/* ==== byte-level BPE vocabularies (llama3, qwen2) against libllama ==== */

/* What the BPE pre-tokenizers split on: contractions in both cases, digit runs, whitespace
 * runs before words, punctuation and newlines, non-ASCII letters, numbers and spaces,
 * special-token texts, and text that is not UTF-8. */
static const char *const BPE_TRICKY[] = {
    "it's 'S 'T I'M we're THEY'RE you've I'LL he'd 'd 'x '",
    "1 12 123 1234 12345 1234567 x12345y 3.14159 1,000,000",
    "a  b   c\t\td \t e\n\nf \n\n g\r\n\r\nh   \n",
    "   \n\n   x", "trailing spaces   ", "\n\n\n", " \t \t", "?!... ,,, -- (x) [y] {z}",
    "\xc2\xa0nbsp\xe3\x80\x80ideographic\xe2\x80\x83" "em\xc2\x85nel",
    "\xe2\x91\xa0\xe2\x91\xa1\xe2\x91\xa2 \xd9\xa3\xd9\xa4\xd9\xa5 \xe2\x85\xa0\xe2\x85\xa1 \xc2\xbd\xc2\xbe",
    "\xc3\xa9t\xc3\xa9 na\xc3\xafve \xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 "
    "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
    "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c\xef\xbc\x81 \xe3\x81\x93\xe3\x82\x93\xe3\x81\xab"
    "\xe3\x81\xa1\xe3\x81\xaf 123\xe5\xb9\xb4",
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d"
    "\xf0\x9f\x8c\x88 \xe2\x9d\xa4\xef\xb8\x8f",
    "e\xcc\x81 combining, \xef\xac\x81 ligature",
    "<|begin_of_text|>Hi<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "<|endoftext|> <|end_of_text|>x", "bad \xff utf8 \xc3( \xe4\xb8 \xed\xa0\x80 \xc0\x80",
    "x\xcc\x81\xcc\x82\xcc\x83", "\x01\x02\x1f\x7f", "ALLCAPS lowercase MiXeD CamelCase snake_case kebab-case",
    "https://example.com/a?b=c&d=e#f", "def f(x):\n    return x**2  # comment\n",
};

/* smelt and libllama agree on a BPE vocabulary over the tricky strings, the fixture texts
 * and (with_inp) the whole .inp file beside it. */
static void agree_bpe_file(const char *path, const char *label, bool with_inp)
{
    smelt_vocab *v = load_vocab(path);
    oracle o = oracle_open(path);
    size_t checked = 0;
    for (size_t i = 0; i < sizeof TRICKY / sizeof TRICKY[0]; i++)
        checked += agree(v, &o, TRICKY[i].s, TRICKY[i].n ? TRICKY[i].n : strlen(TRICKY[i].s), TRICKY[i].s);
    for (size_t i = 0; i < sizeof BPE_TRICKY / sizeof BPE_TRICKY[0]; i++)
        checked += agree(v, &o, BPE_TRICKY[i], strlen(BPE_TRICKY[i]), BPE_TRICKY[i]);
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char *t = read_text(FIXTURE_TEXTS[i], &len);
        checked += agree(v, &o, t, len, FIXTURE_TEXTS[i]);
        free(t);
    }
    if (with_inp) {
        char inp[4300];
        snprintf(inp, sizeof inp, "%s.inp", path);
        size_t len;
        char *in = (char *)tu_read(inp, &len);
        checked += agree(v, &o, in, len, "the whole .inp file");
        free(in);
    }
    cr_log_info("%s: %zu tokenizations identical to libllama", label, checked);
    oracle_close(&o);
    smelt_vocab_free(v);
}

static void agree_bpe(const char *name)
{
    const char *vp = model_vocab_path(name);
    if (!vp) cr_skip_test("llama.cpp source (models/ggml-vocab-%s.gguf) not installed (make oracle)", name);
    char path[4200];
    snprintf(path, sizeof path, "%s", vp);
    agree_bpe_file(path, name, true);
}

Test(tokenize_oracle, llama_bpe) { agree_bpe("llama-bpe"); }
Test(tokenize_oracle, qwen2) { agree_bpe("qwen2"); }

/* ==== vocabularies smelt-convert made from real tokenizer.json files ==== */

/* build/<flavor>/fixtures/bpe-<family>.gguf made by tests/verify/mk-bpe-gguf (cached), or
 * skip the test when the npm tokenizers are not installed. */
static const char *bpe_gguf(const char *family)
{
    static char p[3][4200];
    int k = !strcmp(family, "llama3") ? 0 : !strcmp(family, "llama3-bos") ? 1 : 2;
    const char *b = getenv("SMELT_BUILD");
    char rel[128];
    snprintf(rel, sizeof rel, "%s/fixtures/bpe-%s.gguf", b && *b ? b : "build/release", family);
    if (b && *b && b[0] == '/') snprintf(p[k], sizeof p[k], "%s", rel);
    else tu_path(p[k], sizeof p[k], rel);
    if (access(p[k], R_OK) != 0) {
        char script[4200], cmd[17000];
        tu_path(script, sizeof script, "tests/verify/mk-bpe-gguf");
        snprintf(cmd, sizeof cmd, "'%s' %s '%s'", script, family, p[k]);
        char *out = NULL;
        int rc = tu_run(cmd, &out);
        if (rc == 77) cr_skip_test("npm tokenizers not installed (tests/oracle/install)");
        cr_assert_eq(rc, 0, "mk-bpe-gguf %s failed (%d): %s", family, rc, out ? out : "");
        free(out);
    }
    return p[k];
}

static void str_kv_is(const smelt_gguf *g, const char *key, const char *want)
{
    smelt_str s;
    smelt_err e = {0};
    cr_assert_eq(smelt_gguf_get_str(g, key, &s, &e), 0, "%s", e.msg);
    cr_assert(s.n == strlen(want) && memcmp(s.p, want, s.n) == 0, "%s is '%.*s', expected '%s'", key, (int)s.n, s.p, want);
}

static int64_t int_kv(const smelt_gguf *g, const char *key)
{
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, key);
    return kv ? smelt_gguf_kv_int(kv, 0) : -1;
}

/* Elements [0, n) of array key in a and b that differ (n = 0: the arrays must have equal
 * length and all are compared). */
static size_t arr_diff(const smelt_gguf *a, const smelt_gguf *b, const char *key, uint64_t n, uint64_t *first)
{
    const smelt_gguf_kv *x = smelt_gguf_get_kv(a, key), *y = smelt_gguf_get_kv(b, key);
    cr_assert(x && y, "%s missing", key);
    if (!n) {
        cr_assert_eq(x->n, y->n, "%s: %llu vs %llu elements", key, (unsigned long long)x->n, (unsigned long long)y->n);
        n = x->n;
    }
    size_t d = 0;
    *first = UINT64_MAX;
    for (uint64_t i = 0; i < n; i++) {
        bool same;
        if (x->arr_type == SMELT_GGUF_STRING) {
            smelt_str s = smelt_gguf_arr_str(x, i), t = smelt_gguf_arr_str(y, i);
            same = s.n == t.n && memcmp(s.p, t.p, s.n) == 0;
        } else {
            same = smelt_gguf_kv_int(x, i) == smelt_gguf_kv_int(y, i);
        }
        if (!same && d++ == 0) *first = i;
    }
    return d;
}

/* The converted vocabularies against llama.cpp's own conversions of the same tokenizer
 * families (models/ggml-vocab-llama-bpe.gguf: Meta's Llama 3 with the BOS post-processor;
 * ggml-vocab-qwen2.gguf: Qwen1.5, whose 151643 base tokens and merges Qwen3 keeps). */
Test(tokenize_bpe, converted_vocab_equals_llama_cpp)
{
    const char *ref_l = model_vocab_path("llama-bpe");
    if (!ref_l) cr_skip_test("llama.cpp source not installed (make oracle)");
    char ref_llama[4200], ref_qwen[4200];
    snprintf(ref_llama, sizeof ref_llama, "%s", ref_l);
    snprintf(ref_qwen, sizeof ref_qwen, "%s", model_vocab_path("qwen2"));
    uint64_t first;
    smelt_gguf *r = open_gguf(ref_llama), *g = open_gguf(bpe_gguf("llama3-bos"));
    str_kv_is(g, "tokenizer.ggml.model", "gpt2");
    str_kv_is(g, "tokenizer.ggml.pre", "llama-bpe");
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.tokens", 0, &first), 0, "tokens differ from %llu", (unsigned long long)first);
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.token_type", 0, &first), 0, "types differ from %llu", (unsigned long long)first);
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.merges", 0, &first), 0, "merges differ from %llu", (unsigned long long)first);
    cr_assert_eq(int_kv(g, "tokenizer.ggml.bos_token_id"), int_kv(r, "tokenizer.ggml.bos_token_id"));
    cr_assert_eq(int_kv(g, "tokenizer.ggml.eos_token_id"), int_kv(r, "tokenizer.ggml.eos_token_id"));
    cr_assert_eq(int_kv(g, "tokenizer.ggml.add_bos_token"), 1);
    /* the tokenizer keys both files have come in the same order */
    int64_t last = -1;
    for (uint64_t i = 0; i < smelt_gguf_n_kv(r); i++) {
        const char *key = smelt_gguf_kv_at(r, i)->key;
        if (strncmp(key, "tokenizer.", 10)) continue;
        int64_t at = smelt_gguf_find_kv(g, key);
        cr_assert_gt(at, last, "%s is out of llama.cpp's order", key);
        last = at;
    }
    smelt_gguf_close(g);
    /* the npm file as shipped: same vocabulary, no BOS added */
    g = open_gguf(bpe_gguf("llama3"));
    str_kv_is(g, "tokenizer.ggml.pre", "llama-bpe");
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.tokens", 0, &first), 0);
    cr_assert_eq(int_kv(g, "tokenizer.ggml.add_bos_token"), 0);
    smelt_gguf_close(g);
    smelt_gguf_close(r);

    r = open_gguf(ref_qwen);
    g = open_gguf(bpe_gguf("qwen3"));
    str_kv_is(g, "tokenizer.ggml.pre", "qwen2");
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.tokens", 151643, &first), 0, "base tokens differ from %llu",
                 (unsigned long long)first);
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.token_type", 151643, &first), 0);
    cr_assert_eq(arr_diff(g, r, "tokenizer.ggml.merges", 0, &first), 0, "merges differ from %llu", (unsigned long long)first);
    size_t tail = arr_diff(g, r, "tokenizer.ggml.tokens", 0, &first);
    cr_log_info("qwen3 vs llama.cpp's qwen2 vocabulary: %zu of 151936 token texts differ, all from id %llu on "
                "(added tokens and [PADn] filler)", tail, (unsigned long long)first);
    cr_assert_geq(first, 151643);
    cr_assert_eq(int_kv(g, "tokenizer.ggml.eos_token_id"), 151645); /* <|im_end|>: Qwen3's tokenizer_config */
    cr_assert_eq(int_kv(g, "tokenizer.ggml.padding_token_id"), 151643);
    cr_assert_eq(int_kv(g, "tokenizer.ggml.bos_token_id"), 151643); /* config.json */
    cr_assert_eq(int_kv(g, "tokenizer.ggml.add_bos_token"), 0);
    smelt_gguf_close(g);
    smelt_gguf_close(r);
}

/* libllama loads the converted vocabularies and tokenizes exactly as smelt does. */
static void agree_converted(const char *family, const char *ref)
{
    char path[4200];
    snprintf(path, sizeof path, "%s", bpe_gguf(family));
    g_warnings[0] = 0;
    agree_bpe_file(path, family, false);
    /* libllama warns about nothing it does not warn about on its own file of the family
     * (Qwen's vocabulary makes it say that the ordinary token '</s>' looks like a control one) */
    char mine[sizeof g_warnings];
    snprintf(mine, sizeof mine, "%s", g_warnings);
    const char *rp = model_vocab_path(ref);
    if (!rp) return;
    char rpath[4200];
    snprintf(rpath, sizeof rpath, "%s", rp);
    g_warnings[0] = 0;
    oracle o = oracle_open(rpath);
    oracle_close(&o);
    cr_log_info("%s: libllama's warnings: '%s'", family, mine);
    cr_assert_str_eq(mine, g_warnings, "libllama warned while loading %s: %s (on %s: %s)", family, mine, ref, g_warnings);
}

Test(tokenize_oracle, converted_llama3) { agree_converted("llama3", "llama-bpe"); }
Test(tokenize_oracle, converted_qwen3) { agree_converted("qwen3", "qwen2"); }

static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return false;
        uint32_t cp = k == 1 ? c : c & (0x7F >> k);
        for (size_t j = 1; j < k; j++) {
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | ((unsigned char)s[i + j] & 0x3F);
        }
        static const uint32_t MIN[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < MIN[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || (k == 1 && c == 0)) return false;
        i += k;
    }
    return true;
}

/* smelt_tokenize(add_special, parse_special) equals the JavaScript port of Hugging Face's
 * tokenizers (encode with the tokenizer's own special tokens) on every valid UTF-8 test
 * string that is in NFC (the Qwen tokenizer NFC-normalizes, llama.cpp and smelt do not),
 * and detokenizing gives the text back. */
static void agree_js(const char *family, bool clean_spaces, const char *hash_pre)
{
    char path[4200];
    snprintf(path, sizeof path, "%s", bpe_gguf(family));
    char script[4200];
    tu_path(script, sizeof script, "tests/verify/js-tokenize.js");
    char *out = NULL;
    if (tu_run("node --version", &out) != 0) cr_skip_test("node not installed");
    free(out);
    json_t *strs = json_array();
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        char *t = read_text(FIXTURE_TEXTS[i], &len);
        json_array_append_new(strs, json_stringn(t, len));
        free(t);
    }
    for (size_t i = 0; i < sizeof BPE_TRICKY / sizeof BPE_TRICKY[0]; i++)
        if (valid_utf8(BPE_TRICKY[i], strlen(BPE_TRICKY[i]))) json_array_append_new(strs, json_string(BPE_TRICKY[i]));
    for (size_t i = 0; i < sizeof TRICKY / sizeof TRICKY[0]; i++) {
        size_t n = TRICKY[i].n ? TRICKY[i].n : strlen(TRICKY[i].s);
        if (valid_utf8(TRICKY[i].s, n)) json_array_append_new(strs, json_stringn(TRICKY[i].s, n));
    }
    char dir[4200], in[4300], cmd[13000];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(in, sizeof in, "%s/strings.json", dir);
    cr_assert_eq(json_dump_file(strs, in, 0), 0);
    char base[4300] = "";
    if (tu_oracle_src()) snprintf(base, sizeof base, "%s/conversion/base.py", tu_oracle_src());
    snprintf(cmd, sizeof cmd, "node '%s' %s '%s' '%s'", script, family, in, base);
    int rc = tu_run(cmd, &out);
    cr_assert_eq(rc, 0, "js-tokenize: %s", out ? out : "");
    json_error_t je;
    json_t *all = json_loads(out, 0, &je), *res = json_object_get(all, "results");
    cr_assert(res && json_array_size(res) == json_array_size(strs), "js-tokenize output: %s", je.text);
    /* smelt names the pre-tokenizer from tokenizer.json's description, llama.cpp's converter
     * from a hash of the ids of its test sentence: the same name, except for Meta's first
     * Llama 3 upload, hashed as smaug-bpe (no BOS) where smelt writes llama-bpe and
     * add_bos_token false (docs/convert.md) */
    const char *pre = json_string_value(json_object_get(all, "pre"));
    if (base[0]) {
        cr_assert(pre && !strcmp(pre, hash_pre), "llama.cpp's converter would name %s '%s'", family, pre ? pre : "");
        smelt_gguf *g = open_gguf(path);
        str_kv_is(g, "tokenizer.ggml.pre", strcmp(hash_pre, "smaug-bpe") ? hash_pre : "llama-bpe");
        smelt_gguf_close(g);
    }
    smelt_vocab *v = load_vocab(path);
    /* ordinary tokens that llama.cpp (and smelt) turn into control tokens by their text
     * ("</s>" is one in Qwen's vocabulary): with parse_special they are matched whole,
     * where Hugging Face merges their characters */
    int32_t forced[16];
    size_t nforced = 0;
    for (uint32_t id = 0; id < smelt_vocab_n_tokens(v) && nforced < 16; id++)
        if ((smelt_vocab_attr(v, (int32_t)id) & (SMELT_TOKATTR_NORMAL | SMELT_TOKATTR_CONTROL)) ==
            (SMELT_TOKATTR_NORMAL | SMELT_TOKATTR_CONTROL))
            forced[nforced++] = (int32_t)id;
    size_t same = 0, skipped = 0, round = 0, skipped_forced = 0;
    for (size_t i = 0; i < json_array_size(strs); i++) {
        json_t *r = json_array_get(res, i);
        const char *s = json_string_value(json_array_get(strs, i));
        size_t sl = json_string_length(json_array_get(strs, i));
        if (!json_is_true(json_object_get(r, "nfc"))) {
            skipped++;
            continue;
        }
        bool has_forced = false;
        for (size_t f = 0; f < nforced; f++) {
            size_t fl;
            const char *ft = smelt_vocab_piece(v, forced[f], &fl);
            if (memmem(s, sl, ft, fl)) has_forced = true;
        }
        if (has_forced) {
            skipped_forced++;
            continue;
        }
        json_t *want = json_object_get(r, "ids");
        int32_t *ids;
        size_t n;
        tok(v, s, sl, true, true, &ids, &n);
        size_t k = 0;
        while (k < n && k < json_array_size(want) && ids[k] == json_integer_value(json_array_get(want, k))) k++;
        cr_assert(n == json_array_size(want) && k == n, "string %zu ('%.40s'): %zu ids vs JS's %zu, first difference at %zu",
                  i, s, n, json_array_size(want), k);
        same++;
        /* back to the text: with add_special the BOS is removed; control tokens unparsed */
        char *back;
        size_t bl;
        smelt_err e = {0};
        cr_assert_eq(smelt_detokenize_ex(v, ids, n, true, true, &back, &bl, &e), 0, "%s", e.msg);
        if (bl == sl && memcmp(back, s, sl) == 0) round++;
        else cr_assert(clean_spaces, "string %zu does not detokenize to itself", i);
        free(back);
        free(ids);
    }
    cr_log_info("%s: %zu strings identical to @lenml/tokenizers (skipped: %zu not in NFC, %zu with a text llama.cpp "
                "makes a control token), %zu round-trip; llama.cpp's converter: '%s'",
                family, same, skipped, skipped_forced, round, pre ? pre : "(not run)");
    cr_assert_gt(same, 50);
    smelt_vocab_free(v);
    json_decref(all);
    json_decref(strs);
    free(out);
    tu_rmtree(dir);
}

Test(tokenize_bpe, js_llama3) { agree_js("llama3", true, "smaug-bpe"); }
Test(tokenize_bpe, js_llama3_bos) { agree_js("llama3-bos", true, "llama-bpe"); }
Test(tokenize_bpe, js_qwen3) { agree_js("qwen3", false, "qwen2"); }

/* ==== crafted vocabularies ==== */

typedef struct {
    const char *text;
    float score;
    int32_t type;
} tspec;

typedef struct {
    const char *model;      /* tokenizer.ggml.model (NULL: omitted) */
    const char *name;       /* general.name (NULL: omitted) */
    bool bytes;             /* add the 256 <0xXX> tokens after the first three */
    int scores_kind;        /* 0: f32, 1: i32, 2: u8 */
    int64_t n_scores;       /* -1: one per token */
    const char *bos_key_str;/* write bos_token_id as this string (wrong type) */
    int64_t unk_id;         /* -1: key omitted */
    bool no_tokens;
    const char *pre;        /* tokenizer.ggml.pre (NULL: omitted) */
    const char *merges;     /* tokenizer.ggml.merges, separated by '|' (NULL: omitted) */
} vspec;

static const tspec CHAT[] = {
    {"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3},
    {"\xe2\x96\x81", -1, 1}, {"h", -2, 1}, {"e", -2, 1}, {"l", -2, 1}, {"o", -2, 1}, {"w", -3, 1}, {"r", -3, 1},
    {"d", -3, 1}, {"a", -1, 1}, {"b", -1, 1}, {"\xe2\x96\x81h", -1, 1}, {"he", -1, 1}, {"ll", -1, 1},
    {"lo", -1, 1}, {"hel", -1, 1}, {"hello", -1, 1}, {"\xe2\x96\x81hello", 0, 1}, {"\xe2\x96\x81w", -2, 1},
    {"wor", -2, 1}, {"world", -1, 1}, {"\xe2\x96\x81world", 0, 1}, {"ab", -1, 1}, {"\xe2\x96\x81" "a", -1, 1},
    {"ba", -1, 1}, {"aa", -1, 1}, {"<|user|>", 0, 4}, {"<|assistant|>", 0, 4}, {"<|end|>", 0, 3},
    {"<|system|>", 0, 3}, {"<|endoftext|>", 0, 1}, {"<|fim_prefix|>", 0, 1}, {"<unused0>", 0, 3},
    {"\xe2\x96\x81\xe2\x96\x81", -1, 1}, {"<|us", -1, 1}, {"", 0, 1},
};

static void put_u32(smelt_gguf_writer *w, const char *k, uint32_t v)
{
    smelt_err e = {0};
    cr_assert_eq(smelt_gguf_writer_set_u32(w, k, v, &e), 0, "%s", e.msg);
}

/* Write a vocabulary GGUF (with the llama hparams libllama wants) into dir/file. */
static void write_vocab(const char *path, const tspec *t, size_t n, const vspec *vs)
{
    smelt_err e = {0};
    size_t total = n + (vs->bytes ? 256 : 0);
    const char **texts = calloc(total, sizeof *texts);
    char (*hex)[8] = calloc(256, sizeof *hex);
    float *sc = calloc(total, sizeof *sc);
    int32_t *ty = calloc(total, sizeof *ty);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (vs->bytes && i == 3)
            for (int b = 0; b < 256; b++, k++) {
                snprintf(hex[b], 8, "<0x%02X>", b);
                texts[k] = hex[b];
                ty[k] = 6;
            }
        texts[k] = t[i].text;
        sc[k] = t[i].score;
        ty[k++] = t[i].type;
    }
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    cr_assert_eq(smelt_gguf_writer_set_str(w, "general.architecture", "llama", &e), 0);
    if (vs->name) cr_assert_eq(smelt_gguf_writer_set_str(w, "general.name", vs->name, &e), 0);
    put_u32(w, "llama.block_count", 1);
    put_u32(w, "llama.context_length", 64);
    put_u32(w, "llama.embedding_length", 8);
    put_u32(w, "llama.feed_forward_length", 16);
    put_u32(w, "llama.attention.head_count", 2);
    put_u32(w, "llama.rope.dimension_count", 4);
    cr_assert_eq(smelt_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &e), 0);
    if (vs->model) cr_assert_eq(smelt_gguf_writer_set_str(w, "tokenizer.ggml.model", vs->model, &e), 0);
    if (vs->pre) cr_assert_eq(smelt_gguf_writer_set_str(w, "tokenizer.ggml.pre", vs->pre, &e), 0);
    if (vs->merges) {
        char *all = strdup(vs->merges), *save = NULL;
        const char *m[64];
        size_t nm = 0;
        for (char *tok = strtok_r(all, "|", &save); tok && nm < 64; tok = strtok_r(NULL, "|", &save)) m[nm++] = tok;
        cr_assert_eq(smelt_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, NULL, nm, &e), 0);
        free(all);
    }
    if (!vs->no_tokens)
        cr_assert_eq(smelt_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, NULL, total, &e), 0, "%s", e.msg);
    else
        cr_assert_eq(smelt_gguf_writer_set_str(w, "tokenizer.ggml.tokens", "oops", &e), 0);
    uint64_t ns = vs->n_scores >= 0 ? (uint64_t)vs->n_scores : total;
    if (vs->scores_kind == 1) {
        int32_t *is = calloc(total, sizeof *is);
        for (size_t i = 0; i < total; i++) is[i] = (int32_t)sc[i];
        cr_assert_eq(smelt_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SMELT_GGUF_I32, is, ns, &e), 0);
        free(is);
    } else if (vs->scores_kind == 2) {
        uint8_t *u = calloc(total, 1);
        cr_assert_eq(smelt_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SMELT_GGUF_U8, u, ns, &e), 0);
        free(u);
    } else {
        cr_assert_eq(smelt_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SMELT_GGUF_F32, sc, ns, &e), 0);
    }
    cr_assert_eq(smelt_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SMELT_GGUF_I32, ty, total, &e), 0);
    if (vs->bos_key_str) cr_assert_eq(smelt_gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", vs->bos_key_str, &e), 0);
    else put_u32(w, "tokenizer.ggml.bos_token_id", 1);
    put_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (vs->unk_id >= 0) put_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)vs->unk_id);
    cr_assert_eq(smelt_gguf_writer_begin(w, path, &e), 0, "%s", e.msg);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
    free(texts);
    free(hex);
    free(sc);
    free(ty);
}

static vspec chat_spec(void)
{
    vspec s = {.model = "llama", .name = "chatty", .bytes = true, .n_scores = -1, .unk_id = 0};
    return s;
}

/* Open a crafted vocabulary expecting an error; returns the code, fills e. */
static int vocab_error(const tspec *t, size_t n, const vspec *vs, smelt_err *e)
{
    char dir[512], path[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/v.gguf", dir);
    write_vocab(path, t, n, vs);
    smelt_gguf *g = open_gguf(path);
    smelt_vocab *v = NULL;
    int rc = smelt_vocab_from_gguf(g, &v, e);
    cr_assert_null(v);
    smelt_gguf_close(g);
    tu_rmtree(dir);
    return rc;
}

static const char *const CHAT_STRINGS[] = {
    "<|user|>\nhello world<|end|>\n<|assistant|>", "  <|user|>  hello  <|end|>  world ", "<|endoftext|>hello",
    "<|fim_prefix|>ab<|end|>", "ab ba aa <s></s> <unk>", "<|system|><|system|>x", "<|us<|user|>er|>",
    "<unused0> hello", "\t<|user|>\t", "hello\n<|assistant|>\n\nworld\n", "[EMPTY_37] abab", "",
};

static void chat_agree(const char *name)
{
    char dir[512], path[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/chat.gguf", dir);
    vspec vs = chat_spec();
    vs.name = name;
    write_vocab(path, CHAT, sizeof CHAT / sizeof CHAT[0], &vs);
    smelt_vocab *v = load_vocab(path);
    oracle o = oracle_open(path);
    for (size_t i = 0; i < sizeof CHAT_STRINGS / sizeof CHAT_STRINGS[0]; i++)
        agree(v, &o, CHAT_STRINGS[i], strlen(CHAT_STRINGS[i]), CHAT_STRINGS[i]);
    /* each token's rendering, with and without special */
    for (int32_t id = 0; id < (int32_t)smelt_vocab_n_tokens(v); id++)
        for (int sp = 0; sp < 2; sp++) {
            char buf[64];
            int32_t k = o.to_piece(o.vocab, id, buf, sizeof buf, 0, sp);
            size_t l;
            const char *p = smelt_token_to_piece(v, id, sp, &l);
            cr_assert(k >= 0 && (size_t)k == l && memcmp(p, buf, l) == 0, "piece of token %d (special %d)", id, sp);
        }
    oracle_close(&o);
    smelt_vocab_free(v);
    tu_rmtree(dir);
}

Test(tokenize_oracle, user_defined_and_control_tokens)
{
    chat_agree("chatty");
}

/* A small byte-level BPE vocabulary with the irregularities real files never have but
 * llama.cpp still defines: a merge whose result is no token ("c a"), a repeated pair (the
 * first rank counts), a merge without a space, tokens no merge reaches ("cab": found whole
 * with llama-bpe's ignore_merges, built from pieces with qwen2), characters without a token
 * (dropped), user-defined and control tokens. Same ids and text as libllama, both
 * pre-tokenizers. */
Test(tokenize_oracle, crafted_bpe_vocabulary)
{
    static const tspec T[] = {
        {"a", 0, 1}, {"b", 0, 1}, {"c", 0, 1}, {"\xc4\xa0", 0, 1} /* Ġ */, {"\xc4\x8a", 0, 1} /* Ċ */, {"1", 0, 1},
        {"ab", 0, 1}, {"bc", 0, 1}, {"abc", 0, 1}, {"\xc4\xa0" "a", 0, 1}, {"\xc4\xa0" "ab", 0, 1}, {"cab", 0, 1},
        {"11", 0, 1}, {"111", 0, 1}, {"<|endoftext|>", 0, 3}, {"<tool>", 0, 4}, {"'s", 0, 1}, {"'", 0, 1}, {"s", 0, 1},
    };
    static const char *const S[] = {
        "abc ab cab abcabc", "  a\n\nb", "cab", "ca b", "111 1111 11111", "zzz ab", "\xc3\xa9" "ab",
        "<tool>ab<|endoftext|> ab", "it's 'S", "a\tb", "ab  ", "",
    };
    static const char *const PRES[] = {"llama-bpe", "qwen2"};
    for (int k = 0; k < 2; k++) {
        char dir[512], path[600];
        cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
        snprintf(path, sizeof path, "%s/bpe.gguf", dir);
        vspec vs = {.model = "gpt2", .pre = PRES[k], .n_scores = -1, .unk_id = -1,
                    .merges = "a b|b c|ab c|\xc4\xa0 a|\xc4\xa0" "a b|c a|a b|xyz|1 1|11 1|' s"};
        write_vocab(path, T, sizeof T / sizeof T[0], &vs);
        smelt_vocab *v = load_vocab(path);
        oracle o = oracle_open(path);
        for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) agree(v, &o, S[i], strlen(S[i]), S[i]);
        oracle_close(&o);
        smelt_vocab_free(v);
        tu_rmtree(dir);
    }
}

Test(tokenize_oracle, phi3_right_strip)
{
    chat_agree("Phi-3 mini test");
}

Test(tokenize, crafted_vocab_attributes)
{
    char dir[512], path[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/chat.gguf", dir);
    vspec vs = chat_spec();
    write_vocab(path, CHAT, sizeof CHAT / sizeof CHAT[0], &vs);
    smelt_vocab *v = load_vocab(path);
    int32_t eot = smelt_vocab_find(v, "<|endoftext|>", 13), fim = smelt_vocab_find(v, "<|fim_prefix|>", 14);
    int32_t unused = smelt_vocab_find(v, "<unused0>", 9), user = smelt_vocab_find(v, "<|user|>", 8);
    cr_assert_eq(smelt_vocab_attr(v, eot), SMELT_TOKATTR_NORMAL | SMELT_TOKATTR_CONTROL);
    cr_assert_eq(smelt_vocab_attr(v, fim), SMELT_TOKATTR_NORMAL | SMELT_TOKATTR_CONTROL);
    cr_assert_eq(smelt_vocab_attr(v, unused), SMELT_TOKATTR_CONTROL | SMELT_TOKATTR_UNUSED);
    cr_assert_eq(smelt_vocab_attr(v, user), SMELT_TOKATTR_USER_DEFINED);
    /* the empty text was renamed as llama.cpp does */
    size_t l;
    const char *p = smelt_vocab_piece(v, (int32_t)smelt_vocab_n_tokens(v) - 1, &l);
    cr_assert(l == 11 && memcmp(p, "[EMPTY_293]", 11) == 0, "%.*s", (int)l, p);
    /* user-defined tokens split the text even without parse_special; control ones only with it */
    int32_t *ids;
    size_t n;
    tok(v, "a<|user|>b", 10, false, false, &ids, &n);
    cr_assert(n == 4 && ids[0] == smelt_vocab_find(v, "\xe2\x96\x81" "a", 4) && ids[1] == user &&
              ids[2] == smelt_vocab_find(v, "\xe2\x96\x81", 3) && ids[3] == smelt_vocab_find(v, "b", 1));
    free(ids);
    tok(v, "<s>", 3, false, true, &ids, &n);
    cr_assert(n == 1 && ids[0] == 1);
    free(ids);
    tok(v, "<s>", 3, false, false, &ids, &n);
    cr_assert_gt(n, 1);
    free(ids);
    smelt_vocab_free(v);
    tu_rmtree(dir);
}

Test(tokenize, vocab_hash)
{
    char dir[512], a[600], b[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    vspec vs = chat_spec();
    size_t n = sizeof CHAT / sizeof CHAT[0];
    write_vocab(a, CHAT, n, &vs);
    tspec *t = malloc(sizeof CHAT);
    memcpy(t, CHAT, sizeof CHAT);
    smelt_vocab *va = load_vocab(a), *va2 = load_vocab(a);
    cr_assert_eq(smelt_vocab_hash(va), smelt_vocab_hash(va2));
    cr_assert_neq(smelt_vocab_hash(va), 0);
    t[5].score = -2.5f; /* one score */
    write_vocab(b, t, n, &vs);
    smelt_vocab *vb = load_vocab(b);
    cr_assert_neq(smelt_vocab_hash(va), smelt_vocab_hash(vb));
    smelt_vocab_free(vb);
    memcpy(t, CHAT, sizeof CHAT);
    t[5].type = 4; /* one type */
    write_vocab(b, t, n, &vs);
    vb = load_vocab(b);
    cr_assert_neq(smelt_vocab_hash(va), smelt_vocab_hash(vb));
    smelt_vocab_free(vb);
    memcpy(t, CHAT, sizeof CHAT);
    t[5].text = "E"; /* one text */
    write_vocab(b, t, n, &vs);
    vb = load_vocab(b);
    cr_assert_neq(smelt_vocab_hash(va), smelt_vocab_hash(vb));
    smelt_vocab_free(vb);
    smelt_vocab_free(va);
    smelt_vocab_free(va2);
    free(t);
    tu_rmtree(dir);
}

Test(tokenize, malformed_vocabularies)
{
    static const tspec T[] = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"a", -1, 1}, {"b", -1, 1}};
    size_t n = 5;
    smelt_err e = {0};
    vspec vs = {.model = "bert", .n_scores = -1, .unk_id = -1};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EUNSUPPORTED);
    cr_assert_str_eq(e.object, "tokenizer.ggml.model");
    cr_assert_str_eq(e.msg, "tokenizer model 'bert' is not supported: smelt tokenizes SentencePiece ('llama') and "
                            "byte-level BPE ('gpt2') vocabularies");
    vs = (vspec){.model = "gpt2", .n_scores = -1, .unk_id = -1};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EUNSUPPORTED);
    cr_assert_str_eq(e.object, "tokenizer.ggml.pre");
    cr_assert_str_eq(e.msg, "a BPE vocabulary without a pre-tokenizer name (llama.cpp falls back to its GPT-2 'default' "
                            "split); smelt tokenizes llama3 (llama-bpe, smaug-bpe) and qwen2 only");
    vs = (vspec){.model = "gpt2", .pre = "deepseek-llm", .merges = "a b", .n_scores = -1, .unk_id = -1};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EUNSUPPORTED);
    cr_assert_str_eq(e.object, "tokenizer.ggml.pre");
    cr_assert_str_eq(e.msg, "pre-tokenizer 'deepseek-llm' is not supported: smelt tokenizes BPE vocabularies with the llama3 "
                            "(llama-bpe, llama3, llama-v3, smaug-bpe) and qwen2 (qwen2, deepseek-r1-qwen) pre-tokenizers");
    vs = (vspec){.model = "gpt2", .pre = "qwen2", .n_scores = -1, .unk_id = -1};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.object, "tokenizer.ggml.merges");
    cr_assert_str_eq(e.msg, "required key is missing");

    vs = (vspec){.model = NULL, .n_scores = -1, .unk_id = -1};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.object, "tokenizer.ggml.model");
    cr_assert_str_eq(e.msg, "required key is missing");

    vs = (vspec){.model = "llama", .n_scores = -1, .unk_id = -1, .no_tokens = true};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.msg, "expected array of string, found string");

    vs = (vspec){.model = "llama", .n_scores = 3, .unk_id = -1};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.object, "tokenizer.ggml.scores");
    cr_assert_str_eq(e.msg, "has 3 elements, fewer than the 5 tokens");

    vs = (vspec){.model = "llama", .n_scores = -1, .unk_id = -1, .scores_kind = 2};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.msg, "expected an array of f32 or i32, found array of u8");

    vs = (vspec){.model = "llama", .n_scores = -1, .unk_id = -1, .bos_key_str = "one"};
    cr_assert_eq(vocab_error(T, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.object, "tokenizer.ggml.bos_token_id");
    cr_assert_str_eq(e.msg, "expected u32, found string");

    static const tspec DUP[] = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"a", -1, 1}, {"a", -2, 1}};
    vs = (vspec){.model = "llama", .n_scores = -1, .unk_id = -1};
    cr_assert_eq(vocab_error(DUP, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.msg, "token 4 repeats the text of token 3 ('a'); token texts must be unique");

    static const tspec BADBYTE[] = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"<0", -1, 6}, {"b", -2, 1}};
    cr_assert_eq(vocab_error(BADBYTE, n, &vs, &e), SMELT_EFORMAT);
    cr_assert_str_eq(e.msg, "token 3 ('<0') is typed as a byte but is not of the form <0xXX>");
}

/* ==== vocabularies without byte tokens ==== */

static const char *tok105_gguf(char *buf, size_t n)
{
    tu_path(buf, n, "tests/fixtures/external/llama2c-babyllama-tok105/validation/reference_f32_from_bin_gguf-py.gguf");
    return buf;
}

Test(tokenize, no_byte_tokens_map_to_unk_like_sentencepiece)
{
    char p[4200];
    smelt_vocab *v = load_vocab(tok105_gguf(p, sizeof p));
    cr_assert_eq(smelt_vocab_n_tokens(v), 105);
    cr_assert_eq(smelt_vocab_find(v, "<0x0A>", 6), -1);
    /* ids sentencepiece 0.1.97 gives for the whole file (tests/verify/data/, with BOS) */
    size_t len, il;
    char *text = read_text("tests/fixtures/external/llama2c-babyllama-tok105/validation/eval_tinystories.txt", &len);
    char *ref = read_text("tests/verify/data/tok105-eval_tinystories.ids", &il);
    int32_t *ids;
    size_t nids;
    tok(v, text, len, true, false, &ids, &nids);
    size_t k = 0, unk = 0;
    for (char *s = ref, *end;; s = end, k++) {
        long t = strtol(s, &end, 10);
        if (end == s) break;
        cr_assert_lt(k, nids, "fewer tokens than sentencepiece");
        cr_assert_eq(ids[k], t, "token %zu: %d, sentencepiece %ld", k, ids[k], t);
    }
    cr_assert_eq(k, nids);
    for (size_t i = 0; i < nids; i++) unk += ids[i] == 0;
    cr_assert_eq(nids, 2970);
    cr_assert_eq(unk, 8); /* the 8 newlines */
    free(ids);
    /* a run of unknown characters is one unknown token (sentencepiece: "x\n\n\ny" → ▁ x <unk> y) */
    tok(v, "x\n\n\ny", 5, false, false, &ids, &nids);
    cr_assert(nids == 4 && ids[0] == 3 && ids[1] == 37 && ids[2] == 0 && ids[3] == 15);
    free(ids);
    /* a multi-byte character not in the vocabulary: one unknown token too */
    tok(v, "\xe2\x98\x83", 3, false, false, &ids, &nids);
    cr_assert(nids == 2 && ids[0] == 3 && ids[1] == 0);
    free(ids);
    free(text);
    free(ref);
    smelt_vocab_free(v);
}

Test(tokenize_oracle, no_byte_tokens_in_vocab_text)
{
    /* where every character is in the vocabulary, libllama works and must agree */
    char p[4200];
    tok105_gguf(p, sizeof p);
    smelt_vocab *v = load_vocab(p);
    oracle o = oracle_open(p);
    size_t len;
    char *text = read_text("tests/fixtures/external/llama2c-babyllama-tok105/validation/eval_tinystories_invocab.txt", &len);
    agree(v, &o, text, len, "eval_tinystories_invocab.txt");
    free(text);
    oracle_close(&o);
    smelt_vocab_free(v);
}

Test(tokenize, special_id_defaults)
{
    /* without unknown_token_id the unknown token is id 0, whatever its text (llama.cpp's
     * default); i32 scores are accepted */
    static const tspec T[] = {{"<s>", 0, 3}, {"</s>", 0, 3}, {"\xe2\x96\x81", -1, 1}, {"a", -1, 1}};
    char dir[512], path[600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/v.gguf", dir);
    vspec vs = {.model = "llama", .n_scores = -1, .unk_id = -1, .scores_kind = 1};
    write_vocab(path, T, 4, &vs);
    smelt_vocab *v = load_vocab(path);
    cr_assert_eq(smelt_vocab_unk(v), 0);
    cr_assert_eq(smelt_vocab_score(v, 3), -1.0f);
    int32_t *ids;
    size_t n;
    tok(v, "a\n", 2, false, false, &ids, &n);
    cr_assert(n == 3 && ids[0] == 2 && ids[1] == 3 && ids[2] == 0);
    free(ids);
    smelt_vocab_free(v);

    /* a one-token vocabulary has no BOS (default id 1 is out of range) but asks for one */
    static const tspec ONE[] = {{"a", 0, 1}};
    vs.scores_kind = 0;
    write_vocab(path, ONE, 1, &vs);
    v = load_vocab(path);
    cr_assert_eq(smelt_vocab_bos(v), -1);
    cr_assert_eq(smelt_vocab_eos(v), -1);
    smelt_err e = {0};
    cr_assert_eq(smelt_tokenize(v, "a", 1, true, false, &ids, &n, &e), SMELT_EFORMAT);
    cr_assert_null(ids);
    cr_assert_str_eq(e.msg, "the vocabulary asks for a BOS token but has none");
    smelt_vocab_free(v);
    tu_rmtree(dir);
}

Test(tokenize, detokenize_errors_and_round_trip)
{
    char p[4200];
    smelt_vocab *v = load_vocab(tok105_gguf(p, sizeof p));
    int32_t bad[] = {1, 5, 105};
    char *s;
    smelt_err e = {0};
    cr_assert_eq(smelt_detokenize(v, bad, 3, &s, &e), SMELT_EMISMATCH);
    cr_assert_str_eq(e.msg, "token id 105 at position 2 is out of range for a vocabulary of 105 tokens");
    int32_t *ids;
    size_t n;
    tok(v, "Once upon a time", 16, false, false, &ids, &n);
    cr_assert_eq(smelt_detokenize(v, ids, n, &s, &e), 0);
    cr_assert_str_eq(s, "Once upon a time");
    free(s);
    free(ids);
    tok(v, "", 0, true, false, &ids, &n);
    cr_assert(n == 1 && ids[0] == 1);
    free(ids);
    tok(v, "", 0, false, false, &ids, &n);
    cr_assert(n == 0 && ids != NULL);
    free(ids);
    smelt_vocab_free(v);
}

Test(tokenize_oracle, third_party_gguf_with_zero_scores)
{
    /* every score is 0 in this file: the merge order is decided by position alone */
    char p[4200];
    tu_path(p, sizeof p, "tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf");
    agree_tricky(p);
    smelt_vocab *v = load_vocab(p);
    oracle o = oracle_open(p);
    size_t len;
    char *t = read_text("samples/text/eval-en.txt", &len);
    agree(v, &o, t, len, "eval-en.txt with llama-2-tiny-random's vocabulary");
    free(t);
    oracle_close(&o);
    smelt_vocab_free(v);
}

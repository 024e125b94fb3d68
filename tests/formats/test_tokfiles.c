/* test_tokfiles.c — tokenizer files: the SentencePiece protobuf against the fixtures (and
 * against Python's sentencepiece when installed), hand-built models with every field the
 * reader uses, malformed protobufs and JSON files with their exact messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/tokfiles.h"
#include "tests/common/bytes.h"
#include "tests/common/testutil.h"

/* ==== a protobuf builder ==== */

static void varint(tb_buf *b, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        tb_u8(b, c | (v ? 0x80 : 0));
    } while (v);
}

static void key(tb_buf *b, uint32_t field, int wt) { varint(b, (uint64_t)field << 3 | (uint64_t)wt); }

static void bytes_field(tb_buf *b, uint32_t field, const void *p, size_t n)
{
    key(b, field, 2);
    varint(b, n);
    tb_put(b, p, n);
}

static void piece(tb_buf *b, const char *s, float score, int type)
{
    tb_buf p = {0};
    bytes_field(&p, 1, s, strlen(s));
    key(&p, 2, 5);
    tb_f32(&p, score);
    if (type != 1) {
        key(&p, 3, 0);
        varint(&p, (uint64_t)type);
    }
    bytes_field(b, 1, p.p, p.len);
    tb_free(&p);
}

static void small_model(tb_buf *b)
{
    piece(b, "<unk>", 0, 2);
    piece(b, "<s>", 0, 3);
    piece(b, "</s>", 0, 3);
    piece(b, "<0x0A>", 0, 6);
    piece(b, "\xe2\x96\x81the", -1.5f, 1);
    piece(b, "<mine>", 0, 4);
    tb_buf t = {0}; /* trainer_spec: model_type BPE, vocab 6, byte_fallback, pad_id 5 */
    key(&t, 3, 0);
    varint(&t, 2);
    key(&t, 4, 0);
    varint(&t, 6);
    key(&t, 35, 0);
    varint(&t, 1);
    key(&t, 43, 0);
    varint(&t, 5);
    key(&t, 99, 1); /* an unknown fixed64 field is skipped */
    tb_u64(&t, 7);
    bytes_field(b, 2, t.p, t.len);
    tb_free(&t);
    tb_buf nz = {0}; /* normalizer_spec: name identity, add_dummy_prefix false */
    bytes_field(&nz, 1, "identity", 8);
    key(&nz, 3, 0);
    varint(&nz, 0);
    bytes_field(b, 3, nz.p, nz.len);
    tb_free(&nz);
}

Test(tokfiles, hand_built_model)
{
    tb_buf b = {0};
    small_model(&b);
    smelt_spm *s;
    smelt_err e;
    cr_assert_eq(smelt_spm_load_mem(b.p, b.len, "t.model", &s, &e), 0, "%s", e.msg);
    cr_expect_eq(s->n_pieces, 6);
    cr_expect_str_eq(s->pieces[4].piece, "\xe2\x96\x81the");
    cr_expect_eq(s->pieces[4].score, -1.5f);
    cr_expect_eq(s->pieces[4].type, SMELT_SPM_NORMAL);
    cr_expect_eq(s->pieces[3].type, SMELT_SPM_BYTE);
    cr_expect_eq(s->pieces[5].type, SMELT_SPM_USER_DEFINED);
    cr_expect_eq(s->model_type, SMELT_SPM_BPE);
    cr_expect_eq(s->trainer_vocab_size, 6);
    cr_expect(s->byte_fallback);
    cr_expect_eq(s->pad_id, 5);
    cr_expect_eq(s->unk_id, 0);
    cr_expect_eq(s->bos_id, 1);
    cr_expect_eq(s->eos_id, 2);
    cr_expect_str_eq(s->normalizer_name, "identity");
    cr_expect_not(s->add_dummy_prefix);
    cr_expect(s->remove_extra_whitespaces, "default true when absent");
    cr_expect_eq(smelt_spm_find(s, "</s>"), 2);
    smelt_spm_free(s);
    tb_free(&b);
}

Test(tokfiles, fixture_models)
{
    static const struct {
        const char *path;
        size_t n;
        int bf, dummy, rew;
        const char *p3;
    } cases[] = {
        {"samples/tiny-mixtral/tokenizer.model", 4096, 1, 1, 0, "<0x00>"},
        {"tests/fixtures/external/llama2c-stories260K-official/hf/tokenizer.model", 512, 1, 1, 1, "<0x00>"},
        {"tests/fixtures/external/llama2c-babyllama-tok105/hf/tokenizer.model", 105, 0, 1, 1, "\xe2\x96\x81"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[4096];
        tu_path(p, sizeof p, cases[i].path);
        smelt_spm *s;
        smelt_err e;
        cr_assert_eq(smelt_spm_load(p, &s, &e), 0, "%s", e.msg);
        cr_expect_eq(s->n_pieces, cases[i].n, "%s", cases[i].path);
        cr_expect_eq(s->byte_fallback, cases[i].bf, "%s", cases[i].path);
        cr_expect_eq(s->add_dummy_prefix, cases[i].dummy, "%s", cases[i].path);
        cr_expect_eq(s->remove_extra_whitespaces, cases[i].rew, "%s", cases[i].path);
        cr_expect_str_eq(s->pieces[3].piece, cases[i].p3, "%s", cases[i].path);
        cr_expect_eq(s->pieces[0].type, SMELT_SPM_UNKNOWN);
        smelt_spm_free(s);
    }
}

/* Every piece, score and type equal to what Python's sentencepiece reports. */
Test(tokfiles, matches_python_sentencepiece)
{
    if (access("/usr/bin/python3", X_OK) != 0 || tu_run("/usr/bin/python3 -c 'import sentencepiece'", NULL) != 0)
        cr_skip_test("/usr/bin/python3 with sentencepiece is not available");
    char p[4096], cmd[8192];
    tu_path(p, sizeof p, "samples/tiny-mixtral/tokenizer.model");
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sentencepiece as s, struct, sys\n"
             "m = s.SentencePieceProcessor(); m.LoadFromFile('%s')\n"
             "for i in range(m.vocab_size()):\n"
             "  t = 2 if m.IsUnknown(i) else 3 if m.IsControl(i) else 5 if m.IsUnused(i) else 6 if m.IsByte(i) else 1\n"
             "  print(m.IdToPiece(i).encode().hex(), struct.pack('<f', m.GetScore(i)).hex(), t)\"",
             p);
    char *out = NULL;
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out ? out : "");
    smelt_spm *s;
    smelt_err e;
    cr_assert_eq(smelt_spm_load(p, &s, &e), 0, "%s", e.msg);
    char *line = out, *save = NULL;
    size_t i = 0;
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
        cr_assert_lt(i, s->n_pieces);
        char hex[512] = "", sc[16];
        for (uint32_t k = 0; k < s->pieces[i].len && k < 200; k++) sprintf(hex + 2 * k, "%02x", (unsigned char)s->pieces[i].piece[k]);
        const uint8_t *f = (const uint8_t *)&s->pieces[i].score;
        sprintf(sc, "%02x%02x%02x%02x", f[0], f[1], f[2], f[3]);
        int type = s->pieces[i].type == SMELT_SPM_USER_DEFINED ? 1 : s->pieces[i].type;
        char mine[600];
        snprintf(mine, sizeof mine, "%s %s %d", hex, sc, type);
        cr_expect_str_eq(line, mine, "piece %zu", i);
    }
    cr_expect_eq(i, s->n_pieces);
    smelt_spm_free(s);
    free(out);
}

static void expect_spm_err(const tb_buf *b, const char *msg)
{
    smelt_spm *s = (smelt_spm *)1;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_spm_load_mem(b->p, b->len, "t.model", &s, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, SMELT_EFORMAT, "%s", line);
    cr_expect_null(s);
    cr_expect_str_eq(line, msg);
}

Test(tokfiles, malformed_protobufs)
{
    tb_buf b = {0};
    tb_put(&b, "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    expect_spm_err(&b, "t.model: @ byte 1 (0x1): malformed protobuf: varint longer than 10 bytes");
    tb_free(&b);
    tb_put(&b, "\x0a\x80", 2);
    expect_spm_err(&b, "t.model: @ byte 2 (0x2): truncated protobuf: varint runs past the end of its message");
    tb_free(&b);
    tb_put(&b, "\x0a\x10\x0a\x03" "abc", 7);
    expect_spm_err(&b, "t.model: @ byte 1 (0x1): truncated protobuf: a 16-byte field runs past the end of its message (5 bytes left)");
    tb_free(&b);
    tb_put(&b, "\x0b\x00", 2); /* field 1, wire type 3 (start group) */
    expect_spm_err(&b, "t.model: @ byte 1 (0x1): malformed protobuf: wire type 3 is not supported (groups are deprecated)");
    tb_free(&b);
    tb_put(&b, "\x13", 1); /* field 2, group */
    expect_spm_err(&b, "t.model: @ byte 1 (0x1): malformed protobuf: wire type 3 is not supported (groups are deprecated)");
    tb_free(&b);
    tb_put(&b, "\x00", 1);
    expect_spm_err(&b, "t.model: @ byte 1 (0x1): malformed protobuf: field number 0");
    tb_free(&b);
    expect_spm_err(&b, "t.model: no pieces: not a SentencePiece model");

    piece(&b, "<unk>", 0, 2);
    piece(&b, "a", 0, 1);
    piece(&b, "a", 0, 1);
    expect_spm_err(&b, "t.model: 'a': piece is defined twice (ids 1 and 2)");
    tb_free(&b);
    piece(&b, "a", 0, 1);
    expect_spm_err(&b, "t.model: no piece of type UNKNOWN (SentencePiece requires one)");
    piece(&b, "<unk>", 0, 2);
    piece(&b, "<unk2>", 0, 2);
    expect_spm_err(&b, "t.model: '<unk2>': a second unknown piece (id 2; the first is id 1)");
    tb_free(&b);
    piece(&b, "<unk>", 0, 2);
    piece(&b, "", 0, 1);
    long at = (long)b.len - 7;
    char msg[256];
    snprintf(msg, sizeof msg, "t.model: 'piece 1' @ byte %ld (0x%lx): empty piece (SentencePiece rejects such a model)", at, at);
    expect_spm_err(&b, msg);
    tb_free(&b);
    piece(&b, "<unk>", 0, 2);
    piece(&b, "x", 0, 9);
    expect_spm_err(&b, "t.model: 'piece 1' @ byte 18 (0x12): unknown piece type 9 (expected 1..6)");
    tb_free(&b);
}

Test(tokfiles, every_prefix_loads_or_fails_cleanly)
{
    char p[4096];
    tu_path(p, sizeof p, "tests/fixtures/external/llama2c-babyllama-tok105/hf/tokenizer.model");
    size_t len;
    uint8_t *m = tu_read(p, &len);
    cr_assert(m);
    size_t ok = 0;
    for (size_t n = 0; n <= len; n++) {
        smelt_spm *s = NULL;
        smelt_err e;
        if (smelt_spm_load_mem(m, n, "t.model", &s, &e) == 0) {
            ok++;
            smelt_spm_free(s);
        }
    }
    cr_expect_gt(ok, 0);
    cr_expect_lt(ok, len / 2, "most prefixes cut a field and must fail");
    free(m);
}

/* ==== JSON files ==== */

static char g_dir[512];

static void write_file(const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    cr_assert_eq(tu_write(p, text, strlen(text)), 0);
}

Test(tokfiles, json_files)
{
    cr_assert_eq(tu_mkdtemp(g_dir, sizeof g_dir), 0);
    write_file("tokenizer_config.json",
               "{\"add_bos_token\": true, \"add_eos_token\": false, \"add_prefix_space\": false, \"bos_token\": {\"content\": \"<s>\"},"
               " \"eos_token\": \"</s>\", \"added_tokens_decoder\": {\"32000\": {\"content\": \"<pad>\", \"special\": true}},"
               " \"chat_template\": \"{{x}}\", \"model_max_length\": 1000000000000000019884624838656,"
               " \"n\": [-12345678901234567890, 7, \"1000000000000000000000\", 1.5e300]}");
    write_file("tokenizer.json", "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false}]}");
    write_file("special_tokens_map.json", "{\"bos_token\": \"<s>\", \"unk_token\": {\"content\": \"<unk>\"}}");
    write_file("generation_config.json", "{\"temperature\": 0.6,}");
    write_file("chat_template.jinja", "J");
    smelt_tokfiles *t;
    smelt_err e;
    cr_assert_eq(smelt_tokfiles_load(g_dir, &t, &e), 0, "%s", e.msg);
    cr_expect_null(t->spm);
    cr_expect_eq(t->add_bos, 1);
    cr_expect_eq(t->add_eos, 0);
    cr_expect_eq(t->add_prefix_space, 0);
    cr_expect_str_eq(t->special[SMELT_TOK_BOS], "<s>");
    cr_expect_str_eq(t->special[SMELT_TOK_EOS], "</s>");
    cr_expect_null(t->special[SMELT_TOK_PAD]);
    cr_assert_eq(t->n_decoder, 1);
    cr_expect_eq(t->decoder[0].id, 32000);
    cr_expect_eq(t->decoder[0].special, 1);
    cr_assert_eq(t->n_added, 1);
    cr_expect_eq(t->added[0].normalized, 0);
    cr_expect_str_eq(t->map_special[SMELT_TOK_UNK], "<unk>");
    cr_expect_null(t->generation_config, "an invalid generation_config.json is ignored");
    cr_expect(strstr(t->gen_config_error, "generation_config.json") != NULL, "%s", t->gen_config_error);
    cr_expect_str_eq(t->chat_template_jinja, "J");
    /* integers beyond 64 bits (Llama 3's model_max_length) read as reals, the rest as they are */
    json_t *mml = json_object_get(t->tokenizer_config, "model_max_length"), *nv = json_object_get(t->tokenizer_config, "n");
    cr_expect(json_is_real(mml) && json_real_value(mml) == 1e30, "model_max_length");
    cr_expect(json_is_real(json_array_get(nv, 0)) && json_real_value(json_array_get(nv, 0)) == -12345678901234567890.0);
    cr_expect(json_is_integer(json_array_get(nv, 1)) && json_integer_value(json_array_get(nv, 1)) == 7);
    cr_expect_str_eq(json_string_value(json_array_get(nv, 2)), "1000000000000000000000");
    cr_expect(json_is_real(json_array_get(nv, 3)));
    cr_expect_eq(t->add_bos, 1);
    smelt_tokfiles_free(t);

    static const struct {
        const char *file, *text, *msg;
    } bad[] = {
        {"tokenizer_config.json", "{\"added_tokens_decoder\": {\"x1\": {\"content\": \"a\"}}}",
         "tokenizer_config.json: 'added_tokens_decoder.x1': key is not a token id (a non-negative integer)"},
        {"tokenizer_config.json", "{\"added_tokens_decoder\": {\"7\": {\"special\": true}}}",
         "tokenizer_config.json: 'added_tokens_decoder.7': expected an object with a string 'content'"},
        {"tokenizer_config.json", "{\"add_prefix_space\": \"yes\"}",
         "tokenizer_config.json: 'add_prefix_space': expected true, false or null"},
        {"tokenizer_config.json", "[1]", "tokenizer_config.json: expected a JSON object"},
        {"tokenizer.json", "{\"added_tokens\": [{\"id\": \"1\", \"content\": \"a\"}]}",
         "tokenizer.json: 'added_tokens[0]': expected an object with an integer 'id' and a string 'content'"},
        {"tokenizer.json", "{\"added_tokens\": [", "tokenizer.json: @ byte 18 (0x12): invalid JSON at line 1 column 18: ']' expected near end of file"},
        {"added_tokens.json", "{\"<x>\": \"5\"}", "added_tokens.json: '<x>': expected an integer token id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char d2[600];
        snprintf(d2, sizeof d2, "%s/c%zu", g_dir, i);
        cr_assert_eq(mkdir(d2, 0700), 0);
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d2, bad[i].file);
        tu_write(p, bad[i].text, strlen(bad[i].text));
        smelt_tokfiles *x = (smelt_tokfiles *)1;
        smelt_err_clear(&e);
        int rc = smelt_tokfiles_load(d2, &x, &e);
        char line[1200], want[1200];
        smelt_err_format(&e, line, sizeof line);
        snprintf(want, sizeof want, "%s/%s", d2, bad[i].msg);
        cr_expect_eq(rc, SMELT_EFORMAT, "case %zu: %s", i, line);
        cr_expect_null(x);
        cr_expect_str_eq(line, want, "case %zu: %s", i, line);
    }
    tu_rmtree(g_dir);
}

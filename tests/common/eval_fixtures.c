/* eval_fixtures.c — see eval_fixtures.h. */
#include "eval_fixtures.h"

void vf_build_dir(char *buf, size_t n)
{
    const char *b = getenv("SMELT_BUILD");
    if (b && *b) snprintf(buf, n, "%s/gguf", b);
    else tu_path(buf, n, "build/release/gguf");
}

void vf_gguf(const char *model_rel, const char *stem, const char *type, char *out, size_t n)
{
    char dir[4096], script[4200], model[4200], cmd[16384];
    vf_build_dir(dir, sizeof dir);
    snprintf(out, n, "%s/%s-%s.gguf", dir, stem, type);
    tu_path(script, sizeof script, "tests/verify/mk-gguf");
    tu_path(model, sizeof model, model_rel);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %s", script, model, out, type);
    char *log = NULL;
    int rc = tu_run(cmd, &log);
    if (rc == 77) {
        free(log);
        cr_skip_test("llama.cpp's converter/quantizer is not installed (make oracle)");
    }
    cr_assert_eq(rc, 0, "mk-gguf %s %s failed (%d): %s", model_rel, type, rc, log ? log : "");
    free(log);
}

void vf_tiny(const char *type, char *out, size_t n)
{
    vf_gguf("samples/tiny-mixtral", "tiny-mixtral", type, out, n);
}

void vf_tiny_smelt(const char *type, char *out, size_t n)
{
    char dir[4096], conv[4200], model[4200], cmd[40000];
    vf_build_dir(dir, sizeof dir);
    snprintf(out, n, "%s/tiny-mixtral-smelt-%s.gguf", dir, type);
    tu_tool(conv, sizeof conv, "smelt-convert");
    tu_path(model, sizeof model, "samples/tiny-mixtral");
    /* made once; a per-process temporary name keeps parallel tests from seeing a half file */
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && { [ -s '%s' ] || { '%s' -q '%s' -o '%s.%d' --outtype %s && mv -f '%s.%d' '%s'; }; }", dir,
             out, conv, model, out, (int)getpid(), type, out, (int)getpid(), out);
    char *log = NULL;
    int rc = tu_run(cmd, &log);
    cr_assert_eq(rc, 0, "smelt-convert failed: %s", log ? log : "");
    free(log);
}

json_t *vf_reference(void)
{
    char p[4200];
    tu_path(p, sizeof p, "samples/reference.json");
    json_error_t je;
    json_t *r = json_load_file(p, 0, &je);
    cr_assert_not_null(r, "reference.json: %s", je.text);
    return r;
}

const char *vf_oracle_tool(const char *name)
{
    static char p[4200];
    const char *d = getenv("SMELT_ORACLE_BIN");
    if (d && *d) snprintf(p, sizeof p, "%s/%s", d, name);
    else {
        char rel[256];
        snprintf(rel, sizeof rel, ".oracle/build/bin/%s", name);
        tu_path(p, sizeof p, rel);
    }
    return access(p, X_OK) == 0 ? p : NULL;
}

/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <dlfcn.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *root(void)
{
    static char r[4096];
    if (!r[0]) {
        const char *e = getenv("SMELT_ROOT");
        if (e && *e) snprintf(r, sizeof r, "%s", e);
        else if (!getcwd(r, sizeof r)) snprintf(r, sizeof r, ".");
    }
    return r;
}

void tu_path(char *buf, size_t n, const char *rel) { snprintf(buf, n, "%s/%s", root(), rel); }

void tu_tool(char *buf, size_t n, const char *name)
{
    const char *b = getenv("SMELT_BIN");
    if (b && *b) snprintf(buf, n, "%s/%s", b, name);
    else snprintf(buf, n, "%s/bin/%s", root(), name);
}

int tu_mkdtemp(char *buf, size_t n)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/smelt-test-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf) ? 0 : -1;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *dir)
{
    if (dir && dir[0]) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_run(const char *cmd, char **out)
{
    char *full = NULL;
    if (asprintf(&full, "( %s ) 2>&1", cmd) < 0) return -1;
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    if (buf) buf[len] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

uint8_t *tu_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b && len) *len = (size_t)n;
    return b;
}

int tu_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int tu_cmp_files(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *x = tu_read(a, &la), *y = tu_read(b, &lb);
    int r = (!x || !y) ? -1 : (la != lb || memcmp(x, y, la) != 0);
    free(x);
    free(y);
    return r;
}

const char *tu_oracle_libdir(void)
{
    static char d[4096];
    static int done;
    if (!done) {
        done = 1;
        const char *e = getenv("SMELT_ORACLE_LIBDIR");
        if (e && *e) snprintf(d, sizeof d, "%s", e);
        else tu_path(d, sizeof d, ".oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64");
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/libggml-base.so", d);
        if (access(probe, R_OK) != 0) d[0] = 0;
    }
    return d[0] ? d : NULL;
}

/* dlopen() the first of `names` that exists in the oracle's library directory. */
static void *oracle_open(const char *const *names, size_t n)
{
    if (!tu_oracle_libdir()) return NULL;
    for (size_t i = 0; i < n; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", tu_oracle_libdir(), names[i]);
        void *h = dlopen(p, RTLD_NOW | RTLD_GLOBAL);
        if (h) return h;
    }
    return NULL;
}

void *tu_oracle_ggml(void)
{
    static void *h;
    static const char *const names[] = {"libggml-base.so"};
    if (!h) h = oracle_open(names, 1);
    return h;
}

void *tu_oracle_llama(void)
{
    static void *h;
    static const char *const names[] = {"libllama.v0.4.0.so", "libllama.so"};
    if (!h) h = oracle_open(names, 2);
    return h;
}

int tu_oracle_load_backends(void)
{
    static int state; /* 0 not tried, 1 loaded, -1 failed */
    static const char *const names[] = {"libggml.v0.4.0.so", "libggml.so"};
    if (!state) {
        void *h = tu_oracle_llama() ? oracle_open(names, 2) : NULL;
        void (*load_all)(const char *) = h ? (void (*)(const char *))dlsym(h, "ggml_backend_load_all_from_path") : NULL;
        state = load_all ? 1 : -1;
        if (load_all) load_all(tu_oracle_libdir());
    }
    return state > 0;
}

const char *tu_oracle_src(void)
{
    static char d[4096];
    static int done;
    if (!done) {
        done = 1;
        const char *e = getenv("SMELT_LLAMA_SRC");
        if (e && *e) snprintf(d, sizeof d, "%s", e);
        else tu_path(d, sizeof d, ".oracle/llama.cpp-src");
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/ggml/include/ggml.h", d);
        if (access(probe, R_OK) != 0) d[0] = 0;
    }
    return d[0] ? d : NULL;
}

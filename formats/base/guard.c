/* guard.c — refuse outputs that would replace, hold or nest in an input. Includes base/ only. */
#include "guard.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef struct guard_input {
    char *given;               /* the path as the user named it (for messages) */
    char *real;                /* resolved absolute path */
    dev_t dev;
    ino_t ino;
    bool is_dir;
    const char *what;
    smelt_guard_reads_fn reads; /* directories only */
} guard_input;

struct smelt_guard {
    guard_input *in;
    size_t n, cap;
};

static bool ends_with(const char *name, const char *ext)
{
    size_t l = strlen(name), k = strlen(ext);
    return l >= k && !strcasecmp(name + l - k, ext);
}

bool smelt_guard_reads_everything(const char *name)
{
    (void)name;
    return true;
}
bool smelt_guard_reads_model_dir(const char *name)
{
    return !ends_with(name, ".gguf") && !ends_with(name, ".xxh64") && !ends_with(name, ".kld");
}
bool smelt_guard_reads_gguf(const char *name) { return ends_with(name, ".gguf"); }

smelt_guard *smelt_guard_new(void) { return calloc(1, sizeof(smelt_guard)); }

void smelt_guard_free(smelt_guard *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->in[i].given);
        free(g->in[i].real);
    }
    free(g->in);
    free(g);
}

static int add_one(smelt_guard *g, const char *path, const struct stat *st, const char *what, smelt_guard_reads_fn reads,
                   smelt_err *e);

int smelt_guard_add(smelt_guard *g, const char *path, const char *what, smelt_guard_reads_fn reads, smelt_err *e)
{
    struct stat st;
    if (!path || stat(path, &st) != 0) return 0;
    int rc = add_one(g, path, &st, what, reads, e);
    if (rc || !S_ISDIR(st.st_mode)) return rc;
    /* the files the directory's reader takes are inputs too, so that a link to one of them
     * elsewhere is recognized */
    smelt_guard_reads_fn dir_reads = reads ? reads : smelt_guard_reads_everything;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        char p[PATH_MAX];
        struct stat fs;
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
        if (!dir_reads(de->d_name) || snprintf(p, sizeof p, "%s/%s", path, de->d_name) >= (int)sizeof p) continue;
        if (stat(p, &fs) == 0 && S_ISREG(fs.st_mode)) rc = add_one(g, p, &fs, what, NULL, e);
    }
    closedir(d);
    return rc;
}

static int add_one(smelt_guard *g, const char *path, const struct stat *stp, const char *what,
                   smelt_guard_reads_fn reads, smelt_err *e)
{
    const struct stat st = *stp;
    char *real = realpath(path, NULL);
    if (!real) return 0;
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 8;
        guard_input *p = realloc(g->in, cap * sizeof *p);
        if (!p) {
            free(real);
            return SMELT_NOMEM(e, "the list of inputs");
        }
        g->in = p;
        g->cap = cap;
    }
    guard_input *in = &g->in[g->n];
    in->given = strdup(path);
    if (!in->given) {
        free(real);
        return SMELT_NOMEM(e, "the list of inputs");
    }
    in->real = real;
    in->dev = st.st_dev;
    in->ino = st.st_ino;
    in->is_dir = S_ISDIR(st.st_mode);
    in->what = what ? what : "an input";
    in->reads = reads ? reads : smelt_guard_reads_everything;
    g->n++;
    return 0;
}

static bool same(const struct stat *st, const guard_input *in) { return st->st_dev == in->dev && st->st_ino == in->ino; }

/* The resolved path of the nearest existing directory at or above `dir` (as given);
 * NULL when none resolves. Caller frees. */
static char *resolve_existing_dir(const char *dir)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", dir[0] ? dir : ".");
    for (;;) {
        char *r = realpath(buf, NULL);
        if (r) return r;
        char *slash = strrchr(buf, '/');
        if (!slash) return realpath(".", NULL);
        if (slash == buf) return realpath("/", NULL);
        *slash = 0;
    }
}

/* Split `path` into its directory part (into dir) and its last name; trailing slashes go. */
static const char *split_path(const char *path, char *dir, size_t n)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
    char *slash = strrchr(tmp, '/');
    if (!slash) {
        snprintf(dir, n, ".");
        return path;
    }
    if (slash == tmp) snprintf(dir, n, "/");
    else {
        *slash = 0;
        snprintf(dir, n, "%s", tmp);
    }
    /* the name inside the caller's string */
    size_t off = (size_t)(slash - tmp) + 1;
    return path + off;
}

/* Does the directory (dev, ino) hold the resolved path `real` at any depth? */
static bool dir_holds(const struct stat *dir, const char *real)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", real);
    for (;;) {
        char *slash = strrchr(buf, '/');
        if (!slash) return false;
        if (slash == buf) slash[1] = 0;
        else *slash = 0;
        struct stat st;
        if (stat(buf, &st) == 0 && st.st_dev == dir->st_dev && st.st_ino == dir->st_ino) return true;
        if (!strcmp(buf, "/")) return false;
    }
}

/* The first input directory that is `real` or one of its ancestors, or NULL. `child` gets
 * the name directly under that directory on the way to `real` ("" when `real` is the input
 * directory itself). */
static const guard_input *inside_input_dir(const smelt_guard *g, const char *real, char *child, size_t n)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", real);
    child[0] = 0;
    for (;;) {
        struct stat st;
        if (stat(buf, &st) == 0)
            for (size_t i = 0; i < g->n; i++)
                if (g->in[i].is_dir && same(&st, &g->in[i])) return &g->in[i];
        char *slash = strrchr(buf, '/');
        if (!slash || !strcmp(buf, "/")) return NULL;
        snprintf(child, n, "%s", slash + 1);
        if (slash == buf) slash[1] = 0;
        else *slash = 0;
    }
}

static int refuse(smelt_err *e, const char *out, const guard_input *in, const char *fmt)
{
    /* fmt takes the input's path and what it is */
    return SMELT_ERR(e, SMELT_EUSAGE, out, NULL, fmt, in->given, in->what);
}

int smelt_guard_check_file(const smelt_guard *g, const char *out, smelt_err *e)
{
    if (!out || !*out) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no output file given");
    struct stat st;
    if (stat(out, &st) == 0) {
        for (size_t i = 0; g && i < g->n; i++)
            if (same(&st, &g->in[i]))
                return refuse(e, out, &g->in[i],
                              g->in[i].is_dir ? "output is the input directory %s (%s); give an output file name"
                                              : "output is the same file as the input %s (%s); choose another output name");
        if (S_ISDIR(st.st_mode)) {
            for (size_t i = 0; g && i < g->n; i++)
                if (dir_holds(&st, g->in[i].real))
                    return refuse(e, out, &g->in[i],
                                  "output is a directory holding the input %s (%s); give an output file name");
            return SMELT_ERR(e, SMELT_EUSAGE, out, NULL, "output is a directory; give an output file name");
        }
    }
    if (!g) return 0;
    char dir[PATH_MAX], child[NAME_MAX + 1];
    const char *name = split_path(out, dir, sizeof dir);
    char *real = realpath(dir, NULL);
    if (!real) return 0; /* no such directory: creating the output will say so */
    const guard_input *in = inside_input_dir(g, real, child, sizeof child);
    free(real);
    /* only a name directly in the input directory can be one its reader takes */
    if (in && !child[0] && in->reads(name)) {
        char nm[NAME_MAX + 1];
        snprintf(nm, sizeof nm, "%s", name);
        size_t l = strlen(nm);
        while (l > 1 && nm[l - 1] == '/') nm[--l] = 0;
        return SMELT_ERR(e, SMELT_EUSAGE, out, NULL,
                         "output would replace or add '%s' in the input directory %s (%s), a name smelt reads "
                         "there; choose another output name or directory",
                         nm, in->given, in->what);
    }
    return 0;
}

int smelt_guard_check_dir(const smelt_guard *g, const char *out, smelt_err *e)
{
    if (!out || !*out) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no output directory given");
    if (!g) return 0;
    struct stat st;
    char *start;
    if (stat(out, &st) == 0) {
        for (size_t i = 0; i < g->n; i++)
            if (same(&st, &g->in[i]))
                return refuse(e, out, &g->in[i],
                              g->in[i].is_dir ? "output directory is the input directory %s (%s); choose a new directory"
                                              : "output is the same file as the input %s (%s); choose a new directory");
        if (S_ISDIR(st.st_mode))
            for (size_t i = 0; i < g->n; i++)
                if (dir_holds(&st, g->in[i].real))
                    return refuse(e, out, &g->in[i],
                                  "output directory holds the input %s (%s); choose a new directory for the output");
        start = realpath(out, NULL);
    } else {
        char dir[PATH_MAX];
        split_path(out, dir, sizeof dir);
        start = resolve_existing_dir(dir);
    }
    if (!start) return 0;
    /* the name directly under an input directory on the way to the output: for a missing
     * output that is its own name when its parent is the input directory */
    char child[NAME_MAX + 1];
    const guard_input *in = inside_input_dir(g, start, child, sizeof child);
    free(start);
    if (in && !child[0]) {
        char dir[PATH_MAX];
        snprintf(child, sizeof child, "%s", split_path(out, dir, sizeof dir));
        size_t l = strlen(child);
        while (l > 1 && child[l - 1] == '/') child[--l] = 0;
    }
    if (in && in->reads(child))
        return refuse(e, out, in, "output directory lies inside the input directory %s (%s); choose a directory outside it");
    return 0;
}

int smelt_guard_check_file_against(const char *out, const smelt_guard_input *inputs, size_t n, smelt_err *e)
{
    smelt_guard *g = smelt_guard_new();
    if (!g) return SMELT_NOMEM(e, "the list of inputs");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (inputs[i].path) rc = smelt_guard_add(g, inputs[i].path, inputs[i].what, NULL, e);
    if (!rc) rc = smelt_guard_check_file(g, out, e);
    smelt_guard_free(g);
    return rc;
}

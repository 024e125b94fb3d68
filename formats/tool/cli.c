/* cli.c — parsing and output helpers for tool mains. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int smelt_cli_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int smelt_cli_size(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return -1;
    double mul = 1;
    if (*end) {
        static const struct {
            const char *suf;
            double mul;
        } k[] = {{"B", 1},         {"K", 1e3},          {"KB", 1e3},         {"M", 1e6},
                 {"MB", 1e6},      {"G", 1e9},          {"GB", 1e9},         {"T", 1e12},
                 {"TB", 1e12},     {"KIB", 1024.0},     {"MIB", 1048576.0},  {"GIB", 1073741824.0},
                 {"TIB", 1099511627776.0}};
        size_t i;
        for (i = 0; i < sizeof k / sizeof k[0]; i++)
            if (!strcasecmp(end, k[i].suf)) break;
        if (i == sizeof k / sizeof k[0]) return -1;
        mul = k[i].mul;
    }
    double r = v * mul;
    if (r > 1.8e19) return -1;
    *out = (uint64_t)r;
    return 0;
}

void smelt_cli_version(const char *tool) { printf("%s (smelt) %s\n", tool, SMELT_VERSION); }

int smelt_cli_usage_error(const char *tool, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", tool);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", tool);
    return 2;
}

const char *smelt_cli_bytes(char *buf, size_t n, uint64_t b)
{
    if (b >= 1000000000ull) snprintf(buf, n, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000ull) snprintf(buf, n, "%.2f MB", (double)b / 1e6);
    else if (b >= 1000ull) snprintf(buf, n, "%.1f kB", (double)b / 1e3);
    else snprintf(buf, n, "%llu B", (unsigned long long)b);
    return buf;
}

int smelt_cli_eval_opt(const char *tool, int code, const char *arg, const smelt_cli_eval *ev)
{
    long v;
    switch (code) {
    case 'm':
        if (!ev->model) return 0;
        *ev->model = arg;
        return 1;
    case 'f':
        if (!ev->text) return 0;
        *ev->text = arg;
        return 1;
    case 'c':
        if (smelt_cli_int(arg, 4, 1 << 24, &v)) return smelt_cli_usage_error(tool, "-c: expected 4 .. 16777216, got '%s'", arg);
        *ev->n_ctx = (uint32_t)v;
        return 1;
    case 'C':
        if (smelt_cli_int(arg, 1, 1L << 40, &v))
            return smelt_cli_usage_error(tool, "--chunks: expected a positive number, got '%s'", arg);
        *ev->n_chunks = v;
        return 1;
    case 'b':
        if (smelt_cli_int(arg, 1, 1 << 24, &v)) return smelt_cli_usage_error(tool, "-b: expected a positive number, got '%s'", arg);
        *ev->n_batch = (uint32_t)v;
        return 1;
    case 't':
        if (smelt_cli_int(arg, 1, 1024, &v)) return smelt_cli_usage_error(tool, "-t: expected 1 .. 1024, got '%s'", arg);
        *ev->n_threads = (int)v;
        return 1;
    default: return 0;
    }
}

int smelt_cli_split_opt(const char *tool, int code, const char *arg, smelt_cli_split *s)
{
    long n;
    if (code == SMELT_CLI_SPLIT_SIZE) {
        if (smelt_cli_size(arg, &s->max_bytes) || !s->max_bytes)
            return smelt_cli_usage_error(tool, "--split-max-size needs a size such as 500M or 4G (got '%s')", arg);
    } else if (code == SMELT_CLI_SPLIT_TENSORS) {
        if (smelt_cli_int(arg, 1, 1L << 30, &n))
            return smelt_cli_usage_error(tool, "--split-max-tensors needs a number of tensors >= 1 (got '%s')", arg);
        s->max_tensors = (uint64_t)n;
    } else {
        return 0;
    }
    s->on = true;
    return 1;
}

int smelt_cli_print_json(const json_t *j, size_t flags)
{
    char *text = j ? json_dumps(j, flags) : NULL;
    if (!text) return -1;
    fputs(text, stdout);
    putchar('\n');
    free(text);
    return 0;
}

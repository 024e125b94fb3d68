/* err.c — filling and rendering smelt_err. Includes err.h only. */
#include "err.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void copy_str(char *dst, size_t n, const char *src)
{
    if (!src) {
        dst[0] = 0;
        return;
    }
    size_t l = strlen(src);
    if (l >= n) l = n - 1;
    memcpy(dst, src, l);
    dst[l] = 0;
}

void smelt_err_clear(smelt_err *e)
{
    if (!e) return;
    memset(e, 0, sizeof *e);
    e->offset = SMELT_NO_OFFSET;
}

int smelt_err_set_(smelt_err *e, int code, const char *file, const char *object,
                   uint64_t offset, const char *src, int line, const char *fmt, ...)
{
    if (!e) return code;
    e->code = code;
    copy_str(e->file, sizeof e->file, file);
    copy_str(e->object, sizeof e->object, object);
    e->offset = offset;
    e->src = src;
    e->src_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

void smelt_err_prefix(smelt_err *e, const char *fmt, ...)
{
    if (!e) return;
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    size_t used = (size_t)k < sizeof e->msg ? (size_t)k : sizeof e->msg - 1;
    if (used + 2 < sizeof e->msg) {
        memcpy(e->msg + used, ": ", 2);
        used += 2;
        size_t rest = sizeof e->msg - used - 1, ol = strlen(old);
        if (ol > rest) ol = rest;
        memcpy(e->msg + used, old, ol);
        e->msg[used + ol] = 0;
    }
}

void smelt_err_format(const smelt_err *e, char *buf, size_t n)
{
    if (!n) return;
    buf[0] = 0;
    if (!e) return;
    size_t used = 0;
#define PUT(...)                                                           \
    do {                                                                   \
        if (used < n) {                                                    \
            int k_ = snprintf(buf + used, n - used, __VA_ARGS__);          \
            if (k_ > 0) used += (size_t)k_;                                \
        }                                                                  \
    } while (0)
    if (e->file[0]) PUT("%s: ", e->file);
    if (e->object[0]) PUT("'%s'", e->object);
    if (e->offset != SMELT_NO_OFFSET)
        PUT("%s@ byte %llu (0x%llx)", e->object[0] ? " " : "", (unsigned long long)e->offset,
            (unsigned long long)e->offset);
    if (e->object[0] || e->offset != SMELT_NO_OFFSET) PUT(": ");
    PUT("%s", e->msg[0] ? e->msg : smelt_err_code_name(e->code));
#undef PUT
}

void smelt_err_print(const smelt_err *e, const char *tool, FILE *f)
{
    char line[1200];
    smelt_err_format(e, line, sizeof line);
    if (getenv("SMELT_DEBUG") && e && e->src)
        fprintf(f, "%s: error: %s [%s:%d]\n", tool ? tool : "smelt", line, e->src, e->src_line);
    else
        fprintf(f, "%s: error: %s\n", tool ? tool : "smelt", line);
}

int smelt_err_exit_status(int code)
{
    switch (code) {
    case SMELT_OK: return 0;
    case SMELT_EIO: return 1;
    case SMELT_EUSAGE: return 2;
    case SMELT_EFORMAT: return 3;
    case SMELT_EUNSUPPORTED: return 4;
    case SMELT_EMISMATCH: return 5;
    case SMELT_ENOMEM: return 6;
    default: return 70;
    }
}

const char *smelt_err_code_name(int code)
{
    switch (code) {
    case SMELT_OK: return "ok";
    case SMELT_EIO: return "i/o error";
    case SMELT_ENOMEM: return "out of memory";
    case SMELT_EFORMAT: return "malformed input";
    case SMELT_EUNSUPPORTED: return "unsupported input";
    case SMELT_EMISMATCH: return "inputs do not match";
    case SMELT_EUSAGE: return "usage error";
    default: return "internal error";
    }
}

/* strbuf.c — the string builder (see strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void smelt_strbuf_init_fixed(smelt_strbuf *b, char *buf, size_t size)
{
    *b = (smelt_strbuf){.text = buf, .cap = size, .fixed = true};
    if (size) buf[0] = 0;
}

/* Room for n more bytes and the NUL in a growing builder; false when out of memory. */
static bool reserve(smelt_strbuf *b, size_t n)
{
    if (b->oom) return false;
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->text, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->text = p;
    b->cap = cap;
    return true;
}

void smelt_strbuf_add(smelt_strbuf *b, const void *bytes, size_t n)
{
    if (b->fixed) {
        if (b->len < b->cap) {
            size_t room = b->cap - b->len - 1, k = n < room ? n : room;
            memcpy(b->text + b->len, bytes, k);
            b->text[b->len + k] = 0;
        }
        b->len += n;
        return;
    }
    if (!reserve(b, n)) return;
    memcpy(b->text + b->len, bytes, n);
    b->len += n;
    b->text[b->len] = 0;
}

void smelt_strbuf_puts(smelt_strbuf *b, const char *s) { smelt_strbuf_add(b, s, strlen(s)); }

void smelt_strbuf_printf(smelt_strbuf *b, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    if (b->fixed) {
        size_t room = b->len < b->cap ? b->cap - b->len : 0;
        int k = vsnprintf(room ? b->text + b->len : NULL, room, fmt, ap);
        if (k > 0) b->len += (size_t)k;
    } else if (!b->oom) {
        char small[256];
        int k = vsnprintf(small, sizeof small, fmt, ap);
        if (k > 0 && (size_t)k < sizeof small) smelt_strbuf_add(b, small, (size_t)k);
        else if (k > 0 && reserve(b, (size_t)k)) {
            vsnprintf(b->text + b->len, (size_t)k + 1, fmt, again);
            b->len += (size_t)k;
        }
    }
    va_end(again);
    va_end(ap);
}

void smelt_strbuf_free(smelt_strbuf *b)
{
    if (b->fixed) {
        smelt_strbuf_init_fixed(b, b->text, b->cap);
        return;
    }
    free(b->text);
    *b = (smelt_strbuf){0};
}

/* strbuf.h — a string builder: text (or any bytes) appended piece by piece, either into a
 * growing heap buffer or into a caller's fixed buffer (cut like snprintf).
 * Layer: formats/base. libc only. */
#ifndef SMELT_BASE_STRBUF_H
#define SMELT_BASE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct smelt_strbuf {
    char *text;  /* NUL-terminated (a NUL past len; the bytes may hold NULs of their own);
                  * NULL while nothing was added to a growing builder */
    size_t len;  /* bytes appended; for a fixed buffer, also those that did not fit */
    size_t cap;  /* bytes at text */
    bool fixed;  /* text is the caller's buffer: never grown, what does not fit is cut */
    bool oom;    /* an allocation failed: the text stops there, later pieces are ignored */
} smelt_strbuf;

/* A growing builder starts zeroed: smelt_strbuf b = {0}; release it with
 * smelt_strbuf_free(). A fixed one writes into buf[size] as snprintf does: the text is cut
 * to size - 1 bytes and NUL-terminated, and len counts every byte appended. */
void smelt_strbuf_init_fixed(smelt_strbuf *b, char *buf, size_t size);

void smelt_strbuf_add(smelt_strbuf *b, const void *bytes, size_t n);
void smelt_strbuf_puts(smelt_strbuf *b, const char *s);
void smelt_strbuf_printf(smelt_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees a growing builder's text and zeroes it (a fixed one is only reset). */
void smelt_strbuf_free(smelt_strbuf *b);

#endif

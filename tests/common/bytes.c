/* bytes.c — see bytes.h. */
#include "bytes.h"

#include <stdlib.h>
#include <string.h>

void tb_put(tb_buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n) nc *= 2;
        b->p = realloc(b->p, nc);
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

void tb_u8(tb_buf *b, uint8_t v) { tb_put(b, &v, 1); }
void tb_u16(tb_buf *b, uint16_t v) { tb_put(b, &v, 2); }
void tb_u32(tb_buf *b, uint32_t v) { tb_put(b, &v, 4); }
void tb_u64(tb_buf *b, uint64_t v) { tb_put(b, &v, 8); }
void tb_f32(tb_buf *b, float v) { tb_put(b, &v, 4); }

void tb_gstr(tb_buf *b, const char *s)
{
    tb_u64(b, strlen(s));
    tb_put(b, s, strlen(s));
}

void tb_zeros(tb_buf *b, size_t n)
{
    while (n--) tb_u8(b, 0);
}

void tb_pad(tb_buf *b, size_t align)
{
    while (b->len % align) tb_u8(b, 0);
}

void tb_free(tb_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

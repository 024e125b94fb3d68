/* bytes.h — a growable byte buffer for crafting test inputs (GGUF headers, pickles…). */
#ifndef SMELT_TEST_BYTES_H
#define SMELT_TEST_BYTES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *p;
    size_t len, cap;
} tb_buf;

void tb_put(tb_buf *b, const void *src, size_t n);
void tb_u8(tb_buf *b, uint8_t v);
void tb_u16(tb_buf *b, uint16_t v);
void tb_u32(tb_buf *b, uint32_t v);
void tb_u64(tb_buf *b, uint64_t v);
void tb_f32(tb_buf *b, float v);
/* GGUF string: u64 length + bytes */
void tb_gstr(tb_buf *b, const char *s);
void tb_zeros(tb_buf *b, size_t n);
void tb_pad(tb_buf *b, size_t align);
void tb_free(tb_buf *b);

#endif

/* qtypes.h — behaviour of every tensor type smelt can decode or encode: the traits table
 * joined from the type families, and row-level entry points the rest of smelt uses.
 * Layer: quant. Includes formats/ only (never verify/). */
#ifndef SMELT_QTYPES_H
#define SMELT_QTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/ggml_types.h"

/* Decode n elements (a multiple of the block size) of `type` to f32.
 * 0 on success, -1 if smelt has no decoder for the type. Thread-safe. */
int smelt_q_dequantize_row(int type, const void *src, float *dst, size_t n);
/* True if smelt_q_dequantize_row() handles the type. */
bool smelt_q_can_dequantize(int type);

#endif

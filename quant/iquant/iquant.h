/* iquant.h — the non-linear ("i-quant") block formats: IQ4_NL and IQ4_XS, whose 4-bit
 * levels index a fixed 16-value grid instead of standing for integers spaced evenly.
 * Layer: quant. Layouts are format facts (identical to ggml's); little-endian, f16 is
 * IEEE binary16. In the diagrams q[i] is the i-th element's 4-bit grid index. */
#ifndef SMELT_QUANT_IQUANT_H
#define SMELT_QUANT_IQUANT_H

#include <stdint.h>

/* The grid both types share: 16 signed levels, ascending, denser near 0 (ggml's
 * kvalues_iq4nl). */
extern const int8_t smelt_iq4_grid[16];

/* ==== IQ4_NL: 4.5 bits per weight (18 bytes / 32) ====
 *
 *   0      2                                  18
 *   +------+----------------------------------+
 *   |  d   | qs[16]: lo = q[i], hi = q[i+16]  |
 *   +------+----------------------------------+
 *   x[i] = d * grid[q[i]]
 */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} smelt_block_iq4_nl;
_Static_assert(sizeof(smelt_block_iq4_nl) == 18, "iq4_nl block is 18 bytes");

/* ==== IQ4_XS: 4.25 bits per weight (136 bytes / 256) ====
 *
 *   0      2          4              8                                         136
 *   +------+----------+--------------+-----------------------------------------+
 *   |  d   | scales_h | scales_l[4]  | qs[128]: 8 sub-blocks of 32, as IQ4_NL  |
 *   +------+----------+--------------+-----------------------------------------+
 *   sub-block j (elements 32j..32j+31) has a 6-bit scale s[j]:
 *       low 4 bits = nibble j % 2 of scales_l[j / 2] (lo nibble for even j),
 *       high 2 bits = bits 2j..2j+1 of scales_h
 *   qs[16j + l]: lo = q[32j + l], hi = q[32j + 16 + l]   (l = 0..15)
 *   x[i] = d * (s[j] - 32) * grid[q[i]]
 */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
} smelt_block_iq4_xs;
_Static_assert(sizeof(smelt_block_iq4_xs) == 136, "iq4_xs block is 136 bytes");

#endif

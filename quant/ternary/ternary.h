/* ternary.h — the ternary block formats TQ1_0 and TQ2_0 (made for BitNet b1.58 / TriLM
 * style weights, which are one scale times -1, 0 or +1): 256 elements share one f16 scale
 * d, each element stores a small integer level. Layer: quant. Layouts are format facts
 * (identical to ggml's); little-endian, f16 is IEEE binary16. t[i] is element i's level
 * plus 1 (a "trit" 0, 1, 2 for -1, 0, +1). */
#ifndef SMELT_QUANT_TERNARY_H
#define SMELT_QUANT_TERNARY_H

#include <stdint.h>

/* ==== TQ1_0: 1.6875 bits per weight (54 bytes / 256) ====
 *
 *   0                        48              52     54
 *   +------------------------+---------------+------+
 *   | qs[48]: 5 trits a byte | qh[4]: 4 each |  d   |
 *   +------------------------+---------------+------+
 *   A byte holding trits a, b, c, e, f (a most significant) stores
 *       ceil((81a + 27b + 9c + 3e + f) * 256 / 243),
 *   so that trit n is recovered as ((byte * 3^n mod 256) * 3) >> 8.
 *   qs[m] (m < 32):      elements m, m+32, m+64, m+96, m+128
 *   qs[32+m] (m < 16):   elements 160+m, 176+m, 192+m, 208+m, 224+m
 *   qh[j] (j < 4):       elements 240+j, 244+j, 248+j, 252+j (fifth trit 0)
 *   x[i] = d * (t[i] - 1)
 */
typedef struct {
    uint8_t qs[48];
    uint8_t qh[4];
    uint16_t d;
} smelt_block_tq1_0;
_Static_assert(sizeof(smelt_block_tq1_0) == 54, "tq1_0 block is 54 bytes");

/* ==== TQ2_0: 2.0625 bits per weight (66 bytes / 256) ====
 *
 *   0                                        64     66
 *   +----------------------------------------+------+
 *   | qs[64]: 2 bits per element             |  d   |
 *   +----------------------------------------+------+
 *   bits 2l..2l+1 of qs[32h + m] hold t of element 128h + 32l + m  (h < 2, l < 4, m < 32)
 *   x[i] = d * (t[i] - 1), t in 0..3: the fourth code (level +2) decodes like the others
 */
typedef struct {
    uint8_t qs[64];
    uint16_t d;
} smelt_block_tq2_0;
_Static_assert(sizeof(smelt_block_tq2_0) == 66, "tq2_0 block is 66 bytes");

#endif

/* legacy.h — the 32-element block formats of GGUF's first generation: Q4_0 Q4_1 Q5_0
 * Q5_1 Q8_0, and Q8_1 (activations only, paired with Q4_1/Q5_1 in dot products).
 * Layer: quant. Block layouts are format facts (identical to ggml's); all fields are
 * little-endian, f16 is IEEE binary16.
 *
 * Conventions in the diagrams: byte offsets on top, q[i] is the i-th element of the
 * block (0..31); "lo"/"hi" are the low/high nibble of a byte. */
#ifndef SMELT_QUANT_LEGACY_H
#define SMELT_QUANT_LEGACY_H

#include <stdint.h>

#define SMELT_QK_LEGACY 32

/* ==== Q4_0: 4.5 bits per weight (18 bytes / 32) ====
 *
 *   0      2                                  18
 *   +------+----------------------------------+
 *   |  d   | qs[16]: lo = q[i], hi = q[i+16]  |
 *   +------+----------------------------------+
 *   x[i] = d * (q[i] - 8),  q in 0..15
 */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} smelt_block_q4_0;
_Static_assert(sizeof(smelt_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* ==== Q4_1: 5 bits per weight (20 bytes / 32) ====
 *
 *   0      2      4                                  20
 *   +------+------+----------------------------------+
 *   |  d   |  m   | qs[16]: lo = q[i], hi = q[i+16]  |
 *   +------+------+----------------------------------+
 *   x[i] = d * q[i] + m,  q in 0..15
 */
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} smelt_block_q4_1;
_Static_assert(sizeof(smelt_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* ==== Q5_0: 5.5 bits per weight (22 bytes / 32) ====
 *
 *   0      2              6                                  22
 *   +------+--------------+----------------------------------+
 *   |  d   | qh (u32 LE)  | qs[16]: lo = q[i], hi = q[i+16]  |
 *   +------+--------------+----------------------------------+
 *   bit i of qh is bit 4 of q[i];  x[i] = d * (q[i] - 16),  q in 0..31
 */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} smelt_block_q5_0;
_Static_assert(sizeof(smelt_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* ==== Q5_1: 6 bits per weight (24 bytes / 32) ====
 *
 *   0      2      4              8                                  24
 *   +------+------+--------------+----------------------------------+
 *   |  d   |  m   | qh (u32 LE)  | qs[16]: lo = q[i], hi = q[i+16]  |
 *   +------+------+--------------+----------------------------------+
 *   bit i of qh is bit 4 of q[i];  x[i] = d * q[i] + m,  q in 0..31
 */
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} smelt_block_q5_1;
_Static_assert(sizeof(smelt_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* ==== Q8_0: 8.5 bits per weight (34 bytes / 32) ====
 *
 *   0      2                        34
 *   +------+------------------------+
 *   |  d   | q[32] (int8)           |
 *   +------+------------------------+
 *   x[i] = d * q[i]
 */
typedef struct {
    uint16_t d;
    int8_t qs[32];
} smelt_block_q8_0;
_Static_assert(sizeof(smelt_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* ==== Q8_1: 9 bits per weight (36 bytes / 32), activations only ====
 *
 *   0      2      4                        36
 *   +------+------+------------------------+
 *   |  d   |  s   | q[32] (int8)           |
 *   +------+------+------------------------+
 *   x[i] = d * q[i];  s = d * sum(q), which lets a Q4_1/Q5_1 dot add m * s per block
 */
typedef struct {
    uint16_t d, s;
    int8_t qs[32];
} smelt_block_q8_1;
_Static_assert(sizeof(smelt_block_q8_1) == 36, "q8_1 block is 36 bytes");

#endif

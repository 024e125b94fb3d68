/* kquant.h — the 256-element "k-quant" super-block formats: Q2_K Q3_K Q4_K Q5_K Q6_K,
 * and Q8_K (activations only, paired with all of them in dot products).
 * Layer: quant. Layouts are format facts (identical to ggml's); little-endian, f16 is
 * IEEE binary16.
 *
 * A super-block holds 256 weights split into sub-blocks (16 of 16 or 8 of 32). Each
 * sub-block has a small integer scale (and for the "x = a*q - b" types a small integer
 * min); the super-block stores the f16 factors d (and dmin) that turn them into floats:
 *     sub-block scale = d * sc[j],  sub-block offset = dmin * m[j].
 * In the diagrams q[i] is the i-th of the 256 elements. */
#ifndef SMELT_QUANT_KQUANT_H
#define SMELT_QUANT_KQUANT_H

#include <stdint.h>

#define SMELT_QK_K 256

/* ==== Q2_K: 2.625 bits per weight (84 bytes / 256) ====
 *
 *   0                16                               80     82      84
 *   +----------------+--------------------------------+------+-------+
 *   | scales[16]     | qs[64]: 2-bit q                |  d   | dmin  |
 *   +----------------+--------------------------------+------+-------+
 *   scales[j]: lo nibble = sc[j], hi nibble = m[j] for sub-block j = i/16
 *   qs: two halves of 128 elements; in half h, byte qs[32h + l] holds
 *       q[128h + l + 32k] in bits 2k..2k+1 (k = 0..3)
 *   x[i] = d * sc[j] * q[i] - dmin * m[j],  q in 0..3
 */
typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
} smelt_block_q2_K;
_Static_assert(sizeof(smelt_block_q2_K) == 84, "q2_K block is 84 bytes");

/* ==== Q3_K: 3.4375 bits per weight (110 bytes / 256) ====
 *
 *   0             32                           96             108    110
 *   +-------------+----------------------------+--------------+------+
 *   | hmask[32]   | qs[64]: low 2 bits of q    | scales[12]   |  d   |
 *   +-------------+----------------------------+--------------+------+
 *   qs: as Q2_K.  hmask[l] bit k = bit 2 of q[32k + l].
 *   scales: 16 six-bit values s[j] (sub-block j = i/16), stored with a bias of 32:
 *       bytes 0..7:  lo nibble = low 4 bits of s[j], hi nibble = low 4 bits of s[j+8]
 *       bytes 8..11: bits 2k..2k+1 of byte 8 + (j % 4) = high 2 bits of s[j], k = j / 4
 *   x[i] = d * (s[j] - 32) * (q[i] - 4),  q in 0..7
 */
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} smelt_block_q3_K;
_Static_assert(sizeof(smelt_block_q3_K) == 110, "q3_K block is 110 bytes");

/* ==== Q4_K: 4.5 bits per weight (144 bytes / 256) ====
 *
 *   0      2       4              16                                  144
 *   +------+-------+--------------+-----------------------------------+
 *   |  d   | dmin  | scales[12]   | qs[128]: 4-bit q                  |
 *   +------+-------+--------------+-----------------------------------+
 *   8 sub-blocks of 32 (j = i/32), each with a 6-bit scale sc[j] and 6-bit min m[j]:
 *       j < 4:  sc[j] = scales[j] & 63,        m[j] = scales[j+4] & 63
 *       j >= 4: sc[j] = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4
 *               m[j]  = (scales[j+4] >> 4) | (scales[j]   >> 6) << 4
 *   qs: four chunks of 64 elements; in chunk c, byte qs[32c + l] has
 *       lo nibble = q[64c + l], hi nibble = q[64c + 32 + l]
 *   x[i] = d * sc[j] * q[i] - dmin * m[j],  q in 0..15
 */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} smelt_block_q4_K;
_Static_assert(sizeof(smelt_block_q4_K) == 144, "q4_K block is 144 bytes");

/* ==== Q5_K: 5.5 bits per weight (176 bytes / 256) ====
 *
 *   0      2       4              16             48                          176
 *   +------+-------+--------------+--------------+---------------------------+
 *   |  d   | dmin  | scales[12]   | qh[32]       | qs[128]: low 4 bits of q  |
 *   +------+-------+--------------+--------------+---------------------------+
 *   scales and qs: as Q4_K.  qh[l] bit 2c = bit 4 of q[64c + l],
 *                            qh[l] bit 2c+1 = bit 4 of q[64c + 32 + l]
 *   x[i] = d * sc[j] * q[i] - dmin * m[j],  q in 0..31
 */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} smelt_block_q5_K;
_Static_assert(sizeof(smelt_block_q5_K) == 176, "q5_K block is 176 bytes");

/* ==== Q6_K: 6.5625 bits per weight (210 bytes / 256) ====
 *
 *   0                       128                 192            208    210
 *   +-----------------------+-------------------+--------------+------+
 *   | ql[128]: low 4 bits   | qh[64]: high 2    | scales[16]   |  d   |
 *   +-----------------------+-------------------+--------------+------+
 *   two halves of 128 elements; in half h (ql += 64h, qh += 32h), for l in 0..31:
 *       ql[l]      lo = q[128h + l],       hi = q[128h + 64 + l]
 *       ql[l + 32] lo = q[128h + 32 + l],  hi = q[128h + 96 + l]
 *       qh[l] bits 2k..2k+1 = high 2 bits of q[128h + 32k + l]
 *   scales: int8 per sub-block of 16 (j = i/16)
 *   x[i] = d * scales[j] * (q[i] - 32),  q in 0..63
 */
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} smelt_block_q6_K;
_Static_assert(sizeof(smelt_block_q6_K) == 210, "q6_K block is 210 bytes");

/* ==== Q8_K: 9.125 bits per weight (292 bytes / 256), activations only ====
 *
 *   0        4                         260                  292
 *   +--------+-------------------------+--------------------+
 *   | d f32  | q[256] (int8)           | bsums[16] (int16)  |
 *   +--------+-------------------------+--------------------+
 *   x[i] = d * q[i];  bsums[j] = sum of q over elements 16j..16j+15 (used for mins)
 */
typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} smelt_block_q8_K;
_Static_assert(sizeof(smelt_block_q8_K) == 292, "q8_K block is 292 bytes");

#endif

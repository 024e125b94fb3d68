/* mxfp.h — MXFP4, the OCP microscaling 4-bit float format as ggml stores it: 32 elements
 * share one power-of-two scale (E8M0: an 8-bit exponent, no mantissa, no sign), each element
 * is a 4-bit E2M1 float (sign, 2 exponent bits, 1 mantissa bit). Layer: quant. The layout is
 * a format fact (identical to ggml's). */
#ifndef SMELT_QUANT_MXFP_H
#define SMELT_QUANT_MXFP_H

#include <stdint.h>

/* The 16 E2M1 codes as integers, doubled so that they are exact small integers (ggml's
 * kvalues_mxfp4): code c < 8 is +v[c], code c >= 8 is -v[c - 8], v = 0 .5 1 1.5 2 3 4 6. */
extern const int8_t smelt_mxfp4_values[16];

/* ==== MXFP4: 4.25 bits per weight (17 bytes / 32) ====
 *
 *   0     1                                  17
 *   +-----+----------------------------------+
 *   |  e  | qs[16]: lo = c[i], hi = c[i+16]  |
 *   +-----+----------------------------------+
 *   x[i] = values[c[i]] * h(e),  h(e) = 2^(e - 128), half the E8M0 scale because the
 *   values are doubled (e = 0 and 1 give the subnormal floats 2^-128, 2^-127)
 */
typedef struct {
    uint8_t e;
    uint8_t qs[16];
} smelt_block_mxfp4;
_Static_assert(sizeof(smelt_block_mxfp4) == 17, "mxfp4 block is 17 bytes");

#endif

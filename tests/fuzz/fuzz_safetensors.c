/* fuzz_safetensors.c — libFuzzer target for the safetensors reader, and the non-finite scan
 * the converters run on every float tensor they read. */
#include <stddef.h>
#include <stdint.h>

#include "formats/base/finite.h"
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_st *st;
    smelt_err e;
    if (smelt_st_open_mem(data, size, "fuzz", &st, &e) != 0) return 0;
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < smelt_st_n_tensors(st); i++) {
        const smelt_st_tensor *t = smelt_st_tensor_at(st, i);
        if (t->end > t->begin) sink ^= t->data[0] ^ t->data[t->end - t->begin - 1];
        (void)smelt_st_find(st, t->name);
        int fmt = t->dtype == SMELT_DT_F32    ? SMELT_FIN_F32
                  : t->dtype == SMELT_DT_F16  ? SMELT_FIN_F16
                  : t->dtype == SMELT_DT_BF16 ? SMELT_FIN_BF16
                  : t->dtype == SMELT_DT_F64  ? SMELT_FIN_F64
                  : t->dtype == SMELT_DT_F8_E4M3 ? SMELT_FIN_F8_E4M3
                  : t->dtype == SMELT_DT_F8_E5M2 ? SMELT_FIN_F8_E5M2
                                                 : -1;
        if (fmt >= 0 && t->end > t->begin) {
            double v;
            sink ^= smelt_nonfinite_count((smelt_fin_fmt)fmt, t->data, t->nelements);
            sink ^= smelt_nonfinite_first((smelt_fin_fmt)fmt, t->data, t->nelements, &v);
        }
    }
    (void)sink;
    smelt_st_close(st);
    return 0;
}

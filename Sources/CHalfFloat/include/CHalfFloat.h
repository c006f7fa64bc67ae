// CHalfFloat: fast conversion of IEEE half (float16) and bfloat16 bit patterns to float32.
// HDF5 1.10 has no native half type and its own conversion runs at ~33 MB/s, so kvstat reads the raw
// 2-byte values and converts them here (F16C instructions when the CPU has them, portable C otherwise).
#ifndef KVSTAT_CHALFFLOAT_H
#define KVSTAT_CHALFFLOAT_H
#include <stddef.h>
#include <stdint.h>

/// Converts `count` IEEE binary16 values to float32 (exact: every half is representable).
void kv_half_to_float(const uint16_t *src, float *dst, size_t count);

/// Converts `count` bfloat16 values (the upper 16 bits of a float32) to float32 (exact).
void kv_bfloat16_to_float(const uint16_t *src, float *dst, size_t count);

/// Whether kv_half_to_float uses the F16C instructions on this CPU.
int kv_half_uses_f16c(void);
#endif

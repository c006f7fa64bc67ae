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

/// Stored element formats `kv_convert_box` reads.
enum {
    KV_BOX_FLOAT16 = 0,   ///< IEEE binary16
    KV_BOX_BFLOAT16 = 1,  ///< bfloat16 (the upper 16 bits of a float32)
    KV_BOX_FLOAT32 = 2,   ///< IEEE binary32 (copied)
};

/// Most dimensions `kv_convert_box` takes.
#define KV_BOX_MAX_RANK 8

/// Converts every element of a box of up to KV_BOX_MAX_RANK dimensions to float32 and scatters it: element
/// (i_0, …, i_{rank-1}), 0 ≤ i_k < counts[k], is read at `src` + Σ i_k·src_strides[k] elements (of the stored
/// width: 2 bytes for float16/bfloat16, 4 for float32) and written to `dst` + Σ i_k·dst_strides[k] floats.
/// `big_endian` ≠ 0: the stored bytes are big-endian and are swapped (only then). Exact, like the conversions
/// above; the destination positions must not overlap. Adjacent dimensions that are contiguous in both the source
/// and the destination are merged, so a box whose rows are contiguous on both sides runs as one vectorised loop;
/// other innermost runs (a transposition) are converted in tiles and scattered. Returns -1 (nothing written)
/// when `rank` or `format` is out of range, 0 otherwise.
int kv_convert_box(int format, int big_endian, const void *src, const long *src_strides, float *dst,
                   const long *dst_strides, const long *counts, int rank);
#endif

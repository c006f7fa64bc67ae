// QuantKernels: group-wise asymmetric min/max fake quantization (quantize, then dequantize in place) of
// row-major float32 blocks, as KIVI and CSKV store keys (per channel over groups of tokens) and values (per
// token over groups of channels). The Swift reference is LatentQuantizer (Sources/KVStat/LowRank); these
// kernels give bit-identical results, vectorised across channels (or within a row's group).
//
// Per group of values x: lo = min x, hi = max x (NaN values are skipped); scale = f16((hi − lo) / L),
// zero = f16(lo), with L = 2^bits − 1 and f16 rounding to the nearest float16 (ties to even), as the
// parameters are stored. Each x becomes q·scale + zero, q = clamp(round((x − zero) / scale), 0, L) with
// round-half-away-from-zero and q = 0 for NaN; when scale is not > 0 (a constant group) x becomes zero. Every
// operation is a separate IEEE float32 operation (no fused multiply-add), in the order written here.
#ifndef KVSTAT_QUANTKERNELS_H
#define KVSTAT_QUANTKERNELS_H
#include <stddef.h>

/// Fake-quantizes rows [start, end) of every one of `columns` columns of the block `y` (row r, column j at
/// r·columns + j): one group per column over those rows. 1 ≤ bits ≤ 8; start < end.
void kv_quantize_columns(float *y, size_t columns, size_t start, size_t end, int bits);

/// Fake-quantizes each of `rows` rows of the block `y` (`columns` per row) in consecutive groups of `group`
/// columns (the last one shorter when `group` does not divide `columns`). 1 ≤ bits ≤ 8; group ≥ 1.
void kv_quantize_rows(float *y, size_t rows, size_t columns, size_t group, int bits);
#endif

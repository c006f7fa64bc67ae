// PairKernels: loops over the same token's rows of two layers (the per-token cosine of a layer pair).
#ifndef KVSTAT_PAIRKERNELS_H
#define KVSTAT_PAIRKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// For each of `rows` rows of the row-major `rows × columns` blocks `a` and `b` (the same tokens of two
/// layers), the cosine ⟨a_r, b_r⟩ / (‖a_r‖ ‖b_r‖), added into `*sum`, with `*count` incremented, for the rows
/// where both norms are non-zero (zeroed rows, such as rows excluded for non-finite values, are skipped).
/// Products are summed in 16 float32 lanes per row (fused multiply-adds in the AVX2 build), the lanes then
/// added in float64; values must be finite and within float32's safe range for squares (callers rescale
/// otherwise; the cosine does not depend on scale). AVX2+FMA build when the CPU has it, SSE2 otherwise.
void kv_row_cosines(const float *a, const float *b, size_t rows, size_t columns, double *sum, int64_t *count);
#endif

// MomentKernels: per-channel moments and per-row norms of row-major float32 token blocks, and the other
// one-pass block loops of the analysis (column sums, max |x|, the non-finite row scan, float32 → float64
// accumulation of BLAS products). Every kernel reads its block once from memory; loops run across channels
// (or along a row) so that clang vectorises them, with AVX2+FMA and AVX-512 builds of each chosen at run time.
//
// Layout: a block is `rows × columns` float32, row-major (row r, channel j at r·columns + j). Kernels that take
// a channel range [first, first + width) touch only those channels' outputs, so threads may run them on
// disjoint ranges of the same block at once. No kernel allocates memory or keeps state between calls.
#ifndef KVSTAT_MOMENTKERNELS_H
#define KVSTAT_MOMENTKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Rows per chunk of `kv_channel_moments`: a chunk of a 512-channel strip (256 × 2 KiB) stays in L2 between
/// its two passes.
#define KV_MOMENT_CHUNK_ROWS 256

/// Central moments of channels [first, first + width) over the rows of a block whose `row_excluded[r]` is 0
/// (`row_excluded` may be NULL: every row counts). Returns the number of rows counted, n.
///
/// Outputs, per channel j of the range (every array has `columns` entries, indexed by channel): `mean[j]` = μ,
/// `m2[j]` = Σ(x − μ)², `m3[j]` = Σ(x − μ)³, `m4[j]` = Σ(x − μ)⁴ over the counted rows (overwritten; all 0
/// when n = 0), and `max_abs[j]` = max(max_abs[j], max |x| over the counted rows) (updated).
///
/// Method: rows are taken in chunks of at most KV_MOMENT_CHUNK_ROWS consecutive counted rows. Pass A over a
/// chunk forms max |x| and a float32 sum, whose mean K is only a shift; pass B (the chunk now in cache) forms
/// Sₖ = Σ(x − K)ᵏ, k = 1…4, in float64 from the exact float64 value of each float32 x — float32 squares and
/// fourth powers never leave float64's range (|x|⁴ ≤ 2⁵¹², ≥ 2⁻⁵⁹⁶), so no rescaling is needed. With
/// a = S₁/n the chunk's central sums are S₂ − n a², S₃ − 3a S₂ + 2n a³, S₄ − 4a S₃ + 6a² S₂ − 3n a⁴ and its mean
/// K + a; where |a| exceeds 4 standard deviations (a mean ~10⁵× the spread, beyond the float32 sum's
/// resolution) the chunk is summed again around K + a, so the conversion never cancels by more than ~4⁴.
/// Chunks are combined in float64 by the pairwise formulas of Chan et al. / Pébay (2008) (see
/// ChannelMoments.swift). Kurtosis agrees with a two-pass float64 computation to within 1e-9 relative
/// (tested; typically ~1e-13).
int64_t kv_channel_moments(
    const float *values, size_t rows, size_t columns, size_t first, size_t width, const uint8_t *row_excluded,
    float *max_abs, double *mean, double *m2, double *m3, double *m4);

/// `out[r] = Σ_j values[r·columns + j]²` for r in [0, rows), each square and sum in float64 (exact squares;
/// the sum rounds to ~1e-16 relative). float32 squares cannot overflow or underflow float64.
void kv_row_sum_squares(const float *values, size_t rows, size_t columns, double *out);

/// `sums[j] += Σ_r f(values[r·columns + j])` for channels j in [first, first + width), rows [0, rows), in
/// float64, with f(x) = |x| when `absolute` is non-zero and x otherwise. `sums` is indexed by channel (it has
/// `columns` entries, of which only the range is touched).
void kv_column_sums(
    const float *values, size_t rows, size_t columns, size_t first, size_t width, int absolute, double *sums);

/// The largest |x| of `count` values (0 for none). Values must not be NaN.
float kv_max_abs(const float *values, size_t count);

/// Scans rows [0, rows) of a block for NaN and ±Inf: each row holding any is zeroed and its index written to
/// `excluded` (ascending; room for `rows` entries). Returns the number of such rows; `*non_finite` is set to
/// the number of non-finite values found.
size_t kv_zero_nonfinite_rows(float *values, size_t rows, size_t columns, int64_t *excluded, int64_t *non_finite);

/// `target[i] += multiplier · source[i]` for i in [0, count), in float64.
void kv_add_scaled(double *target, const float *source, size_t count, double multiplier);

/// Adds rows [first_row, end_row) of the lower triangle of an n × n float32 matrix whose upper triangle is
/// stored column-major (element (j, i), j ≤ i, at i·n + j — what SSYRK writes with CblasUpper) into a packed
/// float64 lower triangle (row i at i·(i+1)/2), each value scaled by `multiplier`.
void kv_add_packed_lower(
    double *packed, const float *square, size_t n, size_t first_row, size_t end_row, double multiplier);

/// The builds of these kernels in use on this CPU: 2 AVX-512F, 1 AVX2+FMA, 0 the baseline (SSE2 on x86-64).
int kv_moment_kernels_instruction_set(void);

/// Caps the builds used from now on at `level` (2, 1, 0 as above; 2 by default): for tests and benchmarks that
/// compare the builds. Every build computes the same statistics up to rounding.
void kv_moment_kernels_limit(int level);
#endif

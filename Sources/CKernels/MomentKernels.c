// MomentKernels.c: see include/MomentKernels.h for each kernel's maths and contract.
//
// Each kernel's body is an always-inline function written so that clang vectorises its loops across channels
// (or along a row, with several accumulators); it is compiled three times — for the baseline x86-64 target
// (SSE2), with `target("avx2,fma")` and with AVX-512F — and the build is chosen at run time
// (`__builtin_cpu_supports`). The FMA builds may contract a·b + c into one FMA: their rounding differs from
// the baseline's by an ulp per operation.
#include "MomentKernels.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#define KV_INLINE static inline __attribute__((always_inline))

// Channels per strip of kv_channel_moments: the per-channel chunk sums live on the stack (24 KiB).
#define KV_MOMENT_STRIP 512

// MARK: channel moments

/// Pass A over `n` rows of a strip of `w` channels: max |x| and the float32 sum per channel.
KV_INLINE void moments_pass_a(
    const float *restrict x, size_t ld, size_t n, size_t w, float *restrict peak, float *restrict sum) {
    for (size_t j = 0; j < w; j++) {
        peak[j] = 0;
        sum[j] = 0;
    }
    size_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const float *restrict p0 = x + r * ld;
        const float *restrict p1 = p0 + ld;
        const float *restrict p2 = p1 + ld;
        const float *restrict p3 = p2 + ld;
        for (size_t j = 0; j < w; j++) {
            float a0 = fabsf(p0[j]), a1 = fabsf(p1[j]), a2 = fabsf(p2[j]), a3 = fabsf(p3[j]);
            float m01 = a0 > a1 ? a0 : a1;
            float m23 = a2 > a3 ? a2 : a3;
            float m = m01 > m23 ? m01 : m23;
            peak[j] = m > peak[j] ? m : peak[j];
            sum[j] += (p0[j] + p1[j]) + (p2[j] + p3[j]);
        }
    }
    for (; r < n; r++) {
        const float *restrict p = x + r * ld;
        for (size_t j = 0; j < w; j++) {
            float a = fabsf(p[j]);
            peak[j] = a > peak[j] ? a : peak[j];
            sum[j] += p[j];
        }
    }
}

/// Pass B over `n` rows of a strip: Sₖ = Σ(x − K)ᵏ, k = 1…4, in float64 around the shifts K.
KV_INLINE void moments_pass_b(
    const float *restrict x, size_t ld, size_t n, size_t w, const double *restrict shift, double *restrict s1,
    double *restrict s2, double *restrict s3, double *restrict s4) {
    for (size_t j = 0; j < w; j++) {
        s1[j] = 0;
        s2[j] = 0;
        s3[j] = 0;
        s4[j] = 0;
    }
    size_t r = 0;
    for (; r + 4 <= n; r += 4) {
        const float *restrict p0 = x + r * ld;
        const float *restrict p1 = p0 + ld;
        const float *restrict p2 = p1 + ld;
        const float *restrict p3 = p2 + ld;
        for (size_t j = 0; j < w; j++) {
            double k = shift[j];
            double d0 = (double)p0[j] - k, d1 = (double)p1[j] - k, d2 = (double)p2[j] - k, d3 = (double)p3[j] - k;
            double q0 = d0 * d0, q1 = d1 * d1, q2 = d2 * d2, q3 = d3 * d3;
            double t1 = s1[j], t2 = s2[j], t3 = s3[j], t4 = s4[j];
            t1 += d0;
            t2 += q0;
            t3 += q0 * d0;
            t4 += q0 * q0;
            t1 += d1;
            t2 += q1;
            t3 += q1 * d1;
            t4 += q1 * q1;
            t1 += d2;
            t2 += q2;
            t3 += q2 * d2;
            t4 += q2 * q2;
            t1 += d3;
            t2 += q3;
            t3 += q3 * d3;
            t4 += q3 * q3;
            s1[j] = t1;
            s2[j] = t2;
            s3[j] = t3;
            s4[j] = t4;
        }
    }
    for (; r < n; r++) {
        const float *restrict p = x + r * ld;
        for (size_t j = 0; j < w; j++) {
            double d = (double)p[j] - shift[j];
            double q = d * d;
            s1[j] += d;
            s2[j] += q;
            s3[j] += q * d;
            s4[j] += q * q;
        }
    }
}

/// Pébay's pairwise update: (na rows; mean, m2, m3, m4) += (nb rows; mb, b2, b3, b4), per channel.
KV_INLINE void moments_combine(
    size_t w, double na, double nb, double *restrict mean, double *restrict m2, double *restrict m3,
    double *restrict m4, const double *restrict mb, const double *restrict b2, const double *restrict b3,
    const double *restrict b4) {
    if (na == 0) {
        memcpy(mean, mb, w * sizeof(double));
        memcpy(m2, b2, w * sizeof(double));
        memcpy(m3, b3, w * sizeof(double));
        memcpy(m4, b4, w * sizeof(double));
        return;
    }
    double n = na + nb;
    double shareB = nb / n;                                           // δ's weight in the mean
    double c2 = na * nb / n;                                          // δ² na nb / n
    double c3 = na * nb * (na - nb) / (n * n);                        // δ³ na nb (na − nb) / n²
    double c4 = na * nb * (na * na - na * nb + nb * nb) / (n * n * n);  // δ⁴ na nb (na² − na nb + nb²) / n³
    double ka = na * na / (n * n), kb = nb * nb / (n * n);
    double ra = na / n, rb = nb / n;
    for (size_t j = 0; j < w; j++) {
        double delta = mb[j] - mean[j];
        double dd = delta * delta;
        double a2 = m2[j], a3 = m3[j];
        m4[j] += b4[j] + dd * dd * c4 + 6 * dd * (ka * b2[j] + kb * a2) + 4 * delta * (ra * b3[j] - rb * a3);
        m3[j] += b3[j] + dd * delta * c3 + 3 * delta * (ra * b2[j] - rb * a2);
        m2[j] += b2[j] + dd * c2;
        mean[j] += delta * shareB;
    }
}

/// Sums around K (in s1…s4) → the chunk's mean K + a (into s1) and central sums (s2…s4), a = S₁/n. Returns
/// whether some channel's shift was poor, |a| > 4·(its standard deviation): the conversion then cancels
/// (relative error ≈ 2⁻⁵³·(a/σ)⁴ in M4), and the chunk must be summed again around its mean.
KV_INLINE int moments_center(
    size_t w, double dn, const double *restrict shift, double *restrict s1, double *restrict s2,
    double *restrict s3, double *restrict s4) {
    double inverse = 1 / dn;
    int poor = 0;
    for (size_t j = 0; j < w; j++) {
        double a = s1[j] * inverse;
        double aa = a * a;
        double c2 = s2[j] - a * s1[j];
        double c3 = s3[j] - 3 * a * s2[j] + 2 * dn * aa * a;
        double c4 = s4[j] - 4 * a * s3[j] + 6 * aa * s2[j] - 3 * dn * aa * aa;
        // Rounding of a (near-)constant chunk must not leave moments no data can have: M2 ≥ 0 and
        // n·M4 ≥ M2² (Cauchy–Schwarz), both exact for real data.
        c2 = c2 > 0 ? c2 : 0;
        double floor4 = c2 * c2 * inverse;
        poor |= 16 * c2 < dn * aa;
        s1[j] = shift[j] + a;
        s2[j] = c2;
        s3[j] = c3;
        s4[j] = c4 > floor4 ? c4 : floor4;
    }
    return poor;
}

KV_INLINE int64_t channel_moments_body(
    const float *values, size_t rows, size_t columns, size_t first, size_t width, const uint8_t *row_excluded,
    float *max_abs, double *mean, double *m2, double *m3, double *m4) {
    float peak[KV_MOMENT_STRIP], fsum[KV_MOMENT_STRIP];
    double shift[KV_MOMENT_STRIP], s1[KV_MOMENT_STRIP], s2[KV_MOMENT_STRIP], s3[KV_MOMENT_STRIP],
        s4[KV_MOMENT_STRIP];
    int64_t counted = 0;
    for (size_t c = first; c < first + width; c += KV_MOMENT_STRIP) {
        size_t w = first + width - c < KV_MOMENT_STRIP ? first + width - c : KV_MOMENT_STRIP;
        for (size_t j = 0; j < w; j++) {
            mean[c + j] = 0;
            m2[c + j] = 0;
            m3[c + j] = 0;
            m4[c + j] = 0;
        }
        double na = 0;
        size_t r = 0;
        while (r < rows) {
            while (r < rows && row_excluded && row_excluded[r]) r++;
            size_t end = r;
            while (end < rows && end - r < KV_MOMENT_CHUNK_ROWS && !(row_excluded && row_excluded[end])) end++;
            if (end == r) break;
            size_t n = end - r;
            const float *x = values + r * columns + c;
            double dn = (double)n;
            // Pass A: max |x| and a float32 mean as the shift; pass B (the chunk now in L2) around it.
            moments_pass_a(x, columns, n, w, peak, fsum);
            int overflow = 0;
            for (size_t j = 0; j < w; j++) {
                shift[j] = (double)fsum[j] / dn;
                float z = fsum[j] - fsum[j];
                overflow |= z != z;
            }
            for (size_t j = 0; overflow && j < w; j++) {
                if (isfinite(fsum[j])) continue;
                // The float32 sum overflowed (|x| near 3·10³⁸): the shift from a float64 sum.
                double total = 0;
                for (size_t i = 0; i < n; i++) total += (double)x[i * columns + j];
                shift[j] = total / dn;
            }
            moments_pass_b(x, columns, n, w, shift, s1, s2, s3, s4);
            for (size_t j = 0; j < w; j++) max_abs[c + j] = peak[j] > max_abs[c + j] ? peak[j] : max_abs[c + j];
            if (moments_center(w, dn, shift, s1, s2, s3, s4)) {
                // A float32 mean far from the true one (a channel whose mean is ~10⁵× its spread: the float32
                // sum's rounding exceeds 4σ): again around the float64 chunk mean (the chunk is still in L2).
                memcpy(shift, s1, w * sizeof(double));
                moments_pass_b(x, columns, n, w, shift, s1, s2, s3, s4);
                moments_center(w, dn, shift, s1, s2, s3, s4);
            }
            moments_combine(w, na, dn, mean + c, m2 + c, m3 + c, m4 + c, s1, s2, s3, s4);
            na += dn;
            r = end;
        }
        counted = (int64_t)na;
    }
    return counted;
}

// MARK: row norms, column sums, max |x|

KV_INLINE void row_sum_squares_body(const float *values, size_t rows, size_t columns, double *out) {
    for (size_t r = 0; r < rows; r++) {
        const float *restrict p = values + r * columns;
        double acc[16] = {0};
        size_t j = 0;
        for (; j + 16 <= columns; j += 16) {
            for (size_t k = 0; k < 16; k++) {
                double v = p[j + k];
                acc[k] += v * v;
            }
        }
        double tail = 0;
        for (; j < columns; j++) {
            double v = p[j];
            tail += v * v;
        }
        for (size_t k = 0; k < 8; k++) acc[k] += acc[k + 8];
        for (size_t k = 0; k < 4; k++) acc[k] += acc[k + 4];
        out[r] = ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;
    }
}

KV_INLINE void column_sums_body(
    const float *values, size_t rows, size_t columns, size_t first, size_t width, int absolute,
    double *restrict sums) {
    double *restrict s = sums + first;
    const float *x = values + first;
    size_t r = 0;
    if (absolute) {
        for (; r + 4 <= rows; r += 4) {
            const float *restrict p0 = x + r * columns;
            const float *restrict p1 = p0 + columns;
            const float *restrict p2 = p1 + columns;
            const float *restrict p3 = p2 + columns;
            for (size_t j = 0; j < width; j++) {
                double t = s[j];
                t += (double)fabsf(p0[j]);
                t += (double)fabsf(p1[j]);
                t += (double)fabsf(p2[j]);
                t += (double)fabsf(p3[j]);
                s[j] = t;
            }
        }
        for (; r < rows; r++) {
            const float *restrict p = x + r * columns;
            for (size_t j = 0; j < width; j++) s[j] += (double)fabsf(p[j]);
        }
    } else {
        for (; r + 4 <= rows; r += 4) {
            const float *restrict p0 = x + r * columns;
            const float *restrict p1 = p0 + columns;
            const float *restrict p2 = p1 + columns;
            const float *restrict p3 = p2 + columns;
            for (size_t j = 0; j < width; j++) {
                double t = s[j];
                t += (double)p0[j];
                t += (double)p1[j];
                t += (double)p2[j];
                t += (double)p3[j];
                s[j] = t;
            }
        }
        for (; r < rows; r++) {
            const float *restrict p = x + r * columns;
            for (size_t j = 0; j < width; j++) s[j] += (double)p[j];
        }
    }
}

KV_INLINE float max_abs_body(const float *restrict values, size_t count) {
    float acc[32] = {0};
    size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        for (size_t k = 0; k < 32; k++) {
            float a = fabsf(values[i + k]);
            acc[k] = a > acc[k] ? a : acc[k];
        }
    }
    float best = 0;
    for (; i < count; i++) {
        float a = fabsf(values[i]);
        best = a > best ? a : best;
    }
    for (size_t k = 0; k < 32; k++) best = acc[k] > best ? acc[k] : best;
    return best;
}

// MARK: non-finite rows, float32 → float64 accumulation

KV_INLINE size_t zero_nonfinite_rows_body(
    float *values, size_t rows, size_t columns, int64_t *excluded, int64_t *non_finite) {
    size_t found = 0;
    int64_t bad_values = 0;
    for (size_t r = 0; r < rows; r++) {
        float *restrict p = values + r * columns;
        // x − x is 0 for a finite x and NaN for NaN or ±Inf.
        int32_t bad = 0;
        for (size_t j = 0; j < columns; j++) {
            float z = p[j] - p[j];
            bad += z != z;
        }
        if (bad) {
            bad_values += bad;
            excluded[found++] = (int64_t)r;
            memset(p, 0, columns * sizeof(float));
        }
    }
    *non_finite = bad_values;
    return found;
}

KV_INLINE void add_scaled_body(double *restrict target, const float *restrict source, size_t count, double m) {
    for (size_t i = 0; i < count; i++) target[i] += m * (double)source[i];
}

KV_INLINE void add_packed_lower_body(
    double *restrict packed, const float *restrict square, size_t n, size_t first_row, size_t end_row,
    double m) {
    for (size_t i = first_row; i < end_row; i++) {
        double *restrict g = packed + i * (i + 1) / 2;
        const float *restrict c = square + i * n;
        for (size_t j = 0; j <= i; j++) g[j] += m * (double)c[j];
    }
}

// MARK: builds and dispatch

// One build of every kernel per instruction set: `name` suffixes the functions, `attributes` sets the target.
#define KV_BUILDS(name, attributes)                                                                             \
    attributes static int64_t channel_moments_##name(                                                          \
        const float *values, size_t rows, size_t columns, size_t first, size_t width,                          \
        const uint8_t *row_excluded, float *max_abs, double *mean, double *m2, double *m3, double *m4) {       \
        return channel_moments_body(                                                                           \
            values, rows, columns, first, width, row_excluded, max_abs, mean, m2, m3, m4);                     \
    }                                                                                                          \
    attributes static void row_sum_squares_##name(const float *values, size_t rows, size_t columns, double *out) { \
        row_sum_squares_body(values, rows, columns, out);                                                      \
    }                                                                                                          \
    attributes static void column_sums_##name(                                                                 \
        const float *values, size_t rows, size_t columns, size_t first, size_t width, int absolute,            \
        double *sums) {                                                                                        \
        column_sums_body(values, rows, columns, first, width, absolute, sums);                                 \
    }                                                                                                          \
    attributes static float max_abs_##name(const float *values, size_t count) {                                \
        return max_abs_body(values, count);                                                                    \
    }                                                                                                          \
    attributes static size_t zero_nonfinite_rows_##name(                                                       \
        float *values, size_t rows, size_t columns, int64_t *excluded, int64_t *non_finite) {                  \
        return zero_nonfinite_rows_body(values, rows, columns, excluded, non_finite);                          \
    }                                                                                                          \
    attributes static void add_scaled_##name(double *target, const float *source, size_t count, double m) {    \
        add_scaled_body(target, source, count, m);                                                             \
    }                                                                                                          \
    attributes static void add_packed_lower_##name(                                                            \
        double *packed, const float *square, size_t n, size_t first_row, size_t end_row, double m) {           \
        add_packed_lower_body(packed, square, n, first_row, end_row, m);                                       \
    }

KV_BUILDS(baseline, )
#if defined(__x86_64__)
KV_BUILDS(avx2, __attribute__((target("avx2,fma"))))
// 512-bit vectors: 8 doubles per instruction (+30 % for the moments on AMD Zen 4, where they are double-pumped).
KV_BUILDS(avx512, __attribute__((target("avx512f,avx2,fma"), min_vector_width(512))))
#define KV_DISPATCH(call, ...)                                              \
    switch (kv_moment_kernels_instruction_set()) {                          \
    case 2: return call##_avx512(__VA_ARGS__);                              \
    case 1: return call##_avx2(__VA_ARGS__);                                \
    default: return call##_baseline(__VA_ARGS__);                           \
    }
#else
#define KV_DISPATCH(call, ...) return call##_baseline(__VA_ARGS__);
#endif

static _Atomic int limit = 2;

void kv_moment_kernels_limit(int level) { atomic_store_explicit(&limit, level, memory_order_relaxed); }

int kv_moment_kernels_instruction_set(void) {
    int cap = atomic_load_explicit(&limit, memory_order_relaxed);
#if defined(__x86_64__)
    if (cap >= 2 && __builtin_cpu_supports("avx512f")) return 2;
    if (cap >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    (void)cap;
    return 0;
}

int64_t kv_channel_moments(
    const float *values, size_t rows, size_t columns, size_t first, size_t width, const uint8_t *row_excluded,
    float *max_abs, double *mean, double *m2, double *m3, double *m4) {
    KV_DISPATCH(channel_moments, values, rows, columns, first, width, row_excluded, max_abs, mean, m2, m3, m4)
}

void kv_row_sum_squares(const float *values, size_t rows, size_t columns, double *out) {
    KV_DISPATCH(row_sum_squares, values, rows, columns, out)
}

void kv_column_sums(
    const float *values, size_t rows, size_t columns, size_t first, size_t width, int absolute, double *sums) {
    KV_DISPATCH(column_sums, values, rows, columns, first, width, absolute, sums)
}

float kv_max_abs(const float *values, size_t count) { KV_DISPATCH(max_abs, values, count) }

size_t kv_zero_nonfinite_rows(float *values, size_t rows, size_t columns, int64_t *excluded, int64_t *non_finite) {
    KV_DISPATCH(zero_nonfinite_rows, values, rows, columns, excluded, non_finite)
}

void kv_add_scaled(double *target, const float *source, size_t count, double multiplier) {
    KV_DISPATCH(add_scaled, target, source, count, multiplier)
}

void kv_add_packed_lower(
    double *packed, const float *square, size_t n, size_t first_row, size_t end_row, double multiplier) {
    KV_DISPATCH(add_packed_lower, packed, square, n, first_row, end_row, multiplier)
}

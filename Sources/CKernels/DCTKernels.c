// DCTKernels.c: see include/DCTKernels.h.
#include "DCTKernels.h"
#include <float.h>
#include <math.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

void kv_dct_twiddles(size_t n, float *twiddles) {
    const double pi = 3.14159265358979323846264338327950288;
    const double norm = sqrt(2.0 / (double)n);
    for (size_t m = 0; m <= n / 2; m++) {
        double theta = pi * (double)m / (2.0 * (double)n);
        twiddles[2 * m] = (float)(norm * cos(theta));
        twiddles[2 * m + 1] = (float)(norm * sin(theta));
    }
}

// MARK: gather (transpose + Makhoul order + non-finite to zero)

/// Makhoul position of sample t in a signal of n samples.
static inline size_t makhoul_position(size_t t, size_t n) { return (t & 1) ? n - (t + 1) / 2 : t / 2; }

/// The portable gather of tokens [t_lo, t_hi) × signals [s_lo, s_hi); returns the largest finite |x|.
static float gather_scalar(
    const float *panel, size_t n, size_t row_stride, size_t column, size_t t_lo, size_t t_hi, size_t s_lo,
    size_t s_hi, float *out, size_t signal_stride) {
    float largest = 0;
    for (size_t t = t_lo; t < t_hi; t++) {
        const float *row = panel + t * row_stride + column;
        float *dst = out + makhoul_position(t, n);
        for (size_t s = s_lo; s < s_hi; s++) {
            float x = row[s];
            float a = fabsf(x);
            if (!(a <= FLT_MAX)) {  // NaN or ±Inf
                x = 0;
                a = 0;
            }
            dst[s * signal_stride] = x;
            largest = a > largest ? a : largest;
        }
    }
    return largest;
}

#if defined(__x86_64__)
/// Zeroes the non-finite lanes of *v and folds the finite |x| into *largest.
__attribute__((target("avx2,fma"))) static inline __m256 clean8(__m256 v, __m256 *largest) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    __m256 a = _mm256_andnot_ps(sign, v);
    __m256 finite = _mm256_cmp_ps(a, big, _CMP_LE_OQ);
    *largest = _mm256_max_ps(*largest, _mm256_and_ps(a, finite));
    return _mm256_and_ps(v, finite);
}

/// In-register transpose of the 8 × 8 block r[0 … 7] (r[i] = row i): afterwards r[j] = column j.
__attribute__((target("avx2,fma"))) static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/// Blocks of 16 tokens × 8 signals: the 8 even rows of a block, transposed, are 8 consecutive Makhoul
/// positions t0/2 … t0/2 + 7 of each signal; the 8 odd rows, transposed and reversed, are positions
/// n − 8 − t0/2 … n − 1 − t0/2. Tokens beyond the last whole block and signals beyond the last group of 8 go
/// through the scalar gather.
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 64
#endif
__attribute__((target("avx2,fma"))) static float gather_avx2(
    const float *panel, size_t n, size_t row_stride, size_t column, size_t signals, float *out,
    size_t signal_stride) {
    const size_t t_vec = n / 16 * 16;
    const size_t s_vec = signals / 8 * 8;
    const __m256i reverse = _mm256_set_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 largest = _mm256_setzero_ps();
    for (size_t t0 = 0; t0 < t_vec; t0 += 16) {
        const float *rows = panel + t0 * row_stride + column;
        const size_t even = t0 / 2;
        const size_t odd = n - 8 - t0 / 2;
        if (t0 + PREFETCH_ROWS + 16 <= n) {
            // Rows 4 KiB or more apart defeat the hardware prefetchers: ask for the rows of a block ahead.
            for (int i = 0; i < 16; i++) {
                const char *ahead = (const char *)(rows + (size_t)(PREFETCH_ROWS + i) * row_stride);
                for (size_t b = 0; b < signals * sizeof(float); b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
            }
        }
        for (size_t s = 0; s < s_vec; s += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                r[i] = clean8(_mm256_loadu_ps(rows + (size_t)(2 * i) * row_stride + s), &largest);
            }
            transpose8(r);
            for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + (s + (size_t)j) * signal_stride + even, r[j]);
            for (int i = 0; i < 8; i++) {
                r[i] = clean8(_mm256_loadu_ps(rows + (size_t)(2 * i + 1) * row_stride + s), &largest);
            }
            transpose8(r);
            for (int j = 0; j < 8; j++) {
                __m256 reversed = _mm256_permutevar8x32_ps(r[j], reverse);
                _mm256_storeu_ps(out + (s + (size_t)j) * signal_stride + odd, reversed);
            }
        }
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, largest);
    float m = 0;
    for (int i = 0; i < 8; i++) m = lanes[i] > m ? lanes[i] : m;
    float a = gather_scalar(panel, n, row_stride, column, 0, t_vec, s_vec, signals, out, signal_stride);
    float b = gather_scalar(panel, n, row_stride, column, t_vec, n, 0, signals, out, signal_stride);
    m = a > m ? a : m;
    return b > m ? b : m;
}

static int has_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

float kv_dct_gather(
    const float *panel, size_t n, size_t row_stride, size_t column, size_t signals, float *out,
    size_t signal_stride) {
#if defined(__x86_64__)
    if (has_avx2()) return gather_avx2(panel, n, row_stride, column, signals, out, signal_stride);
#endif
    return gather_scalar(panel, n, row_stride, column, 0, n, 0, signals, out, signal_stride);
}

void kv_dct_scale(float *signals_base, size_t n, size_t signals, size_t signal_stride, float factor) {
    for (size_t s = 0; s < signals; s++) {
        float *x = signals_base + s * signal_stride;
        for (size_t t = 0; t < n; t++) x[t] *= factor;
    }
}

// MARK: energies (post-twiddle of the r2c output)

/// The portable post-twiddle: two loops per signal, so that each stores into one run of `energy` and both
/// vectorise.
static void energies_plain(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *restrict twiddles,
    double scale, double *restrict energy) {
    const size_t pairs = (n - 1) / 2;  // m = 1 … pairs give k = m and k = n − m
    const double inverse_n = 1.0 / (double)n;
    for (size_t s = 0; s < signals; s++) {
        const float *restrict v = spectra + s * spectrum_stride;
        const double v0 = v[0];
        energy[0] += scale * (v0 * v0 * inverse_n);
        for (size_t m = 1; m <= pairs; m++) {  // ŷ_m = √(2/n) Re W_m
            const double a = twiddles[2 * m] * v[2 * m] + twiddles[2 * m + 1] * v[2 * m + 1];
            energy[m] += scale * (a * a);
        }
        for (size_t m = 1; m <= pairs; m++) {  // ŷ_{n−m} = −√(2/n) Im W_m
            const double b = twiddles[2 * m + 1] * v[2 * m] - twiddles[2 * m] * v[2 * m + 1];
            energy[n - m] += scale * (b * b);
        }
        if (n % 2 == 0 && n >= 2) {  // k = n/2: V_{n/2} is real
            const size_t m = n / 2;
            const double y = twiddles[2 * m] * v[2 * m] + twiddles[2 * m + 1] * v[2 * m + 1];
            energy[m] += scale * (y * y);
        }
    }
}

#if defined(__x86_64__)
/// One pass over each spectrum, 4 frequencies m at a time: with v = (re, im) pairs and t = (c, s) pairs,
/// p = v·t and q = v·(s, −c) give, after a horizontal add, ŷ_m = p_re + p_im and ŷ_{n−m} = q_re + q_im; the
/// four ŷ_m are added (squared, float64) into energy[m … m+3], the four ŷ_{n−m} reversed into
/// energy[n−m−3 … n−m]. The same float32 products as `energies_plain`, so the same results up to FMA
/// contraction. (Blocking frequencies so that energy stays in L1 measured no faster: reading the spectra
/// from L2 bounds it.)
__attribute__((target("avx2,fma"))) static void energies_avx2(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles, double scale,
    double *energy) {
    const size_t pairs = (n - 1) / 2;
    const double inverse_n = 1.0 / (double)n;
    const __m256 odd_sign =
        _mm256_castsi256_ps(_mm256_set_epi32(INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0));
    const __m256i gather_halves = _mm256_set_epi32(7, 6, 3, 2, 5, 4, 1, 0);
    const __m256d scale4 = _mm256_set1_pd(scale);
    for (size_t s = 0; s < signals; s++) {
        const float *v = spectra + s * spectrum_stride;
        const double v0 = v[0];
        energy[0] += scale * (v0 * v0 * inverse_n);
        size_t m = 1;
        for (; m + 3 <= pairs; m += 4) {
            __m256 x = _mm256_loadu_ps(v + 2 * m);
            __m256 t = _mm256_loadu_ps(twiddles + 2 * m);
            __m256 p = _mm256_mul_ps(x, t);                                                    // c·re, s·im
            __m256 q = _mm256_mul_ps(x, _mm256_xor_ps(_mm256_permute_ps(t, 0xB1), odd_sign));  // s·re, −c·im
            __m256 h = _mm256_permutevar8x32_ps(_mm256_hadd_ps(p, q), gather_halves);        // a0..3 | b0..3
            __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(h));
            __m256d b = _mm256_cvtps_pd(_mm256_extractf128_ps(h, 1));
            double *low = energy + m;
            double *high = energy + (n - m - 3);
            _mm256_storeu_pd(low, _mm256_fmadd_pd(_mm256_mul_pd(a, a), scale4, _mm256_loadu_pd(low)));
            __m256d bb = _mm256_permute4x64_pd(_mm256_mul_pd(b, b), 0x1B);  // reversed: k = n−m−3 … n−m
            _mm256_storeu_pd(high, _mm256_fmadd_pd(bb, scale4, _mm256_loadu_pd(high)));
        }
        for (; m <= pairs; m++) {
            const double a = twiddles[2 * m] * v[2 * m] + twiddles[2 * m + 1] * v[2 * m + 1];
            const double b = twiddles[2 * m + 1] * v[2 * m] - twiddles[2 * m] * v[2 * m + 1];
            energy[m] += scale * (a * a);
            energy[n - m] += scale * (b * b);
        }
        if (n % 2 == 0 && n >= 2) {
            const size_t h = n / 2;
            const double y = twiddles[2 * h] * v[2 * h] + twiddles[2 * h + 1] * v[2 * h + 1];
            energy[h] += scale * (y * y);
        }
    }
}
#endif

void kv_dct_energies(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles,
    double energy_scale, double *energy) {
#if defined(__x86_64__)
    if (has_avx2()) {
        energies_avx2(spectra, n, signals, spectrum_stride, twiddles, energy_scale, energy);
        return;
    }
#endif
    energies_plain(spectra, n, signals, spectrum_stride, twiddles, energy_scale, energy);
}

void kv_dct_coefficients(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles, float *out,
    size_t out_row_stride) {
    const size_t pairs = (n - 1) / 2;
    const double inverse_root_n = 1.0 / sqrt((double)n);
    for (size_t s = 0; s < signals; s++) {
        const float *v = spectra + s * spectrum_stride;
        out[s] = (float)(v[0] * inverse_root_n);
        for (size_t m = 1; m <= pairs; m++) {
            const double c = twiddles[2 * m], sn = twiddles[2 * m + 1], re = v[2 * m], im = v[2 * m + 1];
            out[m * out_row_stride + s] = (float)(c * re + sn * im);
            out[(n - m) * out_row_stride + s] = (float)(sn * re - c * im);
        }
        if (n % 2 == 0 && n >= 2) {
            const size_t m = n / 2;
            out[m * out_row_stride + s] = (float)((double)twiddles[2 * m] * v[2 * m]);
        }
    }
}

float kv_dct_gather_portable(
    const float *panel, size_t n, size_t row_stride, size_t column, size_t signals, float *out,
    size_t signal_stride) {
    return gather_scalar(panel, n, row_stride, column, 0, n, 0, signals, out, signal_stride);
}

void kv_dct_energies_portable(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles,
    double energy_scale, double *energy) {
    energies_plain(spectra, n, signals, spectrum_stride, twiddles, energy_scale, energy);
}

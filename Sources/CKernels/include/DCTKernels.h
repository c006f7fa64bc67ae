// DCTKernels: preparation and energy kernels of the orthonormal DCT-II computed through a real FFT.
//
// Makhoul (1980): for a signal x_0 … x_{N−1}, let v = [x_0, x_2, x_4, …, x_5, x_3, x_1] (even samples in order,
// then odd samples reversed: x_t goes to t/2 for even t, to N − (t+1)/2 for odd t) and V = rFFT(v),
// V_m = Σ_j v_j e^{−2πi jm/N}. Then FFTW's REDFT10 coefficient y_k = 2 Σ_t x_t cos(πk(t + ½)/N) is
// y_k = 2 Re(e^{−iπk/(2N)} V_k), and V_{N−m} = conj(V_m). With θ_m = πm/(2N) and W_m = e^{−iθ_m} V_m:
//   y_m = 2 Re W_m,  y_{N−m} = −2 Im W_m  (1 ≤ m < N/2),   y_0 = 2 V_0,   y_{N/2} = 2 Re W_{N/2} (N even).
// The orthonormal DCT-II scales y_0 by √(1/(4N)) and y_k by √(1/(2N)), so Σ_k ŷ_k² = Σ_t x_t².
// Valid for every N ≥ 1, odd or even.
#ifndef KVSTAT_DCTKERNELS_H
#define KVSTAT_DCTKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Fills `twiddles[2m] = √(2/n)·cos(πm/(2n))`, `twiddles[2m+1] = √(2/n)·sin(πm/(2n))` for m = 0 … n/2
/// (2·(n/2 + 1) floats), computed in float64 and rounded once.
void kv_dct_twiddles(size_t n, float *twiddles);

/// Gathers columns `column … column + signals − 1` of the row-major panel `panel` (`n` rows, `row_stride`
/// floats apart) into `signals` channel-major signals in Makhoul order: sample t of column column + s goes to
/// `out[s·signal_stride + p(t)]`, p(t) = t/2 (t even), N − (t+1)/2 (t odd). Non-finite values (NaN, ±Inf) are
/// written as 0. `out[s·signal_stride + n …]` is left as it is. Returns the largest |x| of the finite values
/// (0 when there is none). Blocked 16 tokens × 8 channels with an AVX2 register transpose where the CPU has it.
/// Requires signal_stride ≥ n; `out` must not overlap `panel`.
float kv_dct_gather(
    const float *panel, size_t n, size_t row_stride, size_t column, size_t signals, float *out,
    size_t signal_stride);

/// Multiplies samples 0 … n−1 of each of `signals` signals (`signal_stride` apart) by `factor` (a power of two
/// for `PowerOfTwoScale`: exact).
void kv_dct_scale(float *signals_base, size_t n, size_t signals, size_t signal_stride, float factor);

/// Adds the orthonormal DCT-II energies ŷ_k² of `signals` signals of length `n`, times `energy_scale`, into
/// `energy[k]` (k = 0 … n−1, float64). `spectra` holds each signal's r2c output V_0 … V_{n/2} as interleaved
/// (re, im) float pairs, signal s starting at `spectra + s·spectrum_stride` (floats); `twiddles` from
/// `kv_dct_twiddles(n, …)`. W_m = e^{−iθ_m}V_m is formed in float32 (the FFT's own precision); its squares
/// are summed in float64.
void kv_dct_energies(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles,
    double energy_scale, double *energy);

/// Writes the orthonormal DCT-II coefficients ŷ_0 … ŷ_{n−1} of `signals` signals (r2c output laid out as for
/// `kv_dct_energies`) into the row-major `out`: ŷ_k of signal s at `out[k·out_row_stride + s]` (float32).
/// For tests and callers that need the coefficients themselves; the frequency pass needs only energies.
void kv_dct_coefficients(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles, float *out,
    size_t out_row_stride);

/// The portable (non-SIMD) builds of `kv_dct_gather` and `kv_dct_energies`, which run where the CPU lacks
/// AVX2 + FMA; exported so that tests can compare them with the vector builds on any machine.
float kv_dct_gather_portable(
    const float *panel, size_t n, size_t row_stride, size_t column, size_t signals, float *out,
    size_t signal_stride);
void kv_dct_energies_portable(
    const float *spectra, size_t n, size_t signals, size_t spectrum_stride, const float *twiddles,
    double energy_scale, double *energy);

#endif

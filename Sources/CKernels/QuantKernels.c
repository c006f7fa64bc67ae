// QuantKernels.c: see include/QuantKernels.h for the maths and rounding contract.
//
// Like MomentKernels.c, each kernel body is compiled for the baseline x86-64 target and with AVX2 (+F16C for
// vector float16 rounding), chosen at run time through kv_moment_kernels_instruction_set(). Contraction of
// a·b + c into an FMA is switched off so that every build rounds exactly like LatentQuantizer in Swift.
#include "QuantKernels.h"
#include "MomentKernels.h"
#include <math.h>

#pragma clang fp contract(off)

#define KV_INLINE static inline __attribute__((always_inline))

// Columns per strip of kv_quantize_columns: the per-column parameters live on the stack (4 KiB).
#define KV_QUANT_STRIP 256

/// Nearest float16 (ties to even, overflow to ±inf) as a float32.
KV_INLINE float to_half(float x) { return (float)(_Float16)x; }

/// q·scale + zero for one value, q as in the header.
KV_INLINE float round_trip(float x, float scale, float zero, float levels) {
    float t = (x - zero) / scale;
    float r = floorf(t);
    r = (t - r >= 0.5f) ? r + 1.0f : r;  // round half away from zero, for t ≥ 0 (negative t clamps to 0 below)
    r = (0.0f >= r) ? 0.0f : r;
    r = (levels < r) ? levels : r;
    r = (r != r) ? 0.0f : r;
    float v = r * scale;
    v = v + zero;
    return (scale > 0.0f) ? v : zero;
}

KV_INLINE void quantize_columns_body(float *restrict y, size_t columns, size_t start, size_t end, int bits) {
    const float levels = (float)((1 << bits) - 1);
    float lo[KV_QUANT_STRIP], hi[KV_QUANT_STRIP], scale[KV_QUANT_STRIP], zero[KV_QUANT_STRIP];
    for (size_t first = 0; first < columns; first += KV_QUANT_STRIP) {
        size_t width = columns - first < KV_QUANT_STRIP ? columns - first : KV_QUANT_STRIP;
        for (size_t j = 0; j < width; j++) {
            lo[j] = INFINITY;
            hi[j] = -INFINITY;
        }
        for (size_t r = start; r < end; r++) {
            const float *restrict row = y + r * columns + first;
            for (size_t j = 0; j < width; j++) {
                float v = row[j];
                lo[j] = (v < lo[j]) ? v : lo[j];
                hi[j] = (v >= hi[j]) ? v : hi[j];
            }
        }
        for (size_t j = 0; j < width; j++) {
            scale[j] = to_half((hi[j] - lo[j]) / levels);
            zero[j] = to_half(lo[j]);
        }
        for (size_t r = start; r < end; r++) {
            float *restrict row = y + r * columns + first;
            for (size_t j = 0; j < width; j++) row[j] = round_trip(row[j], scale[j], zero[j], levels);
        }
    }
}

KV_INLINE void quantize_rows_body(float *restrict y, size_t rows, size_t columns, size_t group, int bits) {
    const float levels = (float)((1 << bits) - 1);
    for (size_t r = 0; r < rows; r++) {
        float *restrict row = y + r * columns;
        for (size_t first = 0; first < columns; first += group) {
            size_t end = columns - first < group ? columns : first + group;
            float lo = INFINITY, hi = -INFINITY;
            for (size_t j = first; j < end; j++) {
                float v = row[j];
                lo = (v < lo) ? v : lo;
                hi = (v >= hi) ? v : hi;
            }
            float scale = to_half((hi - lo) / levels);
            float zero = to_half(lo);
            for (size_t j = first; j < end; j++) row[j] = round_trip(row[j], scale, zero, levels);
        }
    }
}

#define KV_QUANT_BUILDS(name, attributes)                                                                      \
    attributes static void quantize_columns_##name(float *y, size_t columns, size_t start, size_t end, int bits) { \
        quantize_columns_body(y, columns, start, end, bits);                                                   \
    }                                                                                                          \
    attributes static void quantize_rows_##name(float *y, size_t rows, size_t columns, size_t group, int bits) { \
        quantize_rows_body(y, rows, columns, group, bits);                                                     \
    }

KV_QUANT_BUILDS(baseline, )
#if defined(__x86_64__)
KV_QUANT_BUILDS(avx2, __attribute__((target("avx2,f16c"))))
#define KV_QUANT_DISPATCH(call, ...)                                        \
    if (kv_moment_kernels_instruction_set() >= 1 && __builtin_cpu_supports("f16c")) { \
        call##_avx2(__VA_ARGS__);                                           \
    } else {                                                                \
        call##_baseline(__VA_ARGS__);                                       \
    }
#else
#define KV_QUANT_DISPATCH(call, ...) call##_baseline(__VA_ARGS__);
#endif

void kv_quantize_columns(float *y, size_t columns, size_t start, size_t end, int bits) {
    KV_QUANT_DISPATCH(quantize_columns, y, columns, start, end, bits)
}

void kv_quantize_rows(float *y, size_t rows, size_t columns, size_t group, int bits) {
    KV_QUANT_DISPATCH(quantize_rows, y, rows, columns, group, bits)
}

// PairKernels.c: see include/PairKernels.h. One loop body compiled twice (baseline SSE2 and AVX2+FMA), chosen
// at run time; 16 independent lanes let the compiler vectorise the reductions without reassociating them.
#include "PairKernels.h"
#include <math.h>

#define LANES 16

#define KV_ROW_COSINES(name, attributes)                                                                     \
    attributes static void row_cosines_##name(const float *a, const float *b, size_t rows, size_t columns,  \
                                              double *sum, int64_t *count) {                               \
        double s = 0;                                                                                      \
        int64_t n = 0;                                                                                     \
        for (size_t r = 0; r < rows; r++) {                                                                \
            const float *x = a + r * columns;                                                              \
            const float *y = b + r * columns;                                                              \
            float dot[LANES] = {0}, xx[LANES] = {0}, yy[LANES] = {0};                                      \
            size_t j = 0;                                                                                  \
            for (; j + LANES <= columns; j += LANES) {                                                     \
                for (int l = 0; l < LANES; l++) {                                                          \
                    dot[l] += x[j + l] * y[j + l];                                                         \
                    xx[l] += x[j + l] * x[j + l];                                                          \
                    yy[l] += y[j + l] * y[j + l];                                                          \
                }                                                                                          \
            }                                                                                              \
            double d = 0, p = 0, q = 0;                                                                    \
            for (int l = 0; l < LANES; l++) {                                                              \
                d += dot[l];                                                                               \
                p += xx[l];                                                                                \
                q += yy[l];                                                                                \
            }                                                                                              \
            for (; j < columns; j++) {                                                                     \
                d += (double)(x[j] * y[j]);                                                                \
                p += (double)(x[j] * x[j]);                                                                \
                q += (double)(y[j] * y[j]);                                                                \
            }                                                                                              \
            if (p > 0 && q > 0) {                                                                          \
                s += d / (sqrt(p) * sqrt(q));                                                              \
                n++;                                                                                       \
            }                                                                                              \
        }                                                                                                  \
        *sum += s;                                                                                         \
        *count += n;                                                                                       \
    }

KV_ROW_COSINES(baseline, )
#if defined(__x86_64__)
KV_ROW_COSINES(avx2, __attribute__((target("avx2,fma"))))
#endif

void kv_row_cosines(const float *a, const float *b, size_t rows, size_t columns, double *sum, int64_t *count) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        row_cosines_avx2(a, b, rows, columns, sum, count);
        return;
    }
#endif
    row_cosines_baseline(a, b, rows, columns, sum, count);
}

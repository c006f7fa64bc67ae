// eigen_floor.c: the time of one xKV group's eigendecomposition in `fit-lowrank --sweep`, stage by stage, with
// the libopenblas/liblapacke kvstat links: an n × n Gram (n = 4096: 4 layers × 1024 channels) reduced to
// tridiagonal form (dsytrd), its eigenvalues (dsterf), every vector of the tridiagonal (dstedc) and the top r
// mapped back (dormtr, r = 3n/4, the sweep's widest rung) — what `SymmetricEigen` does — beside the eigenvalues
// alone by LAPACK's two-stage reduction (dsyevd_2stage) and the same float64 path in float32 (ssytrd, sormtr),
// which is faster but moves the sweep's errors beyond its tolerance (Benchmarks/README.md).
//
//   cc -O2 Benchmarks/eigen_floor.c -o /tmp/eigen_floor -llapacke -lopenblas -lm && /tmp/eigen_floor 4096
#include <lapacke.h>
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4096;
    int r = argc > 2 ? atoi(argv[2]) : 3 * n / 4;
    if (n < 2 || r < 1 || r > n) {
        fprintf(stderr, "usage: eigen_floor [n] [r], 1 <= r <= n\n");
        return 2;
    }
    int tokens = 2 * n;
    // X: tokens × n, uniform noise with a decaying column scale (a spectrum like a layer group's).
    float *x = malloc((size_t)tokens * n * sizeof(float));
    float *gram32 = malloc((size_t)n * n * sizeof(float));
    double *gram = malloc((size_t)n * n * sizeof(double));
    double *a = malloc((size_t)n * n * sizeof(double));
    double *z = malloc((size_t)n * n * sizeof(double));
    double *d = malloc(n * sizeof(double)), *e = malloc(n * sizeof(double)), *tau = malloc(n * sizeof(double));
    double *dd = malloc(n * sizeof(double)), *ee = malloc(n * sizeof(double)), *w = malloc(n * sizeof(double));
    if (!x || !gram32 || !gram || !a || !z || !d || !e || !tau || !dd || !ee || !w) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    srand(1);
    for (size_t i = 0; i < (size_t)tokens * n; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int j = 0; j < n; j++) {
        float s = expf(-j / 300.0f) + 0.01f;
        for (int t = 0; t < tokens; t++) x[(size_t)t * n + j] *= s;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, tokens, 1, x, n, 0, gram32, n);
    for (size_t i = 0; i < (size_t)n * n; i++) gram[i] = gram32[i];

    double t0, total = 0, lap;
    memcpy(a, gram, (size_t)n * n * sizeof(double));
    t0 = now();
    LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'L', n, a, n, d, e, tau);
    total += lap = now() - t0;
    printf("dsytrd              %6.2f s\n", lap);
    memcpy(dd, d, n * sizeof(double));
    memcpy(ee, e, n * sizeof(double));
    t0 = now();
    LAPACKE_dsterf(n, dd, ee);
    total += lap = now() - t0;
    printf("dsterf              %6.2f s\n", lap);
    memcpy(w, dd, n * sizeof(double));
    memcpy(dd, d, n * sizeof(double));
    memcpy(ee, e, n * sizeof(double));
    t0 = now();
    LAPACKE_dstedc(LAPACK_COL_MAJOR, 'I', n, dd, ee, z, n);
    total += lap = now() - t0;
    printf("dstedc              %6.2f s\n", lap);
    t0 = now();
    LAPACKE_dormtr(LAPACK_COL_MAJOR, 'L', 'L', 'N', n, r, a, n, tau, z + (size_t)(n - r) * n, n);
    total += lap = now() - t0;
    printf("dormtr (%4d cols)   %6.2f s\n", r, lap);
    printf("SymmetricEigen path %6.2f s (n = %d, top %d vectors)\n", total, n, r);

    memcpy(a, gram, (size_t)n * n * sizeof(double));
    t0 = now();
    int info = LAPACKE_dsyevd_2stage(LAPACK_COL_MAJOR, 'N', 'L', n, a, n, dd);
    lap = now() - t0;
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(dd[i] - w[i]));
    printf("dsyevd_2stage, values only %6.2f s (info %d; max |Δλ| against dsterf %.1e, λmax %.3e)\n", lap, info,
           worst, w[n - 1]);

    // The float32 reduction and back-transformation (sstedc is left out: LAPACKE's workspace query for it
    // fails at this size, TOOLCHAIN.md trap 4).
    float *as = (float *)z, *ds = malloc(n * sizeof(float)), *es = malloc(n * sizeof(float));
    float *taus = malloc(n * sizeof(float)), *zs = malloc((size_t)n * r * sizeof(float));
    memcpy(as, gram32, (size_t)n * n * sizeof(float));
    t0 = now();
    LAPACKE_ssytrd(LAPACK_COL_MAJOR, 'L', n, as, n, ds, es, taus);
    printf("ssytrd              %6.2f s\n", now() - t0);
    for (size_t i = 0; i < (size_t)n * r; i++) zs[i] = (i % (size_t)(n + 1)) == 0 ? 1.0f : 0.0f;
    t0 = now();
    LAPACKE_sormtr(LAPACK_COL_MAJOR, 'L', 'L', 'N', n, r, as, n, taus, zs, n);
    printf("sormtr (%4d cols)   %6.2f s\n", r, now() - t0);
    return 0;
}

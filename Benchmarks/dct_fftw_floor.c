// dct_fftw_floor.c: what FFTW's best plans take for the transforms of kvstat's DCT ("frequency") pass, and
// what kvstat's own kernels (Sources/CKernels/DCTKernels.c, compiled in here) take for the same work outside
// Swift, so that the `dct` stage of `kvstat analyze --timings` can be put over a floor. Built and run by
// Benchmarks/dct_vs_fftw.sh; not a test.
//
// The transforms: `channels` signals of `n` float32 samples (one (sequence window, channel) each).
//   fftw r2c        fftwf_plan_many_dft_r2c on contiguous signals (channel-major), FFTW_MEASURE: the
//                   FFT kvstat's pass is built on (the floor);
//   fftw redft10    fftwf_plan_many_r2r REDFT10 (the DCT-II itself) on contiguous signals, FFTW_MEASURE;
//   kvstat kernels  what DCTPlan does: a row-major n × channels panel (as read) gathered into Makhoul order in
//                   chunks of `chunk` signals, r2c (FFTW_ESTIMATE) in place and out of place (DCTPlan keeps the
//                   faster), energies summed per frequency in float64.
// Every variant runs on `threads` threads, each on its own contiguous share of the signals (new-array
// execution of one plan per shape), best of `reps` runs after a warm-up.
//
// Usage: dct_fftw_floor [-n 32768] [-c 1024] [-t threads] [-r 5] [-s chunk 16] [-m (MEASURE kernels plans)]
#define _GNU_SOURCE
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../Sources/CKernels/DCTKernels.c"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t round16(size_t x) { return (x + 15) / 16 * 16; }

typedef struct {
    void (*body)(void *, int);
    void *context;
    int index;
} Job;

static void *run_job(void *p) {
    Job *j = p;
    j->body(j->context, j->index);
    return NULL;
}

/// Runs body(context, i) for i = 0 … threads − 1 on `threads` threads (the caller runs i = 0).
static void parallel(int threads, void (*body)(void *, int), void *context) {
    pthread_t ids[64];
    Job jobs[64];
    for (int i = 1; i < threads; i++) {
        jobs[i] = (Job){body, context, i};
        pthread_create(&ids[i], NULL, run_job, &jobs[i]);
    }
    body(context, 0);
    for (int i = 1; i < threads; i++) pthread_join(ids[i], NULL);
}

/// Signals [lo, hi) of `count` split into `parts` nearly equal contiguous shares, on multiples of `align`.
static void share(size_t count, int parts, int i, size_t align, size_t *lo, size_t *hi) {
    size_t units = (count + align - 1) / align;
    *lo = units * (size_t)i / (size_t)parts * align;
    *hi = units * (size_t)(i + 1) / (size_t)parts * align;
    if (*lo > count) *lo = count;
    if (*hi > count) *hi = count;
}

// MARK: FFTW on contiguous signals

typedef struct {
    int threads;
    size_t n, channels, stride_in, stride_out;
    float *in, *out;  // contiguous signals, each thread its share
    fftwf_plan plans[64];
    int r2c;
} Plain;

static void plain_body(void *p, int i) {
    Plain *c = p;
    size_t lo, hi;
    share(c->channels, c->threads, i, 1, &lo, &hi);
    if (hi <= lo) return;
    if (c->r2c) {
        fftwf_execute_dft_r2c(c->plans[i], c->in + lo * c->stride_in, (fftwf_complex *)(c->out + lo * c->stride_out));
    } else {
        fftwf_execute_r2r(c->plans[i], c->in + lo * c->stride_in, c->out + lo * c->stride_out);
    }
}

/// Best time of FFTW on contiguous signals; `r2c` picks r2c, else REDFT10. Prints the planning time too.
static double plain_fftw(size_t n, size_t channels, int threads, int reps, int r2c, unsigned flags) {
    Plain c = {.threads = threads, .n = n, .channels = channels, .r2c = r2c};
    c.stride_in = round16(n);
    c.stride_out = r2c ? round16(2 * (n / 2 + 1)) : round16(n);
    c.in = fftwf_malloc(sizeof(float) * c.stride_in * channels);
    c.out = fftwf_malloc(sizeof(float) * c.stride_out * channels);
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        size_t lo, hi;
        share(channels, threads, i, 1, &lo, &hi);
        int count = (int)(hi - lo), len = (int)n;
        if (count == 0) continue;
        if (r2c) {
            c.plans[i] = fftwf_plan_many_dft_r2c(
                1, &len, count, c.in + lo * c.stride_in, NULL, 1, (int)c.stride_in,
                (fftwf_complex *)(c.out + lo * c.stride_out), NULL, 1, (int)(c.stride_out / 2), flags);
        } else {
            fftw_r2r_kind kind = FFTW_REDFT10;
            c.plans[i] = fftwf_plan_many_r2r(
                1, &len, count, c.in + lo * c.stride_in, NULL, 1, (int)c.stride_in, c.out + lo * c.stride_out,
                NULL, 1, (int)c.stride_out, &kind, flags);
        }
    }
    double planning = now() - t0;
    for (size_t i = 0; i < c.stride_in * channels; i++) c.in[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double s = now();
        parallel(threads, plain_body, &c);
        double e = now() - s;
        if (r > 0 && e < best) best = e;
    }
    printf("  fftw %-8s %s  %.4f s   (planning %.3f s)\n", r2c ? "r2c" : "redft10",
           flags == FFTW_MEASURE ? "MEASURE " : "ESTIMATE", best, planning);
    for (int i = 0; i < threads; i++) {
        size_t lo, hi;
        share(channels, threads, i, 1, &lo, &hi);
        if (hi > lo) fftwf_destroy_plan(c.plans[i]);
    }
    fftwf_free(c.in);
    fftwf_free(c.out);
    return best;
}

// MARK: kvstat's kernels

typedef struct {
    int threads;
    size_t n, channels, chunk, stride;
    const float *panel;
    const float *twiddles;
    fftwf_plan plan, tail;
    float *buffers[64];
    float *spectra[64];  // == buffers in place
    double *energy[64];
} Kernels;

static void kernels_body(void *p, int i) {
    Kernels *c = p;
    size_t lo, hi;
    share(c->channels, c->threads, i, c->chunk, &lo, &hi);
    float *buffer = c->buffers[i];
    memset(c->energy[i], 0, sizeof(double) * c->n);
    for (size_t s = lo; s < hi; s += c->chunk) {
        size_t count = hi - s < c->chunk ? hi - s : c->chunk;
        kv_dct_gather(c->panel, c->n, c->channels, s, count, buffer, c->stride);
        fftwf_execute_dft_r2c(count == c->chunk ? c->plan : c->tail, buffer, (fftwf_complex *)c->spectra[i]);
        kv_dct_energies(c->spectra[i], c->n, count, c->stride, c->twiddles, 1.0, c->energy[i]);
    }
}

static double kernels(size_t n, size_t channels, int threads, int reps, size_t chunk, unsigned flags, int inplace) {
    Kernels c = {.threads = threads, .n = n, .channels = channels, .chunk = chunk};
    c.stride = round16(2 * (n / 2 + 1));
    float *panel = malloc(sizeof(float) * n * channels);
    double truth = 0;
    for (size_t i = 0; i < n * channels; i++) {
        panel[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        truth += (double)panel[i] * panel[i];
    }
    c.panel = panel;
    float *twiddles = malloc(sizeof(float) * 2 * (n / 2 + 1));
    kv_dct_twiddles(n, twiddles);
    c.twiddles = twiddles;
    for (int i = 0; i < threads; i++) {
        c.buffers[i] = fftwf_malloc(sizeof(float) * c.stride * chunk);
        c.spectra[i] = inplace ? c.buffers[i] : fftwf_malloc(sizeof(float) * c.stride * chunk);
        c.energy[i] = malloc(sizeof(double) * n);
    }
    int len = (int)n;
    double t0 = now();
    c.plan = fftwf_plan_many_dft_r2c(
        1, &len, (int)chunk, c.buffers[0], NULL, 1, (int)c.stride, (fftwf_complex *)c.spectra[0], NULL, 1,
        (int)(c.stride / 2), flags);
    size_t rest = channels % chunk;
    c.tail = rest == 0 ? NULL
                       : fftwf_plan_many_dft_r2c(
                             1, &len, (int)rest, c.buffers[0], NULL, 1, (int)c.stride,
                             (fftwf_complex *)c.spectra[0], NULL, 1, (int)(c.stride / 2), flags);
    double planning = now() - t0;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double s = now();
        parallel(threads, kernels_body, &c);
        double e = now() - s;
        if (r > 0 && e < best) best = e;
    }
    double total = 0;
    for (int i = 0; i < threads; i++)
        for (size_t k = 0; k < n; k++) total += c.energy[i][k];
    printf("  kvstat kernels %s %s chunk %zu  %.4f s   (planning %.3f s; energy/Σx² − 1 = %.1e)\n",
           flags == FFTW_MEASURE ? "MEASURE " : "ESTIMATE", inplace ? "in place    " : "out of place", chunk, best,
           planning, total / truth - 1);
    fftwf_destroy_plan(c.plan);
    if (c.tail) fftwf_destroy_plan(c.tail);
    for (int i = 0; i < threads; i++) {
        if (!inplace) fftwf_free(c.spectra[i]);
        fftwf_free(c.buffers[i]);
        free(c.energy[i]);
    }
    free(panel);
    free(twiddles);
    return best;
}

int main(int argc, char **argv) {
    size_t n = 32768, channels = 1024, chunk = 16;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 5, opt;
    unsigned kernel_flags = FFTW_ESTIMATE;
    while ((opt = getopt(argc, argv, "n:c:t:r:s:m")) != -1) {
        switch (opt) {
        case 'n': n = strtoul(optarg, NULL, 10); break;
        case 'c': channels = strtoul(optarg, NULL, 10); break;
        case 't': threads = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 's': chunk = strtoul(optarg, NULL, 10); break;
        case 'm': kernel_flags = FFTW_MEASURE; break;
        default: fprintf(stderr, "usage: %s [-n N] [-c channels] [-t threads] [-r reps] [-s chunk] [-m]\n", argv[0]);
                 return 64;
        }
    }
    if (threads < 1 || threads > 64 || n < 1 || channels < 1 || chunk < 1) return 64;
    printf("%zu signals of %zu samples, %d threads, best of %d (avx2: %d)\n", channels, n, threads, reps,
           __builtin_cpu_supports("avx2"));
    double r2c = plain_fftw(n, channels, threads, reps, 1, FFTW_MEASURE);
    double dct = plain_fftw(n, channels, threads, reps, 0, FFTW_MEASURE);
    double in_place = kernels(n, channels, threads, reps, chunk, kernel_flags, 1);
    double out_of_place = kernels(n, channels, threads, reps, chunk, kernel_flags, 0);
    double ours = in_place < out_of_place ? in_place : out_of_place;
    printf("fftw_r2c_s %.5f\nfftw_redft10_s %.5f\nkernels_s %.5f\n", r2c, dct, ours);
    return 0;
}

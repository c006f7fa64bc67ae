// Micro-benchmark of the outliers-stage kernels (Sources/CKernels/MomentKernels.c) on 4096 × 1024 float32
// blocks: G values/s of channel moments, row norms, |x| column sums (position profile) and the other block
// loops, on 1 thread and on 2 threads split as kvstat splits them (channel ranges for moments and column sums,
// row ranges for norms). "warm": the same block every time (it stays in L3, as a block does between being read
// and folded); "cold": 8 blocks in turn (128 MiB, beyond L3). Not a test: it prints numbers only.
// Build and run: Benchmarks/moment_kernels_bench.sh
#include "MomentKernels.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROWS = 4096, COLS = 1024, BLOCKS = 8, THREADS = 2 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct {
    const float *block;
    int kind;  // 0 moments, 1 norms, 2 abs column sums, 3 moments + norms
    size_t piece, pieces;
    float *max_abs;
    double *mean, *m2, *m3, *m4, *norms, *sums;
} Job;

static void run_piece(Job *job) {
    size_t width = COLS / job->pieces, first = job->piece * width;
    size_t rows = ROWS / job->pieces, row0 = job->piece * rows;
    if (job->kind == 0 || job->kind == 3)
        kv_channel_moments(
            job->block, ROWS, COLS, first, width, NULL, job->max_abs, job->mean, job->m2, job->m3, job->m4);
    if (job->kind == 1 || job->kind == 3)
        kv_row_sum_squares(job->block + row0 * COLS, rows, COLS, job->norms + row0);
    if (job->kind == 2) kv_column_sums(job->block, ROWS, COLS, first, width, 1, job->sums);
}

static void *thread_main(void *arg) {
    run_piece(arg);
    return NULL;
}

/// Seconds per block (best of 5 rounds of `repeats` blocks) of kernel `kind` on `pieces` threads.
static double time_kind(float **blocks, int nblocks, int kind, size_t pieces, int repeats, Job *base) {
    double best = 1e30;
    for (int round = 0; round < 5; round++) {
        double start = now();
        for (int i = 0; i < repeats; i++) {
            pthread_t threads[THREADS];
            Job jobs[THREADS];
            for (size_t p = 0; p < pieces; p++) {
                jobs[p] = *base;
                jobs[p].block = blocks[i % nblocks];
                jobs[p].kind = kind;
                jobs[p].piece = p;
                jobs[p].pieces = pieces;
            }
            for (size_t p = 1; p < pieces; p++) pthread_create(&threads[p], NULL, thread_main, &jobs[p]);
            run_piece(&jobs[0]);
            for (size_t p = 1; p < pieces; p++) pthread_join(threads[p], NULL);
        }
        double t = (now() - start) / repeats;
        if (t < best) best = t;
    }
    return best;
}

int main(void) {
    FILE *cpu = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (cpu && fgets(line, sizeof line, cpu)) {
        if (strncmp(line, "model name", 10) == 0) {
            printf("CPU: %s", strchr(line, ':') + 2);
            break;
        }
    }
    if (cpu) fclose(cpu);
    const char *builds[] = {"baseline (SSE2)", "AVX2+FMA", "AVX-512"};
    printf("kernels: %s build; block %d × %d float32 (%.1f M values)\n", builds[kv_moment_kernels_instruction_set()],
           ROWS, COLS, ROWS * COLS / 1e6);

    float *blocks[BLOCKS];
    unsigned state = 12345;
    for (int b = 0; b < BLOCKS; b++) {
        blocks[b] = malloc(sizeof(float) * ROWS * COLS);
        for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
            state = state * 1664525u + 1013904223u;
            float u = ((state >> 8) + 0.5f) / 16777216.0f;
            // heavy-tailed: a logistic-like value with occasional large outliers
            float v = logf(u / (1 - u));
            blocks[b][i] = (i % 97 == 0) ? 40 * v : v + 0.01f * (float)(i % COLS);
        }
    }
    Job base = {0};
    base.max_abs = calloc(COLS, sizeof(float));
    base.mean = calloc(COLS, sizeof(double));
    base.m2 = calloc(COLS, sizeof(double));
    base.m3 = calloc(COLS, sizeof(double));
    base.m4 = calloc(COLS, sizeof(double));
    base.norms = calloc(ROWS, sizeof(double));
    base.sums = calloc(COLS, sizeof(double));

    const char *names[] = {"channel moments", "row norms", "|x| column sums", "moments + norms"};
    double values = (double)ROWS * COLS;
    printf("%-18s %12s %12s %12s %12s\n", "G values/s", "warm 1 thr", "warm 2 thr", "cold 1 thr", "cold 2 thr");
    for (int kind = 0; kind < 4; kind++) {
        double w1 = time_kind(blocks, 1, kind, 1, 20, &base);
        double w2 = time_kind(blocks, 1, kind, 2, 20, &base);
        double c1 = time_kind(blocks, BLOCKS, kind, 1, 16, &base);
        double c2 = time_kind(blocks, BLOCKS, kind, 2, 16, &base);
        printf("%-18s %12.2f %12.2f %12.2f %12.2f\n", names[kind], values / w1 / 1e9, values / w2 / 1e9,
               values / c1 / 1e9, values / c2 / 1e9);
    }
    // One-thread loops of the read and Gram stages.
    double best = 1e30;
    int64_t excluded[ROWS], non_finite = 0;
    for (int round = 0; round < 5; round++) {
        double start = now();
        for (int i = 0; i < 20; i++) kv_zero_nonfinite_rows(blocks[0], ROWS, COLS, excluded, &non_finite);
        double t = (now() - start) / 20;
        if (t < best) best = t;
    }
    printf("%-18s %12.2f  (1 thread, warm)\n", "non-finite scan", values / best / 1e9);
    best = 1e30;
    volatile float sink = 0;
    for (int round = 0; round < 5; round++) {
        double start = now();
        for (int i = 0; i < 20; i++) sink += kv_max_abs(blocks[0], (size_t)ROWS * COLS);
        double t = (now() - start) / 20;
        if (t < best) best = t;
    }
    printf("%-18s %12.2f  (1 thread, warm)\n", "max |x|", values / best / 1e9);
    (void)sink;
    // Moments + norms with each build this CPU runs.
    for (int level = kv_moment_kernels_instruction_set(); level >= 0; level--) {
        kv_moment_kernels_limit(level);
        double w1 = time_kind(blocks, 1, 3, 1, 20, &base);
        double w2 = time_kind(blocks, 1, 3, 2, 20, &base);
        printf("moments + norms, %-15s build: %.2f (1 thread), %.2f (2 threads) G values/s, warm\n",
               builds[level], values / w1 / 1e9, values / w2 / 1e9);
    }
    return 0;
}

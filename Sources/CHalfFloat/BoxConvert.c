// Conversion of a stored box of float16 / bfloat16 / float32 elements to float32 rows, fused with the
// transposition from the stored axis order to [tokens, heads × head_dim]; see kv_convert_box in CHalfFloat.h.
// The contiguous runs go through HalfFloat.c's converters (F16C when the CPU has it).
#include "CHalfFloat.h"
#include <string.h>

/// `n` contiguous native-order elements of `format` at `src` to `n` contiguous floats at `dst`.
static void run_contiguous(int format, const void *src, float *dst, size_t n) {
    switch (format) {
    case KV_BOX_FLOAT16:
        kv_half_to_float((const uint16_t *)src, dst, n);
        return;
    case KV_BOX_BFLOAT16:
        kv_bfloat16_to_float((const uint16_t *)src, dst, n);
        return;
    default:
        memcpy(dst, src, n * sizeof(float));
        return;
    }
}

enum { TILE = 512 };

/// `n` elements of `format` at `src` (every `ss`-th stored element) to every `ds`-th float at `dst`, swapping
/// bytes when `swap`. Contiguous, unswapped runs convert straight into `dst`; the others go through an L1 tile.
static void run_any(int format, int swap, const unsigned char *src, long ss, float *dst, long ds, size_t n) {
    size_t width = format == KV_BOX_FLOAT32 ? 4 : 2;
    if (!swap && ss == 1 && ds == 1) {
        run_contiguous(format, src, dst, n);
        return;
    }
    uint32_t raw[TILE];  // TILE stored elements, packed at their own width
    float converted[TILE];
    for (size_t start = 0; start < n; start += TILE) {
        size_t m = n - start < TILE ? n - start : TILE;
        const unsigned char *s = src + (long)start * ss * (long)width;
        if (width == 2) {
            uint16_t *t = (uint16_t *)raw;
            for (size_t i = 0; i < m; i++) {
                uint16_t v;
                memcpy(&v, s + (long)i * ss * 2, 2);
                t[i] = swap ? (uint16_t)__builtin_bswap16(v) : v;
            }
        } else {
            for (size_t i = 0; i < m; i++) {
                uint32_t v;
                memcpy(&v, s + (long)i * ss * 4, 4);
                raw[i] = swap ? __builtin_bswap32(v) : v;
            }
        }
        float *d = dst + (long)start * ds;
        if (ds == 1) {
            run_contiguous(format, raw, d, m);
        } else {
            run_contiguous(format, raw, converted, m);
            for (size_t i = 0; i < m; i++) d[(long)i * ds] = converted[i];
        }
    }
}

int kv_convert_box(int format, int big_endian, const void *src, const long *src_strides, float *dst,
                   const long *dst_strides, const long *counts, int rank) {
    if (rank < 0 || rank > KV_BOX_MAX_RANK || format < KV_BOX_FLOAT16 || format > KV_BOX_FLOAT32) return -1;
    long c[KV_BOX_MAX_RANK], ss[KV_BOX_MAX_RANK], ds[KV_BOX_MAX_RANK];
    int r = 0;
    for (int k = 0; k < rank; k++) {
        if (counts[k] <= 0) return 0;  // an empty box
        if (counts[k] == 1) continue;  // contributes no offset
        // Merge into the previous dimension when both sides are contiguous across the boundary.
        if (r > 0 && ss[r - 1] == counts[k] * src_strides[k] && ds[r - 1] == counts[k] * dst_strides[k]) {
            c[r - 1] *= counts[k];
            ss[r - 1] = src_strides[k];
            ds[r - 1] = dst_strides[k];
            continue;
        }
        c[r] = counts[k];
        ss[r] = src_strides[k];
        ds[r] = dst_strides[k];
        r++;
    }
    long width = format == KV_BOX_FLOAT32 ? 4 : 2;
    const unsigned char *base = (const unsigned char *)src;
    if (r == 0) {
        run_any(format, big_endian, base, 1, dst, 1, 1);
        return 0;
    }
    // Odometer over the outer dimensions; the innermost one is a run.
    long index[KV_BOX_MAX_RANK] = {0};
    long so = 0, dof = 0;
    int inner = r - 1;
    for (;;) {
        run_any(format, big_endian, base + so * width, ss[inner], dst + dof, ds[inner], (size_t)c[inner]);
        int k = inner - 1;
        while (k >= 0) {
            index[k]++;
            so += ss[k];
            dof += ds[k];
            if (index[k] < c[k]) break;
            so -= ss[k] * c[k];
            dof -= ds[k] * c[k];
            index[k] = 0;
            k--;
        }
        if (k < 0) return 0;
    }
}

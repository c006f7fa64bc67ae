// CDeflate: libdeflate (Debian's libdeflate-dev), which inflates HDF5's gzip chunks about 1.7x faster than zlib,
// plus the inverse of HDF5's shuffle filter. Only HDF5Kit imports this module (raw chunk decoding, so that
// compressed dumps are decoded on every core instead of in libhdf5's single-threaded filter pipeline).
#ifndef KVSTAT_CDEFLATE_SHIM_H
#define KVSTAT_CDEFLATE_SHIM_H

#include <libdeflate.h>
#include <stddef.h>
#include <string.h>

/// Undoes HDF5's shuffle filter (H5Z_filter_shuffle) on `nbytes` bytes of `element_size`-byte elements: the
/// shuffled buffer holds byte 0 of every element, then byte 1 of every element, and so on; the trailing
/// nbytes % element_size bytes were left in place. `src` and `dst` must not overlap.
static inline void kv_unshuffle(const unsigned char *restrict src, unsigned char *restrict dst, size_t nbytes,
                                size_t element_size) {
    size_t elements = element_size > 0 ? nbytes / element_size : 0;
    if (element_size <= 1 || elements <= 1) {
        memcpy(dst, src, nbytes);
        return;
    }
    if (element_size == 2) {
        const unsigned char *lo = src, *hi = src + elements;
        for (size_t i = 0; i < elements; i++) {
            dst[2 * i] = lo[i];
            dst[2 * i + 1] = hi[i];
        }
    } else {
        for (size_t b = 0; b < element_size; b++) {
            const unsigned char *plane = src + b * elements;
            for (size_t i = 0; i < elements; i++) dst[i * element_size + b] = plane[i];
        }
    }
    size_t done = elements * element_size;
    memcpy(dst + done, src + done, nbytes - done);
}

#endif

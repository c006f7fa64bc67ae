// Half and bfloat16 to float32 conversion; see CHalfFloat.h.
#include "CHalfFloat.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx,f16c")))
static void half_to_float_f16c(const uint16_t *src, float *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    if (i < count) {
        uint16_t tail[8] = {0};
        float out[8];
        memcpy(tail, src + i, (count - i) * sizeof(uint16_t));
        _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tail)));
        memcpy(dst + i, out, (count - i) * sizeof(float));
    }
}
#endif

/// Portable conversion of one binary16 bit pattern, exact for normals, subnormals, infinities and NaNs.
static float half_to_float_one(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do { mant <<= 1; e++; } while ((mant & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int kv_half_uses_f16c(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#else
    return 0;
#endif
}

void kv_half_to_float(const uint16_t *src, float *dst, size_t count) {
#if defined(__x86_64__)
    if (kv_half_uses_f16c()) {
        half_to_float_f16c(src, dst, count);
        return;
    }
#endif
    for (size_t i = 0; i < count; i++) dst[i] = half_to_float_one(src[i]);
}

void kv_bfloat16_to_float(const uint16_t *src, float *dst, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, sizeof(float));
    }
}

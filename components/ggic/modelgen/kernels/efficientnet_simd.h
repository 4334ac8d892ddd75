/* Portable SIMD helpers for the EfficientNet kernels.
 *
 * GCC/Clang vector extensions: the width follows the target the library is compiled for
 * (-march=native here; a device build passes its own flags), so the same source gives
 * 512-bit code on AVX-512, 256-bit on AVX2, 128-bit on NEON, and plain scalar code where the
 * target has no SIMD (the compiler lowers the vector operations). No intrinsics.
 *
 * GGIC_VL   floats per vector
 * GGIC_MR   rows (pixels) of the pointwise micro-kernel, sized so that GGIC_MR x 3 vector
 *           accumulators fit in the register file.
 */
#ifndef GGIC_EFFICIENTNET_SIMD_H
#define GGIC_EFFICIENTNET_SIMD_H

#include <stdint.h>

#if defined(__AVX512F__)
#define GGIC_VL 16
#define GGIC_MR 8
#elif defined(__AVX__)
#define GGIC_VL 8
#define GGIC_MR 4
#elif defined(__aarch64__)
#define GGIC_VL 4
#define GGIC_MR 8
#else
#define GGIC_VL 4
#define GGIC_MR 4
#endif

#define GGIC_HL (GGIC_VL / 2)

typedef float vf __attribute__((vector_size(GGIC_VL * 4)));
typedef float vf_u __attribute__((vector_size(GGIC_VL * 4), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(GGIC_VL * 4)));
/* half-width vector, for channel counts that are a multiple of GGIC_VL / 2 only */
typedef float vh __attribute__((vector_size(GGIC_HL * 4)));
typedef float vh_u __attribute__((vector_size(GGIC_HL * 4), aligned(4), may_alias));
typedef int32_t vhi __attribute__((vector_size(GGIC_HL * 4)));

static inline vf vf_load(const float* p) { return *(const vf_u*)p; }
static inline void vf_store(float* p, vf v) { *(vf_u*)p = v; }
static inline vf vf_splat(float a) { return (vf){0} + a; }
static inline vh vh_load(const float* p) { return *(const vh_u*)p; }
static inline void vh_store(float* p, vh v) { *(vh_u*)p = v; }
static inline vh vh_splat(float a) { return (vh){0} + a; }

/* min(max(v, 0), 6) with compares and masks (vector ?: is C++ only) */
static inline vf vf_relu6(vf v) {
  const vf zero = vf_splat(0.0f), six = vf_splat(6.0f);
  vi pos = v > zero;
  v = (vf)((vi)v & pos);
  vi below = v < six;
  return (vf)(((vi)v & below) | ((vi)six & ~below));
}

static inline vh vh_relu6(vh v) {
  const vh zero = vh_splat(0.0f), six = vh_splat(6.0f);
  vhi pos = v > zero;
  v = (vh)((vhi)v & pos);
  vhi below = v < six;
  return (vh)(((vhi)v & below) | ((vhi)six & ~below));
}

static inline float f_relu6(float v) {
  v = v > 0.0f ? v : 0.0f;
  return v < 6.0f ? v : 6.0f;
}

#endif

/* Shared by the EfficientNet kernels: OpenMP shims, work splitting, argument checks. */
#ifndef GGIC_EFFICIENTNET_COMMON_H
#define GGIC_EFFICIENTNET_COMMON_H

#include <stdint.h>

#include "efficientnet_simd.h"
#include "tvm_abi.h"

#ifdef _OPENMP
#include <omp.h>
#define GGIC_PARALLEL _Pragma("omp parallel")
static inline int ggic_thread_id(void) { return omp_get_thread_num(); }
static inline int ggic_num_threads(void) { return omp_get_num_threads(); }
#else
#define GGIC_PARALLEL
static inline int ggic_thread_id(void) { return 0; }
static inline int ggic_num_threads(void) { return 1; }
#endif

#define GGIC_PRAGMA(x) _Pragma(#x)
#define GGIC_UNROLL GGIC_PRAGMA(GCC unroll 16)

/* Split [0, n) into `parts` chunks whose boundaries are multiples of `grain` (except the end);
 * chunk `i` is [*begin, *end). */
static inline void ggic_split(int64_t n, int64_t grain, int parts, int i, int64_t* begin,
                              int64_t* end) {
  int64_t units = (n + grain - 1) / grain;
  int64_t lo = units * i / parts, hi = units * (i + 1) / parts;
  *begin = lo * grain < n ? lo * grain : n;
  *end = hi * grain < n ? hi * grain : n;
}

#define GGIC_CHECK_F32(kernel, t, nd)                                                   \
  do {                                                                                  \
    if (!ggic_is_f32(t) || (t)->ndim != (nd) || (t)->strides != NULL)                   \
      GGIC_FAILF("%s: expected a compact float32 tensor of rank %d", (kernel), (nd));    \
  } while (0)

#endif

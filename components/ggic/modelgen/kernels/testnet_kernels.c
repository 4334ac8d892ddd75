/*
 * Kernels of the two small test networks (ggic.modelgen.testnets).
 *
 * All tensors are compact float32 with batch size 1 or more in dimension 0. Sums are
 * accumulated in double so the results match a float64 numpy reference closely.
 * Compile with -DGGIC_POISON_VALUE=<float> to make the first kernel of each network fail
 * (through __TVMAPISetLastError) when input element [0] equals that value.
 */
#include <math.h>

#include "tvm_abi.h"

#ifdef GGIC_POISON_VALUE
#define GGIC_POISON_CHECK(kernel, x)                                                   \
  do {                                                                                 \
    if (((const float*)(x))[0] == (float)(GGIC_POISON_VALUE))                           \
      GGIC_FAILF("%s found the poison value %g in input element 0 (test model error)", \
                 (kernel), (double)(GGIC_POISON_VALUE));                                \
  } while (0)
#else
#define GGIC_POISON_CHECK(kernel, x) ((void)0)
#endif

#define GGIC_REQUIRE_F32(kernel, t)                                         \
  do {                                                                      \
    if (!ggic_is_f32(t)) GGIC_FAILF("%s expects float32 tensors", (kernel)); \
  } while (0)

/* out[n,h,w,c] = (x[n,h,w,c] - mean[c]) / std[c]  (NHWC, raw 0..255 -> normalised) */
GGIC_KERNEL(ggic_tn_normalize_nhwc) {
  static const char* kName = "ggic_tn_normalize_nhwc";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 4);
  const DLTensor *x = GGIC_TENSOR(0), *mean = GGIC_TENSOR(1), *std = GGIC_TENSOR(2);
  DLTensor* out = GGIC_TENSOR(3);
  GGIC_REQUIRE_F32(kName, x);
  if (x->ndim != 4 || ggic_numel(mean) != x->shape[3] || ggic_numel(std) != x->shape[3])
    GGIC_FAILF("%s: input must be NHWC with one mean/std per channel", kName);
  const float* xd = ggic_data(x);
  GGIC_POISON_CHECK(kName, xd);
  const float* m = ggic_data(mean);
  const float* s = ggic_data(std);
  float* o = ggic_data(out);
  const int64_t channels = x->shape[3], n = ggic_numel(x);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % channels;
    o[i] = (xd[i] - m[c]) / s[c];
  }
  return 0;
}

/* Adaptive average pooling of H x W to a G x G grid: bin i spans [floor(iH/G), ceil((i+1)H/G)). */
static void pool_bins(int64_t size, int64_t grid, int64_t i, int64_t* start, int64_t* end) {
  *start = (i * size) / grid;
  *end = ((i + 1) * size + grid - 1) / grid;
}

/* x [N,H,W,C] -> out [N,G,G,C] */
GGIC_KERNEL(ggic_tn_avgpool_grid_nhwc) {
  static const char* kName = "ggic_tn_avgpool_grid_nhwc";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 2);
  const DLTensor* x = GGIC_TENSOR(0);
  DLTensor* out = GGIC_TENSOR(1);
  GGIC_REQUIRE_F32(kName, x);
  if (x->ndim != 4 || out->ndim != 4 || out->shape[3] != x->shape[3])
    GGIC_FAILF("%s: expected NHWC input and output", kName);
  const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
  const int64_t GH = out->shape[1], GW = out->shape[2];
  const float* xd = ggic_data(x);
  float* o = ggic_data(out);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t gy = 0; gy < GH; ++gy)
      for (int64_t gx = 0; gx < GW; ++gx) {
        int64_t y0, y1, x0, x1;
        pool_bins(H, GH, gy, &y0, &y1);
        pool_bins(W, GW, gx, &x0, &x1);
        for (int64_t c = 0; c < C; ++c) {
          double sum = 0.0;
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t xx = x0; xx < x1; ++xx) sum += xd[((n * H + y) * W + xx) * C + c];
          o[((n * GH + gy) * GW + gx) * C + c] = (float)(sum / (double)((y1 - y0) * (x1 - x0)));
        }
      }
  return 0;
}

/* x [N,C,H,W] -> out [N,C,G,G] */
GGIC_KERNEL(ggic_tn_avgpool_grid_nchw) {
  static const char* kName = "ggic_tn_avgpool_grid_nchw";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 2);
  const DLTensor* x = GGIC_TENSOR(0);
  DLTensor* out = GGIC_TENSOR(1);
  GGIC_REQUIRE_F32(kName, x);
  if (x->ndim != 4 || out->ndim != 4 || out->shape[1] != x->shape[1])
    GGIC_FAILF("%s: expected NCHW input and output", kName);
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  const int64_t GH = out->shape[2], GW = out->shape[3];
  const float* xd = ggic_data(x);
  GGIC_POISON_CHECK(kName, xd);
  float* o = ggic_data(out);
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t gy = 0; gy < GH; ++gy)
      for (int64_t gx = 0; gx < GW; ++gx) {
        int64_t y0, y1, x0, x1;
        pool_bins(H, GH, gy, &y0, &y1);
        pool_bins(W, GW, gx, &x0, &x1);
        double sum = 0.0;
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t xx = x0; xx < x1; ++xx) sum += xd[(nc * H + y) * W + xx];
        o[(nc * GH + gy) * GW + gx] = (float)(sum / (double)((y1 - y0) * (x1 - x0)));
      }
  return 0;
}

/* Per batch row: out = (x - mean) / sqrt(var + 1e-6), flattening all but dimension 0. */
GGIC_KERNEL(ggic_tn_standardize) {
  static const char* kName = "ggic_tn_standardize";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 2);
  const DLTensor* x = GGIC_TENSOR(0);
  DLTensor* out = GGIC_TENSOR(1);
  GGIC_REQUIRE_F32(kName, x);
  if (ggic_numel(x) != ggic_numel(out)) GGIC_FAILF("%s: input and output sizes differ", kName);
  const int64_t N = x->shape[0], K = ggic_numel(x) / N;
  const float* xd = ggic_data(x);
  float* o = ggic_data(out);
  for (int64_t n = 0; n < N; ++n) {
    const float* row = xd + n * K;
    double mean = 0.0, var = 0.0;
    for (int64_t k = 0; k < K; ++k) mean += row[k];
    mean /= (double)K;
    for (int64_t k = 0; k < K; ++k) var += (row[k] - mean) * (row[k] - mean);
    const double inv = 1.0 / sqrt(var / (double)K + 1e-6);
    for (int64_t k = 0; k < K; ++k) o[n * K + k] = (float)((row[k] - mean) * inv);
  }
  return 0;
}

/* x [N,K] (any shape with N rows), w [M,K], b [M] -> out [N,M] = x w^T + b */
GGIC_KERNEL(ggic_tn_dense) {
  static const char* kName = "ggic_tn_dense";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 4);
  const DLTensor *x = GGIC_TENSOR(0), *w = GGIC_TENSOR(1), *b = GGIC_TENSOR(2);
  DLTensor* out = GGIC_TENSOR(3);
  GGIC_REQUIRE_F32(kName, x);
  const int64_t N = x->shape[0], K = ggic_numel(x) / N;
  if (w->ndim != 2 || w->shape[1] != K || ggic_numel(b) != w->shape[0] ||
      ggic_numel(out) != N * w->shape[0])
    GGIC_FAILF("%s: weight/bias/output shapes do not fit a %lld-feature input", kName,
               (long long)K);
  const int64_t M = w->shape[0];
  const float *xd = ggic_data(x), *wd = ggic_data(w), *bd = ggic_data(b);
  float* o = ggic_data(out);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      double acc = bd[m];
      for (int64_t k = 0; k < K; ++k) acc += (double)xd[n * K + k] * (double)wd[m * K + k];
      o[n * M + m] = (float)acc;
    }
  return 0;
}

GGIC_KERNEL(ggic_tn_relu) {
  static const char* kName = "ggic_tn_relu";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 2);
  const DLTensor* x = GGIC_TENSOR(0);
  GGIC_REQUIRE_F32(kName, x);
  const float* xd = ggic_data(x);
  float* o = ggic_data(GGIC_TENSOR(1));
  for (int64_t i = 0, n = ggic_numel(x); i < n; ++i) o[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
  return 0;
}

/* Softmax over the last dimension of x [N,M]. */
GGIC_KERNEL(ggic_tn_softmax) {
  static const char* kName = "ggic_tn_softmax";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 2);
  const DLTensor* x = GGIC_TENSOR(0);
  GGIC_REQUIRE_F32(kName, x);
  const int64_t M = x->shape[x->ndim - 1], N = ggic_numel(x) / M;
  const float* xd = ggic_data(x);
  float* o = ggic_data(GGIC_TENSOR(1));
  for (int64_t n = 0; n < N; ++n) {
    const float* row = xd + n * M;
    double top = row[0], sum = 0.0;
    for (int64_t m = 1; m < M; ++m) top = row[m] > top ? row[m] : top;
    for (int64_t m = 0; m < M; ++m) sum += exp((double)row[m] - top);
    for (int64_t m = 0; m < M; ++m) o[n * M + m] = (float)(exp((double)row[m] - top) / sum);
  }
  return 0;
}

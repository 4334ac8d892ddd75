/*
 * 1x1 convolution (NHWC) as a matrix multiply, with the bias, ReLU6 and the residual add of
 * an EfficientNet block fused in:
 *
 *     y[p, n] = act(bias[n] + sum_k x[p, k] * w[k, n] (+ res[p, n]))
 *
 * x [1,H,W,K] is a P x K matrix (P = H*W pixels), w is [K, N] (input-major, so a row of w is
 * contiguous in the output channels), y and res are P x N.
 *
 * The micro-kernel keeps a GGIC_MR x (NV vectors) block of y in registers and walks k:
 * per step it loads NV vectors of w and broadcasts GGIC_MR values of x. Column blocks are
 * 3, 2, 1 vectors, then a half vector (channel counts are multiples of 8), then scalars.
 * Rows come in blocks of GGIC_MR; the last block of a range overlaps the previous one
 * (recomputing a few rows is cheaper than a narrow tail), ranges shorter than GGIC_MR go row
 * by row. Requires y to alias neither x nor res (the graph's storage plan guarantees it).
 *
 * Two loop orders, both split over the two cores with OpenMP:
 * - rows outer (most layers): a thread takes a range of pixels and sweeps all of w, which
 *   stays in cache;
 * - columns outer (few pixels, large w: the 7x7 and 14x14 layers): a thread takes a range of
 *   output channels, so each core streams only its half of w once.
 */
#include "efficientnet_common.h"

#define PW_TILE(NAME, VT, LOAD, STORE, SPLAT, RELU, W, MR, NV)                                \
  static inline __attribute__((always_inline)) void NAME(                                    \
      const float* restrict x, int64_t ldx, const float* restrict w, int64_t ldw,            \
      const float* restrict bias, const float* restrict res, float* restrict y, int64_t ldy, \
      int64_t K, int act) {                                                                  \
    VT acc[MR][NV];                                                                          \
    GGIC_UNROLL for (int j = 0; j < NV; ++j) {                                               \
      VT b0 = LOAD(bias + j * W);                                                            \
      GGIC_UNROLL for (int r = 0; r < MR; ++r) acc[r][j] = b0;                               \
    }                                                                                        \
    for (int64_t k = 0; k < K; ++k) {                                                        \
      VT b[NV];                                                                              \
      GGIC_UNROLL for (int j = 0; j < NV; ++j) b[j] = LOAD(w + k * ldw + j * W);             \
      GGIC_UNROLL for (int r = 0; r < MR; ++r) {                                             \
        VT a = SPLAT(x[r * ldx + k]);                                                        \
        GGIC_UNROLL for (int j = 0; j < NV; ++j) acc[r][j] += a * b[j];                      \
      }                                                                                      \
    }                                                                                        \
    GGIC_UNROLL for (int r = 0; r < MR; ++r) {                                               \
      GGIC_UNROLL for (int j = 0; j < NV; ++j) {                                             \
        VT v = acc[r][j];                                                                    \
        if (res) v += LOAD(res + r * ldy + j * W);                                           \
        if (act) v = RELU(v);                                                                \
        STORE(y + r * ldy + j * W, v);                                                       \
      }                                                                                      \
    }                                                                                        \
  }

PW_TILE(tile_m_3, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, GGIC_MR, 3)
PW_TILE(tile_m_2, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, GGIC_MR, 2)
PW_TILE(tile_m_1, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, GGIC_MR, 1)
PW_TILE(tile_m_h, vh, vh_load, vh_store, vh_splat, vh_relu6, GGIC_HL, GGIC_MR, 1)
PW_TILE(tile_1_3, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, 1, 3)
PW_TILE(tile_1_2, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, 1, 2)
PW_TILE(tile_1_1, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, 1, 1)
PW_TILE(tile_1_h, vh, vh_load, vh_store, vh_splat, vh_relu6, GGIC_HL, 1, 1)

static void tile_scalar(const float* x, int64_t ldx, const float* w, int64_t ldw,
                        const float* bias, const float* res, float* y, int64_t ldy, int64_t K,
                        int act, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      float v = bias[j];
      for (int64_t k = 0; k < K; ++k) v += x[r * ldx + k] * w[k * ldw + j];
      if (res) v += res[r * ldy + j];
      y[r * ldy + j] = act ? f_relu6(v) : v;
    }
}

/* Rows [m, m + rows) (rows == GGIC_MR or 1) by columns [n0, n1). */
static inline void pw_row_block(const float* x, const float* w, const float* bias,
                                const float* res, float* y, int64_t m, int64_t rows, int64_t K,
                                int64_t N, int64_t n0, int64_t n1, int act) {
  const float* xm = x + m * K;
  const float* rm = res ? res + m * N : NULL;
  float* ym = y + m * N;
  int64_t n = n0;
#define PW_CALL(TILE, WIDTH)                                                              \
  do {                                                                                    \
    TILE(xm, K, w + n, N, bias + n, rm ? rm + n : NULL, ym + n, N, K, act);               \
    n += (WIDTH);                                                                         \
  } while (0)
  if (rows == GGIC_MR) {
    for (; n + 3 * GGIC_VL <= n1;) PW_CALL(tile_m_3, 3 * GGIC_VL);
    if (n + 2 * GGIC_VL <= n1) PW_CALL(tile_m_2, 2 * GGIC_VL);
    if (n + GGIC_VL <= n1) PW_CALL(tile_m_1, GGIC_VL);
    if (n + GGIC_HL <= n1) PW_CALL(tile_m_h, GGIC_HL);
  } else {
    for (; n + 3 * GGIC_VL <= n1;) PW_CALL(tile_1_3, 3 * GGIC_VL);
    if (n + 2 * GGIC_VL <= n1) PW_CALL(tile_1_2, 2 * GGIC_VL);
    if (n + GGIC_VL <= n1) PW_CALL(tile_1_1, GGIC_VL);
    if (n + GGIC_HL <= n1) PW_CALL(tile_1_h, GGIC_HL);
  }
#undef PW_CALL
  if (n < n1) tile_scalar(xm, K, w + n, N, bias + n, rm ? rm + n : NULL, ym + n, N, K, act, rows,
                          n1 - n);
}

/* Rows [m0, m1) by columns [n0, n1), rows in blocks of GGIC_MR. */
static void pw_block(const float* x, const float* w, const float* bias, const float* res,
                     float* y, int64_t m0, int64_t m1, int64_t K, int64_t N, int64_t n0,
                     int64_t n1, int act) {
  if (m1 - m0 < GGIC_MR) {
    for (int64_t m = m0; m < m1; ++m) pw_row_block(x, w, bias, res, y, m, 1, K, N, n0, n1, act);
    return;
  }
  for (int64_t m = m0; m < m1; m += GGIC_MR) {
    int64_t start = m + GGIC_MR <= m1 ? m : m1 - GGIC_MR; /* overlap the last block */
    pw_row_block(x, w, bias, res, y, start, GGIC_MR, K, N, n0, n1, act);
  }
}

/* Columns outer when few pixels meet a large weight matrix. */
static int columns_outer(int64_t P, int64_t K, int64_t N) {
  return P <= 256 && K * N >= 32 * 1024;
}

GGIC_EXPORT void ggic_effnet_pointwise(const float* x, const float* w, const float* bias,
                                       const float* res, float* y, int64_t P, int64_t K,
                                       int64_t N, int act) {
  const int by_columns = columns_outer(P, K, N);
  GGIC_PARALLEL {
    int t = ggic_thread_id(), nt = ggic_num_threads();
    int64_t begin, end;
    if (by_columns) {
      ggic_split(N, 3 * GGIC_VL, nt, t, &begin, &end);
      if (begin < end) {
        /* sweep the thread's columns one panel at a time: the panel of w stays in cache */
        for (int64_t n = begin; n < end; n += 3 * GGIC_VL) {
          int64_t stop = n + 3 * GGIC_VL < end ? n + 3 * GGIC_VL : end;
          pw_block(x, w, bias, res, y, 0, P, K, N, n, stop, act);
        }
      }
    } else {
      ggic_split(P, GGIC_MR, nt, t, &begin, &end);
      if (begin < end) pw_block(x, w, bias, res, y, begin, end, K, N, 0, N, act);
    }
  }
}

static int pointwise_kernel(const char* name, TVMValue* args, int* type_codes, int num_args,
                            int with_residual, int act) {
  GGIC_EXPECT_ARGS(name, with_residual ? 5 : 4);
  const DLTensor *x = GGIC_TENSOR(0), *w = GGIC_TENSOR(1), *b = GGIC_TENSOR(2);
  const DLTensor* res = with_residual ? GGIC_TENSOR(3) : NULL;
  DLTensor* y = GGIC_TENSOR(with_residual ? 4 : 3);
  GGIC_CHECK_F32(name, x, 4);
  GGIC_CHECK_F32(name, w, 2);
  GGIC_CHECK_F32(name, b, 1);
  GGIC_CHECK_F32(name, y, 4);
  const int64_t P = x->shape[0] * x->shape[1] * x->shape[2], K = x->shape[3], N = w->shape[1];
  if (w->shape[0] != K || b->shape[0] != N || y->shape[3] != N ||
      y->shape[0] * y->shape[1] * y->shape[2] != P)
    GGIC_FAILF("%s: shapes do not match (x [..,%lld], w [%lld,%lld], y [..,%lld])", name,
               (long long)K, (long long)w->shape[0], (long long)N, (long long)y->shape[3]);
  const float* rd = NULL;
  if (res) {
    GGIC_CHECK_F32(name, res, 4);
    if (ggic_numel(res) != P * N) GGIC_FAILF("%s: residual shape does not match", name);
    rd = ggic_data(res);
    if (rd == ggic_data(y)) GGIC_FAILF("%s: output must not alias the residual", name);
  }
  if (ggic_data(x) == ggic_data(y)) GGIC_FAILF("%s: output must not alias the input", name);
  ggic_effnet_pointwise(ggic_data(x), ggic_data(w), ggic_data(b), rd, ggic_data(y), P, K, N,
                        act);
  return 0;
}

/* (x, w, b, y): expansion and head convolutions */
GGIC_KERNEL(ggic_effnet_pw_relu6) {
  GGIC_UNUSED_ABI_ARGS();
  return pointwise_kernel("ggic_effnet_pw_relu6", args, type_codes, num_args, 0, 1);
}

/* (x, w, b, y): projection convolution without a residual */
GGIC_KERNEL(ggic_effnet_pw_linear) {
  GGIC_UNUSED_ABI_ARGS();
  return pointwise_kernel("ggic_effnet_pw_linear", args, type_codes, num_args, 0, 0);
}

/* (x, w, b, residual, y): projection convolution + the block's skip connection */
GGIC_KERNEL(ggic_effnet_pw_linear_add) {
  GGIC_UNUSED_ABI_ARGS();
  return pointwise_kernel("ggic_effnet_pw_linear_add", args, type_codes, num_args, 1, 0);
}

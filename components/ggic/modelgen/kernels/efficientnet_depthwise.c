/*
 * Depthwise k x k convolution (NHWC) with TensorFlow "same" padding, bias and ReLU6 fused:
 *
 *     y[oy, ox, c] = relu6(bias[c] + sum_{ky,kx} x[oy*s - top + ky, ox*s - left + kx, c]
 *                                                 * w[ky, kx, c])
 *
 * Taps outside the input read zeros (they are skipped). The padding is derived from the
 * shapes: out = ceil(in / s), total = max((out - 1) * s + k - in, 0), top = total / 2 (the odd
 * pixel goes to the bottom/right, as in TensorFlow; PyTorch's symmetric padding would shift
 * every stride-2 layer by a pixel).
 *
 * The stride is part of the kernel name (s1, s2); the kernel checks the shapes agree.
 *
 * Vectorised over channels (contiguous in NHWC); the channel loop is blocked by 4 vectors so a
 * block of w (k*k*4 vectors) stays in L1 while a row of outputs is computed. Output rows are
 * split between the cores.
 */
#include "efficientnet_common.h"

#define DW_CB (4 * GGIC_VL) /* channels per block */

typedef struct {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int64_t H, W, C, OH, OW;
  int k, stride, top, left, act;
} DwArgs;

/* One output row, channels [c0, c0 + NV*VL) with NV vectors (or a half vector). */
#define DW_ROW(NAME, VT, LOAD, STORE, RELU, W_, NV)                                         \
  static inline __attribute__((always_inline)) void NAME(const DwArgs* a, int64_t oy,      \
                                                         int64_t c0) {                     \
    const int64_t iy0 = oy * a->stride - a->top;                                            \
    const int ky0 = iy0 < 0 ? (int)-iy0 : 0;                                                \
    const int ky1 = iy0 + a->k > a->H ? (int)(a->H - iy0) : a->k;                           \
    const int64_t C = a->C, k = a->k;                                                       \
    VT bias[NV];                                                                            \
    GGIC_UNROLL for (int j = 0; j < NV; ++j) bias[j] = LOAD(a->bias + c0 + j * W_);         \
    for (int64_t ox = 0; ox < a->OW; ++ox) {                                                \
      const int64_t ix0 = ox * a->stride - a->left;                                         \
      const int kx0 = ix0 < 0 ? (int)-ix0 : 0;                                              \
      const int kx1 = ix0 + k > a->W ? (int)(a->W - ix0) : (int)k;                          \
      VT acc[NV];                                                                           \
      GGIC_UNROLL for (int j = 0; j < NV; ++j) acc[j] = bias[j];                            \
      for (int ky = ky0; ky < ky1; ++ky) {                                                  \
        const float* xr = a->x + ((iy0 + ky) * a->W + ix0) * C + c0;                        \
        const float* wr = a->w + (ky * k) * C + c0;                                         \
        for (int kx = kx0; kx < kx1; ++kx) {                                                \
          GGIC_UNROLL for (int j = 0; j < NV; ++j)                                          \
            acc[j] += LOAD(xr + kx * C + j * W_) * LOAD(wr + kx * C + j * W_);              \
        }                                                                                   \
      }                                                                                     \
      float* yp = a->y + (oy * a->OW + ox) * C + c0;                                        \
      GGIC_UNROLL for (int j = 0; j < NV; ++j) {                                            \
        VT v = acc[j];                                                                      \
        if (a->act) v = RELU(v);                                                            \
        STORE(yp + j * W_, v);                                                              \
      }                                                                                     \
    }                                                                                       \
  }

DW_ROW(dw_row_4, vf, vf_load, vf_store, vf_relu6, GGIC_VL, 4)
DW_ROW(dw_row_1, vf, vf_load, vf_store, vf_relu6, GGIC_VL, 1)
DW_ROW(dw_row_h, vh, vh_load, vh_store, vh_relu6, GGIC_HL, 1)

static void dw_row_scalar(const DwArgs* a, int64_t oy, int64_t c0, int64_t c1) {
  for (int64_t ox = 0; ox < a->OW; ++ox)
    for (int64_t c = c0; c < c1; ++c) {
      float v = a->bias[c];
      for (int ky = 0; ky < a->k; ++ky) {
        int64_t iy = oy * a->stride - a->top + ky;
        if (iy < 0 || iy >= a->H) continue;
        for (int kx = 0; kx < a->k; ++kx) {
          int64_t ix = ox * a->stride - a->left + kx;
          if (ix < 0 || ix >= a->W) continue;
          v += a->x[(iy * a->W + ix) * a->C + c] * a->w[(ky * a->k + kx) * a->C + c];
        }
      }
      a->y[(oy * a->OW + ox) * a->C + c] = a->act ? f_relu6(v) : v;
    }
}

static void dw_rows(const DwArgs* a, int64_t oy0, int64_t oy1) {
  int64_t c = 0;
  for (; c + DW_CB <= a->C; c += DW_CB)
    for (int64_t oy = oy0; oy < oy1; ++oy) dw_row_4(a, oy, c);
  for (; c + GGIC_VL <= a->C; c += GGIC_VL)
    for (int64_t oy = oy0; oy < oy1; ++oy) dw_row_1(a, oy, c);
  for (; c + GGIC_HL <= a->C; c += GGIC_HL)
    for (int64_t oy = oy0; oy < oy1; ++oy) dw_row_h(a, oy, c);
  if (c < a->C)
    for (int64_t oy = oy0; oy < oy1; ++oy) dw_row_scalar(a, oy, c, a->C);
}

static int same_pad_before(int64_t in, int64_t out, int k, int stride) {
  int64_t total = (out - 1) * stride + k - in;
  return total > 0 ? (int)(total / 2) : 0;
}

GGIC_EXPORT void ggic_effnet_depthwise(const float* x, const float* w, const float* bias,
                                       float* y, int64_t H, int64_t W, int64_t C, int64_t OH,
                                       int64_t OW, int k, int stride, int act) {
  DwArgs a = {x, w, bias, y, H, W, C, OH, OW, k, stride,
              same_pad_before(H, OH, k, stride), same_pad_before(W, OW, k, stride), act};
  GGIC_PARALLEL {
    int64_t begin, end;
    ggic_split(OH, 1, ggic_num_threads(), ggic_thread_id(), &begin, &end);
    if (begin < end) dw_rows(&a, begin, end);
  }
}

static int depthwise_kernel(const char* name, TVMValue* args, int* type_codes, int num_args,
                            int stride) {
  GGIC_EXPECT_ARGS(name, 4);
  const DLTensor *x = GGIC_TENSOR(0), *w = GGIC_TENSOR(1), *b = GGIC_TENSOR(2);
  DLTensor* y = GGIC_TENSOR(3);
  GGIC_CHECK_F32(name, x, 4);
  GGIC_CHECK_F32(name, w, 3);
  GGIC_CHECK_F32(name, b, 1);
  GGIC_CHECK_F32(name, y, 4);
  const int64_t H = x->shape[1], W = x->shape[2], C = x->shape[3];
  const int64_t OH = y->shape[1], OW = y->shape[2];
  const int64_t k = w->shape[0];
  if (x->shape[0] != 1 || y->shape[0] != 1 || w->shape[1] != k || w->shape[2] != C ||
      b->shape[0] != C || y->shape[3] != C || k < 1 || k > 15)
    GGIC_FAILF("%s: shapes do not match a depthwise convolution", name);
  if ((H + stride - 1) / stride != OH || (W + stride - 1) / stride != OW)
    GGIC_FAILF("%s: output %lldx%lld is not a stride-%d 'same' convolution of %lldx%lld", name,
               (long long)OH, (long long)OW, stride, (long long)H, (long long)W);
  if (ggic_data(x) == ggic_data(y)) GGIC_FAILF("%s: output must not alias the input", name);
  ggic_effnet_depthwise(ggic_data(x), ggic_data(w), ggic_data(b), ggic_data(y), H, W, C, OH, OW,
                        (int)k, stride, 1);
  return 0;
}

/* (x [1,H,W,C], w [k,k,C], b [C], y [1,H,W,C]): stride 1, ReLU6 */
GGIC_KERNEL(ggic_effnet_dw_s1_relu6) {
  GGIC_UNUSED_ABI_ARGS();
  return depthwise_kernel("ggic_effnet_dw_s1_relu6", args, type_codes, num_args, 1);
}

/* (x [1,H,W,C], w [k,k,C], b [C], y [1,ceil(H/2),ceil(W/2),C]): stride 2, ReLU6 */
GGIC_KERNEL(ggic_effnet_dw_s2_relu6) {
  GGIC_UNUSED_ABI_ARGS();
  return depthwise_kernel("ggic_effnet_dw_s2_relu6", args, type_codes, num_args, 2);
}

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
 * Vectorised over channels (contiguous in NHWC), in blocks of 2 vectors whose k*k weights stay
 * in L1 while the rows are computed; interior pixels go DW_PX at a time (one weight load per
 * tap for all of them, independent accumulator chains), border pixels one at a time with the
 * taps clipped. Output rows are split between the cores.
 */
#include "efficientnet_common.h"

#define DW_PX 4 /* output pixels per interior tile */

typedef struct {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int64_t H, W, C, OH, OW;
  int k, stride, top, left, act;
} DwArgs;

/* Output pixels [ox0, ox1) of row oy, channels [c0, c0 + NV*W_): one pixel at a time, taps
 * clipped to the input (used at the borders and for narrow rows). */
#define DW_PIXELS(NAME, VT, LOAD, STORE, RELU, W_, NV)                                      \
  static inline __attribute__((always_inline)) void NAME(                                  \
      const DwArgs* a, int64_t oy, int64_t ox0, int64_t ox1, int64_t c0, int ky0, int ky1) { \
    const int64_t iy0 = oy * a->stride - a->top, C = a->C;                                  \
    const int k = a->k;                                                                     \
    for (int64_t ox = ox0; ox < ox1; ++ox) {                                                \
      const int64_t ix0 = ox * a->stride - a->left;                                         \
      const int kx0 = ix0 < 0 ? (int)-ix0 : 0;                                              \
      const int kx1 = ix0 + k > a->W ? (int)(a->W - ix0) : k;                               \
      VT acc[NV];                                                                           \
      GGIC_UNROLL for (int j = 0; j < NV; ++j) acc[j] = LOAD(a->bias + c0 + j * W_);        \
      for (int ky = ky0; ky < ky1; ++ky) {                                                  \
        const float* xr = a->x + ((iy0 + ky) * a->W + ix0) * C + c0;                        \
        const float* wr = a->w + (int64_t)(ky * k) * C + c0;                                \
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

DW_PIXELS(dw_pixels_4, vf, vf_load, vf_store, vf_relu6, GGIC_VL, 4)
DW_PIXELS(dw_pixels_2, vf, vf_load, vf_store, vf_relu6, GGIC_VL, 2)
DW_PIXELS(dw_pixels_1, vf, vf_load, vf_store, vf_relu6, GGIC_VL, 1)
DW_PIXELS(dw_pixels_h, vh, vh_load, vh_store, vh_relu6, GGIC_HL, 1)

/* DW_PX adjacent interior pixels (every kx tap inside the input) x 2 vectors of channels:
 * each weight vector is loaded once per tap and used for all DW_PX pixels, and the 2*DW_PX
 * accumulators are independent chains (the FMA latency is hidden). */
static inline __attribute__((always_inline)) void dw_tile(const DwArgs* a, int64_t oy,
                                                          int64_t ox, int64_t c0, int ky0,
                                                          int ky1) {
  const int64_t iy0 = oy * a->stride - a->top, ix0 = ox * a->stride - a->left, C = a->C;
  const int64_t ldp = a->stride * C; /* distance between the tile's pixels in x */
  const int k = a->k;
  vf acc[DW_PX][2];
  GGIC_UNROLL for (int j = 0; j < 2; ++j) {
    vf b0 = vf_load(a->bias + c0 + j * GGIC_VL);
    GGIC_UNROLL for (int p = 0; p < DW_PX; ++p) acc[p][j] = b0;
  }
  for (int ky = ky0; ky < ky1; ++ky) {
    const float* xr = a->x + ((iy0 + ky) * a->W + ix0) * C + c0;
    const float* wr = a->w + (int64_t)(ky * k) * C + c0;
    for (int kx = 0; kx < k; ++kx) {
      vf w0 = vf_load(wr + kx * C), w1 = vf_load(wr + kx * C + GGIC_VL);
      GGIC_UNROLL for (int p = 0; p < DW_PX; ++p) {
        acc[p][0] += vf_load(xr + p * ldp + kx * C) * w0;
        acc[p][1] += vf_load(xr + p * ldp + kx * C + GGIC_VL) * w1;
      }
    }
  }
  float* yp = a->y + (oy * a->OW + ox) * C + c0;
  GGIC_UNROLL for (int p = 0; p < DW_PX; ++p) {
    vf v0 = acc[p][0], v1 = acc[p][1];
    if (a->act) {
      v0 = vf_relu6(v0);
      v1 = vf_relu6(v1);
    }
    vf_store(yp + p * C, v0);
    vf_store(yp + p * C + GGIC_VL, v1);
  }
}

static void dw_pixels_scalar(const DwArgs* a, int64_t oy, int64_t c0, int64_t c1) {
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

/* Output rows [oy0, oy1): channel blocks outer (their weights stay in L1), then rows. */
static void dw_rows(const DwArgs* a, int64_t oy0, int64_t oy1) {
  /* output columns whose taps are all inside the input: [x_lo, x_hi) */
  int64_t x_lo = (a->left + a->stride - 1) / a->stride;
  int64_t x_hi = a->W - a->k + a->left >= 0 ? (a->W - a->k + a->left) / a->stride + 1 : 0;
  if (x_hi > a->OW) x_hi = a->OW;
  if (x_lo > x_hi) x_lo = x_hi;
  int64_t c = 0;
  if (x_hi - x_lo < DW_PX) /* rows too narrow for tiles (7x7): 4 vectors a pixel instead */
    for (; c + 4 * GGIC_VL <= a->C; c += 4 * GGIC_VL)
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        const int64_t iy0 = oy * a->stride - a->top;
        dw_pixels_4(a, oy, 0, a->OW, c, iy0 < 0 ? (int)-iy0 : 0,
                    iy0 + a->k > a->H ? (int)(a->H - iy0) : a->k);
      }
  for (; c + 2 * GGIC_VL <= a->C; c += 2 * GGIC_VL)
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t iy0 = oy * a->stride - a->top;
      const int ky0 = iy0 < 0 ? (int)-iy0 : 0;
      const int ky1 = iy0 + a->k > a->H ? (int)(a->H - iy0) : a->k;
      int64_t ox = x_lo;
      dw_pixels_2(a, oy, 0, x_lo, c, ky0, ky1);
      for (; ox + DW_PX <= x_hi; ox += DW_PX) dw_tile(a, oy, ox, c, ky0, ky1);
      dw_pixels_2(a, oy, ox, a->OW, c, ky0, ky1);
    }
  for (; c + GGIC_VL <= a->C; c += GGIC_VL)
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t iy0 = oy * a->stride - a->top;
      dw_pixels_1(a, oy, 0, a->OW, c, iy0 < 0 ? (int)-iy0 : 0,
                  iy0 + a->k > a->H ? (int)(a->H - iy0) : a->k);
    }
  for (; c + GGIC_HL <= a->C; c += GGIC_HL)
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t iy0 = oy * a->stride - a->top;
      dw_pixels_h(a, oy, 0, a->OW, c, iy0 < 0 ? (int)-iy0 : 0,
                  iy0 + a->k > a->H ? (int)(a->H - iy0) : a->k);
    }
  if (c < a->C)
    for (int64_t oy = oy0; oy < oy1; ++oy) dw_pixels_scalar(a, oy, c, a->C);
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

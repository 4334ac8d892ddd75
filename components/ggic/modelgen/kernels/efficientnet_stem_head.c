/*
 * The ends of the network:
 * - input normalisation: y = (x - mean[c]) * inv_std[c] on NHWC pixels (raw 0..255 in);
 * - the stem: a dense k x k convolution (NHWC, few input channels) with TensorFlow "same"
 *   padding, bias and ReLU6 fused; vectorised over output channels;
 * - the classifier: global average pooling followed by the dense layer (logits).
 */
#include "efficientnet_common.h"

/* provided by efficientnet_pointwise.c */
void ggic_effnet_pointwise(const float* x, const float* w, const float* bias, const float* res,
                           float* y, int64_t P, int64_t K, int64_t N, int act);

typedef struct {
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  int64_t H, W, CI, OH, OW, CO;
  int k, stride, top, left;
} ConvArgs;

/* One output pixel, output channels [c0, c0 + NV*W_) */
#define STEM_PIXEL(NAME, VT, LOAD, STORE, SPLAT, RELU, W_, NV)                                \
  static inline __attribute__((always_inline)) void NAME(const ConvArgs* a, int64_t oy,      \
                                                         int64_t ox, int64_t c0) {           \
    const int64_t iy0 = oy * a->stride - a->top, ix0 = ox * a->stride - a->left;              \
    const int k = a->k;                                                                       \
    const int ky0 = iy0 < 0 ? (int)-iy0 : 0, ky1 = iy0 + k > a->H ? (int)(a->H - iy0) : k;    \
    const int kx0 = ix0 < 0 ? (int)-ix0 : 0, kx1 = ix0 + k > a->W ? (int)(a->W - ix0) : k;    \
    VT acc[NV];                                                                               \
    GGIC_UNROLL for (int j = 0; j < NV; ++j) acc[j] = LOAD(a->bias + c0 + j * W_);            \
    for (int ky = ky0; ky < ky1; ++ky)                                                        \
      for (int kx = kx0; kx < kx1; ++kx) {                                                    \
        const float* xp = a->x + ((iy0 + ky) * a->W + (ix0 + kx)) * a->CI;                    \
        const float* wp = a->w + ((int64_t)(ky * k + kx) * a->CI) * a->CO + c0;               \
        for (int64_t ci = 0; ci < a->CI; ++ci) {                                              \
          VT xv = SPLAT(xp[ci]);                                                              \
          GGIC_UNROLL for (int j = 0; j < NV; ++j)                                            \
            acc[j] += xv * LOAD(wp + ci * a->CO + j * W_);                                    \
        }                                                                                     \
      }                                                                                       \
    float* yp = a->y + (oy * a->OW + ox) * a->CO + c0;                                        \
    GGIC_UNROLL for (int j = 0; j < NV; ++j) STORE(yp + j * W_, RELU(acc[j]));                \
  }

STEM_PIXEL(stem_pixel_2, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, 2)
STEM_PIXEL(stem_pixel_1, vf, vf_load, vf_store, vf_splat, vf_relu6, GGIC_VL, 1)
STEM_PIXEL(stem_pixel_h, vh, vh_load, vh_store, vh_splat, vh_relu6, GGIC_HL, 1)

static void stem_pixel_scalar(const ConvArgs* a, int64_t oy, int64_t ox, int64_t c0) {
  for (int64_t co = c0; co < a->CO; ++co) {
    float v = a->bias[co];
    for (int ky = 0; ky < a->k; ++ky) {
      int64_t iy = oy * a->stride - a->top + ky;
      if (iy < 0 || iy >= a->H) continue;
      for (int kx = 0; kx < a->k; ++kx) {
        int64_t ix = ox * a->stride - a->left + kx;
        if (ix < 0 || ix >= a->W) continue;
        for (int64_t ci = 0; ci < a->CI; ++ci)
          v += a->x[(iy * a->W + ix) * a->CI + ci] *
               a->w[((ky * a->k + kx) * a->CI + ci) * a->CO + co];
      }
    }
    a->y[(oy * a->OW + ox) * a->CO + co] = f_relu6(v);
  }
}

/* GGIC_MR horizontally adjacent output pixels whose taps all lie inside the input row-wise
 * (kx range complete), output channels [c0, c0 + 2 vectors): for each kernel row the taps
 * (kx, ci) of a pixel are k*CI contiguous floats, so this is a small register-blocked matrix
 * product like the pointwise micro-kernel (x rows at a stride of stride*CI). */
static inline __attribute__((always_inline)) void stem_tile(const ConvArgs* a, int64_t oy,
                                                            int64_t ox, int64_t c0, int ky0,
                                                            int ky1) {
  const int64_t iy0 = oy * a->stride - a->top, ix0 = ox * a->stride - a->left;
  const int64_t taps = a->k * a->CI, ldx = a->stride * a->CI, CO = a->CO;
  vf acc[GGIC_MR][2];
  GGIC_UNROLL for (int j = 0; j < 2; ++j) {
    vf b0 = vf_load(a->bias + c0 + j * GGIC_VL);
    GGIC_UNROLL for (int r = 0; r < GGIC_MR; ++r) acc[r][j] = b0;
  }
  for (int ky = ky0; ky < ky1; ++ky) {
    const float* xr = a->x + ((iy0 + ky) * a->W + ix0) * a->CI;
    const float* wr = a->w + (int64_t)ky * taps * CO + c0;
    for (int64_t t = 0; t < taps; ++t) {
      vf w0 = vf_load(wr + t * CO), w1 = vf_load(wr + t * CO + GGIC_VL);
      GGIC_UNROLL for (int r = 0; r < GGIC_MR; ++r) {
        vf xv = vf_splat(xr[r * ldx + t]);
        acc[r][0] += xv * w0;
        acc[r][1] += xv * w1;
      }
    }
  }
  float* yp = a->y + (oy * a->OW + ox) * CO + c0;
  GGIC_UNROLL for (int r = 0; r < GGIC_MR; ++r) {
    vf_store(yp + r * CO, vf_relu6(acc[r][0]));
    vf_store(yp + r * CO + GGIC_VL, vf_relu6(acc[r][1]));
  }
}

static void stem_pixel(const ConvArgs* a, int64_t oy, int64_t ox, int64_t c) {
  for (; c + 2 * GGIC_VL <= a->CO; c += 2 * GGIC_VL) stem_pixel_2(a, oy, ox, c);
  for (; c + GGIC_VL <= a->CO; c += GGIC_VL) stem_pixel_1(a, oy, ox, c);
  for (; c + GGIC_HL <= a->CO; c += GGIC_HL) stem_pixel_h(a, oy, ox, c);
  if (c < a->CO) stem_pixel_scalar(a, oy, ox, c);
}

static void stem_rows(const ConvArgs* a, int64_t oy0, int64_t oy1) {
  /* output columns whose taps are all inside the input: [x_lo, x_hi) */
  int64_t x_lo = (a->left + a->stride - 1) / a->stride;
  int64_t x_hi = a->W - a->k + a->left >= 0 ? (a->W - a->k + a->left) / a->stride + 1 : 0;
  if (x_hi > a->OW) x_hi = a->OW;
  if (x_lo > x_hi) x_lo = x_hi;
  const int64_t tiled_co = a->CO - a->CO % (2 * GGIC_VL);
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    const int64_t iy0 = oy * a->stride - a->top;
    const int ky0 = iy0 < 0 ? (int)-iy0 : 0;
    const int ky1 = iy0 + a->k > a->H ? (int)(a->H - iy0) : a->k;
    int64_t ox = 0;
    for (; ox < x_lo; ++ox) stem_pixel(a, oy, ox, 0);
    for (; ox + GGIC_MR <= x_hi; ox += GGIC_MR) {
      for (int64_t c = 0; c < tiled_co; c += 2 * GGIC_VL) stem_tile(a, oy, ox, c, ky0, ky1);
      if (tiled_co < a->CO)
        for (int64_t p = 0; p < GGIC_MR; ++p) stem_pixel(a, oy, ox + p, tiled_co);
    }
    for (; ox < a->OW; ++ox) stem_pixel(a, oy, ox, 0);
  }
}

static int same_pad_before(int64_t in, int64_t out, int k, int stride) {
  int64_t total = (out - 1) * stride + k - in;
  return total > 0 ? (int)(total / 2) : 0;
}

GGIC_EXPORT void ggic_effnet_conv_relu6(const float* x, const float* w, const float* bias,
                                        float* y, int64_t H, int64_t W, int64_t CI, int64_t OH,
                                        int64_t OW, int64_t CO, int k, int stride) {
  ConvArgs a = {x, w, bias, y, H, W, CI, OH, OW, CO, k, stride,
                same_pad_before(H, OH, k, stride), same_pad_before(W, OW, k, stride)};
  GGIC_PARALLEL {
    int64_t begin, end;
    ggic_split(OH, 1, ggic_num_threads(), ggic_thread_id(), &begin, &end);
    if (begin < end) stem_rows(&a, begin, end);
  }
}

/* (x [1,H,W,CI], w [k,k,CI,CO], b [CO], y [1,ceil(H/2),ceil(W/2),CO]): stride 2, ReLU6 */
GGIC_KERNEL(ggic_effnet_stem_s2_relu6) {
  static const char* kName = "ggic_effnet_stem_s2_relu6";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 4);
  const DLTensor *x = GGIC_TENSOR(0), *w = GGIC_TENSOR(1), *b = GGIC_TENSOR(2);
  DLTensor* y = GGIC_TENSOR(3);
  GGIC_CHECK_F32(kName, x, 4);
  GGIC_CHECK_F32(kName, w, 4);
  GGIC_CHECK_F32(kName, b, 1);
  GGIC_CHECK_F32(kName, y, 4);
  const int64_t H = x->shape[1], W = x->shape[2], CI = x->shape[3];
  const int64_t OH = y->shape[1], OW = y->shape[2], CO = y->shape[3], k = w->shape[0];
  if (x->shape[0] != 1 || y->shape[0] != 1 || w->shape[1] != k || w->shape[2] != CI ||
      w->shape[3] != CO || b->shape[0] != CO || k < 1 || k > 15)
    GGIC_FAILF("%s: shapes do not match a convolution", kName);
  if ((H + 1) / 2 != OH || (W + 1) / 2 != OW)
    GGIC_FAILF("%s: output %lldx%lld is not a stride-2 'same' convolution of %lldx%lld", kName,
               (long long)OH, (long long)OW, (long long)H, (long long)W);
  ggic_effnet_conv_relu6(ggic_data(x), ggic_data(w), ggic_data(b), ggic_data(y), H, W, CI, OH,
                         OW, CO, (int)k, 2);
  return 0;
}

/* (x [1,H,W,C], mean [C], inv_std [C], y [1,H,W,C]): per-channel normalisation */
GGIC_KERNEL(ggic_effnet_normalize) {
  static const char* kName = "ggic_effnet_normalize";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 4);
  const DLTensor *x = GGIC_TENSOR(0), *mean = GGIC_TENSOR(1), *inv_std = GGIC_TENSOR(2);
  DLTensor* y = GGIC_TENSOR(3);
  GGIC_CHECK_F32(kName, x, 4);
  GGIC_CHECK_F32(kName, mean, 1);
  GGIC_CHECK_F32(kName, inv_std, 1);
  GGIC_CHECK_F32(kName, y, 4);
  const int64_t C = x->shape[3], n = ggic_numel(x);
  enum { kMaxChannels = 64 };
  if (mean->shape[0] != C || inv_std->shape[0] != C || ggic_numel(y) != n || C > kMaxChannels)
    GGIC_FAILF("%s: shapes do not match (at most %d channels)", kName, (int)kMaxChannels);
  const float *xd = ggic_data(x), *m = ggic_data(mean), *s = ggic_data(inv_std);
  float* yd = ggic_data(y);
  /* one period of the channel pattern, repeated GGIC_VL times so rows vectorise cleanly */
  float offset[kMaxChannels * GGIC_VL], gain[kMaxChannels * GGIC_VL];
  const int64_t period = C * GGIC_VL;
  for (int64_t i = 0; i < period; ++i) {
    gain[i] = s[i % C];
    offset[i] = -m[i % C] * s[i % C];
  }
  GGIC_PARALLEL {
    int64_t begin, end;
    ggic_split(n / period, 1, ggic_num_threads(), ggic_thread_id(), &begin, &end);
    for (int64_t blk = begin; blk < end; ++blk)
      for (int64_t i = 0; i < period; ++i)
        yd[blk * period + i] = xd[blk * period + i] * gain[i] + offset[i];
  }
  for (int64_t i = (n / period) * period; i < n; ++i) yd[i] = xd[i] * gain[i % period] +
                                                               offset[i % period];
  return 0;
}

/* (x [1,H,W,C], w [C,N], b [N], y [1,N]): mean over H and W, then the dense layer */
GGIC_KERNEL(ggic_effnet_gap_dense) {
  static const char* kName = "ggic_effnet_gap_dense";
  GGIC_UNUSED_ABI_ARGS();
  GGIC_EXPECT_ARGS(kName, 4);
  const DLTensor *x = GGIC_TENSOR(0), *w = GGIC_TENSOR(1), *b = GGIC_TENSOR(2);
  DLTensor* y = GGIC_TENSOR(3);
  GGIC_CHECK_F32(kName, x, 4);
  GGIC_CHECK_F32(kName, w, 2);
  GGIC_CHECK_F32(kName, b, 1);
  GGIC_CHECK_F32(kName, y, 2);
  const int64_t P = x->shape[1] * x->shape[2], C = x->shape[3], N = w->shape[1];
  enum { kMaxChannels = 8192 };
  if (x->shape[0] != 1 || y->shape[0] != 1 || w->shape[0] != C || b->shape[0] != N ||
      y->shape[1] != N || C > kMaxChannels)
    GGIC_FAILF("%s: shapes do not match pooling + dense (at most %d channels)", kName,
               (int)kMaxChannels);
  const float* xd = ggic_data(x);
  float mean[kMaxChannels];
  for (int64_t c = 0; c < C; ++c) mean[c] = 0.0f;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t c = 0; c < C; ++c) mean[c] += xd[p * C + c];
  const float scale = 1.0f / (float)P;
  for (int64_t c = 0; c < C; ++c) mean[c] *= scale;
  ggic_effnet_pointwise(mean, ggic_data(w), ggic_data(b), NULL, ggic_data(y), 1, C, N, 0);
  return 0;
}

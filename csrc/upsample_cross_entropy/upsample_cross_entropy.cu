// CUDA implementation of upsample_cross_entropy (see the header for the contract).
//
// Interpolation: torch's bilinear rule (upsample_bilinear2d with an output size), per axis in float:
//   align_corners=False: scale = in / out, src = max(scale * (dst + 0.5) - 0.5, 0)
//   align_corners=True:  scale = (in - 1) / (out - 1) (0 when out == 1), src = scale * dst
//   i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0, value = (1 - l1) v[i0] + l1 v[i1] per axis.
// Forward (one thread per output pixel, grid-stride over a shape-determined grid): for k = 0..K-1 interpolate the
//   4 taps in fp32 and update an online log-sum-exp (running max m, sum s of exp(z - m)); the pixel's loss is
//   lse - z[target], 0 when ignored. lse is saved per pixel (fp32). Each block writes one partial loss sum and
//   one partial count (fixed-order tree in shared memory); a single-block kernel sums the partials in a fixed
//   order, divides by the denominator (non-ignored count clamped at 1, or B * H * W) and writes the loss.
// Backward (one thread per element (b, k, i, j) of d logits): a gather over the output pixels whose taps can touch
//   low-res row i / column j. The candidate range comes from inverting the coordinate map (in double, with a
//   margin of 2 pixels each side); each candidate's taps are recomputed with the forward's exact float code and
//   kept only if they include i (resp. j). For each kept pixel: g = exp(z_k - lse) - [k == target], times the
//   tap weight; the sum is scaled by grad / denominator at the end. Every element is written by one thread, in
//   a fixed order: bitwise repeatable, no atomics. Nothing of size B * K * H * W is ever allocated.
// Labels are validated by the Python op; here a label outside [0, K) that is not ignore_index is never used as
// an index: it makes its pixel's loss and gradient NaN.
#include "upsample_cross_entropy/upsample_cross_entropy.h"

#include "common/checks.h"
#include "common/limits.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace semask_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxForwardBlocks = 4096;       // partial sums: at most this many
constexpr int64_t kMaxBackwardBlocks = int64_t(1) << 20;
constexpr int64_t kMaxSide = limits::kUceMaxSide;  // coordinates stay exact enough in float (see candidates())

// One resized axis: input and output sizes and torch's float scale.
struct Axis {
  int in, out;
  float scale;
};

Axis make_axis(int64_t in, int64_t out, bool align_corners) {
  float scale;
  if (align_corners) {
    scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  } else {
    scale = static_cast<float>(in) / static_cast<float>(out);
  }
  return Axis{int(in), int(out), scale};
}

// Taps of output coordinate dst: i0, i1 and the weight l1 of i1 (i0 gets 1 - l1).
__device__ __forceinline__ void taps(const Axis& a, bool align_corners, int dst, int& i0, int& i1, float& l1) {
  float src;
  if (align_corners) {
    src = a.scale * static_cast<float>(dst);
  } else {
    src = a.scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
    src = src < 0.f ? 0.f : src;
  }
  i0 = static_cast<int>(src);  // src >= 0: truncation is floor
  i1 = i0 < a.in - 1 ? i0 + 1 : i0;
  l1 = src - static_cast<float>(i0);
}

// The bilinear value at (y, x) of one (h, w) plane, in torch's order of operations.
template <typename scalar_t>
__device__ __forceinline__ float interp(const scalar_t* plane, int w, int y0, int y1, float ly, int x0, int x1,
                                        float lx) {
  const scalar_t* r0 = plane + int64_t(y0) * w;
  const scalar_t* r1 = plane + int64_t(y1) * w;
  const float v00 = static_cast<float>(r0[x0]), v01 = static_cast<float>(r0[x1]);
  const float v10 = static_cast<float>(r1[x0]), v11 = static_cast<float>(r1[x1]);
  return (1.f - ly) * ((1.f - lx) * v00 + lx * v01) + ly * ((1.f - lx) * v10 + lx * v11);
}

// Output coordinates [lo, hi) whose taps may include input index i: i0 in {i - 1, i}, i.e.
// src in [i - 1, i + 1), inverted in double with a 2-pixel margin (the exact test is done by the caller).
// The membership of every output in this range is checked by a Python mirror of this code (see the tests).
__device__ __forceinline__ void candidates(const Axis& a, bool align_corners, int i, int& lo, int& hi) {
  if (a.in <= 1 || a.out <= 1) {
    lo = 0;
    hi = a.out;
    return;
  }
  double first, last;
  if (align_corners) {
    const double r = double(a.out - 1) / double(a.in - 1);
    first = (i - 1) * r;
    last = (i + 1) * r;
  } else {
    const double r = double(a.out) / double(a.in);
    first = (i - 0.5) * r - 0.5;
    last = (i + 1.5) * r - 0.5;
  }
  lo = max(0, int(floor(first)) - 2);
  hi = min(a.out, int(ceil(last)) + 3);
  // align_corners=False clamps negative sources to 0: those outputs tap rows 0 and 1 (row 1 with weight 0, which
  // still carries a NaN/inf of g, as torch's backward does).
  if (!align_corners && i <= 1) lo = 0;
}

template <typename scalar_t, typename target_t>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ logits, const target_t* __restrict__ target, float* __restrict__ lse,
                   float* __restrict__ part_loss, int64_t* __restrict__ part_count, int64_t pixels, int K, Axis ay,
                   Axis ax, bool align_corners, int64_t ignore_index) {
  const int H = ay.out, W = ax.out, h = ay.in, w = ax.in;
  const int64_t plane = int64_t(h) * w;
  float loss = 0.f;
  int64_t count = 0;
  for (int64_t p = int64_t(blockIdx.x) * kThreads + threadIdx.x; p < pixels; p += int64_t(gridDim.x) * kThreads) {
    const int x = int(p % W);
    const int y = int((p / W) % H);
    const int64_t b = p / (int64_t(W) * H);
    int y0, y1, x0, x1;
    float ly, lx;
    taps(ay, align_corners, y, y0, y1, ly);
    taps(ax, align_corners, x, x0, x1, lx);
    const int64_t t = static_cast<int64_t>(target[p]);
    const scalar_t* img = logits + b * K * plane;
    float m = -INFINITY, s = 0.f, zt = 0.f;
    for (int k = 0; k < K; ++k) {
      const float z = interp(img + k * plane, w, y0, y1, ly, x0, x1, lx);
      if (k == t) zt = z;
      if (z > m) {  // online log-sum-exp: rescale the sum to the new max (exp(-inf) = 0 the first time)
        s = s * expf(m - z) + 1.f;
        m = z;
      } else {
        s += expf(z - m);
      }
    }
    const float l = m + logf(s);
    lse[p] = l;
    if (t != ignore_index) {
      ++count;
      loss += (t >= 0 && t < K) ? l - zt : NAN;
    }
  }
  // Fixed-order tree over the block.
  __shared__ float red_loss[kThreads];
  __shared__ int64_t red_count[kThreads];
  red_loss[threadIdx.x] = loss;
  red_count[threadIdx.x] = count;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      red_loss[threadIdx.x] += red_loss[threadIdx.x + o];
      red_count[threadIdx.x] += red_count[threadIdx.x + o];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    part_loss[blockIdx.x] = red_loss[0];
    part_count[blockIdx.x] = red_count[0];
  }
}

// One block: sums the partials in a fixed order (double), writes the loss and the denominator.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    finalize_kernel(const float* __restrict__ part_loss, const int64_t* __restrict__ part_count, int64_t parts,
                    int64_t pixels, bool avg_non_ignore, scalar_t* __restrict__ loss, float* __restrict__ denom) {
  __shared__ double red_loss[kThreads];
  __shared__ int64_t red_count[kThreads];
  double acc = 0.0;
  int64_t count = 0;
  for (int64_t i = threadIdx.x; i < parts; i += kThreads) {
    acc += double(part_loss[i]);
    count += part_count[i];
  }
  red_loss[threadIdx.x] = acc;
  red_count[threadIdx.x] = count;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      red_loss[threadIdx.x] += red_loss[threadIdx.x + o];
      red_count[threadIdx.x] += red_count[threadIdx.x + o];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    // The reference: count clamped at 1 (all ignored -> 0), or every pixel (0 / 0 = NaN for an empty target).
    const double d = avg_non_ignore ? double(red_count[0] > 0 ? red_count[0] : 1) : double(pixels);
    loss[0] = static_cast<scalar_t>(static_cast<float>(red_loss[0] / d));
    denom[0] = static_cast<float>(d);
  }
}

template <typename scalar_t, typename target_t>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const scalar_t* __restrict__ logits, const target_t* __restrict__ target,
                    const float* __restrict__ lse, const float* __restrict__ grad, const float* __restrict__ denom,
                    scalar_t* __restrict__ dlogits, int64_t total, int K, Axis ay, Axis ax, bool align_corners,
                    int64_t ignore_index) {
  const int H = ay.out, W = ax.out, h = ay.in, w = ax.in;
  const int64_t plane = int64_t(h) * w;
  const float g_scale = grad[0] / denom[0];
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < total; e += int64_t(gridDim.x) * kThreads) {
    const int j = int(e % w);
    const int i = int((e / w) % h);
    const int k = int((e / plane) % K);
    const int64_t b = e / (plane * K);
    const scalar_t* src = logits + (b * K + k) * plane;
    const target_t* tgt = target + b * H * int64_t(W);
    const float* lse_b = lse + b * H * int64_t(W);
    int ylo, yhi, xlo, xhi;
    candidates(ay, align_corners, i, ylo, yhi);
    candidates(ax, align_corners, j, xlo, xhi);
    float acc = 0.f;
    for (int y = ylo; y < yhi; ++y) {
      int y0, y1;
      float ly;
      taps(ay, align_corners, y, y0, y1, ly);
      if (y0 != i && y1 != i) continue;
      const float wy = (y0 == i ? 1.f - ly : 0.f) + (y1 == i ? ly : 0.f);
      for (int x = xlo; x < xhi; ++x) {
        int x0, x1;
        float lx;
        taps(ax, align_corners, x, x0, x1, lx);
        if (x0 != j && x1 != j) continue;
        const int64_t pix = int64_t(y) * W + x;
        const int64_t t = static_cast<int64_t>(tgt[pix]);
        if (t == ignore_index) continue;
        const float wx = (x0 == j ? 1.f - lx : 0.f) + (x1 == j ? lx : 0.f);
        const float z = interp(src, w, y0, y1, ly, x0, x1, lx);
        float g = expf(z - lse_b[pix]) - (t == k ? 1.f : 0.f);
        if (t < 0 || t >= K) g = NAN;
        acc += (wy * wx) * g;
      }
    }
    dlogits[e] = static_cast<scalar_t>(acc * g_scale);
  }
}

void check_float_dtype(const char* op, const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat, op, ": ", name,
              " must have dtype float16, bfloat16 or float32 (the CUDA kernels' dtypes), got ", s);
}

void check_inputs(const char* op, const at::Tensor& logits, const at::Tensor& target) {
  check_cuda(op, logits, "logits");
  check_float_dtype(op, logits, "logits");
  check_dim(op, logits, "logits", 4);
  TORCH_CHECK(logits.size(1) >= 1 && logits.size(2) >= 1 && logits.size(3) >= 1, op,
              ": logits must have K, h, w >= 1, got shape ", logits.sizes());
  TORCH_CHECK(logits.size(1) <= std::numeric_limits<int32_t>::max(), op, ": logits has too many classes (",
              logits.size(1), ")");
  check_cuda(op, target, "target");
  check_same_device(op, target, "target", logits, "logits");
  TORCH_CHECK(target.scalar_type() == at::kLong || target.scalar_type() == at::kInt, op,
              ": target must have dtype int64 or int32, got ", target.scalar_type());
  check_dim(op, target, "target", 3);
  check_size(op, target, "target", 0, logits.size(0), "batch of logits");
  for (int64_t d = 2; d < 4; ++d) {
    TORCH_CHECK(logits.size(d) <= kMaxSide, op, ": logits.size(", d, ") must be <= 2^23, got ", logits.size(d));
    TORCH_CHECK(target.size(d - 1) <= kMaxSide, op, ": target.size(", d - 1, ") must be <= 2^23, got ",
                target.size(d - 1));
  }
}

template <typename F>
void dispatch(at::ScalarType data, at::ScalarType labels, F&& f) {
  auto with_labels = [&](auto tag) {
    if (labels == at::kLong) {
      f(tag, int64_t{});
    } else {
      f(tag, int32_t{});
    }
  };
  switch (data) {
    case at::kHalf: with_labels(at::Half{}); break;
    case at::kBFloat16: with_labels(at::BFloat16{}); break;
    case at::kFloat: with_labels(float{}); break;
    default: TORCH_CHECK(false, "upsample_cross_entropy: unsupported dtype ", data);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_cross_entropy_forward(const at::Tensor& logits,
                                                                              const at::Tensor& target,
                                                                              int64_t ignore_index,
                                                                              bool avg_non_ignore,
                                                                              bool align_corners) {
  constexpr const char* op = "upsample_cross_entropy_forward";
  check_inputs(op, logits, target);
  c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor x = logits.contiguous();
  const at::Tensor t = target.contiguous();
  const int64_t B = x.size(0), K = x.size(1), H = t.size(1), W = t.size(2);
  const int64_t pixels = B * H * W;
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor loss = at::empty({}, x.options());
  at::Tensor lse = at::empty({B, H, W}, f32);
  at::Tensor denom = at::empty({}, f32);
  const int64_t blocks = pixels == 0 ? 0 : std::min((pixels + kThreads - 1) / kThreads, kMaxForwardBlocks);
  at::Tensor part_loss = at::empty({blocks}, f32);
  at::Tensor part_count = at::empty({blocks}, x.options().dtype(at::kLong));
  const Axis ay = make_axis(x.size(2), H, align_corners);
  const Axis ax = make_axis(x.size(3), W, align_corners);
  auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(x.scalar_type(), t.scalar_type(), [&](auto tag, auto label_tag) {
    using scalar_t = decltype(tag);
    using target_t = decltype(label_tag);
    if (blocks > 0) {  // a 0-block launch is an error; with no pixel the partials are empty
      forward_kernel<scalar_t, target_t><<<unsigned(blocks), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), t.const_data_ptr<target_t>(), lse.mutable_data_ptr<float>(),
          part_loss.mutable_data_ptr<float>(), part_count.mutable_data_ptr<int64_t>(), pixels, int(K), ay, ax,
          align_corners, ignore_index);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    finalize_kernel<scalar_t><<<1, kThreads, 0, stream>>>(
        part_loss.const_data_ptr<float>(), part_count.const_data_ptr<int64_t>(), blocks, pixels, avg_non_ignore,
        loss.mutable_data_ptr<scalar_t>(), denom.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, lse, denom};
}

at::Tensor upsample_cross_entropy_backward(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& target,
                                           const at::Tensor& lse, const at::Tensor& denominator,
                                           int64_t ignore_index, bool align_corners) {
  constexpr const char* op = "upsample_cross_entropy_backward";
  check_inputs(op, logits, target);
  check_cuda(op, grad, "grad");
  check_same_device(op, grad, "grad", logits, "logits");
  check_floating(op, grad, "grad");
  TORCH_CHECK(grad.numel() == 1, op, ": grad must hold one element (the loss's gradient), got shape ", grad.sizes());
  check_cuda(op, lse, "lse");
  check_same_device(op, lse, "lse", logits, "logits");
  check_dtype(op, lse, "lse", at::kFloat);
  check_dim(op, lse, "lse", 3);
  for (int64_t d = 0; d < 3; ++d) check_size(op, lse, "lse", d, target.size(d), "as target");
  check_cuda(op, denominator, "denominator");
  check_same_device(op, denominator, "denominator", logits, "logits");
  check_dtype(op, denominator, "denominator", at::kFloat);
  TORCH_CHECK(denominator.numel() == 1, op, ": denominator must hold one element, got shape ", denominator.sizes());

  c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor x = logits.contiguous();
  const at::Tensor t = target.contiguous();
  const at::Tensor l = lse.contiguous();
  const at::Tensor g = grad.reshape({1}).to(at::kFloat).contiguous();
  const at::Tensor dn = denominator.reshape({1}).contiguous();
  at::Tensor dlogits = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t total = dlogits.numel();
  if (total == 0) return dlogits;
  if (t.numel() == 0) return dlogits.zero_();  // no pixel: no gradient
  const Axis ay = make_axis(x.size(2), t.size(1), align_corners);
  const Axis ax = make_axis(x.size(3), t.size(2), align_corners);
  const int64_t blocks = std::min((total + kThreads - 1) / kThreads, kMaxBackwardBlocks);
  auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch(x.scalar_type(), t.scalar_type(), [&](auto tag, auto label_tag) {
    using scalar_t = decltype(tag);
    using target_t = decltype(label_tag);
    backward_kernel<scalar_t, target_t><<<unsigned(blocks), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), t.const_data_ptr<target_t>(), l.const_data_ptr<float>(),
        g.const_data_ptr<float>(), dn.const_data_ptr<float>(), dlogits.mutable_data_ptr<scalar_t>(), total,
        int(x.size(1)), ay, ax, align_corners, ignore_index);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dlogits;
}

}  // namespace semask_kernels

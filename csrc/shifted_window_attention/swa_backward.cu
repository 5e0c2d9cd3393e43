// shifted_window_attention backward, on the current stream. Two kernels (kernel="auto" takes tensor_core where
// it can run, as the forward does):
//   tensor_core (float16 / bfloat16, sm_80+, windows whose whole backward fits in shared memory: on an H100 7x7
//     at every d, 12x12 at d <= 64): swa_tc_backward.cuh, one launch writing d qkv and per-CTA partials;
//   cuda_core (design: swa_device.cuh): 1. row kernel, backward mode: lse and D per query (into `stats`), dq of
//     every real token; 2. column kernel: dk, dv of every real token, per-CTA partial d table and padding-key
//     dk / dv sums.
// Then fixed-order column sums of the two workspaces -> d bias_table, d qkv_bias. No atomics anywhere: two runs
// give the same bits.
#include "shifted_window_attention/shifted_window_attention.h"

#include "shifted_window_attention/swa_col_kernel.cuh"
#include "shifted_window_attention/swa_host.cuh"
#include "shifted_window_attention/swa_row_kernel.cuh"
#include "shifted_window_attention/swa_tc_backward.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace semask_kernels {
namespace {

// out[col] = sum_p ws[col, p] in a fixed order (per-thread strided sums, then a fixed tree): bitwise repeatable.
constexpr int kSumThreads = 256;
__global__ void __launch_bounds__(kSumThreads) column_sum_kernel(const float* ws, int64_t parts, float* out) {
  __shared__ float red[kSumThreads];
  const float* src = ws + int64_t(blockIdx.x) * parts;
  float acc = 0.f;
  for (int64_t p = threadIdx.x; p < parts; p += kSumThreads) acc += src[p];
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kSumThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = red[0];
}

void column_sum(const at::Tensor& ws, at::Tensor& out, cudaStream_t stream) {
  const int64_t cols = ws.size(0);
  if (cols == 0) return;
  column_sum_kernel<<<unsigned(cols), kSumThreads, 0, stream>>>(
      ws.const_data_ptr<float>(), ws.size(1), out.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> shifted_window_attention_backward(
    const at::Tensor& grad, const at::Tensor& qkv, const at::Tensor& bias_table,
    const std::optional<at::Tensor>& qkv_bias, int64_t num_heads, at::IntArrayRef window_size,
    at::IntArrayRef shift_size, double scale, c10::string_view pad_order, double mask_value,
    c10::string_view kernel) {
  constexpr const char* op = "shifted_window_attention_backward";
  swa::check_args(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, pad_order);
  swa::check_kernel(op, kernel);
  swa::check_grad(op, grad, qkv);

  c10::cuda::CUDAGuard guard(qkv.device());
  const swa::Prepared p = swa::prepare(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale,
                                       pad_order, mask_value);
  const swa::Geometry& g = p.g;
  const bool has_bias = p.qkv_bias.defined();
  const int64_t group = swa::backward_group(g.total);
  const int64_t groups = (g.total + group - 1) / group;
  const swa::tc::BwdPlan plan = swa::tc::make_bwd_plan(g.n, p.d, g.table, int(group));
  const bool tc = swa::tensor_core_ok(op, kernel, p, swa::device_facts(), plan.bytes,
                                      reinterpret_cast<const void*>(swa::tc::backward_kernel<at::Half, 32>)) &&
                  kernel != "cuda_core";
  const auto f32 = p.qkv.options().dtype(at::kFloat);
  at::Tensor dqkv = at::empty_like(p.qkv, at::MemoryFormat::Contiguous);
  at::Tensor dbias = has_bias ? at::Tensor() : at::empty({0}, p.qkv.options());
  if (dqkv.numel() == 0 || g.total == 0) {  // nothing to attend: every gradient is zero
    dqkv.zero_();
    if (has_bias) dbias = at::zeros({3 * int64_t(g.c)}, p.qkv.options());
    return {dqkv, at::zeros_like(p.table), dbias};
  }
  const at::Tensor grad_c = grad.contiguous();
  const int64_t parts = tc ? groups : groups * p.nblocks;
  at::Tensor ws_table = at::empty({int64_t(g.heads) * g.table, parts}, f32);
  at::Tensor ws_pad = has_bias ? at::empty({2 * int64_t(g.c), parts}, f32) : at::Tensor();

  auto stream = c10::cuda::getCurrentCUDAStream();
  swa::dispatch(p.qkv.scalar_type(), p.d, [&](auto tag, auto dtag) {
    using scalar_t = decltype(tag);
    constexpr int D = decltype(dtag)::value;
    auto args = swa::make_backward_args<scalar_t>(p, grad_c, dqkv, ws_table, ws_pad, parts);
    args.group = int(group);
    if constexpr (!std::is_same_v<scalar_t, float>) {
      if (tc) {
        auto kernel_fn = swa::tc::backward_kernel<scalar_t, D>;
        swa::allow_smem(op, reinterpret_cast<const void*>(kernel_fn), plan.bytes, p);
        kernel_fn<<<dim3(unsigned(groups), unsigned(g.heads)), swa::kThreads, plan.bytes, stream>>>(args, plan);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        return;
      }
    }
    at::Tensor stats = at::empty({2, g.total, g.heads, g.n}, f32);
    args.stats = stats.mutable_data_ptr<float>();

    const size_t row_smem = swa::RowSmem<D, true>::bytes(g.table, g.n);
    auto row = swa::row_kernel<scalar_t, D, true>;
    swa::allow_smem(op, reinterpret_cast<const void*>(row), row_smem, p);
    row<<<dim3(unsigned(g.total), unsigned(g.heads), unsigned(p.nblocks)), swa::kThreads, row_smem, stream>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    const size_t col_smem = swa::ColSmem<D>::bytes(g.table, g.n);
    auto col = swa::col_kernel<scalar_t, D>;
    swa::allow_smem(op, reinterpret_cast<const void*>(col), col_smem, p);
    col<<<dim3(unsigned(groups), unsigned(g.heads), unsigned(p.nblocks)), swa::kThreads, col_smem, stream>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  at::Tensor table_sum = at::empty({int64_t(g.heads) * g.table}, f32);
  column_sum(ws_table, table_sum, stream);
  at::Tensor dtable = table_sum.view({g.heads, g.table}).t().contiguous().to(p.qkv.scalar_type());
  if (has_bias) {
    at::Tensor pad_sum = at::empty({2 * int64_t(g.c)}, f32);
    column_sum(ws_pad, pad_sum, stream);
    // Padding queries are cropped, so their dO, dS and dq are exactly zero: the q third of d qkv_bias is 0.
    dbias = at::cat({at::zeros({int64_t(g.c)}, f32), pad_sum}).to(p.qkv.scalar_type());
  }
  return {dqkv, dtable, dbias};
}

}  // namespace semask_kernels

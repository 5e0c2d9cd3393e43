// shifted_window_attention forward. Two kernels:
//   tensor_core (float16 / bfloat16, compute capability >= 8.0): swa_tc_forward.cuh, several windows per CTA,
//     WMMA tiles, fp32 scores and softmax;
//   cuda_core (every dtype; float32 always): the row kernel of swa_row_kernel.cuh in forward mode, one CTA per
//     (window, head, block of 32 queries), online softmax over 32-key chunks, fp32 FMAs.
// kernel="auto" takes tensor_core where it can run (its shared-memory plan fits the GPU), else cuda_core.
#include "shifted_window_attention/shifted_window_attention.h"

#include "shifted_window_attention/swa_host.cuh"
#include "shifted_window_attention/swa_row_kernel.cuh"
#include "shifted_window_attention/swa_tc_forward.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace semask_kernels {
namespace {

void launch_cuda_core(const char* op, const swa::Prepared& p, at::Tensor& out, cudaStream_t stream) {
  swa::dispatch(p.qkv.scalar_type(), p.d, [&](auto tag, auto dtag) {
    using scalar_t = decltype(tag);
    constexpr int D = decltype(dtag)::value;
    auto args = swa::make_args<scalar_t>(p);
    args.out = out.mutable_data_ptr<scalar_t>();
    const size_t smem = swa::RowSmem<D, false>::bytes(p.g.table, p.g.n);
    auto kernel = swa::row_kernel<scalar_t, D, false>;
    swa::allow_smem(op, reinterpret_cast<const void*>(kernel), smem, p);
    const dim3 grid(unsigned(p.g.total), unsigned(p.g.heads), unsigned(p.nblocks));
    kernel<<<grid, swa::kThreads, smem, stream>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void launch_tensor_core(const char* op, const swa::Prepared& p, const swa::tc::Plan& plan, at::Tensor& out,
                        cudaStream_t stream) {
  swa::dispatch(p.qkv.scalar_type(), p.d, [&](auto tag, auto dtag) {
    using scalar_t = decltype(tag);
    constexpr int D = decltype(dtag)::value;
    if constexpr (std::is_same_v<scalar_t, float>) {
      TORCH_CHECK(false, op, ": the tensor-core kernel takes float16 / bfloat16 only");
    } else {
      auto args = swa::make_args<scalar_t>(p);
      args.out = out.mutable_data_ptr<scalar_t>();
      auto kernel = swa::tc::forward_kernel<scalar_t, D>;
      swa::allow_smem(op, reinterpret_cast<const void*>(kernel), plan.bytes, p);
      const int64_t groups = (p.g.total + plan.group - 1) / plan.group;
      const dim3 grid(unsigned(groups), unsigned(p.g.heads));
      kernel<<<grid, swa::kThreads, plan.bytes, stream>>>(args, plan);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace

at::Tensor shifted_window_attention_forward(const at::Tensor& qkv, const at::Tensor& bias_table,
                                            const std::optional<at::Tensor>& qkv_bias, int64_t num_heads,
                                            at::IntArrayRef window_size, at::IntArrayRef shift_size, double scale,
                                            c10::string_view pad_order, double mask_value,
                                            c10::string_view kernel) {
  constexpr const char* op = "shifted_window_attention_forward";
  swa::check_args(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, pad_order);
  swa::check_kernel(op, kernel);
  c10::cuda::CUDAGuard guard(qkv.device());
  const swa::Prepared p = swa::prepare(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale,
                                       pad_order, mask_value);
  at::Tensor out = at::empty({qkv.size(0), qkv.size(1), qkv.size(2), p.g.c}, p.qkv.options());

  const swa::DeviceFacts dev = swa::device_facts();
  const swa::tc::Plan plan = swa::tc::choose_plan(p.g.n, p.d, p.g.table, p.g.total, p.g.heads, dev.sms,
                                                  size_t(dev.smem_per_sm));
  const bool tc_ok = swa::tensor_core_ok(op, kernel, p, dev, plan.bytes,
                                         reinterpret_cast<const void*>(swa::tc::forward_kernel<at::Half, 32>));
  if (out.numel() == 0 || p.g.total == 0) return out;  // a 0-block launch is an error

  auto stream = c10::cuda::getCurrentCUDAStream();
  if (kernel != "cuda_core" && tc_ok) {
    launch_tensor_core(op, p, plan, out, stream);
  } else {
    launch_cuda_core(op, p, out, stream);
  }
  return out;
}

}  // namespace semask_kernels

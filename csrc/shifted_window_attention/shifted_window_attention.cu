// shifted_window_attention forward: the row kernel (swa_device.cuh) in forward mode, one CTA per (window, head,
// block of 32 queries), online softmax over streamed 32-key chunks, fp32 on CUDA cores.
#include "shifted_window_attention/shifted_window_attention.h"

#include "shifted_window_attention/swa_host.cuh"
#include "shifted_window_attention/swa_row_kernel.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace semask_kernels {

at::Tensor shifted_window_attention_forward(const at::Tensor& qkv, const at::Tensor& bias_table,
                                            const std::optional<at::Tensor>& qkv_bias, int64_t num_heads,
                                            at::IntArrayRef window_size, at::IntArrayRef shift_size, double scale,
                                            c10::string_view pad_order, double mask_value) {
  constexpr const char* op = "shifted_window_attention_forward";
  swa::check_args(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, pad_order);
  c10::cuda::CUDAGuard guard(qkv.device());
  const swa::Prepared p = swa::prepare(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale,
                                       pad_order, mask_value);
  at::Tensor out = at::empty({qkv.size(0), qkv.size(1), qkv.size(2), p.g.c}, p.qkv.options());
  if (out.numel() == 0 || p.g.total == 0) return out;  // a 0-block launch is an error

  auto stream = c10::cuda::getCurrentCUDAStream();
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
  return out;
}

}  // namespace semask_kernels

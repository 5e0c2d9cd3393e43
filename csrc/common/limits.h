// The CUDA kernels' limits and kernel-choice rules, in one header that the kernels and the Python module's
// build_info() both read: Python asks the extension (semask_kernels._ext.build_info()["limits"]) instead of
// restating these numbers. Plain C++ (no CUDA types), so the host-only module can include it.
#pragma once

#include <cstdint>

namespace semask_kernels {
namespace limits {

// shifted_window_attention: head dims the kernels are instantiated for, and window tokens N = wh * ww.
constexpr int kSwaHeadDims[] = {16, 32, 64, 128};
constexpr int kSwaMaxTokens = 256;  // Swin uses 49 .. 196

// upsample_cross_entropy: per spatial side of logits and target (float coordinates stay exact enough).
constexpr int64_t kUceMaxSide = int64_t(1) << 23;

// How kernel="auto" picks between the two shifted_window_attention kernels, forward and backward.
constexpr const char* kSwaKernelRule =
    "tensor_core for float16/bfloat16 on compute capability >= 8.0 when its shared-memory plan fits the GPU, "
    "else cuda_core (always for float32); kernel='tensor_core' or 'cuda_core' forces one";

constexpr bool swa_head_dim_ok(int64_t d) {
  for (int h : kSwaHeadDims) {
    if (h == d) return true;
  }
  return false;
}

}  // namespace limits
}  // namespace semask_kernels

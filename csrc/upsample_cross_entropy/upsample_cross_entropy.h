// upsample_cross_entropy: bilinear resize of logits (B, K, h, w) to the target's (H, W) fused with log-softmax,
// NLL, ignore_index and the mean, never forming the (B, K, H, W) logits or their gradient. Semantics:
// semask_kernels/ops/upsample_cross_entropy/reference.py. Design: upsample_cross_entropy.cu.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace semask_kernels {

// logits (B, K, h, w) CUDA float16 / bfloat16 / float32; target (B, H, W) int64 or int32 on the same device,
// values in [0, K) or ignore_index (any other value makes the loss NaN, never an out-of-bounds read).
// Returns (loss: 0-dim of the logits' dtype, lse: (B, H, W) float32 per-pixel log-sum-exp of the resized
// logits, denominator: 0-dim float32 the summed loss was divided by). lse and denominator feed the backward.
std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_cross_entropy_forward(const at::Tensor& logits,
                                                                              const at::Tensor& target,
                                                                              int64_t ignore_index,
                                                                              bool avg_non_ignore,
                                                                              bool align_corners);

// grad: the loss's gradient (one element, the logits' dtype); lse and denominator from the forward on the same
// logits and target. Returns d logits (B, K, h, w), contiguous, as a gather (deterministic, no atomics).
at::Tensor upsample_cross_entropy_backward(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& target,
                                           const at::Tensor& lse, const at::Tensor& denominator,
                                           int64_t ignore_index, bool align_corners);

}  // namespace semask_kernels

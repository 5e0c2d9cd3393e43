// shifted_window_attention: the attention of one Swin block after its qkv Linear, fused (roll / pad / partition /
// bias / shift mask / softmax / reverse / crop as index arithmetic). Semantics: semask_kernels/ops/
// shifted_window_attention/reference.py. Design and determinism: swa_device.cuh (CUDA-core kernels),
// swa_tc_forward.cuh and swa_tc_backward.cuh (tensor-core kernels).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace semask_kernels {

// qkv (B, H, W, 3C) CUDA float16 / bfloat16 / float32, last dim [3][nH][d] with d in {16, 32, 64, 128};
// bias_table ((2wh - 1)(2ww - 1), nH) and qkv_bias (3C,) (optional) of qkv's dtype and device;
// window_size (wh, ww) with wh * ww <= 256, shift_size (sh, sw) in [0, window); pad_order "roll_then_pad" or
// "pad_then_roll"; kernel "auto", "tensor_core" (float16 / bfloat16 on sm_80+, an error where it cannot run) or
// "cuda_core" (see shifted_window_attention.cu). Returns (B, H, W, C), contiguous.
at::Tensor shifted_window_attention_forward(const at::Tensor& qkv, const at::Tensor& bias_table,
                                            const std::optional<at::Tensor>& qkv_bias, int64_t num_heads,
                                            at::IntArrayRef window_size, at::IntArrayRef shift_size, double scale,
                                            c10::string_view pad_order, double mask_value,
                                            c10::string_view kernel);

// The tensor-core kernels' code run on the CPU (swa_tc_emulate.cu): CPU float16 / bfloat16 tensors, the same
// arguments, and `group` windows per CTA (0: the group the launcher would choose, on a 132-SM GPU with 227 KiB
// of shared memory per block). For testing the kernels' tiling without a GPU.
at::Tensor shifted_window_attention_emulated_forward(const at::Tensor& qkv, const at::Tensor& bias_table,
                                                     const std::optional<at::Tensor>& qkv_bias, int64_t num_heads,
                                                     at::IntArrayRef window_size, at::IntArrayRef shift_size,
                                                     double scale, c10::string_view pad_order, double mask_value,
                                                     int64_t group);
std::tuple<at::Tensor, at::Tensor, at::Tensor> shifted_window_attention_emulated_backward(
    const at::Tensor& grad, const at::Tensor& qkv, const at::Tensor& bias_table,
    const std::optional<at::Tensor>& qkv_bias, int64_t num_heads, at::IntArrayRef window_size,
    at::IntArrayRef shift_size, double scale, c10::string_view pad_order, double mask_value, int64_t group);

// grad (B, H, W, C) of qkv's dtype; kernel as the forward's (swa_backward.cu). Returns (d qkv (B, H, W, 3C),
// d bias_table, d qkv_bias (3C,) or an empty (0,) tensor without qkv_bias), all contiguous and bitwise
// repeatable (no atomics).
std::tuple<at::Tensor, at::Tensor, at::Tensor> shifted_window_attention_backward(
    const at::Tensor& grad, const at::Tensor& qkv, const at::Tensor& bias_table,
    const std::optional<at::Tensor>& qkv_bias, int64_t num_heads, at::IntArrayRef window_size,
    at::IntArrayRef shift_size, double scale, c10::string_view pad_order, double mask_value,
    c10::string_view kernel);

}  // namespace semask_kernels

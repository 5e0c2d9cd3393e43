// The one file that defines every C++ op schema of the semask_kernels namespace, and binds each to its
// CUDA implementation. The Python side adds its own ops to the same namespace with torch.library.custom_op
// (a FRAGMENT library), so every C++ op name here ends in _forward / _backward to never collide with them.
// Built into both the Python extension (semask_kernels._C) and the CMake library (libsemask_kernels_ops.so).
#include <torch/library.h>

#include <string>
#include <vector>

#include "prior_map_decode/prior_map_decode.h"
#include "shifted_window_attention/shifted_window_attention.h"
#include "upsample_cross_entropy/upsample_cross_entropy.h"

namespace semask_kernels {
namespace {

// Every schema, in one list, so op_names() (reported by build_info) can never drift from what is defined.
constexpr const char* kSchemas[] = {
    "prior_map_decode_forward(Tensor[] maps, Tensor[] row_start, Tensor[] row_weight, Tensor[] col_start, "
    "Tensor[] col_weight) -> Tensor",
    "prior_map_decode_backward(Tensor grad, Tensor[] row_start, Tensor[] row_weight, Tensor[] col_start, "
    "Tensor[] col_weight) -> Tensor[]",
    "shifted_window_attention_forward(Tensor qkv, Tensor bias_table, Tensor? qkv_bias, int num_heads, "
    "int[] window_size, int[] shift_size, float scale, str pad_order, float mask_value, str kernel=\"auto\") "
    "-> Tensor",
    "shifted_window_attention_emulated_forward(Tensor qkv, Tensor bias_table, Tensor? qkv_bias, int num_heads, "
    "int[] window_size, int[] shift_size, float scale, str pad_order, float mask_value, int group=0) -> Tensor",
    "shifted_window_attention_backward(Tensor grad, Tensor qkv, Tensor bias_table, Tensor? qkv_bias, "
    "int num_heads, int[] window_size, int[] shift_size, float scale, str pad_order, float mask_value, "
    "str kernel=\"auto\") -> (Tensor, Tensor, Tensor)",
    "shifted_window_attention_emulated_backward(Tensor grad, Tensor qkv, Tensor bias_table, Tensor? qkv_bias, "
    "int num_heads, int[] window_size, int[] shift_size, float scale, str pad_order, float mask_value, "
    "int group=0) -> (Tensor, Tensor, Tensor)",
    "upsample_cross_entropy_forward(Tensor logits, Tensor target, int ignore_index, bool avg_non_ignore, "
    "bool align_corners) -> (Tensor, Tensor, Tensor)",
    "upsample_cross_entropy_backward(Tensor grad, Tensor logits, Tensor target, Tensor lse, Tensor denominator, "
    "int ignore_index, bool align_corners) -> Tensor",
};

}  // namespace

// Names of the ops defined here, without the namespace (used by the Python module's build_info()).
std::vector<std::string> op_names() {
  std::vector<std::string> names;
  for (const char* schema : kSchemas) {
    const std::string s(schema);
    names.push_back(s.substr(0, s.find('(')));
  }
  return names;
}

}  // namespace semask_kernels

TORCH_LIBRARY(semask_kernels, m) {
  for (const char* schema : semask_kernels::kSchemas) m.def(schema);
}

TORCH_LIBRARY_IMPL(semask_kernels, CUDA, m) {
  m.impl("prior_map_decode_forward", TORCH_FN(semask_kernels::prior_map_decode_forward));
  m.impl("prior_map_decode_backward", TORCH_FN(semask_kernels::prior_map_decode_backward));
  m.impl("shifted_window_attention_forward", TORCH_FN(semask_kernels::shifted_window_attention_forward));
  m.impl("shifted_window_attention_backward", TORCH_FN(semask_kernels::shifted_window_attention_backward));
  m.impl("upsample_cross_entropy_forward", TORCH_FN(semask_kernels::upsample_cross_entropy_forward));
  m.impl("upsample_cross_entropy_backward", TORCH_FN(semask_kernels::upsample_cross_entropy_backward));
}

// The tensor-core kernels' CPU emulation (a test hook) is CPU-only. CPU tensors also reach the CUDA entry
// points, whose first check raises an error naming the argument that is not a CUDA tensor (instead of the
// dispatcher's generic "could not run ... with the 'CPU' backend").
TORCH_LIBRARY_IMPL(semask_kernels, CPU, m) {
  m.impl("shifted_window_attention_emulated_forward",
         TORCH_FN(semask_kernels::shifted_window_attention_emulated_forward));
  m.impl("shifted_window_attention_emulated_backward",
         TORCH_FN(semask_kernels::shifted_window_attention_emulated_backward));
  m.impl("shifted_window_attention_forward", TORCH_FN(semask_kernels::shifted_window_attention_forward));
  m.impl("shifted_window_attention_backward", TORCH_FN(semask_kernels::shifted_window_attention_backward));
  m.impl("upsample_cross_entropy_forward", TORCH_FN(semask_kernels::upsample_cross_entropy_forward));
  m.impl("upsample_cross_entropy_backward", TORCH_FN(semask_kernels::upsample_cross_entropy_backward));
}

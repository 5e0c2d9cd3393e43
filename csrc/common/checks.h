// Argument checks shared by every op. Each message names the op, the argument, what was expected and what
// was received, so a user can fix the call without reading the kernel.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>

namespace semask_kernels {

// "maps[2]" style names for elements of a tensor list.
inline std::string arg_name(const char* name, int64_t index) {
  return std::string(name) + "[" + std::to_string(index) + "]";
}

inline void check_cuda(const char* op, const at::Tensor& t, const std::string& name) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a defined tensor, got an undefined one");
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got device ", t.device());
}

inline void check_cpu(const char* op, const at::Tensor& t, const std::string& name) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a defined tensor, got an undefined one");
  TORCH_CHECK(t.is_cpu(), op, ": ", name, " must be a CPU tensor, got device ", t.device());
}

inline void check_same_device(const char* op, const at::Tensor& t, const std::string& name,
                              const at::Tensor& ref, const std::string& ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " must be on ", ref_name, "'s device ",
              ref.device(), ", got ", t.device());
}

inline void check_dtype(const char* op, const at::Tensor& t, const std::string& name, at::ScalarType expected) {
  TORCH_CHECK(t.scalar_type() == expected, op, ": ", name, " must have dtype ", expected, ", got ",
              t.scalar_type());
}

// float16 / bfloat16 / float32 / float64: the dtypes every kernel here is instantiated for.
inline void check_floating(const char* op, const at::Tensor& t, const std::string& name) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat || s == at::kDouble, op, ": ", name,
              " must have dtype float16, bfloat16, float32 or float64, got ", s);
}

inline void check_dim(const char* op, const at::Tensor& t, const std::string& name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got ", t.dim(), "-D with shape ",
              t.sizes());
}

inline void check_size(const char* op, const at::Tensor& t, const std::string& name, int64_t dim,
                       int64_t expected, const char* what) {
  TORCH_CHECK(t.size(dim) == expected, op, ": ", name, ".size(", dim, ") must be ", expected, " (", what,
              "), got ", t.size(dim), " (shape ", t.sizes(), ")");
}

inline void check_contiguous(const char* op, const at::Tensor& t, const std::string& name) {
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous, got strides ", t.strides(),
              " for shape ", t.sizes());
}

}  // namespace semask_kernels

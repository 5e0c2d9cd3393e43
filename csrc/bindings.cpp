// The one file that defines every C++ op schema of the semask_kernels namespace, and binds each to its
// CUDA implementation. The Python side adds its own ops to the same namespace with torch.library.custom_op
// (a FRAGMENT library), so every C++ op name here ends in _forward / _backward to never collide with them.
// Built into both the Python extension (semask_kernels._C) and the CMake library (libsemask_kernels_ops.so).
#include <torch/library.h>

#include <string>
#include <vector>

#include "prior_map_decode/prior_map_decode.h"

namespace semask_kernels {
namespace {

// Every schema, in one list, so op_names() (reported by build_info) can never drift from what is defined.
constexpr const char* kSchemas[] = {
    "prior_map_decode_forward(Tensor[] maps, Tensor[] row_start, Tensor[] row_weight, Tensor[] col_start, "
    "Tensor[] col_weight) -> Tensor",
    "prior_map_decode_backward(Tensor grad, Tensor[] row_start, Tensor[] row_weight, Tensor[] col_start, "
    "Tensor[] col_weight) -> Tensor[]",
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
}

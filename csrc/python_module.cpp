// Python module semask_kernels._C: importing it loads the ops registered in bindings.cpp (through
// torch.ops.semask_kernels.*) and exposes build_info(). Kept apart from bindings.cpp so the CMake build,
// which has no Python, can build the ops alone.
#include <torch/extension.h>

#include <cuda.h>  // CUDA_VERSION of the toolkit the extension was compiled with

#include "common/limits.h"

#if __has_include(<torch/headeronly/version.h>)
#include <torch/headeronly/version.h>
#else
#include <torch/version.h>
#endif

#include <sstream>
#include <string>
#include <iterator>
#include <vector>

// setup.py passes the target architectures as -DSEMASK_CUDA_ARCHS=8.0,9.0 (commas: no shell quoting needed).
#define SEMASK_STR_(...) #__VA_ARGS__
#define SEMASK_STR(...) SEMASK_STR_(__VA_ARGS__)
#ifndef SEMASK_CUDA_ARCHS
#define SEMASK_CUDA_ARCHS
#endif

namespace semask_kernels {
std::vector<std::string> op_names();  // defined in bindings.cpp
}

namespace {

std::vector<std::string> split_archs(const std::string& raw) {
  std::vector<std::string> out;
  std::stringstream ss(raw);
  std::string item;
  while (std::getline(ss, item, ',')) {
    // Stringizing may keep spaces around the commas; drop them.
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

pybind11::dict build_info() {
  pybind11::dict info;
  info["cuda_archs"] = split_archs(SEMASK_STR(SEMASK_CUDA_ARCHS));
  info["cuda_version"] = std::to_string(CUDA_VERSION / 1000) + "." + std::to_string((CUDA_VERSION % 1000) / 10);
  info["torch_version"] = std::string(TORCH_VERSION);
  info["ops"] = semask_kernels::op_names();
  namespace lim = semask_kernels::limits;
  pybind11::dict swa;
  swa["head_dims"] = std::vector<int>(std::begin(lim::kSwaHeadDims), std::end(lim::kSwaHeadDims));
  swa["max_tokens"] = lim::kSwaMaxTokens;
  pybind11::dict uce;
  uce["max_side"] = lim::kUceMaxSide;
  pybind11::dict limits;
  limits["shifted_window_attention"] = swa;
  limits["upsample_cross_entropy"] = uce;
  info["limits"] = limits;
  pybind11::dict kernels;
  kernels["shifted_window_attention"] = std::string(lim::kSwaKernelRule);
  info["kernels"] = kernels;
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "semask_kernels compiled CUDA ops (registered as torch.ops.semask_kernels.*_forward/_backward)";
  m.def("build_info", &build_info,
        "dict: cuda_archs (list of 'X.Y'), cuda_version, torch_version (built against), ops (C++ op names), "
        "limits ({op: {name: value}}, the kernels' limits), kernels ({op: how kernel='auto' picks})");
}

// Host-side helpers of shifted_window_attention shared by its forward (shifted_window_attention.cu) and
// backward (swa_backward.cu): argument checks, the Geometry of a call, dtype x head-dim dispatch, shared-memory
// opt-in. Internal: included by those two files only.
#pragma once

#include "common/checks.h"
#include "shifted_window_attention/swa_device.cuh"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

namespace semask_kernels {
namespace swa {

// Checked arguments: contiguous tensors (on the current device, under the caller's CUDAGuard) and geometry.
struct Prepared {
  at::Tensor qkv, table, qkv_bias;  // qkv_bias undefined when absent
  Geometry g;
  int64_t batch;
  int d;
  int nblocks;  // ceil(n / kBlock)
};

inline void check_float_dtype(const char* op, const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kHalf || s == at::kBFloat16 || s == at::kFloat, op, ": ", name,
              " must have dtype float16, bfloat16 or float32 (the CUDA kernels' dtypes), got ", s);
}

// Every check that needs no device state; call before taking the CUDAGuard. The tensors must be CUDA tensors,
// or CPU tensors with on_cpu (the CPU emulation of the tensor-core kernel).
inline void check_args(const char* op, const at::Tensor& qkv, const at::Tensor& table,
                       const std::optional<at::Tensor>& qkv_bias, int64_t num_heads, at::IntArrayRef window,
                       at::IntArrayRef shift, c10::string_view pad_order, bool on_cpu = false) {
  const auto check_device = on_cpu ? check_cpu : check_cuda;
  check_device(op, qkv, "qkv");
  check_float_dtype(op, qkv, "qkv");
  check_dim(op, qkv, "qkv", 4);
  TORCH_CHECK(num_heads >= 1 && num_heads <= 65535, op, ": num_heads must be in [1, 65535], got ", num_heads);
  TORCH_CHECK(window.size() == 2 && window[0] >= 1 && window[1] >= 1, op,
              ": window_size must be 2 ints >= 1, got ", window);
  TORCH_CHECK(window[0] * window[1] <= kMaxTokens, op, ": window_size ", window, " has ", window[0] * window[1],
              " tokens, more than the CUDA kernels' limit of ", kMaxTokens);
  TORCH_CHECK(shift.size() == 2 && shift[0] >= 0 && shift[1] >= 0 && shift[0] < window[0] && shift[1] < window[1],
              op, ": shift_size must be 2 ints in [0, window_size) = [0, ", window, "), got ", shift);
  const int64_t c3 = qkv.size(3);
  TORCH_CHECK(c3 > 0 && c3 % (3 * num_heads) == 0, op, ": qkv.size(3) must be 3 * num_heads * d = 3 * ", num_heads,
              " * d, got ", c3);
  const int64_t d = c3 / 3 / num_heads;
  TORCH_CHECK(limits::swa_head_dim_ok(d), op,
              ": head dim d = qkv.size(3) / 3 / num_heads must be 16, 32, 64 or 128, got ", d);
  TORCH_CHECK(qkv.size(1) <= (int64_t(1) << 30) && qkv.size(2) <= (int64_t(1) << 30) &&
                  qkv.size(1) * qkv.size(2) <= std::numeric_limits<int32_t>::max(),
              op, ": qkv's map H x W = ", qkv.size(1), " x ", qkv.size(2), " is too large (H * W must fit in int32)");
  check_device(op, table, "bias_table");
  check_same_device(op, table, "bias_table", qkv, "qkv");
  check_dtype(op, table, "bias_table", qkv.scalar_type());
  check_dim(op, table, "bias_table", 2);
  check_size(op, table, "bias_table", 0, (2 * window[0] - 1) * (2 * window[1] - 1), "(2 wh - 1)(2 ww - 1)");
  check_size(op, table, "bias_table", 1, num_heads, "num_heads");
  if (qkv_bias.has_value() && qkv_bias->defined()) {
    const at::Tensor& qb = *qkv_bias;
    check_device(op, qb, "qkv_bias");
    check_same_device(op, qb, "qkv_bias", qkv, "qkv");
    check_dtype(op, qb, "qkv_bias", qkv.scalar_type());
    check_dim(op, qb, "qkv_bias", 1);
    check_size(op, qb, "qkv_bias", 0, c3, "qkv.size(3)");
  }
  TORCH_CHECK(pad_order == "roll_then_pad" || pad_order == "pad_then_roll", op,
              ": pad_order must be 'roll_then_pad' or 'pad_then_roll', got '", std::string(pad_order), "'");
}

// The backward's output gradient: (B, H, W, C) of qkv's dtype and device.
inline void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& qkv) {
  if (qkv.is_cpu()) {
    check_cpu(op, grad, "grad");
  } else {
    check_cuda(op, grad, "grad");
    check_same_device(op, grad, "grad", qkv, "qkv");
  }
  check_dtype(op, grad, "grad", qkv.scalar_type());
  check_dim(op, grad, "grad", 4);
  for (int64_t i = 0; i < 3; ++i) check_size(op, grad, "grad", i, qkv.size(i), "as qkv");
  check_size(op, grad, "grad", 3, qkv.size(3) / 3, "C = qkv.size(3) / 3");
}

// Contiguous copies and the geometry; call under the CUDAGuard of qkv's device.
inline Prepared prepare(const char* op, const at::Tensor& qkv, const at::Tensor& table,
                        const std::optional<at::Tensor>& qkv_bias, int64_t num_heads, at::IntArrayRef window,
                        at::IntArrayRef shift, double scale, c10::string_view pad_order, double mask_value) {
  Prepared p;
  p.qkv = qkv.contiguous();
  p.table = table.contiguous();
  if (qkv_bias.has_value() && qkv_bias->defined()) p.qkv_bias = qkv_bias->contiguous();
  const int64_t B = qkv.size(0), H = qkv.size(1), W = qkv.size(2);
  Geometry& g = p.g;
  g.H = int(H);
  g.W = int(W);
  g.wh = int(window[0]);
  g.ww = int(window[1]);
  g.sh = int(shift[0]);
  g.sw = int(shift[1]);
  g.Hp = int((H + g.wh - 1) / g.wh * g.wh);
  g.Wp = int((W + g.ww - 1) / g.ww * g.ww);
  g.nwc = g.Wp / g.ww;
  const int64_t nwin = int64_t(g.Hp / g.wh) * g.nwc;
  TORCH_CHECK(nwin <= std::numeric_limits<int32_t>::max(), op, ": too many windows per image (", nwin, ")");
  g.nwin = int(nwin);
  g.total = B * nwin;
  TORCH_CHECK(g.total <= std::numeric_limits<int32_t>::max(), op, ": B x windows = ", g.total,
              " exceeds the CUDA grid limit 2^31 - 1");
  g.n = g.wh * g.ww;
  g.heads = int(num_heads);
  g.table = (2 * g.wh - 1) * (2 * g.ww - 1);
  g.c = int(qkv.size(3) / 3);
  g.idx0 = (g.wh - 1) * (2 * g.ww - 1) + (g.ww - 1);
  g.pad_then_roll = pad_order == "pad_then_roll";
  g.scale = float(scale);
  g.mask_value = float(mask_value);
  p.batch = B;
  p.d = g.c / g.heads;
  p.nblocks = (g.n + kBlock - 1) / kBlock;
  return p;
}

// f(scalar_t{}, std::integral_constant<int, D>{}) for the call's dtype and head dim (both already checked).
template <typename F>
void dispatch(at::ScalarType st, int d, F&& f) {
  auto with_d = [&](auto tag) {
    switch (d) {
      case 16: f(tag, std::integral_constant<int, 16>{}); break;
      case 32: f(tag, std::integral_constant<int, 32>{}); break;
      case 64: f(tag, std::integral_constant<int, 64>{}); break;
      case 128: f(tag, std::integral_constant<int, 128>{}); break;
      default: TORCH_CHECK(false, "shifted_window_attention: unsupported head dim ", d);
    }
  };
  switch (st) {
    case at::kHalf: with_d(at::Half{}); break;
    case at::kBFloat16: with_d(at::BFloat16{}); break;
    case at::kFloat: with_d(float{}); break;
    default: TORCH_CHECK(false, "shifted_window_attention: unsupported dtype ", st);
  }
}

// Allow `bytes` of dynamic shared memory for `kernel` on the current device, or say why it cannot run.
inline void allow_smem(const char* op, const void* kernel, size_t bytes, const Prepared& p) {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  int optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(bytes <= size_t(optin), op, ": window ", p.g.wh, "x", p.g.ww, " with head dim ", p.d, " needs ",
              bytes, " bytes of shared memory per block, this GPU allows ", optin);
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
}

// Windows per backward CTA (column kernel, tensor-core kernel): the smallest group that keeps the CTAs per head
// (and so the workspaces' columns) at most 1024 (times the column kernel's key blocks). A function of the shape
// only, so the order of the workspaces' sums is too. At least 1.
inline int64_t backward_group(int64_t windows) {
  constexpr int64_t kTargetGroups = 1024;
  return windows > 0 ? (windows + kTargetGroups - 1) / kTargetGroups : 1;
}

// What the kernel choice needs to know about the current device.
struct DeviceFacts {
  int major, sms, optin, smem_per_sm;
};

inline DeviceFacts device_facts() {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  DeviceFacts f{};
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.major, cudaDevAttrComputeCapabilityMajor, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&f.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  return f;
}

inline void check_kernel(const char* op, c10::string_view kernel) {
  TORCH_CHECK(kernel == "auto" || kernel == "tensor_core" || kernel == "cuda_core", op,
              ": kernel must be 'auto', 'tensor_core' or 'cuda_core', got '", std::string(kernel), "'");
}

// Whether a tensor-core kernel, needing `bytes` of shared memory, can run this call on this device; with
// kernel = "tensor_core" an error saying why not. `kernel_fn` is one instantiation of it: the code the driver
// loads for this GPU must come from sm_80+ (a build for older archs only would JIT their PTX, where the WMMA
// tile product is a trap).
inline bool tensor_core_ok(const char* op, c10::string_view kernel, const Prepared& p, const DeviceFacts& dev,
                           size_t bytes, const void* kernel_fn) {
  const auto st = p.qkv.scalar_type();
  cudaFuncAttributes attr{};
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel_fn));
  const bool ok = (st == at::kHalf || st == at::kBFloat16) && dev.major >= 8 && attr.ptxVersion >= 80 &&
                  bytes <= size_t(dev.optin);
  TORCH_CHECK(kernel != "tensor_core" || ok, op, ": kernel='tensor_core' needs float16 / bfloat16 qkv (got ", st,
              ") on a GPU of compute capability >= 8.0 (got ", dev.major, ".x) with code built for sm_80+ (got ",
              "compute_", attr.ptxVersion, ") and ", bytes, " bytes of shared memory per block for window ", p.g.wh,
              "x", p.g.ww, ", head dim ", p.d, " (this GPU allows ", dev.optin, ")");
  return ok;
}

inline bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename scalar_t>
Args<scalar_t> make_args(const Prepared& p) {
  Args<scalar_t> a{};
  a.qkv = p.qkv.const_data_ptr<scalar_t>();
  a.table = p.table.const_data_ptr<scalar_t>();
  a.qkv_bias = p.qkv_bias.defined() ? p.qkv_bias.const_data_ptr<scalar_t>() : nullptr;
  a.nblocks = p.nblocks;
  a.vec16 = aligned16(a.qkv) && (a.qkv_bias == nullptr || aligned16(a.qkv_bias));
  a.g = p.g;
  return a;
}

// The backward's arguments: make_args plus the output gradient `grad` (contiguous), d qkv `dqkv` and the two
// workspaces of `parts` columns (ws_pad undefined without qkv_bias).
template <typename scalar_t>
Args<scalar_t> make_backward_args(const Prepared& p, const at::Tensor& grad, at::Tensor& dqkv, at::Tensor& ws_table,
                                  at::Tensor& ws_pad, int64_t parts) {
  Args<scalar_t> a = make_args<scalar_t>(p);
  a.grad = grad.const_data_ptr<scalar_t>();
  a.vec16 = a.vec16 && aligned16(a.grad);
  a.out = dqkv.mutable_data_ptr<scalar_t>();
  a.ws_table = ws_table.mutable_data_ptr<float>();
  a.ws_pad = ws_pad.defined() ? ws_pad.mutable_data_ptr<float>() : nullptr;
  a.parts = parts;
  return a;
}

}  // namespace swa
}  // namespace semask_kernels

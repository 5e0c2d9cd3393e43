// The CPU emulation of the tensor-core kernels (swa_tc_forward.cuh, swa_tc_backward.cuh): each kernel's own
// steps, in the kernel's order, for every thread / lane of every CTA in turn, with the 16 x 16 tile products done
// by fp32 loops. Warps run one after another: between two barriers a warp touches only its own shared-memory
// regions and output tiles, so any interleaving gives the same result. Shared memory is filled with NaN bytes
// before each CTA (a read of anything the steps did not write shows up as NaN) and followed by a canary that must
// be intact afterwards (a write past the plan's bytes is an error); outputs and workspaces start as NaN, so an
// element no step writes shows up too. For tests: it runs at CPU speed.
#include "shifted_window_attention/shifted_window_attention.h"

#include "shifted_window_attention/swa_host.cuh"
#include "shifted_window_attention/swa_tc_backward.cuh"
#include "shifted_window_attention/swa_tc_forward.cuh"

#include <cstring>
#include <vector>

namespace semask_kernels {
namespace {

struct HostExec {
  template <typename F>
  void threads(F&& f) const {
    for (int t = 0; t < swa::kThreads; ++t) f(t, swa::kThreads);
  }
  void sync() const {}
  template <typename F>
  void warps(F&& f) const {
    for (int w = 0; w < swa::kWarps; ++w) f(w);
  }
  template <typename F>
  void lanes(F&& f) const {
    for (int l = 0; l < 32; ++l) f(l);
  }
  template <typename F>
  void warp(F&& f) const {
    f();
  }
  void syncwarp() const {}
};

constexpr int kAssumedSms = 132;                // an H100 SXM
constexpr size_t kAssumedOptin = 227 * 1024;    // its shared memory per block
constexpr size_t kAssumedPerSm = 228 * 1024;    // and per SM
constexpr unsigned char kCanary = 0xA5;
constexpr size_t kCanaryBytes = 256;

// cta(group index, head, shared memory) for every CTA of a (groups, heads) grid, one after another, each with
// `bytes` of shared memory filled with NaN bytes and followed by a canary that must be intact afterwards.
template <typename F>
void run_grid(const char* op, int64_t groups, int heads, size_t bytes, F&& cta) {
  std::vector<unsigned char> smem(bytes + kCanaryBytes);
  for (int64_t gi = 0; gi < groups; ++gi) {
    for (int h = 0; h < heads; ++h) {
      std::memset(smem.data(), 0xFF, bytes);  // NaN in every float16 / bfloat16 / float32 slot
      std::memset(smem.data() + bytes, kCanary, kCanaryBytes);
      cta(gi, h, smem.data());
      for (size_t i = bytes; i < smem.size(); ++i) {
        TORCH_CHECK(smem[i] == kCanary, op, ": CTA (", gi, ", ", h, ") wrote past its ", bytes,
                    " bytes of shared memory (byte ", i, ")");
      }
    }
  }
}

void check_low_precision(const char* op, const at::Tensor& qkv) {
  TORCH_CHECK(qkv.scalar_type() == at::kHalf || qkv.scalar_type() == at::kBFloat16, op,
              ": qkv must have dtype float16 or bfloat16 (the tensor-core kernels' dtypes), got ", qkv.scalar_type());
}

void check_group(const char* op, int64_t group) {
  TORCH_CHECK(group >= 0 && group <= 64, op, ": group must be in [0, 64] (0: the kernel's own choice), got ", group);
}

}  // namespace

at::Tensor shifted_window_attention_emulated_forward(const at::Tensor& qkv, const at::Tensor& bias_table,
                                                     const std::optional<at::Tensor>& qkv_bias, int64_t num_heads,
                                                     at::IntArrayRef window_size, at::IntArrayRef shift_size,
                                                     double scale, c10::string_view pad_order, double mask_value,
                                                     int64_t group) {
  constexpr const char* op = "shifted_window_attention_emulated_forward";
  swa::check_args(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, pad_order, /*on_cpu=*/true);
  check_low_precision(op, qkv);
  check_group(op, group);
  const swa::Prepared p = swa::prepare(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale,
                                       pad_order, mask_value);
  // NaN until written: an output element the kernel's steps never write stays NaN (the kernel itself uses
  // at::empty, and a freed buffer of an earlier identical call could hold the right values by chance).
  at::Tensor out = at::full({qkv.size(0), qkv.size(1), qkv.size(2), p.g.c}, NAN, p.qkv.options());
  if (out.numel() == 0 || p.g.total == 0) return out;

  const swa::tc::Plan plan =
      group == 0 ? swa::tc::choose_plan(p.g.n, p.d, p.g.table, p.g.total, p.g.heads, kAssumedSms, kAssumedPerSm)
                 : swa::tc::make_plan(p.g.n, p.d, p.g.table, int(group));
  // The launcher's own choice must fit an H100's block; an explicit group is a test of the tiling, any size.
  TORCH_CHECK(group != 0 || plan.bytes <= kAssumedOptin, op, ": the tensor-core plan needs ", plan.bytes,
              " bytes of shared memory, more than ", kAssumedOptin);
  const int64_t groups = (p.g.total + plan.group - 1) / plan.group;
  swa::dispatch(p.qkv.scalar_type(), p.d, [&](auto tag, auto dtag) {
    using scalar_t = decltype(tag);
    constexpr int D = decltype(dtag)::value;
    if constexpr (!std::is_same_v<scalar_t, float>) {
      auto args = swa::make_args<scalar_t>(p);
      args.out = out.mutable_data_ptr<scalar_t>();
      run_grid(op, groups, p.g.heads, plan.bytes, [&](int64_t gi, int h, unsigned char* smem) {
        swa::tc::forward_cta(HostExec{}, swa::tc::Cta<scalar_t, D>(args, plan, gi, h, smem));
      });
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> shifted_window_attention_emulated_backward(
    const at::Tensor& grad, const at::Tensor& qkv, const at::Tensor& bias_table,
    const std::optional<at::Tensor>& qkv_bias, int64_t num_heads, at::IntArrayRef window_size,
    at::IntArrayRef shift_size, double scale, c10::string_view pad_order, double mask_value, int64_t group) {
  constexpr const char* op = "shifted_window_attention_emulated_backward";
  swa::check_args(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, pad_order, /*on_cpu=*/true);
  check_low_precision(op, qkv);
  check_group(op, group);
  swa::check_grad(op, grad, qkv);
  const swa::Prepared p = swa::prepare(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale,
                                       pad_order, mask_value);
  const swa::Geometry& g = p.g;
  const bool has_bias = p.qkv_bias.defined();
  if (qkv.numel() == 0 || g.total == 0) {
    return {at::zeros_like(p.qkv), at::zeros_like(p.table),
            has_bias ? at::zeros_like(p.qkv_bias) : at::empty({0}, p.qkv.options())};
  }
  const int64_t windows_per_cta = group == 0 ? swa::backward_group(g.total) : group;
  const int64_t groups = (g.total + windows_per_cta - 1) / windows_per_cta;
  const swa::tc::BwdPlan plan = swa::tc::make_bwd_plan(g.n, p.d, g.table, int(windows_per_cta));
  TORCH_CHECK(plan.bytes <= kAssumedOptin, op, ": the tensor-core backward needs ", plan.bytes,
              " bytes of shared memory, more than ", kAssumedOptin);
  const auto f32 = p.qkv.options().dtype(at::kFloat);
  at::Tensor dqkv = at::full_like(p.qkv, NAN, at::MemoryFormat::Contiguous);
  at::Tensor ws_table = at::full({int64_t(g.heads) * g.table, groups}, NAN, f32);
  at::Tensor ws_pad = has_bias ? at::full({2 * int64_t(g.c), groups}, NAN, f32) : at::Tensor();
  const at::Tensor grad_c = grad.contiguous();
  swa::dispatch(p.qkv.scalar_type(), p.d, [&](auto tag, auto dtag) {
    using scalar_t = decltype(tag);
    constexpr int D = decltype(dtag)::value;
    if constexpr (!std::is_same_v<scalar_t, float>) {
      const auto args = swa::make_backward_args<scalar_t>(p, grad_c, dqkv, ws_table, ws_pad, groups);
      run_grid(op, groups, g.heads, plan.bytes, [&](int64_t gi, int h, unsigned char* smem) {
        swa::tc::backward_cta(HostExec{}, swa::tc::BwdCta<scalar_t, D>(args, plan, gi, h, smem));
      });
    }
  });
  // The GPU sums the workspace columns in a fixed tree order (swa_backward.cu); a plain sum here.
  at::Tensor dtable = ws_table.sum(1).view({g.heads, g.table}).t().contiguous().to(p.qkv.scalar_type());
  at::Tensor dbias = at::empty({0}, p.qkv.options());
  if (has_bias) dbias = at::cat({at::zeros({int64_t(g.c)}, f32), ws_pad.sum(1)}).to(p.qkv.scalar_type());
  return {dqkv, dtable, dbias};
}

}  // namespace semask_kernels

// The CPU emulation of the tensor-core forward (swa_tc_forward.cuh): the kernel's own steps, in the kernel's
// order, for every thread / lane of every CTA in turn, with the 16 x 16 tile products done by fp32 loops.
// Warps run one after another: after the CTA's barriers a warp touches only its own shared-memory regions and
// its own output rows, so any interleaving gives the same result. Shared memory is filled with NaN bytes before
// each CTA (a read of anything the steps did not write shows up as NaN) and followed by a canary that must be
// intact afterwards (a write past the plan's bytes is an error); the output starts as NaN, so an element no step
// writes shows up too. For tests: it runs at CPU speed.
#include "shifted_window_attention/shifted_window_attention.h"

#include "shifted_window_attention/swa_host.cuh"
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

constexpr int kAssumedSms = 132;                 // an H100 SXM
constexpr size_t kAssumedOptin = 227 * 1024;     // its shared memory per block
constexpr unsigned char kCanary = 0xA5;
constexpr size_t kCanaryBytes = 256;

}  // namespace

at::Tensor shifted_window_attention_emulated_forward(const at::Tensor& qkv, const at::Tensor& bias_table,
                                                     const std::optional<at::Tensor>& qkv_bias, int64_t num_heads,
                                                     at::IntArrayRef window_size, at::IntArrayRef shift_size,
                                                     double scale, c10::string_view pad_order, double mask_value,
                                                     int64_t group) {
  constexpr const char* op = "shifted_window_attention_emulated_forward";
  swa::check_args(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, pad_order, /*on_cpu=*/true);
  TORCH_CHECK(qkv.scalar_type() == at::kHalf || qkv.scalar_type() == at::kBFloat16, op,
              ": qkv must have dtype float16 or bfloat16 (the tensor-core kernel's dtypes), got ", qkv.scalar_type());
  TORCH_CHECK(group >= 0 && group <= 64, op, ": group must be in [0, 64] (0: the kernel's own choice), got ", group);
  const swa::Prepared p = swa::prepare(op, qkv, bias_table, qkv_bias, num_heads, window_size, shift_size, scale,
                                       pad_order, mask_value);
  // NaN until written: an output element the kernel's steps never write stays NaN (the kernel itself uses
  // at::empty, and a freed buffer of an earlier identical call could hold the right values by chance).
  at::Tensor out = at::full({qkv.size(0), qkv.size(1), qkv.size(2), p.g.c}, NAN, p.qkv.options());
  if (out.numel() == 0 || p.g.total == 0) return out;

  bool fits = true;
  const swa::tc::Plan plan =
      group == 0 ? swa::tc::choose_plan(p.g.n, p.d, p.g.table, p.g.total, p.g.heads, kAssumedSms, kAssumedOptin, fits)
                 : swa::tc::make_plan(p.g.n, p.d, p.g.table, int(group));
  TORCH_CHECK(fits, op, ": the tensor-core plan needs ", plan.bytes, " bytes of shared memory, more than ",
              kAssumedOptin);
  std::vector<unsigned char> smem(plan.bytes + kCanaryBytes);
  const int64_t groups = (p.g.total + plan.group - 1) / plan.group;
  swa::dispatch(p.qkv.scalar_type(), p.d, [&](auto tag, auto dtag) {
    using scalar_t = decltype(tag);
    constexpr int D = decltype(dtag)::value;
    if constexpr (!std::is_same_v<scalar_t, float>) {
      auto args = swa::make_args<scalar_t>(p);
      args.out = out.mutable_data_ptr<scalar_t>();
      for (int64_t gi = 0; gi < groups; ++gi) {
        for (int h = 0; h < p.g.heads; ++h) {
          std::memset(smem.data(), 0xFF, plan.bytes);  // NaN in every float16 / bfloat16 / float32 slot
          std::memset(smem.data() + plan.bytes, kCanary, kCanaryBytes);
          const swa::tc::Cta<scalar_t, D> cta(args, plan, gi, h, smem.data());
          swa::tc::forward_cta(HostExec{}, cta);
          for (size_t i = plan.bytes; i < smem.size(); ++i) {
            TORCH_CHECK(smem[i] == kCanary, op, ": CTA (", gi, ", ", h, ") wrote past its ", plan.bytes,
                        " bytes of shared memory (byte ", i, ")");
          }
        }
      }
    }
  });
  return out;
}

}  // namespace semask_kernels

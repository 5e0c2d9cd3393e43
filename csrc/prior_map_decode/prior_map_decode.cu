// CUDA implementation of prior_map_decode: one banded 2-D resampling kernel (a gather: each thread computes
// one output element), used by the forward (maps[0] + all levels, summed in float and rounded once) and the
// backward (each level's gradient, with the transposed bands). Deterministic: no atomics anywhere.
#include "prior_map_decode/prior_map_decode.h"

#include "common/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace semask_kernels {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = int64_t(1) << 19;
// Levels summed by one launch (SeMask has 3); more are handled by further launches that accumulate.
constexpr int kMaxSources = 8;

// One input resampled to the output grid through row and column bands.
template <typename scalar_t, typename acc_t>
struct Source {
  const scalar_t* in;  // (planes, h, w), contiguous
  const int32_t* rs;   // (out_h,)
  const acc_t* rw;     // (out_h, tr)
  const int32_t* cs;   // (out_w,)
  const acc_t* cw;     // (out_w, tc)
  int64_t h, w;
  int tr, tc;
};

template <typename scalar_t, typename acc_t>
struct Sources {
  Source<scalar_t, acc_t> s[kMaxSources];
  int count;
};

// sum_t sum_u rw[y, t] * cw[x, u] * in[n, rs[y] + t, cs[x] + u] for one source.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t resample(const Source<scalar_t, acc_t>& src, int64_t n, int64_t y, int64_t x) {
  const scalar_t* plane = src.in + n * src.h * src.w;
  const int64_t r0 = src.rs[y];
  const int64_t c0 = src.cs[x];
  const acc_t* wr = src.rw + y * src.tr;
  const acc_t* wc = src.cw + x * src.tc;
  acc_t acc = acc_t(0);
  for (int t = 0; t < src.tr; ++t) {
    const int64_t r = r0 + t;
    // Zero weights are band padding; the range test means a malformed band can never read out of bounds.
    if (wr[t] == acc_t(0) || r < 0 || r >= src.h) continue;
    const scalar_t* row = plane + r * src.w;
    acc_t racc = acc_t(0);
    for (int u = 0; u < src.tc; ++u) {
      const int64_t c = c0 + u;
      if (wc[u] == acc_t(0) || c < 0 || c >= src.w) continue;
      racc += wc[u] * static_cast<acc_t>(row[c]);
    }
    acc += wr[t] * racc;
  }
  return acc;
}

// band_resample_2d: out[n, y, x] = base[n, y, x] (or 0 when base is null) + sum over sources of resample().
// One thread per output element, all levels summed in acc_t (float; double for double) and rounded once.
// base may alias out (each element is read, then written, by the same thread).
template <typename scalar_t, typename acc_t>
__global__ void band_resample_2d_kernel(const scalar_t* base, scalar_t* out, Sources<scalar_t, acc_t> sources,
                                        int64_t planes, int64_t out_h, int64_t out_w) {
  const int64_t total = planes * out_h * out_w;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t x = i % out_w;
    const int64_t y = (i / out_w) % out_h;
    const int64_t n = i / (out_w * out_h);
    acc_t acc = base != nullptr ? static_cast<acc_t>(base[i]) : acc_t(0);
    for (int k = 0; k < sources.count; ++k) acc += resample(sources.s[k], n, y, x);
    out[i] = static_cast<scalar_t>(acc);
  }
}

// One level's input and bands (contiguous tensors).
struct Level {
  at::Tensor in, rs, rw, cs, cw;
};

// out (planes, out_h, out_w) contiguous = base + sum of levels, launched on the current stream in chunks of
// kMaxSources; base may be undefined (zeros) or out itself.
void band_resample_2d(const at::Tensor& base, const std::vector<Level>& levels, at::Tensor& out) {
  const int64_t total = out.numel();
  if (total == 0) return;  // a 0-block launch is an error
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "band_resample_2d", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    size_t next = 0;
    const scalar_t* base_ptr = base.defined() ? base.const_data_ptr<scalar_t>() : nullptr;
    do {  // at least one launch, so that a base with no levels is still copied
      Sources<scalar_t, acc_t> sources{};
      sources.count = 0;
      for (; next < levels.size() && sources.count < kMaxSources; ++next) {
        const Level& l = levels[next];
        sources.s[sources.count++] = Source<scalar_t, acc_t>{
            l.in.const_data_ptr<scalar_t>(), l.rs.const_data_ptr<int32_t>(), l.rw.const_data_ptr<acc_t>(),
            l.cs.const_data_ptr<int32_t>(), l.cw.const_data_ptr<acc_t>(), l.in.size(2), l.in.size(3),
            static_cast<int>(l.rw.size(1)), static_cast<int>(l.cw.size(1))};
      }
      band_resample_2d_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          base_ptr, out.mutable_data_ptr<scalar_t>(), sources, out.size(0) * out.size(1), out.size(2),
          out.size(3));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      base_ptr = out.const_data_ptr<scalar_t>();  // later chunks accumulate into out
    } while (next < levels.size());
  });
}

// float64 maps use float64 weights; every other dtype uses float32 weights.
at::ScalarType weight_dtype(at::ScalarType data) { return data == at::kDouble ? at::kDouble : at::kFloat; }

// A band describing `rows` output rows: start (rows,) int32, weight (rows, T >= 1) of weight_dtype.
void check_band(const char* op, const at::Tensor& start, const std::string& start_name, const at::Tensor& weight,
                const std::string& weight_name, int64_t rows, const char* rows_what, at::ScalarType wdtype,
                const at::Tensor& ref, const std::string& ref_name) {
  check_cuda(op, start, start_name);
  check_cuda(op, weight, weight_name);
  check_same_device(op, start, start_name, ref, ref_name);
  check_same_device(op, weight, weight_name, ref, ref_name);
  check_dtype(op, start, start_name, at::kInt);
  check_dtype(op, weight, weight_name, wdtype);
  check_dim(op, start, start_name, 1);
  check_dim(op, weight, weight_name, 2);
  check_size(op, start, start_name, 0, rows, rows_what);
  check_size(op, weight, weight_name, 0, rows, rows_what);
  TORCH_CHECK(weight.size(1) >= 1 && weight.size(1) <= (int64_t(1) << 20), op, ": ", weight_name,
              ".size(1) (band width) must be in [1, 2^20], got ", weight.size(1));
}

void check_list_len(const char* op, at::TensorList list, const char* name, size_t expected, const char* why) {
  TORCH_CHECK(list.size() == expected, op, ": ", name, " must hold ", expected, " tensors (", why, "), got ",
              list.size());
}

}  // namespace

at::Tensor prior_map_decode_forward(at::TensorList maps, at::TensorList row_start, at::TensorList row_weight,
                                    at::TensorList col_start, at::TensorList col_weight) {
  constexpr const char* op = "prior_map_decode_forward";
  TORCH_CHECK(!maps.empty(), op, ": maps must hold at least 1 tensor, got 0");
  const size_t levels = maps.size() - 1;
  check_list_len(op, row_start, "row_start", levels, "one per map after maps[0]");
  check_list_len(op, row_weight, "row_weight", levels, "one per map after maps[0]");
  check_list_len(op, col_start, "col_start", levels, "one per map after maps[0]");
  check_list_len(op, col_weight, "col_weight", levels, "one per map after maps[0]");

  const at::Tensor& m0 = maps[0];
  check_cuda(op, m0, "maps[0]");
  check_floating(op, m0, "maps[0]");
  check_dim(op, m0, "maps[0]", 4);
  for (size_t i = 1; i < maps.size(); ++i) {
    const std::string name = arg_name("maps", i);
    check_cuda(op, maps[i], name);
    check_same_device(op, maps[i], name, m0, "maps[0]");
    check_dtype(op, maps[i], name, m0.scalar_type());
    check_dim(op, maps[i], name, 4);
    check_size(op, maps[i], name, 0, m0.size(0), "batch of maps[0]");
    check_size(op, maps[i], name, 1, m0.size(1), "classes of maps[0]");
  }
  const auto wdtype = weight_dtype(m0.scalar_type());
  for (size_t i = 0; i < levels; ++i) {
    check_band(op, row_start[i], arg_name("row_start", i), row_weight[i], arg_name("row_weight", i), m0.size(2),
               "output rows H0 of maps[0]", wdtype, m0, "maps[0]");
    check_band(op, col_start[i], arg_name("col_start", i), col_weight[i], arg_name("col_weight", i), m0.size(3),
               "output columns W0 of maps[0]", wdtype, m0, "maps[0]");
  }

  c10::cuda::CUDAGuard guard(m0.device());
  const at::Tensor base = m0.contiguous();
  std::vector<Level> lv;
  for (size_t i = 0; i < levels; ++i) {
    lv.push_back(Level{maps[i + 1].contiguous(), row_start[i].contiguous(), row_weight[i].contiguous(),
                       col_start[i].contiguous(), col_weight[i].contiguous()});
  }
  at::Tensor out = at::empty_like(base, at::MemoryFormat::Contiguous);
  band_resample_2d(base, lv, out);
  return out;
}

std::vector<at::Tensor> prior_map_decode_backward(const at::Tensor& grad, at::TensorList rowT_start,
                                                  at::TensorList rowT_weight, at::TensorList colT_start,
                                                  at::TensorList colT_weight) {
  constexpr const char* op = "prior_map_decode_backward";
  check_cuda(op, grad, "grad");
  check_floating(op, grad, "grad");
  check_dim(op, grad, "grad", 4);
  const size_t levels = rowT_start.size();
  check_list_len(op, rowT_weight, "row_weight", levels, "as many as row_start");
  check_list_len(op, colT_start, "col_start", levels, "as many as row_start");
  check_list_len(op, colT_weight, "col_weight", levels, "as many as row_start");
  const auto wdtype = weight_dtype(grad.scalar_type());
  for (size_t i = 0; i < levels; ++i) {
    // The output size of level i + 1 is read off its bands, so only their consistency can be checked.
    check_cuda(op, rowT_start[i], arg_name("row_start", i));
    check_cuda(op, colT_start[i], arg_name("col_start", i));
    check_dim(op, rowT_start[i], arg_name("row_start", i), 1);
    check_dim(op, colT_start[i], arg_name("col_start", i), 1);
    check_band(op, rowT_start[i], arg_name("row_start", i), rowT_weight[i], arg_name("row_weight", i),
               rowT_start[i].size(0), "rows h_i of the level's input", wdtype, grad, "grad");
    check_band(op, colT_start[i], arg_name("col_start", i), colT_weight[i], arg_name("col_weight", i),
               colT_start[i].size(0), "columns w_i of the level's input", wdtype, grad, "grad");
  }

  c10::cuda::CUDAGuard guard(grad.device());
  const at::Tensor g = grad.contiguous();
  std::vector<at::Tensor> grads;
  grads.reserve(levels + 1);
  grads.push_back(grad.clone(at::MemoryFormat::Contiguous));  // a copy: outputs must not alias inputs
  for (size_t i = 0; i < levels; ++i) {
    at::Tensor out = at::empty({grad.size(0), grad.size(1), rowT_start[i].size(0), colT_start[i].size(0)},
                               grad.options().memory_format(at::MemoryFormat::Contiguous));
    band_resample_2d(at::Tensor(), {Level{g, rowT_start[i].contiguous(), rowT_weight[i].contiguous(),
                                          colT_start[i].contiguous(), colT_weight[i].contiguous()}},
                     out);
    grads.push_back(out);
  }
  return grads;
}

}  // namespace semask_kernels

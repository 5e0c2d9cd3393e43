// The tensor-core backward of shifted_window_attention (float16 / bfloat16; on a 227 KiB-per-block GPU windows of
// 7 x 7 at every head dim and 12 x 12 at d <= 64):
// one whole window at a time in shared memory, every product a set of 16 x 16 WMMA tiles shared out over the 4
// warps, fp32 accumulation. Geometry: swa_device.cuh; tile product and execution policy: swa_tc_common.cuh.
//
// CTA = (group of consecutive windows, head); the group is a function of the shape only (as the CUDA-core
// column kernel's), so the partial sums and the order they are added in are too. For each window of the group:
//   stage     q, k, v, dO of its np = ceil(n / 16) * 16 rows (0 past the window; dO = 0 for padding tokens,
//             which are cropped);
//   S = q k^T (fp32)  ->  P = softmax(scale S + bias + mask) rows in the input dtype (rows past the window 0);
//   dV = P^T dO       ->  written for real tokens; padding keys' rows summed into the d qkv_bias partial;
//   dP = dO v^T (fp32) -> D_i = sum_j P_ij dP_ij, dS = P (dP - D) in fp32 (for d bias_table) and the input
//                         dtype (for the products), as the reference rounds P and dS;
//   d table partial   += sum of dS over the pairs of each table row (a gather: no two threads write one row);
//   dQ = scale dS k, dK = scale dS^T q -> written for real tokens (padding queries have dS = 0); padding keys'
//                         dK rows summed into the d qkv_bias partial.
// At the end the CTA writes its partials to column `group index` of ws_table / ws_pad, which the host sums in a
// fixed order (swa_backward.cu): bitwise repeatable, no atomics.
#pragma once

#include "shifted_window_attention/swa_tc_common.cuh"

#include <cstddef>
#include <cstdint>

namespace semask_kernels {
namespace swa {
namespace tc {

// The shared-memory layout of a backward CTA, in bytes (independent of the group).
struct BwdPlan {
  int np;    // tokens per window rounded up to kTile
  int group; // windows per CTA
  int ld_x;  // elements per staged q / k / v / dO row: D + 8
  int ld_f;  // floats per fp32 matrix row: max(np, D) + 4
  int ld_h;  // elements per P / dS row: np + 8
  size_t q, k, v, dout, f, h, tpart, pad, bias, src, info;  // offsets
  size_t bytes;
};

inline BwdPlan make_bwd_plan(int n, int d, int table, int group) {
  BwdPlan p{};
  p.np = (n + kTile - 1) / kTile * kTile;
  p.group = group;
  p.ld_x = d + 8;
  p.ld_f = (p.np > d ? p.np : d) + 4;
  p.ld_h = p.np + 8;
  Carve o;
  p.q = o.take(kElem * p.np * p.ld_x);
  p.k = o.take(kElem * p.np * p.ld_x);
  p.v = o.take(kElem * p.np * p.ld_x);
  p.dout = o.take(kElem * p.np * p.ld_x);
  p.f = o.take(sizeof(float) * p.np * p.ld_f);
  p.h = o.take(kElem * p.np * p.ld_h);
  p.tpart = o.take(sizeof(float) * table);
  p.pad = o.take(sizeof(float) * 2 * d);
  p.bias = o.take(sizeof(float) * table);
  p.src = o.take(sizeof(int) * n);
  p.info = o.take(sizeof(int) * n);
  p.bytes = o.end;
  return p;
}

// One backward CTA's view of the call.
template <typename scalar_t, int D>
struct BwdCta {
  Args<scalar_t> a;  // by value (see Cta)
  BwdPlan pl;
  int64_t group_index, win0;
  int nw, h;
  scalar_t *q, *k, *v, *dout, *hm;  // hm: P, then dS, in the input dtype
  float *f, *tpart, *pad, *bias;
  int *src, *info;

  __host__ __device__ BwdCta(const Args<scalar_t>& args, const BwdPlan& plan, int64_t gidx, int head,
                             unsigned char* smem)
      : a(args), pl(plan), group_index(gidx), win0(gidx * plan.group), h(head) {
    const int64_t left = args.g.total - win0;
    nw = left < plan.group ? int(left) : plan.group;
    q = reinterpret_cast<scalar_t*>(smem + plan.q);
    k = reinterpret_cast<scalar_t*>(smem + plan.k);
    v = reinterpret_cast<scalar_t*>(smem + plan.v);
    dout = reinterpret_cast<scalar_t*>(smem + plan.dout);
    hm = reinterpret_cast<scalar_t*>(smem + plan.h);
    f = reinterpret_cast<float*>(smem + plan.f);
    tpart = reinterpret_cast<float*>(smem + plan.tpart);
    pad = reinterpret_cast<float*>(smem + plan.pad);
    bias = reinterpret_cast<float*>(smem + plan.bias);
    src = reinterpret_cast<int*>(smem + plan.src);
    info = reinterpret_cast<int*>(smem + plan.info);
  }

  __host__ __device__ int tiles() const { return pl.np / kTile; }
};

// This head's bias column; zero partials.
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_begin(const BwdCta<scalar_t, D>& c, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  for (int t = tid; t < g.table; t += nthreads) {
    c.bias[t] = to_float(c.a.table[int64_t(t) * g.heads + c.h]);
    c.tpart[t] = 0.f;
  }
  for (int i = tid; i < 2 * D; i += nthreads) c.pad[i] = 0.f;
}

// (src, info) of the window's tokens.
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_tokens(const BwdCta<scalar_t, D>& c, int64_t win, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  for (int t = tid; t < g.n; t += nthreads) token_info(g, int(win % g.nwin), t, c.src[t], c.info[t]);
}

// q, k, v and dO of the window's np rows, W elements per copy.
template <int W, typename scalar_t, int D>
__host__ __device__ inline void bwd_stage(const BwdCta<scalar_t, D>& c, int64_t win, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  const scalar_t* grad = c.a.grad + (win / g.nwin) * g.H * g.W * g.c + c.h * D;
  constexpr int per_row = D / W;
  for (int e = tid; e < c.pl.np * per_row; e += nthreads) {
    const int t = e / per_row;
    const int col = (e - t * per_row) * W;
    const int at = t * c.pl.ld_x + col;
    const bool real = t < g.n;
    const int sp = real ? c.src[t] : -1;
    const int base = c.h * D + col;
    copy_elems<W>(c.q + at, real ? qkv_ptr(c.a, win, sp, base) : nullptr);
    copy_elems<W>(c.k + at, real ? qkv_ptr(c.a, win, sp, g.c + base) : nullptr);
    copy_elems<W>(c.v + at, real ? qkv_ptr(c.a, win, sp, 2 * g.c + base) : nullptr);
    copy_elems<W>(c.dout + at, sp >= 0 ? grad + int64_t(sp) * g.c + col : nullptr);
  }
}

// f (np x np) = X Y^T for two staged (np x D) matrices X, Y: output tile `tile` (row-major over the tile grid).
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_outer(const BwdCta<scalar_t, D>& c, const scalar_t* X, const scalar_t* Y,
                                          int tile) {
  const int it = tile / c.tiles();
  const int jt = tile - it * c.tiles();
  tile_product<scalar_t, false, true>(X + it * kTile * c.pl.ld_x, c.pl.ld_x, Y + jt * kTile * c.pl.ld_x, c.pl.ld_x,
                                      D / kTile, c.f + it * kTile * c.pl.ld_f + jt * kTile, c.pl.ld_f);
}

// f (np x D) = M^T Y (TRANSPOSE) or M Y for the (np x np) matrix M in hm and a staged (np x D) matrix Y.
template <typename scalar_t, int D, bool TRANSPOSE>
__host__ __device__ inline void bwd_inner(const BwdCta<scalar_t, D>& c, const scalar_t* Y, int tile) {
  constexpr int dtiles = D / kTile;
  const int it = tile / dtiles;
  const int dt = tile - it * dtiles;
  const scalar_t* m = TRANSPOSE ? c.hm + it * kTile : c.hm + it * kTile * c.pl.ld_h;
  tile_product<scalar_t, TRANSPOSE, false>(m, c.pl.ld_h, Y + dt * kTile, c.pl.ld_x, c.tiles(),
                                           c.f + it * kTile * c.pl.ld_f + dt * kTile, c.pl.ld_f);
}

// P rows from the scores in f: softmax(scale S + bias + mask) in the input dtype, 0 past the window. The final
// scores overwrite S in f on the first pass over a row.
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_softmax(const BwdCta<scalar_t, D>& c, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  for (int i = tid; i < c.pl.np; i += nthreads) {
    scalar_t* prow = c.hm + i * c.pl.ld_h;
    if (i >= g.n) {
      for (int j = 0; j < c.pl.np; ++j) prow[j] = scalar_t(0.f);
      continue;
    }
    float* srow = c.f + i * c.pl.ld_f;
    float m = -INFINITY;
    for (int j = 0; j < g.n; ++j) {
      srow[j] = fmaf(g.scale, srow[j], bias_mask(g, c.bias, c.info[i], c.info[j]));
      m = fmaxf(m, srow[j]);
    }
    const float ref = m == -INFINITY ? 0.f : m;
    float l = 0.f;
    for (int j = 0; j < g.n; ++j) l += expf(srow[j] - ref);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int j = 0; j < c.pl.np; ++j) prow[j] = scalar_t(j < g.n ? expf(srow[j] - ref) * inv : 0.f);
  }
}

// dS = P (dP - D_i) from dP in f: fp32 in f (in place), the input dtype in hm (in place of P).
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_dscores(const BwdCta<scalar_t, D>& c, int tid, int nthreads) {
  for (int i = tid; i < c.pl.np; i += nthreads) {
    float* frow = c.f + i * c.pl.ld_f;
    scalar_t* hrow = c.hm + i * c.pl.ld_h;
    float dd = 0.f;
    for (int j = 0; j < c.pl.np; ++j) dd = fmaf(float(hrow[j]), frow[j], dd);
    for (int j = 0; j < c.pl.np; ++j) {
      const float ds = float(hrow[j]) * (frow[j] - dd);
      frow[j] = ds;
      hrow[j] = scalar_t(ds);
    }
  }
}

// d table partial += the window's fp32 dS summed per table row: row e gathers the pairs (i, j) with
// lin_i - lin_j = e - idx0, at most one j per query i.
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_table(const BwdCta<scalar_t, D>& c, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  const int span = 2 * g.ww - 1;
  for (int e = tid; e < g.table; e += nthreads) {
    float sum = 0.f;
    for (int i = 0; i < g.n; ++i) {
      const int lin = (c.info[i] >> 4) - (e - g.idx0);  // lin_j
      if (lin < 0) continue;
      const int tj = lin % span;
      const int ti = lin / span;
      if (tj >= g.ww || ti >= g.wh) continue;
      sum += c.f[i * c.pl.ld_f + ti * g.ww + tj];
    }
    c.tpart[e] += sum;
  }
}

// Write rows of f (times mul) as part `part` of d qkv at each real token's pixel; with WHICH >= 0, add the
// padding tokens' rows to pad[WHICH * D + col] (one thread per column, rows in order).
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_write(const BwdCta<scalar_t, D>& c, int64_t win, int part, float mul, int which,
                                          int tid, int nthreads) {
  const Geometry& g = c.a.g;
  scalar_t* out = c.a.out + (win / g.nwin) * g.H * g.W * 3 * g.c + part * g.c + c.h * D;
  for (int e = tid; e < g.n * D; e += nthreads) {
    const int t = e / D;
    const int col = e - t * D;
    const int sp = c.src[t];
    if (sp >= 0) out[int64_t(sp) * 3 * g.c + col] = scalar_t(c.f[t * c.pl.ld_f + col] * mul);
  }
  if (which < 0) return;
  for (int col = tid; col < D; col += nthreads) {
    float sum = 0.f;
    for (int t = 0; t < g.n; ++t) {
      if (c.src[t] < 0) sum += c.f[t * c.pl.ld_f + col] * mul;
    }
    c.pad[which * D + col] += sum;
  }
}

// The CTA's partials to column group_index of the workspaces.
template <typename scalar_t, int D>
__host__ __device__ inline void bwd_end(const BwdCta<scalar_t, D>& c, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  const int64_t parts = c.a.parts;
  for (int e = tid; e < g.table; e += nthreads) {
    c.a.ws_table[(int64_t(c.h) * g.table + e) * parts + c.group_index] = c.tpart[e];
  }
  if (c.a.ws_pad == nullptr) return;
  for (int i = tid; i < 2 * D; i += nthreads) {
    const int which = i / D;
    c.a.ws_pad[(int64_t(which) * g.c + c.h * D + (i - which * D)) * parts + c.group_index] = c.pad[i];
  }
}

// Every 16 x 16 output tile of a product, shared out over the warps (tile = warp, warp + kWarps, ...).
#pragma nv_exec_check_disable
template <typename Exec, typename F>
__host__ __device__ inline void over_tiles(const Exec& ex, int tiles, F&& f) {
  ex.warps([&](int warp) {
    for (int t = warp; t < tiles; t += kWarps) f(t);
  });
}

// The whole CTA: the steps of the file comment, with their barriers.
#pragma nv_exec_check_disable
template <typename scalar_t, int D, typename Exec>
__host__ __device__ inline void backward_cta(const Exec& ex, const BwdCta<scalar_t, D>& c) {
  const int square = c.tiles() * c.tiles();
  const int tall = c.tiles() * (D / kTile);
  const float scale = c.a.g.scale;
  const int pad_k = c.a.ws_pad != nullptr ? 0 : -1;  // pad[] halves: dk, then dv
  const int pad_v = c.a.ws_pad != nullptr ? 1 : -1;
  ex.threads([&](int tid, int nt) { bwd_begin(c, tid, nt); });
  for (int gi = 0; gi < c.nw; ++gi) {
    const int64_t win = c.win0 + gi;
    ex.sync();  // the previous window is consumed
    ex.threads([&](int tid, int nt) { bwd_tokens(c, win, tid, nt); });
    ex.sync();
    ex.threads([&](int tid, int nt) {
      c.a.vec16 ? bwd_stage<kVec>(c, win, tid, nt) : bwd_stage<1>(c, win, tid, nt);
    });
    ex.sync();
    over_tiles(ex, square, [&](int t) { bwd_outer(c, c.q, c.k, t); });  // S
    ex.sync();
    ex.threads([&](int tid, int nt) { bwd_softmax(c, tid, nt); });  // P
    ex.sync();
    over_tiles(ex, tall, [&](int t) { bwd_inner<scalar_t, D, true>(c, c.dout, t); });  // dV = P^T dO
    ex.sync();
    ex.threads([&](int tid, int nt) { bwd_write(c, win, 2, 1.f, pad_v, tid, nt); });
    ex.sync();
    over_tiles(ex, square, [&](int t) { bwd_outer(c, c.dout, c.v, t); });  // dP
    ex.sync();
    ex.threads([&](int tid, int nt) { bwd_dscores(c, tid, nt); });  // dS
    ex.sync();
    ex.threads([&](int tid, int nt) { bwd_table(c, tid, nt); });
    ex.sync();
    over_tiles(ex, tall, [&](int t) { bwd_inner<scalar_t, D, false>(c, c.k, t); });  // dQ / scale = dS k
    ex.sync();
    ex.threads([&](int tid, int nt) { bwd_write(c, win, 0, scale, -1, tid, nt); });
    ex.sync();
    over_tiles(ex, tall, [&](int t) { bwd_inner<scalar_t, D, true>(c, c.q, t); });  // dK / scale = dS^T q
    ex.sync();
    ex.threads([&](int tid, int nt) { bwd_write(c, win, 1, scale, pad_k, tid, nt); });
  }
  ex.sync();
  ex.threads([&](int tid, int nt) { bwd_end(c, tid, nt); });
}

// CTA = (group, head); kThreads threads; plan.bytes of dynamic shared memory.
template <typename scalar_t, int D>
__global__ void __launch_bounds__(kThreads) backward_kernel(Args<scalar_t> a, BwdPlan plan) {
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const BwdCta<scalar_t, D> c(a, plan, blockIdx.x, int(blockIdx.y), tc_smem);
  backward_cta(DeviceExec{}, c);
}

}  // namespace tc
}  // namespace swa
}  // namespace semask_kernels

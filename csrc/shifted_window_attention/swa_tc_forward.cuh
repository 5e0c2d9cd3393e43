// The tensor-core forward of shifted_window_attention (float16 / bfloat16): several windows of one head per
// CTA, whole windows staged in shared memory, 16 x 16 x 16 WMMA tiles with fp32 accumulation. The geometry
// (token_info, bias_mask) is the row kernel's (swa_device.cuh).
//
// CTA = (group of `group` consecutive windows, head), 4 warps. Steps, each a function of this file:
//   1. stage_tokens (all threads): (src, info) of every token of the group, this head's bias column (fp32);
//   2. stage_kv (all threads): k and v of every token of the group, rows padded to np = ceil(n / 16) * 16
//      (qkv_bias for padding tokens, 0 past the window);
//   3. per warp, for each of its 16-query tiles (tile = warp, warp + 4, ... over group * np / 16 tiles):
//      load_q (lanes) -> scores (warp MMA: S = q k^T, fp32, 16 x np) -> softmax_max / softmax_exp /
//      softmax_norm (lanes; two lanes per row, exchanging partial max and sum through shared memory; P = softmax
//      in the input dtype, as the reference rounds it) -> pv (warp MMA: O = P v, fp32, into S's space) ->
//      write_out (lanes: each real query's row at its own pixel).
// The order of the steps, with the barriers between them, is written once (forward_cta) over an execution
// policy (swa_tc_common.cuh): the kernel runs it with the CUDA threads of a CTA; the CPU emulation
// (swa_tc_emulate.cu) runs the same steps for every thread / lane in turn, with the MMA done by loops, so its
// tiling is tested without a GPU.
#pragma once

#include "shifted_window_attention/swa_tc_common.cuh"

#include <cstddef>
#include <cstdint>

namespace semask_kernels {
namespace swa {
namespace tc {

// The shared-memory layout of a CTA, in bytes; every region starts on a 32-byte boundary (WMMA's alignment),
// and every leading dimension is a multiple of 16 bytes.
struct Plan {
  int np;     // tokens per window rounded up to kTile
  int group;  // windows per CTA
  int ld_x;   // elements per staged q / k / v row: D + 8
  int ld_s;   // floats per score / output row: max(np, D) + 4
  int ld_p;   // elements per probability row: np + 8
  size_t k, v, q, s, p, red, bias, src, info;  // offsets
  size_t bytes;                                // total
};

// The layout for windows of n tokens, head dim d, a bias table of `table` rows, `group` windows per CTA.
inline Plan make_plan(int n, int d, int table, int group) {
  Plan p{};
  p.np = (n + kTile - 1) / kTile * kTile;
  p.group = group;
  p.ld_x = d + 8;
  p.ld_s = (p.np > d ? p.np : d) + 4;
  p.ld_p = p.np + 8;
  Carve o;
  p.k = o.take(kElem * group * p.np * p.ld_x);
  p.v = o.take(kElem * group * p.np * p.ld_x);
  p.q = o.take(kElem * kWarps * kTile * p.ld_x);
  p.s = o.take(sizeof(float) * kWarps * kTile * p.ld_s);
  p.p = o.take(kElem * kWarps * kTile * p.ld_p);
  p.red = o.take(sizeof(float) * kWarps * 2 * 32);
  p.bias = o.take(sizeof(float) * table);
  p.src = o.take(sizeof(int) * group * n);
  p.info = o.take(sizeof(int) * group * n);
  p.bytes = o.end;
  return p;
}

constexpr int kTargetTiles = 16;  // query tiles per CTA the group aims at (4 per warp)

// The launch plan on a GPU of `sms` SMs with `smem_per_sm` bytes of shared memory per SM: the largest group <=
// what gives kTargetTiles query tiles per CTA that keeps at least two CTAs per SM in the grid and the layout
// within half an SM's shared memory (two resident CTAs, less 1 KiB the driver reserves per block). Group = 1 may
// need more; the caller checks plan.bytes against the per-block limit and otherwise uses the CUDA-core kernel.
inline Plan choose_plan(int n, int d, int table, int64_t windows, int heads, int sms, size_t smem_per_sm) {
  const int tiles = (n + kTile - 1) / kTile;
  int64_t group = (kTargetTiles + tiles - 1) / tiles;
  if (group > windows) group = windows > 0 ? windows : 1;
  while (group > 1 && (windows + group - 1) / group * heads < 2 * int64_t(sms)) --group;
  const size_t target = smem_per_sm / 2 > 1024 ? smem_per_sm / 2 - 1024 : 0;
  Plan p = make_plan(n, d, table, int(group));
  while (p.group > 1 && p.bytes > target) p = make_plan(n, d, table, p.group - 1);
  return p;
}

// One CTA's view of the call: its windows, head and shared-memory regions.
template <typename scalar_t, int D>
struct Cta {
  Args<scalar_t> a;  // by value: a kernel parameter whose address is taken would be copied to local memory
  Plan pl;
  int64_t win0;  // first window of the group
  int nw;        // windows in this group (the last group may be short)
  int h;
  scalar_t *k, *v, *q, *p;
  float *s, *red, *bias;
  int *src, *info;

  __host__ __device__ Cta(const Args<scalar_t>& args, const Plan& plan, int64_t group_index, int head,
                          unsigned char* smem)
      : a(args), pl(plan), win0(group_index * plan.group), h(head) {
    const int64_t left = args.g.total - win0;
    nw = left < plan.group ? int(left) : plan.group;
    k = reinterpret_cast<scalar_t*>(smem + plan.k);
    v = reinterpret_cast<scalar_t*>(smem + plan.v);
    q = reinterpret_cast<scalar_t*>(smem + plan.q);
    p = reinterpret_cast<scalar_t*>(smem + plan.p);
    s = reinterpret_cast<float*>(smem + plan.s);
    red = reinterpret_cast<float*>(smem + plan.red);
    bias = reinterpret_cast<float*>(smem + plan.bias);
    src = reinterpret_cast<int*>(smem + plan.src);
    info = reinterpret_cast<int*>(smem + plan.info);
  }

  __host__ __device__ int tiles() const { return nw * (pl.np / kTile); }

  // Where element c of part 0 / 1 / 2 (q / k / v) of token (gi, t) < n of this head is (null: zeros).
  __host__ __device__ const scalar_t* token(int gi, int t, int part, int c) const {
    return qkv_ptr(a, win0 + gi, src[gi * a.g.n + t], part * a.g.c + h * D + c);
  }
};

// 1. (src, info) of every token of the group and this head's bias column.
template <typename scalar_t, int D>
__host__ __device__ inline void stage_tokens(const Cta<scalar_t, D>& c, int tid, int nthreads) {
  const Geometry& g = c.a.g;
  for (int e = tid; e < c.nw * g.n; e += nthreads) {
    const int gi = e / g.n;
    token_info(g, int((c.win0 + gi) % g.nwin), e - gi * g.n, c.src[e], c.info[e]);
  }
  for (int t = tid; t < g.table; t += nthreads) c.bias[t] = to_float(c.a.table[int64_t(t) * g.heads + c.h]);
}

// 2. k and v of every token of the group, np rows per window (zeros past the window), W elements per copy.
template <int W, typename scalar_t, int D>
__host__ __device__ inline void stage_kv(const Cta<scalar_t, D>& c, int tid, int nthreads) {
  const int n = c.a.g.n;
  constexpr int per_row = D / W;
  for (int e = tid; e < c.nw * c.pl.np * per_row; e += nthreads) {
    const int row = e / per_row;
    const int col = (e - row * per_row) * W;
    const int gi = row / c.pl.np;
    const int t = row - gi * c.pl.np;
    const bool real = t < n;
    copy_elems<W>(c.k + row * c.pl.ld_x + col, real ? c.token(gi, t, 1, col) : nullptr);
    copy_elems<W>(c.v + row * c.pl.ld_x + col, real ? c.token(gi, t, 2, col) : nullptr);
  }
}

// A warp's current 16-query tile and its shared-memory regions.
template <typename scalar_t, int D>
struct WarpTile {
  int gi;  // window of the group
  int t0;  // first query token
  scalar_t *q, *p;
  float *s, *red;
  __host__ __device__ WarpTile(const Cta<scalar_t, D>& c, int warp, int tile) {
    const int per_window = c.pl.np / kTile;
    gi = tile / per_window;
    t0 = (tile - gi * per_window) * kTile;
    q = c.q + warp * kTile * c.pl.ld_x;
    p = c.p + warp * kTile * c.pl.ld_p;
    s = c.s + warp * kTile * c.pl.ld_s;
    red = c.red + warp * 2 * 32;
  }
};

// 3a. The tile's 16 queries (unscaled; scale is applied to the fp32 scores), zeros past the window.
template <int W, typename scalar_t, int D>
__host__ __device__ inline void load_q(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w, int lane) {
  constexpr int per_row = D / W;
  for (int e = lane; e < kTile * per_row; e += 32) {
    const int r = e / per_row;
    const int col = (e - r * per_row) * W;
    const int t = w.t0 + r;
    copy_elems<W>(w.q + r * c.pl.ld_x + col, t < c.a.g.n ? c.token(w.gi, t, 0, col) : nullptr);
  }
}

// 3b. S (16 x np, fp32) = q k^T of the tile's window.
template <typename scalar_t, int D>
__host__ __device__ inline void scores(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w) {
  const scalar_t* k = c.k + w.gi * c.pl.np * c.pl.ld_x;
  for (int kt = 0; kt < c.pl.np / kTile; ++kt) {
    tile_product<scalar_t, false, true>(w.q, c.pl.ld_x, k + kt * kTile * c.pl.ld_x, c.pl.ld_x, D / kTile,
                                        w.s + kt * kTile, c.pl.ld_s);
  }
}

// Lane -> (row, half of the row's np columns) in the softmax steps.
struct RowHalf {
  int r, j0, j1;
  __host__ __device__ RowHalf(int lane, int np) : r(lane >> 1), j0((lane & 1) * (np / 2)), j1(j0 + np / 2) {}
};

// 3c. Final scores (scale * S + bias + shift mask, -inf past the window) in place, and the half-row's max.
template <typename scalar_t, int D>
__host__ __device__ inline void softmax_max(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w, int lane) {
  const Geometry& g = c.a.g;
  const RowHalf rh(lane, c.pl.np);
  const int t = w.t0 + rh.r;
  const int* info = c.info + w.gi * g.n;
  const int qinfo = info[t < g.n ? t : 0];  // rows past the window borrow token 0's (never written)
  float* row = w.s + rh.r * c.pl.ld_s;
  float m = -INFINITY;
  for (int j = rh.j0; j < rh.j1; ++j) {
    const float x = j < g.n ? fmaf(g.scale, row[j], bias_mask(g, c.bias, qinfo, info[j])) : -INFINITY;
    row[j] = x;
    m = fmaxf(m, x);
  }
  w.red[lane] = m;
}

// 3d. exp(x - m) in place (m: the row's max, 0 while -inf), and the half-row's sum.
template <typename scalar_t, int D>
__host__ __device__ inline void softmax_exp(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w, int lane) {
  const RowHalf rh(lane, c.pl.np);
  const float m = fmaxf(w.red[2 * rh.r], w.red[2 * rh.r + 1]);
  const float ref = m == -INFINITY ? 0.f : m;
  float* row = w.s + rh.r * c.pl.ld_s;
  float l = 0.f;
  for (int j = rh.j0; j < rh.j1; ++j) {
    const float e = expf(row[j] - ref);
    row[j] = e;
    l += e;
  }
  w.red[32 + lane] = l;
}

// 3e. P = e / l in the input dtype (zeros past the window).
template <typename scalar_t, int D>
__host__ __device__ inline void softmax_norm(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w, int lane) {
  const RowHalf rh(lane, c.pl.np);
  const float l = w.red[32 + 2 * rh.r] + w.red[32 + 2 * rh.r + 1];
  const float inv = l > 0.f ? 1.f / l : 0.f;
  const float* row = w.s + rh.r * c.pl.ld_s;
  scalar_t* prow = w.p + rh.r * c.pl.ld_p;
  for (int j = rh.j0; j < rh.j1; ++j) prow[j] = scalar_t(row[j] * inv);
}

// 3f. O (16 x D, fp32, in S's space: S is consumed) = P v of the tile's window.
template <typename scalar_t, int D>
__host__ __device__ inline void pv(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w) {
  const scalar_t* v = c.v + w.gi * c.pl.np * c.pl.ld_x;
  for (int dt = 0; dt < D / kTile; ++dt) {
    tile_product<scalar_t, false, false>(w.p, c.pl.ld_p, v + dt * kTile, c.pl.ld_x, c.pl.np / kTile,
                                         w.s + dt * kTile, c.pl.ld_s);
  }
}

// 3g. Each real query's output row at its own pixel (padding tokens and rows past the window are dropped).
template <typename scalar_t, int D>
__host__ __device__ inline void write_out(const Cta<scalar_t, D>& c, const WarpTile<scalar_t, D>& w, int lane) {
  const Geometry& g = c.a.g;
  const int64_t b = (c.win0 + w.gi) / g.nwin;
  scalar_t* out = c.a.out + b * g.H * g.W * g.c + c.h * D;
  for (int e = lane; e < kTile * D; e += 32) {
    const int r = e / D;
    const int col = e - r * D;
    const int t = w.t0 + r;
    if (t >= g.n) continue;
    const int sp = c.src[w.gi * g.n + t];
    if (sp >= 0) out[int64_t(sp) * g.c + col] = scalar_t(w.s[r * c.pl.ld_s + col]);
  }
}

// A warp's share of the CTA: its 16-query tiles one after another (tile = warp, warp + kWarps, ...).
#pragma nv_exec_check_disable
template <typename scalar_t, int D, typename Exec>
__host__ __device__ inline void warp_tiles(const Exec& ex, const Cta<scalar_t, D>& c, int warp) {
  for (int tile = warp; tile < c.tiles(); tile += kWarps) {
    const WarpTile<scalar_t, D> w(c, warp, tile);
    ex.lanes([&](int lane) { c.a.vec16 ? load_q<kVec>(c, w, lane) : load_q<1>(c, w, lane); });
    ex.syncwarp();
    ex.warp([&] { scores(c, w); });
    ex.syncwarp();
    ex.lanes([&](int lane) { softmax_max(c, w, lane); });
    ex.syncwarp();
    ex.lanes([&](int lane) { softmax_exp(c, w, lane); });
    ex.syncwarp();
    ex.lanes([&](int lane) { softmax_norm(c, w, lane); });
    ex.syncwarp();
    ex.warp([&] { pv(c, w); });
    ex.syncwarp();
    ex.lanes([&](int lane) { write_out(c, w, lane); });
    ex.syncwarp();  // the next tile reuses q, S, P
  }
}

// The whole CTA: the steps in order, with their barriers, over an execution policy `ex` that provides
// threads(f(tid, nthreads)), sync(), warps(f(warp)), lanes(f(lane)), warp(f()) and syncwarp().
#pragma nv_exec_check_disable
template <typename scalar_t, int D, typename Exec>
__host__ __device__ inline void forward_cta(const Exec& ex, const Cta<scalar_t, D>& c) {
  ex.threads([&](int tid, int nthreads) { stage_tokens(c, tid, nthreads); });
  ex.sync();
  ex.threads([&](int tid, int nt) { c.a.vec16 ? stage_kv<kVec>(c, tid, nt) : stage_kv<1>(c, tid, nt); });
  ex.sync();
  ex.warps([&](int warp) { warp_tiles(ex, c, warp); });
}

// CTA = (group, head); kThreads threads; plan.bytes of dynamic shared memory.
template <typename scalar_t, int D>
__global__ void __launch_bounds__(kThreads) forward_kernel(Args<scalar_t> a, Plan plan) {
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const Cta<scalar_t, D> c(a, plan, blockIdx.x, int(blockIdx.y), tc_smem);
  forward_cta(DeviceExec{}, c);
}

}  // namespace tc
}  // namespace swa
}  // namespace semask_kernels

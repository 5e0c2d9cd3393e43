// The column kernel of shifted_window_attention's backward (dk, dv, and the per-CTA partial sums of d bias_table
// and d qkv_bias): one CTA per (group of windows, head, block of 32 keys), queries streamed in chunks of 32.
// Shared helpers and the overall design: swa_device.cuh.
#pragma once

#include "shifted_window_attention/swa_device.cuh"

namespace semask_kernels {
namespace swa {

// Shared memory of the column kernel, in floats (ints at the end).
template <int D>
struct ColSmem {
  static constexpr int DP = Tile<D>::DP;
  static constexpr int k = 0;                                   // [kBlock][DP] the CTA's keys
  static constexpr int v = k + kBlock * DP;                     // [kBlock][DP] their values
  static constexpr int q = v + kBlock * DP;                     // [kChunk][DP] query chunk, scaled
  static constexpr int dout = q + kChunk * DP;                  // [kChunk][DP] its output gradient
  static constexpr int p = dout + kChunk * DP;                  // [kWarps][R][kPA] P
  static constexpr int ds = p + kWarps * kRowsPerWarp * kPA;    // [kWarps][R][kPA] dS
  static constexpr int red = ds + kWarps * kRowsPerWarp * kPA;  // [kWarps][2][D] padding-key partial sums
  static constexpr int lse = red + kWarps * 2 * D;              // [kChunk] lse of the chunk's queries
  static constexpr int dd = lse + kChunk;                       // [kChunk] D of the chunk's queries
  static constexpr int bias = dd + kChunk;                      // [T] bias column, [kWarps][T] d table, 2 x [n]
  static size_t bytes(int table, int n) {
    return sizeof(float) * (bias + table * (1 + kWarps)) + sizeof(int) * 2 * n;
  }
};

// Column kernel. CTA = (group of `a.group` consecutive windows, head, block of kBlock keys); warp w owns keys
// kb * kBlock + w * R + r. Per window it streams the query chunks (q, dO, lse, D) and, with the query as the
// lane: S and dP recomputed, P = exp(S - lse), dS = P (dP - D); then dv_j += sum_i P[i, j] dO_i and
// dk_j += sum_i dS[i, j] (scale q_i) in registers, written once per real key at the end of the window.
// Deterministic partial sums (fixed program order, no atomics):
//   d table: each warp adds its dS into a private shared table; for a fixed key j the map i -> idx(i, j) is
//     injective, so within one row the 32 lanes touch distinct entries, and rows are separated by __syncwarp.
//     At the end the 4 warp tables are summed in warp order into ws_table[:, part].
//   d qkv_bias: padding keys' dk / dv are summed per lane over its rows and windows, then over row groups and
//     warps in a fixed order, into ws_pad[:, part].
// The host reduces both workspaces over `part` with a fixed-order kernel.
template <typename scalar_t, int D>
__global__ void __launch_bounds__(kThreads) col_kernel(Args<scalar_t> a) {
  using T = Tile<D>;
  using L = ColSmem<D>;
  constexpr int R = kRowsPerWarp;
  constexpr int DP = T::DP;
  const Geometry& g = a.g;
  const int64_t grp = blockIdx.x;
  const int h = blockIdx.y;
  const int kb = blockIdx.z;
  const int64_t part = grp * a.nblocks + kb;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int rg = lane / T::LC;
  const int cg = lane % T::LC;

  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* k_s = smem + L::k;
  float* v_s = smem + L::v;
  float* q_s = smem + L::q;
  float* do_s = smem + L::dout;
  float* p_w = smem + L::p + warp * R * kPA;
  float* ds_w = smem + L::ds + warp * R * kPA;
  float* red_s = smem + L::red;
  float* lse_s = smem + L::lse;
  float* dd_s = smem + L::dd;
  float* bias_s = smem + L::bias;
  float* tab_s = bias_s + g.table;  // [kWarps][T]
  float* tab_w = tab_s + warp * g.table;
  int* src_s = reinterpret_cast<int*>(tab_s + kWarps * g.table);
  int* info_s = src_s + g.n;

  for (int t = threadIdx.x; t < g.table; t += kThreads) bias_s[t] = to_float(a.table[int64_t(t) * g.heads + h]);
  for (int t = threadIdx.x; t < kWarps * g.table; t += kThreads) tab_s[t] = 0.f;

  const int64_t pixels = int64_t(g.H) * g.W;
  const int64_t w_first = grp * a.group;
  const int64_t w_last = w_first + a.group < g.total ? w_first + a.group : g.total;
  float pad_dk[T::CPL], pad_dv[T::CPL];
#pragma unroll
  for (int u = 0; u < T::CPL; ++u) pad_dk[u] = pad_dv[u] = 0.f;

  for (int64_t win = w_first; win < w_last; ++win) {
    const int64_t b = win / g.nwin;
    const int w_img = int(win - b * g.nwin);
    const scalar_t* qkv_img = a.qkv + b * pixels * 3 * g.c;
    const scalar_t* grad_img = a.grad + b * pixels * g.c;
    const float* lse_win = a.stats + (win * g.heads + h) * g.n;
    const float* dd_win = lse_win + g.total * g.heads * g.n;

    __syncthreads();  // the previous window is fully consumed
    for (int t = threadIdx.x; t < g.n; t += kThreads) token_info(g, w_img, t, src_s[t], info_s[t]);
    __syncthreads();
    stage_qkv<scalar_t, D>(k_s, kBlock, qkv_img, a.qkv_bias, src_s, kb * kBlock, g, 1, h, 1.f);
    stage_qkv<scalar_t, D>(v_s, kBlock, qkv_img, a.qkv_bias, src_s, kb * kBlock, g, 2, h, 1.f);

    int kinfo[R];
    bool kvalid[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int j = kb * kBlock + warp * R + r;
      kvalid[r] = j < g.n;
      kinfo[r] = info_s[kvalid[r] ? j : 0];
    }
    const float* k_w = k_s + warp * R * DP;
    const float* v_w = v_s + warp * R * DP;
    float dk[T::RPL][T::CPL], dv[T::RPL][T::CPL];
#pragma unroll
    for (int i = 0; i < T::RPL; ++i) {
#pragma unroll
      for (int u = 0; u < T::CPL; ++u) dk[i][u] = dv[i][u] = 0.f;
    }

    for (int qc = 0; qc < g.n; qc += kChunk) {
      __syncthreads();  // the previous chunk is consumed (first time: keys and values are staged)
      stage_qkv<scalar_t, D>(q_s, kChunk, qkv_img, a.qkv_bias, src_s, qc, g, 0, h, g.scale);
      stage_grad<scalar_t, D>(do_s, kChunk, grad_img, src_s, qc, g, h);
      if (threadIdx.x < kChunk) {
        const int i = qc + threadIdx.x;
        lse_s[threadIdx.x] = i < g.n ? lse_win[i] : 0.f;
        dd_s[threadIdx.x] = i < g.n ? dd_win[i] : 0.f;
      }
      __syncthreads();
      const int i = qc + lane;
      const bool ivalid = i < g.n;
      const int iinfo = info_s[ivalid ? i : 0];
      const float lse_i = lse_s[lane];
      const float dd_i = dd_s[lane];
      float s[R], dp[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.f;
      scores<D>(k_w, q_s + lane * DP, s);
      scores<D>(v_w, do_s + lane * DP, dp);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const bool ok = ivalid && kvalid[r];
        const float p = ok ? expf(s[r] + bias_mask(g, bias_s, iinfo, kinfo[r]) - lse_i) : 0.f;
        const float dsv = p * (dp[r] - dd_i);
        p_w[r * kPA + lane] = p;
        ds_w[r * kPA + lane] = dsv;
        if (ok) tab_w[(iinfo >> 4) - (kinfo[r] >> 4) + g.idx0] += dsv;
        __syncwarp();  // orders this row's table updates before the next row's (same entries possible)
      }
      gather<D>(p_w, do_s, rg, cg, dv);
      gather<D>(ds_w, q_s, rg, cg, dk);
    }

    // Write the window's real keys; sum its padding keys into the lane's partials (fixed order).
    scalar_t* dqkv_img = a.out + b * pixels * 3 * g.c;
#pragma unroll
    for (int i = 0; i < T::RPL; ++i) {
      const int j = kb * kBlock + warp * R + rg + T::RG * i;
      if (j >= g.n) continue;
      const int s = src_s[j];
      if (s >= 0) {
        scalar_t* row = dqkv_img + int64_t(s) * 3 * g.c + h * D + cg;
#pragma unroll
        for (int u = 0; u < T::CPL; ++u) {
          row[g.c + T::LC * u] = static_cast<scalar_t>(dk[i][u]);
          row[2 * g.c + T::LC * u] = static_cast<scalar_t>(dv[i][u]);
        }
      } else {
#pragma unroll
        for (int u = 0; u < T::CPL; ++u) {
          pad_dk[u] += dk[i][u];
          pad_dv[u] += dv[i][u];
        }
      }
    }
  }

  // Padding-key partials: row groups (a + b == b + a exactly), then warps in order.
  if constexpr (T::RG == 2) {
#pragma unroll
    for (int u = 0; u < T::CPL; ++u) {
      pad_dk[u] += __shfl_xor_sync(0xffffffffu, pad_dk[u], 16);
      pad_dv[u] += __shfl_xor_sync(0xffffffffu, pad_dv[u], 16);
    }
  }
  __syncthreads();  // every warp's table updates are done
  if (rg == 0) {
#pragma unroll
    for (int u = 0; u < T::CPL; ++u) {
      red_s[(warp * 2 + 0) * D + cg + T::LC * u] = pad_dk[u];
      red_s[(warp * 2 + 1) * D + cg + T::LC * u] = pad_dv[u];
    }
  }
  __syncthreads();
  if (a.ws_pad != nullptr) {
    for (int e = threadIdx.x; e < 2 * D; e += kThreads) {
      const int which = e / D;  // 0: k, 1: v
      const int c = e - which * D;
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += red_s[(w * 2 + which) * D + c];
      a.ws_pad[(int64_t(which) * g.c + h * D + c) * a.parts + part] = sum;
    }
  }
  for (int t = threadIdx.x; t < g.table; t += kThreads) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += tab_s[w * g.table + t];
    a.ws_table[(int64_t(h) * g.table + t) * a.parts + part] = sum;
  }
}

}  // namespace swa
}  // namespace semask_kernels

// The row kernel of shifted_window_attention (forward, and the backward's lse / D / dq pass): one CTA per
// (window, head, block of 32 queries), keys streamed in chunks of 32. Shared helpers and the overall design:
// swa_device.cuh.
#pragma once

#include "shifted_window_attention/swa_device.cuh"

namespace semask_kernels {
namespace swa {

// Shared memory of the row kernels, in floats (and ints at the end).
template <int D, bool BWD>
struct RowSmem {
  static constexpr int DP = Tile<D>::DP;
  static constexpr int q = 0;                                   // [kBlock][DP] scaled q of the CTA's rows
  static constexpr int dout = q + kBlock * DP;                  // [kBlock][DP] their output gradient (BWD)
  static constexpr int k = dout + (BWD ? kBlock * DP : 0);      // [kChunk][DP] key chunk
  static constexpr int v = k + kChunk * DP;                     // [kChunk][DP] value chunk
  static constexpr int p = v + kChunk * DP;                     // [kWarps][R][kPA] weights (P or dS)
  static constexpr int bias = p + kWarps * kRowsPerWarp * kPA;  // [T] this head's bias column, then 2 x [n] ints
  static size_t bytes(int table, int n) { return sizeof(float) * (bias + table) + sizeof(int) * 2 * n; }
};

// Row kernel. CTA = (window, head, block of kBlock queries); warp w owns queries row0 + w * R + r.
// Forward (BWD = false): one pass over the key chunks with an online softmax (running max m, per-lane partial
//   sum l, output accumulators rescaled by exp(m_old - m_new)); out = acc / l, written at each token's position.
// Backward (BWD = true), two passes over the key chunks:
//   1. with dP[i, j] = dO_i . v_j: m, l and a = sum_j exp(S - m) dP online, so lse = m + log l, D = a / l
//      (D = rowsum(P * dP) = dO_i . O_i without needing O);
//   2. P = exp(S - lse), dS = P * (dP - D), dq_i = scale * sum_j dS[i, j] k_j, written once per real token.
//   lse and D go to `stats` for the column kernel. Padding queries have dO = 0, so dS = 0 and their dq is 0
//   exactly: the q part of d qkv_bias is zero (the host writes it so).
template <typename scalar_t, int D, bool BWD>
__global__ void __launch_bounds__(kThreads) row_kernel(Args<scalar_t> a) {
  using T = Tile<D>;
  using L = RowSmem<D, BWD>;
  constexpr int R = kRowsPerWarp;
  constexpr int DP = T::DP;
  const Geometry& g = a.g;
  const int64_t win = blockIdx.x;
  const int h = blockIdx.y;
  const int row0 = blockIdx.z * kBlock;
  const int64_t b = win / g.nwin;
  const int w_img = int(win - b * g.nwin);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int rg = lane / T::LC;
  const int cg = lane % T::LC;

  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* q_s = smem + L::q;
  float* do_s = smem + L::dout;
  float* k_s = smem + L::k;
  float* v_s = smem + L::v;
  float* p_w = smem + L::p + warp * R * kPA;  // this warp's weights
  float* bias_s = smem + L::bias;
  int* src_s = reinterpret_cast<int*>(bias_s + g.table);
  int* info_s = src_s + g.n;

  for (int t = threadIdx.x; t < g.n; t += kThreads) token_info(g, w_img, t, src_s[t], info_s[t]);
  for (int t = threadIdx.x; t < g.table; t += kThreads) bias_s[t] = to_float(a.table[int64_t(t) * g.heads + h]);
  __syncthreads();

  const int64_t pixels = int64_t(g.H) * g.W;
  const scalar_t* qkv_img = a.qkv + b * pixels * 3 * g.c;
  stage_qkv<scalar_t, D>(q_s, kBlock, qkv_img, a.qkv_bias, src_s, row0, g, 0, h, g.scale);
  if constexpr (BWD) stage_grad<scalar_t, D>(do_s, kBlock, a.grad + b * pixels * g.c, src_s, row0, g, h);

  // Packed info of the warp's rows; rows past the window borrow token 0's (their results are never written).
  int rinfo[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int i = row0 + warp * R + r;
    rinfo[r] = info_s[i < g.n ? i : 0];
  }
  const float* q_w = q_s + warp * R * DP;
  const float* do_w = do_s + warp * R * DP;

  float m[R], l[R];
  float acc[T::RPL][T::CPL];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
  }
#pragma unroll
  for (int i = 0; i < T::RPL; ++i) {
#pragma unroll
    for (int u = 0; u < T::CPL; ++u) acc[i][u] = 0.f;
  }
  float lse[R], dd[R];  // backward: per-row log-sum-exp and D

  // Passes over the key chunks. Keys past the window score -inf (exp gives 0); every chunk holds a real key
  // (kc < n), so with a finite mask_value the running max is finite after the first chunk (see safe_max).
  for (int pass = 0; pass < (BWD ? 2 : 1); ++pass) {
    float aa[R];  // backward pass 1: per-lane partial sum_j exp(S - m) dP
#pragma unroll
    for (int r = 0; r < R; ++r) aa[r] = 0.f;
    for (int kc = 0; kc < g.n; kc += kChunk) {
      __syncthreads();  // the previous chunk is consumed (and the first time: q / dO are staged)
      stage_qkv<scalar_t, D>(k_s, kChunk, qkv_img, a.qkv_bias, src_s, kc, g, 1, h, 1.f);
      stage_qkv<scalar_t, D>(v_s, kChunk, qkv_img, a.qkv_bias, src_s, kc, g, 2, h, 1.f);
      __syncthreads();
      const int j = kc + lane;
      const bool jvalid = j < g.n;
      const int jinfo = info_s[jvalid ? j : 0];
      float s[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = 0.f;
      scores<D>(q_w, k_s + lane * DP, s);
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = jvalid ? s[r] + bias_mask(g, bias_s, rinfo[r], jinfo) : -INFINITY;
      if constexpr (!BWD) {
        float alpha[R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float m_new = fmaxf(m[r], warp_max(s[r]));
          const float m_ref = safe_max(m_new);
          alpha[r] = expf(m[r] - m_ref);
          const float p = expf(s[r] - m_ref);
          l[r] = fmaf(l[r], alpha[r], p);
          m[r] = m_new;
          p_w[r * kPA + lane] = p;
        }
        __syncwarp();
#pragma unroll
        for (int i = 0; i < T::RPL; ++i) {
          const float al = owned<T::RG>(alpha, rg, i);
#pragma unroll
          for (int u = 0; u < T::CPL; ++u) acc[i][u] *= al;
        }
        gather<D>(p_w, v_s, rg, cg, acc);
        __syncwarp();  // p_w is rewritten by the next chunk
      } else {
        float dp[R];
#pragma unroll
        for (int r = 0; r < R; ++r) dp[r] = 0.f;
        scores<D>(do_w, v_s + lane * DP, dp);
        if (pass == 0) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const float m_new = fmaxf(m[r], warp_max(s[r]));
            const float m_ref = safe_max(m_new);
            const float alpha = expf(m[r] - m_ref);
            const float e = expf(s[r] - m_ref);  // 0 for keys past the window (s = -inf)
            l[r] = fmaf(l[r], alpha, e);
            aa[r] = fmaf(aa[r], alpha, jvalid ? e * dp[r] : 0.f);
            m[r] = m_new;
          }
        } else {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const float p = expf(s[r] - lse[r]);
            p_w[r * kPA + lane] = p * (dp[r] - dd[r]);  // dS
          }
          __syncwarp();
          gather<D>(p_w, k_s, rg, cg, acc);
          __syncwarp();
        }
      }
    }
    if constexpr (BWD) {
      if (pass == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float sum = warp_sum(l[r]);
          lse[r] = m[r] + logf(sum);
          dd[r] = warp_sum(aa[r]) / sum;
        }
      }
    }
  }

  if constexpr (!BWD) {
#pragma unroll
    for (int r = 0; r < R; ++r) l[r] = warp_sum(l[r]);
  }
  // Write each real query's result at its own position.
  scalar_t* out_img = a.out + b * pixels * (BWD ? 3 * g.c : g.c);
#pragma unroll
  for (int i = 0; i < T::RPL; ++i) {
    const int r = rg + T::RG * i;
    const int t = row0 + warp * R + r;
    if (t >= g.n) continue;
    const int s = src_s[t];
    if (s < 0) continue;
    if constexpr (!BWD) {
      const float inv = 1.f / owned<T::RG>(l, rg, i);
#pragma unroll
      for (int u = 0; u < T::CPL; ++u) {
        out_img[int64_t(s) * g.c + h * D + cg + T::LC * u] = static_cast<scalar_t>(acc[i][u] * inv);
      }
    } else {
#pragma unroll
      for (int u = 0; u < T::CPL; ++u) {
        out_img[int64_t(s) * 3 * g.c + h * D + cg + T::LC * u] = static_cast<scalar_t>(acc[i][u] * g.scale);
      }
    }
  }
  if constexpr (BWD) {
    if (lane == 0) {
      float* lse_out = a.stats + (win * g.heads + h) * g.n;
      float* dd_out = lse_out + g.total * g.heads * g.n;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int t = row0 + warp * R + r;
        if (t < g.n) {
          lse_out[t] = lse[r];
          dd_out[t] = dd[r];
        }
      }
    }
  }
}

}  // namespace swa
}  // namespace semask_kernels

// Device code of shifted_window_attention shared by its kernels: window geometry from coordinates (also used by
// the tensor-core kernels, swa_tc_*.cuh), staging, and the two CTA-level tile products of the CUDA-core kernels:
// swa_row_kernel.cuh (forward; backward lse, D, dq) and swa_col_kernel.cuh (backward dk, dv, partial sums);
// launch code: shifted_window_attention.cu, swa_backward.cu.
//
// Problem. qkv (B, H, W, 3C) contiguous, last dim [3][nH][d]. The padded grid (Hp, Wp) is cut into windows of
// (wh, ww); window `win` = b * nwin + (wrow * nwc + wcol). Token t of a window sits at padded-grid cell
// (ph, pw) = (wrow * wh + t / ww, wcol * ww + t % ww) and reads its q, k, v from
//   roll_then_pad: padding iff ph >= H or pw >= W, else qkv[b, (ph + sh) % H, (pw + sw) % W]
//   pad_then_roll: (y, x) = ((ph + sh) % Hp, (pw + sw) % Wp); padding iff y >= H or x >= W, else qkv[b, y, x]
// Padding tokens read qkv_bias (zeros if absent). The output of a real token is written at that same (y, x):
// the reference's crop and roll back. Every real pixel is exactly one token of exactly one window, so every
// output / dqkv element has exactly one writer (no atomics).
// Scores: S[i, j] = scale * q_i . k_j + table[idx(i, j), h] + (region(i) != region(j) ? mask_value : 0) with
//   idx(i, j) = lin_i - lin_j + (wh - 1)(2ww - 1) + (ww - 1),  lin_t = (t / ww)(2ww - 1) + t % ww,
//   region = 3 * rh + rw, per axis 0 / 1 / 2 for [0, P - win), [P - win, P - shift), [P - shift, P) of the padded
//   grid, always 0 on an axis whose shift is 0 (no mask at all without a shift).
//
// Threads (CUDA-core kernels). A CTA is 4 warps. A warp owns R "rows" (queries in the row kernels, keys in the column kernel), so a
// CTA owns BLK = 4R rows of one (window, head). The other side (keys, resp. queries) is streamed through shared
// memory in chunks of 32, one per lane. Two tile products do all the arithmetic, on CUDA cores in fp32
// (every dtype is converted to fp32 when staged in shared memory; no tensor cores):
//   scores:  s[r] = X[r, :] . Y[lane, :]           (X: the warp's R rows, broadcast; Y: the chunk, lane-owned)
//   gather:  acc[i][u] += sum_n A[r_i, n] * Z[n, c_u]  (A: the warp's R x 32 weights; Z: the chunk)
// In `gather` a lane owns output rows r_i = rg + RG * i and columns c_u = cg + LC * u, with LC = min(D, 32)
// lanes per row group and RG = 32 / LC row groups (RG = 2 only for D = 16).
#pragma once

#include "common/limits.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace semask_kernels {
namespace swa {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kChunk = 32;  // streamed tokens per step: one per lane
constexpr int kRowsPerWarp = 8;
constexpr int kBlock = kWarps * kRowsPerWarp;  // rows (queries or keys) per CTA
constexpr int kMaxTokens = limits::kSwaMaxTokens;  // N = wh * ww limit (common/limits.h)
constexpr int kPA = kChunk + 4;                // row stride of the per-warp weight tiles (float4-aligned)

// Everything a kernel needs to know about the call, by value.
struct Geometry {
  int H, W;        // map
  int Hp, Wp;      // padded grid
  int wh, ww;      // window
  int sh, sw;      // shift
  int nwc;         // windows per padded-grid row
  int nwin;        // windows per image
  int64_t total;   // B * nwin
  int n;           // tokens per window
  int heads;       // nH
  int table;       // (2wh - 1)(2ww - 1)
  int c;           // C = nH * d
  int idx0;        // (wh - 1)(2ww - 1) + (ww - 1): idx(i, j) = lin_i - lin_j + idx0
  bool pad_then_roll;
  float scale;
  float mask_value;
};

// Shared-memory row stride (floats) of a staged (tokens x D) tile: D + 4 keeps float4 alignment, and makes
// lane-strided float4 reads conflict-free (the stride is an odd number of 16-byte units).
template <int D>
struct Tile {
  static constexpr int DP = D + 4;
  static constexpr int LC = D < 32 ? D : 32;  // lanes per row group in `gather`
  static constexpr int RG = 32 / LC;          // row groups per warp in `gather`
  static constexpr int CPL = D / LC;          // columns per lane in `gather`
  static constexpr int RPL = kRowsPerWarp / RG;  // rows per lane in `gather`
};

template <typename T>
__host__ __device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Butterfly sum: every lane ends with the same value, and the result does not depend on scheduling.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The reference point of an online softmax step: the running max, or 0 while it is still -inf (every key so far
// masked with mask_value = -inf), so that exp(m - ref) and exp(s - ref) are 0 rather than NaN.
__device__ __forceinline__ float safe_max(float m) { return m == -INFINITY ? 0.f : m; }

// Token t of window `w_img` (index inside its image): pixel index y * W + x of its source, or -1 for padding,
// and its packed (lin, region) = lin * 16 + region used by the bias index and the shift mask.
__host__ __device__ __forceinline__ void token_info(const Geometry& g, int w_img, int t, int& src, int& info) {
  const int wrow = w_img / g.nwc;
  const int wcol = w_img - wrow * g.nwc;
  const int ti = t / g.ww;
  const int tj = t - ti * g.ww;
  const int ph = wrow * g.wh + ti;
  const int pw = wcol * g.ww + tj;
  bool pad;
  int y, x;
  if (g.pad_then_roll) {
    y = (ph + g.sh) % g.Hp;
    x = (pw + g.sw) % g.Wp;
    pad = y >= g.H || x >= g.W;
  } else {
    pad = ph >= g.H || pw >= g.W;
    y = (ph + g.sh) % g.H;
    x = (pw + g.sw) % g.W;
  }
  src = pad ? -1 : y * g.W + x;
  const int rh = g.sh == 0 ? 0 : int(ph >= g.Hp - g.wh) + int(ph >= g.Hp - g.sh);
  const int rw = g.sw == 0 ? 0 : int(pw >= g.Wp - g.ww) + int(pw >= g.Wp - g.sw);
  const int lin = ti * (2 * g.ww - 1) + tj;
  info = lin * 16 + rh * 3 + rw;
}

// bias + shift mask of the pair (i, j) from their packed infos; idx is always in [0, table) for tokens < n.
__host__ __device__ __forceinline__ float bias_mask(const Geometry& g, const float* bias_s, int info_i, int info_j) {
  const float b = bias_s[(info_i >> 4) - (info_j >> 4) + g.idx0];
  return ((info_i ^ info_j) & 15) ? b + g.mask_value : b;
}

// Stage rows [t0, t0 + rows) of the window into dst (rows x DP floats), times `mul`: part 0/1/2 (q/k/v) of head
// h from qkv, qkv_bias for padding tokens (0 without it), 0 past the window's last token.
template <typename scalar_t, int D>
__device__ __forceinline__ void stage_qkv(float* dst, int rows, const scalar_t* qkv_img, const scalar_t* qkv_bias,
                                          const int* src_s, int t0, const Geometry& g, int part, int h, float mul) {
  constexpr int DP = Tile<D>::DP;
  const int col0 = part * g.c + h * D;
  const int64_t c3 = 3 * int64_t(g.c);
  for (int e = threadIdx.x; e < rows * D; e += kThreads) {
    const int r = e / D;
    const int c = e - r * D;
    const int t = t0 + r;
    float v = 0.f;
    if (t < g.n) {
      const int s = src_s[t];
      if (s >= 0) {
        v = to_float(qkv_img[int64_t(s) * c3 + col0 + c]);
      } else if (qkv_bias != nullptr) {
        v = to_float(qkv_bias[col0 + c]);
      }
    }
    dst[r * DP + c] = v * mul;
  }
}

// Stage the output gradient of rows [t0, t0 + rows): 0 for padding tokens (cropped away) and past the window.
template <typename scalar_t, int D>
__device__ __forceinline__ void stage_grad(float* dst, int rows, const scalar_t* grad_img, const int* src_s, int t0,
                                           const Geometry& g, int h) {
  constexpr int DP = Tile<D>::DP;
  for (int e = threadIdx.x; e < rows * D; e += kThreads) {
    const int r = e / D;
    const int c = e - r * D;
    const int t = t0 + r;
    float v = 0.f;
    if (t < g.n) {
      const int s = src_s[t];
      if (s >= 0) v = to_float(grad_img[int64_t(s) * g.c + h * D + c]);
    }
    dst[r * DP + c] = v;
  }
}

// s[r] += X[r, :] . Y[:] for the warp's R rows X (row stride DP, same address in every lane: a broadcast) and
// this lane's row Y (stride DP between lanes: conflict-free float4 reads).
template <int D>
__device__ __forceinline__ void scores(const float* X, const float* Y, float (&s)[kRowsPerWarp]) {
  constexpr int DP = Tile<D>::DP;
  const float4* y4 = reinterpret_cast<const float4*>(Y);
#pragma unroll 4
  for (int c4 = 0; c4 < D / 4; ++c4) {
    const float4 y = y4[c4];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float4 x = reinterpret_cast<const float4*>(X + r * DP)[c4];
      s[r] = fmaf(x.x, y.x, s[r]);
      s[r] = fmaf(x.y, y.y, s[r]);
      s[r] = fmaf(x.z, y.z, s[r]);
      s[r] = fmaf(x.w, y.w, s[r]);
    }
  }
}

// acc[i][u] += sum_{n < 32} A[r_i, n] * Z[n, c_u]: A is the warp's R x kPA weight tile, Z a staged chunk (32 rows,
// stride DP). A is read as float4 (broadcast within each row group), Z as scalars at consecutive columns.
template <int D>
__device__ __forceinline__ void gather(const float* A, const float* Z, int rg, int cg,
                                       float (&acc)[Tile<D>::RPL][Tile<D>::CPL]) {
  using T = Tile<D>;
#pragma unroll 2
  for (int n4 = 0; n4 < kChunk; n4 += 4) {
    float z[4][T::CPL];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
#pragma unroll
      for (int u = 0; u < T::CPL; ++u) z[t][u] = Z[(n4 + t) * T::DP + cg + T::LC * u];
    }
#pragma unroll
    for (int i = 0; i < T::RPL; ++i) {
      const float4 a = *reinterpret_cast<const float4*>(A + (rg + T::RG * i) * kPA + n4);
#pragma unroll
      for (int u = 0; u < T::CPL; ++u) {
        float v = acc[i][u];
        v = fmaf(a.x, z[0][u], v);
        v = fmaf(a.y, z[1][u], v);
        v = fmaf(a.z, z[2][u], v);
        v = fmaf(a.w, z[3][u], v);
        acc[i][u] = v;
      }
    }
  }
}

// a[r_i] for the lane's i-th owned row (r_i = rg + RG * i) without dynamic register indexing.
template <int RG>
__device__ __forceinline__ float owned(const float (&a)[kRowsPerWarp], int rg, int i) {
  if constexpr (RG == 1) {
    return a[i];
  } else {
    static_assert(RG == 2, "row groups are 1 or 2");
    return rg ? a[2 * i + 1] : a[2 * i];
  }
}

template <typename scalar_t>
struct Args {
  const scalar_t* qkv;        // (B, H, W, 3C) contiguous
  const scalar_t* table;      // (T, nH) contiguous
  const scalar_t* qkv_bias;   // (3C,) or null
  const scalar_t* grad;       // (B, H, W, C) contiguous (backward)
  scalar_t* out;              // forward: (B, H, W, C); backward: dqkv (B, H, W, 3C)
  float* stats;               // (2, total, nH, n): lse, then D = rowsum(P * dP) (backward)
  float* ws_table;            // (nH * T, P) per-CTA partial d table (column kernel)
  float* ws_pad;              // (2C, P) per-CTA partial dk, dv of padding keys, or null (column kernel)
  int64_t parts;              // P = number of column-kernel CTAs per head
  int group;                  // windows per column-kernel CTA
  int nblocks;                // ceil(n / kBlock)
  bool vec16;                 // qkv, qkv_bias and grad are 16-byte aligned (tensor-core kernels' staging)
  Geometry g;
};

}  // namespace swa
}  // namespace semask_kernels

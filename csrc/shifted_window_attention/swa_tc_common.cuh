// What the tensor-core kernels of shifted_window_attention (swa_tc_forward.cuh, swa_tc_backward.cuh) share: the
// 16 x 16 x 16 tile product (WMMA on the GPU, loops on the CPU) and the execution policy of the CUDA threads of a
// CTA. A kernel's steps are written once over a policy `ex` providing threads(f(tid, nthreads)), sync(),
// warps(f(warp)), lanes(f(lane)), warp(f()) and syncwarp(); swa_tc_emulate.cu runs them on the CPU with a policy
// that calls f for every thread / warp / lane in turn.
#pragma once

#include "shifted_window_attention/swa_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstddef>
#include <cstring>
#include <type_traits>

namespace semask_kernels {
namespace swa {
namespace tc {

constexpr int kTile = 16;  // WMMA m = n = k

__host__ __device__ inline size_t align32(size_t x) { return (x + 31) / 32 * 32; }

// Cuts a shared-memory layout into regions that each start on a 32-byte boundary (WMMA's pointer alignment).
struct Carve {
  size_t end = 0;
  size_t take(size_t bytes) {
    const size_t at = end;
    end = align32(end + bytes);
    return at;
  }
};

constexpr size_t kElem = 2;  // bytes per float16 / bfloat16 element

// The WMMA element type of a c10 type (same bits).
template <typename scalar_t>
struct MmaType;
template <>
struct MmaType<c10::Half> {
  using type = __half;
};
template <>
struct MmaType<c10::BFloat16> {
  using type = __nv_bfloat16;
};

// Warp-collective: C (16 x 16, fp32, row stride ldc) = A (16 x 16k) times B (16k x 16). A is read column-major
// (A(i, k) = A[k * lda + i]) when A_COL, else row-major (A(i, k) = A[i * lda + k]); B column-major
// (B(k, j) = B[j * ldb + k]) when B_COL, else row-major (B(k, j) = B[k * ldb + j]).
// On the GPU one WMMA chain (sm_80+; the host never launches it on older GPUs); on the CPU plain loops with fp32
// products and sums, for the emulation.
template <typename scalar_t, bool A_COL, bool B_COL>
__host__ __device__ inline void tile_product(const scalar_t* A, int lda, const scalar_t* B, int ldb, int ksteps,
                                             float* C, int ldc) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  using T = typename MmaType<scalar_t>::type;
  using LayoutA = std::conditional_t<A_COL, wmma::col_major, wmma::row_major>;
  using LayoutB = std::conditional_t<B_COL, wmma::col_major, wmma::row_major>;
  wmma::fragment<wmma::accumulator, kTile, kTile, kTile, float> acc;
  wmma::fragment<wmma::matrix_a, kTile, kTile, kTile, T, LayoutA> fa;
  wmma::fragment<wmma::matrix_b, kTile, kTile, kTile, T, LayoutB> fb;
  wmma::fill_fragment(acc, 0.f);
  const T* a = reinterpret_cast<const T*>(A);
  const T* b = reinterpret_cast<const T*>(B);
  for (int k = 0; k < ksteps; ++k) {
    wmma::load_matrix_sync(fa, A_COL ? a + k * kTile * lda : a + k * kTile, lda);
    wmma::load_matrix_sync(fb, B_COL ? b + k * kTile : b + k * kTile * ldb, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(C, acc, ldc, wmma::mem_row_major);
#else
  __trap();
#endif
#else
  for (int i = 0; i < kTile; ++i) {
    for (int j = 0; j < kTile; ++j) {
      float acc = 0.f;
      for (int k = 0; k < ksteps * kTile; ++k) {
        const scalar_t bk = B_COL ? B[j * ldb + k] : B[k * ldb + j];
        const scalar_t ak = A_COL ? A[k * lda + i] : A[i * lda + k];
        acc += float(ak) * float(bk);
      }
      C[i * ldc + j] = acc;
    }
  }
#endif
}

// Where element `col` (= part * C + h * d + c) of the q / k / v of a token of window `win` is: qkv at pixel
// `src`, or qkv_bias for a padding token (src < 0); null for a padding token without qkv_bias (zeros).
template <typename scalar_t>
__host__ __device__ inline const scalar_t* qkv_ptr(const Args<scalar_t>& a, int64_t win, int src, int col) {
  const Geometry& g = a.g;
  if (src >= 0) return a.qkv + ((win / g.nwin) * g.H * g.W + src) * 3 * g.c + col;
  return a.qkv_bias != nullptr ? a.qkv_bias + col : nullptr;
}

// Elements per staging copy: 8 (16 bytes) when the sources are 16-byte aligned (Args::vec16), else 1. Every
// offset a staging step copies from or to is a multiple of 8 elements (C, d and the row strides are).
constexpr int kVec = 8;

// dst[0, W) = src[0, W), or zeros for a null src; W = kVec needs both 16-byte aligned.
template <int W, typename scalar_t>
__host__ __device__ inline void copy_elems(scalar_t* dst, const scalar_t* src) {
  if constexpr (W == kVec) {
    static_assert(sizeof(scalar_t) * kVec == 16, "16-byte copies");
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uint4*>(dst) = src != nullptr ? *reinterpret_cast<const uint4*>(src) : make_uint4(0, 0, 0, 0);
#else
    if (src != nullptr) {
      std::memcpy(dst, src, 16);
    } else {
      std::memset(dst, 0, 16);
    }
#endif
  } else {
    static_assert(W == 1, "copies of 8 or 1 elements");
    *dst = src != nullptr ? *src : scalar_t(0.f);
  }
}

// The CUDA threads of a CTA.
struct DeviceExec {
  template <typename F>
  __device__ void threads(F&& f) const { f(int(threadIdx.x), int(blockDim.x)); }
  __device__ void sync() const { __syncthreads(); }
  template <typename F>
  __device__ void warps(F&& f) const { f(int(threadIdx.x / 32)); }
  template <typename F>
  __device__ void lanes(F&& f) const { f(int(threadIdx.x % 32)); }
  template <typename F>
  __device__ void warp(F&& f) const { f(); }
  __device__ void syncwarp() const { __syncwarp(); }
};

}  // namespace tc
}  // namespace swa
}  // namespace semask_kernels

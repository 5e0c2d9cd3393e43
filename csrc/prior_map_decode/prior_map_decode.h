// prior_map_decode: out = maps[0] + sum_{i>=1} A_i · maps[i] · B_iᵀ per (b, k) plane, where A_i, B_i are
// banded 1-D resampling matrices computed on the Python side (semask_kernels/ops/prior_map_decode/
// interp_weights.py). A band is start (R,) int32 and weight (R, T): M[r, start[r] + t] = weight[r, t].
// Weights are float32, or float64 when the maps are float64.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace semask_kernels {

// maps: L >= 1 CUDA tensors (B, K, h_i, w_i) of one floating dtype; the band lists hold L - 1 entries,
// entry i - 1 for maps[i]: rows over the output rows H0 (row_*) and output columns W0 (col_*).
// Returns (B, K, H0, W0), contiguous.
at::Tensor prior_map_decode_forward(at::TensorList maps, at::TensorList row_start, at::TensorList row_weight,
                                    at::TensorList col_start, at::TensorList col_weight);

// grad: (B, K, H0, W0). The band lists hold the *transposed* matrices of levels 1..L-1: rowT_start[i-1] has
// h_i rows over H0 columns, colT_start[i-1] has w_i rows over W0 columns. Returns L contiguous tensors:
// a copy of grad, then the gradient of each maps[i] (B, K, h_i, w_i). A gather: deterministic, no atomics.
std::vector<at::Tensor> prior_map_decode_backward(const at::Tensor& grad, at::TensorList rowT_start,
                                                  at::TensorList rowT_weight, at::TensorList colT_start,
                                                  at::TensorList colT_weight);

}  // namespace semask_kernels

"""CUDA backend of ``prior_map_decode``: a thin wrapper over ``torch.ops.semask_kernels.prior_map_decode_*``.

Each level is resampled as ``A_i · X_i · B_iᵀ`` with banded 1-D matrices from ``kernels/bilinear_bands``; the
C++ op does forward as ``out = maps[0] + Σ levels`` and backward as a gather with the transposed bands
(deterministic). Weights are float32 (float64 for float64 maps); accumulation is float32 (float64).
Registration with ``backends`` happens in ``op.py``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ... import _ext
from ...backends import reasons
from ...kernels.bilinear_bands import band_weights

# the files this backend is made of besides this one: its GPU evidence is tied to their SHA-256
# (semask_kernels/evidence.py)
SOURCES = ("semask_kernels/kernels/bilinear_bands.py",
           "csrc/prior_map_decode/",
           "csrc/common/")

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _weight_dtype(dtype: torch.dtype) -> torch.dtype:
    # Must match the C++ check: float64 data takes float64 weights, everything else float32.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _bands(sizes: Sequence[tuple[int, int]], align_corners: bool, transpose: bool, dtype: torch.dtype,
           device: torch.device) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
    """Row and column bands of levels 1..L-1 (transposed for the backward)."""
    h0, w0 = sizes[0]
    wdtype = _weight_dtype(dtype)
    rs, rw, cs, cw = [], [], [], []
    for level, (h, w) in enumerate(sizes[1:], start=1):
        s, wt = band_weights(int(h), int(h0), level, align_corners, transpose, wdtype, device)
        rs.append(s)
        rw.append(wt)
        s, wt = band_weights(int(w), int(w0), level, align_corners, transpose, wdtype, device)
        cs.append(s)
        cw.append(wt)
    return rs, rw, cs, cw


def forward(maps: list[Tensor], align_corners: bool) -> Tensor:
    """maps[i]: (B, K, h_i, w_i) CUDA tensors of one dtype. Returns (B, K, h_0, w_0), contiguous."""
    _ext.require()  # loads the library that registers the op
    sizes = [tuple(m.shape[-2:]) for m in maps]
    bands = _bands(sizes, align_corners, False, maps[0].dtype, maps[0].device)
    return torch.ops.semask_kernels.prior_map_decode_forward(list(maps), *bands)


def backward(grad: Tensor, sizes: list[tuple[int, int]], align_corners: bool) -> list[Tensor]:
    """grad: (B, K, h_0, w_0); sizes: (h_i, w_i) of every map, maps[0] included. One gradient per map."""
    _ext.require()
    if tuple(grad.shape[-2:]) != tuple(sizes[0]):
        raise ValueError(f"grad must have the spatial size of maps[0] {tuple(sizes[0])}, "
                         f"got shape {tuple(grad.shape)}")
    bands = _bands(sizes, align_corners, True, grad.dtype, grad.device)
    return list(torch.ops.semask_kernels.prior_map_decode_backward(grad, *bands))


available = _ext.unavailable_reason  # extension built and a GPU visible


def supports(maps: Sequence[Tensor], align_corners: bool) -> Optional[str]:
    """Every reason the CUDA backend cannot run these maps, or None when it can."""
    found = []
    for i, m in enumerate(maps):
        if not isinstance(m, Tensor):
            found.append(f"maps[{i}] is not a tensor ({type(m).__name__})")
            continue
        found += [m.device.type != "cuda" and f"maps[{i}] is on {m.device}, the CUDA backend needs CUDA tensors",
                  m.dtype not in SUPPORTED_DTYPES and f"maps[{i}] has dtype {m.dtype}, the CUDA backend supports "
                                                      f"{SUPPORTED_DTYPES}"]
    return reasons(*found)

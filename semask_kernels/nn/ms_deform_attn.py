"""``MSDeformAttn``: Deformable DETR's / Mask2Former's multi-scale deformable attention module (same parameter
names, shapes and initialisation, so their state dicts and Hugging Face transformers' load unchanged) on the
``ms_deform_attn`` op."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from ..ops.ms_deform_attn import ms_deform_attn


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query attends to ``n_points`` bilinear samples per head and level,
    placed by learned offsets around its reference point.

    Parameters (the names of Deformable DETR, Mask2Former and transformers' ``*MultiscaleDeformableAttention``):
    ``sampling_offsets`` Linear(d_model, n_heads·n_levels·n_points·2), ``attention_weights`` Linear(d_model,
    n_heads·n_levels·n_points), ``value_proj`` and ``output_proj`` Linear(d_model, d_model).

    Args:
        d_model: channels C (default 256). n_levels: nL (4). n_heads: nH (8), C % nH == 0. n_points: nP (4).
        backend: backend of the op ("auto", "reference", "torch", "triton", "cuda").

    Forward:
        query (B, Lq, C); reference_points (B, Lq, nL, 2) as normalized (x, y) in [0, 1], or (B, Lq, nL, 4) as
        normalized boxes (cx, cy, w, h) (Deformable DETR's two-stage decoder); input_flatten (B, S, C), the levels
        concatenated; input_spatial_shapes (nL, 2) of (H_l, W_l); input_level_start_index (nL,);
        input_padding_mask (B, S) bool, True where input_flatten is padding (its value is zeroed), or None.
        Returns (B, Lq, C). Under autocast the op runs in the promoted dtype of value and sampling locations
        (float32 when the reference points are), as the original op (cast to float32) did.

    Example:
        >>> import torch, semask_kernels as sk
        >>> attn = sk.nn.MSDeformAttn(d_model=64, n_levels=2, n_heads=4, n_points=3)
        >>> shapes = torch.tensor([[8, 8], [4, 4]])
        >>> x = torch.randn(2, 80, 64)
        >>> attn(x, torch.rand(2, 80, 2, 2), x, shapes, torch.tensor([0, 64])).shape
        torch.Size([2, 80, 64])
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 backend: str = "auto", device=None, dtype=None):
        super().__init__()
        d_model = _checks.positive_int("d_model", d_model)
        n_heads = _checks.positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
        self.d_model = d_model
        self.n_levels = _checks.positive_int("n_levels", n_levels)
        self.n_heads = n_heads
        self.n_points = _checks.positive_int("n_points", n_points)
        self.backend = _checks.backend("backend", backend)
        kw = {"device": device, "dtype": dtype}
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2, **kw)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points, **kw)
        self.value_proj = nn.Linear(d_model, d_model, **kw)
        self.output_proj = nn.Linear(d_model, d_model, **kw)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Deformable DETR's initialisation: zero offset weights, offset biases on a ring of nH directions (the
        k-th point k steps out), zero attention logits (uniform weights), Xavier-uniform projections."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid *= torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def _check(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor, input_spatial_shapes,
               input_padding_mask: Optional[Tensor]) -> None:
        _checks.tensor("query", query, ndim=3)
        _checks.tensor("input_flatten", input_flatten, ndim=3)
        _checks.tensor("reference_points", reference_points, ndim=4)
        b, lq, c = query.shape
        if c != self.d_model or input_flatten.shape[-1] != self.d_model:
            raise ValueError(f"query and input_flatten must have d_model = {self.d_model} channels, got "
                             f"{tuple(query.shape)} and {tuple(input_flatten.shape)}")
        if input_flatten.shape[0] != b:
            raise ValueError(f"input_flatten must have query's batch size {b}, got {tuple(input_flatten.shape)}")
        rb, rq, rl, rc = reference_points.shape
        if (rb, rq, rl) != (b, lq, self.n_levels) or rc not in (2, 4):
            raise ValueError(f"reference_points must be (B, Lq, n_levels, 2) or (B, Lq, n_levels, 4) = "
                             f"({b}, {lq}, {self.n_levels}, 2 or 4), got {tuple(reference_points.shape)}")
        if isinstance(input_spatial_shapes, Tensor):
            got = tuple(input_spatial_shapes.shape)
        else:  # a sequence of (H, W) pairs
            got = (len(input_spatial_shapes), *{len(pair) if hasattr(pair, "__len__") else 0
                                                 for pair in input_spatial_shapes})
        if got != (self.n_levels, 2):
            raise ValueError(f"input_spatial_shapes must be (n_levels, 2) = ({self.n_levels}, 2): one (H, W) per level "
                             f"of this module, got {got} ({input_spatial_shapes!r:.80})")
        if input_padding_mask is not None:
            _checks.tensor("input_padding_mask", input_padding_mask, ndim=2, floating=False)
            _checks.shape("input_padding_mask", input_padding_mask, input_flatten.shape[:2])

    def forward(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor, input_spatial_shapes,
                input_level_start_index, input_padding_mask: Optional[Tensor] = None) -> Tensor:
        self._check(query, reference_points, input_flatten, input_spatial_shapes, input_padding_mask)
        b, lq, _ = query.shape
        s = input_flatten.shape[1]
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None].bool(), 0.0)
        value = value.view(b, s, heads, self.d_model // heads)
        offsets = self.sampling_offsets(query).view(b, lq, heads, levels, points, 2)
        weights = self.attention_weights(query).view(b, lq, heads, levels * points)
        weights = F.softmax(weights, -1).view(b, lq, heads, levels, points)
        if reference_points.shape[-1] == 2:
            shapes = torch.as_tensor(input_spatial_shapes, device=query.device)
            normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1).to(offsets.dtype)  # (W, H) per level
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / normalizer[None, None, None, :, None, :])
        else:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / points * reference_points[:, :, None, :, None, 2:] * 0.5)
        dtype = torch.promote_types(torch.promote_types(value.dtype, locations.dtype), weights.dtype)
        out = ms_deform_attn(value.to(dtype), input_spatial_shapes, input_level_start_index, locations.to(dtype),
                             weights.to(dtype), backend=self.backend)
        return self.output_proj(out.to(value.dtype))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_levels={self.n_levels}, n_heads={self.n_heads}, "
                f"n_points={self.n_points}, backend={self.backend!r}")

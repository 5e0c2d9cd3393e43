"""``SemanticAttention``: SeMask's semantic attention layer (official parameter names) on the fused op."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import _checks
from ..ops.semantic_attention import semantic_attention


class SemanticAttention(nn.Module):
    """One SeMask ``SemanticAttention`` over an NHWC map.

    S = mlp_cls_q(x), k = mlp_cls_k(x), v = mlp_v(x), y = softmax(S·kᵀ)·v (one head, no scaling) globally or in
    non-shifted windows of the zero-padded map (padded tokens carry the Linear biases, as in the official code),
    out = x + gamma · Dropout(mlp_res(y)). ``x`` is the *normed* map: the residual adds to it, as officially.

    Parameters keep the official names (``mlp_cls_q``, ``mlp_cls_k``, ``mlp_v``, ``mlp_res``, ``gamma``) and the
    official constructor init: kaiming-normal q/k/v weights with zero biases, zero ``mlp_res``, ``gamma = 0``.

    Args:
        dim: channels C; num_classes: K; window_size: None (global) or int / (M_h, M_w);
        proj_drop: dropout after ``mlp_res`` (0.1, hard-coded in the official code); backend: op backend.

    Returns ``(S, out)``: the prior map (B, H, W, K) and the output (B, H, W, C).

    Example:
        >>> import torch, semask_kernels as sk
        >>> layer = sk.nn.SemanticAttention(96, num_classes=150, window_size=7)
        >>> s, out = layer(torch.randn(2, 16, 16, 96))
        >>> s.shape, out.shape
        (torch.Size([2, 16, 16, 150]), torch.Size([2, 16, 16, 96]))
    """

    def __init__(self, dim: int, num_classes: int, window_size=None, proj_drop: float = 0.1,
                 backend: str = "auto", device=None, dtype=None):
        super().__init__()
        self.dim = _checks.positive_int("dim", dim)
        self.num_classes = _checks.positive_int("num_classes", num_classes)
        self.window_size: Optional[tuple[int, int]] = (
            None if window_size is None else _checks.pair("window_size", window_size))
        self.backend = _checks.backend("backend", backend)
        dd = {"device": device, "dtype": dtype}
        self.mlp_cls_q = nn.Linear(dim, num_classes, **dd)
        self.mlp_cls_k = nn.Linear(dim, num_classes, **dd)
        self.mlp_v = nn.Linear(dim, dim, **dd)
        self.mlp_res = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gamma = nn.Parameter(torch.zeros(1, **dd))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.mlp_cls_q, self.mlp_cls_k, self.mlp_v):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.mlp_res.weight)
        nn.init.zeros_(self.mlp_res.bias)
        nn.init.zeros_(self.gamma)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.mlp_cls_q(x)
        k = self.mlp_cls_k(x)
        v = self.mlp_v(x)
        windowed = self.window_size is not None
        y = semantic_attention(s, k, v, window_size=self.window_size,
                               pad_k=self.mlp_cls_k.bias.to(k.dtype) if windowed else None,
                               pad_v=self.mlp_v.bias.to(v.dtype) if windowed else None, backend=self.backend)
        return s, x + self.gamma * self.proj_drop(self.mlp_res(y))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_classes={self.num_classes}, window_size={self.window_size}"

"""Small layers of the detectron2 heads, with detectron2's parameter names: ``Conv2d`` with an attached ``norm``
(so ``adapter_1.weight`` / ``adapter_1.norm.weight`` as in the official checkpoints), the sine position
embedding of DETR and MaskFormer's prediction MLP."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that also takes one value per group (32 channels in 32 groups on the 1×1 map of a ≤ 32 px
    image), which torch refuses ("Expected more than 1 value per channel when training", in eval mode too): such
    a value normalizes to 0, so the result is the affine bias, exactly what the formula gives. Same parameters
    and state-dict keys as ``nn.GroupNorm``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() >= 2 and x.shape[0] and x.numel() == x.shape[0] * self.num_groups:
            out = x - x  # (x - mean) / sqrt(var + eps) with mean = x, var = 0; keeps NaN and the graph
            if self.affine:
                shape = (1, -1) + (1,) * (x.dim() - 2)
                out = out * self.weight.view(shape) + self.bias.view(shape)
            return out
        return super().forward(x)


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """detectron2's ``get_norm("GN", C)``: GroupNorm with 32 groups (:class:`GroupNorm`: one value per group is
    fine)."""
    if channels % groups:
        raise ValueError(f"GroupNorm: channels {channels} must be divisible by {groups} groups")
    return GroupNorm(groups, channels)


class Conv2dNorm(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` module and ``activation`` (detectron2 ``layers.Conv2d``);
    the norm is a child named ``norm``, so checkpoint keys are ``<name>.weight`` and ``<name>.norm.weight``."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[Callable] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


def c2_xavier_fill(module: nn.Conv2d) -> None:
    """fvcore's ``c2_xavier_fill``: kaiming-uniform with a = 1 (Caffe2's XavierFill), zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def sine_position_embedding(x: Tensor, num_pos_feats: int, temperature: float = 10000.0,
                            scale: float = 2 * math.pi) -> Tensor:
    """DETR's normalized sine embedding of a (B, C, H, W) map without padding: (B, 2·num_pos_feats, H, W),
    float32, the y half first. Positions are the 1-based row/column normalized to (0, scale]."""
    B, _, H, W = x.shape
    eps = 1e-6
    y = torch.arange(1, H + 1, dtype=torch.float32, device=x.device)
    xs = torch.arange(1, W + 1, dtype=torch.float32, device=x.device)
    y = (y / (H + eps) * scale)[:, None].expand(H, W)
    xs = (xs / (W + eps) * scale)[None, :].expand(H, W)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)

    def embed(pos: Tensor) -> Tensor:
        p = pos[..., None] / dim_t  # (H, W, F): sin on even features, cos on odd, interleaved
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    pos = torch.cat((embed(y), embed(xs)), dim=-1).permute(2, 0, 1)
    return pos.unsqueeze(0).expand(B, -1, -1, -1)


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's FFN); ``layers.{i}`` as officially."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

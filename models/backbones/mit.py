"""Mix Transformer (MiT-B0…B5, SegFormer's encoder), with optional SeMask semantic layers (SeMask-MiT).

SegFormer semantics (NVlabs ``mix_transformer.py``): per stage an overlapping patch embedding (7×7 stride 4 conv,
then 3×3 stride 2; padding k // 2; LayerNorm), transformer blocks of efficient self-attention (q from every token,
k/v from the map reduced by a ``sr``×``sr`` stride-``sr`` conv + LayerNorm, ratios 8/4/2/1) and Mix-FFN
(fc1 → 3×3 depthwise conv → GELU → fc2), then a LayerNorm ``norm{i}`` whose output is both the stage feature and the
next stage's input. Stochastic depth rises linearly over all blocks to ``drop_path_rate`` (0.1 in SegFormer).
Block and stage norms use eps 1e-6, patch-embedding and reduction norms 1e-5, as officially. Module names follow
the official code (``patch_embed{i}``, ``block{i}``, ``norm{i}``; ``attn.q``, ``attn.kv``, ``attn.sr``, ``mlp.dwconv``),
so official checkpoints load without renaming. Attention runs through ``F.scaled_dot_product_attention``.

SeMask-MiT (``num_classes`` set): after the blocks of stage i, before ``norm{i}``, a :class:`SemanticLayer`
(LayerNorm, then ``sem_depths[i]`` SemanticAttention blocks, residual on the normed input, gamma = 0 at init), as the
semantic layer sits after the Swin blocks and before the output norm and the patch merging in SeMask-Swin. The
paper does not say how MiT's semantic attention is laid out, so this module chooses (``ModelConfig`` fields
``sem_window_size`` / ``global_stages`` / ``sem_depths`` of the MiT zoo):

- windowed (8×8 windows) in stages 1-2 and global in stages 3-4: SemanticAttention is an N×N attention, so a
  global one at stride 4 costs (H/4·W/4)² (16384² for a 512² crop), far above MiT's own spatially reduced
  attention; at strides 16 and 32 the maps are small (≤ 1024 tokens at 512²) and global attention matches both
  MiT's global receptive field and the official SeMask-Swin rule (global stages 3-4 for K > 19). The window is 8
  because MiT's reduction ratio at stride 4 is 8: a window sees the same 8×8 patch one reduced key summarizes.
- the semantic layer keeps the stage width C (no projection), as in SeMask-Swin: the residual adds to the stage
  features and the prior map is a C → K linear, the cheapest width that changes nothing else of MiT.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath
from torch import Tensor, nn

from .semantic_layer import SemanticLayer

BLOCK_EPS = 1e-6  # norm_layer=partial(nn.LayerNorm, eps=1e-6) of the official mit_b* classes


class OverlapPatchEmbed(nn.Module):
    """Conv (kernel ``patch_size``, ``stride``, padding ``patch_size // 2``) + LayerNorm; (B, C, H, W) in,
    (B, H', W', D) out with H' = ⌊(H - 1) / stride⌋ + 1 (any input size, no padding to a multiple)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from the map reduced ``sr_ratio``× (strided conv +
    LayerNorm); on (B, H, W, C). ``kv`` holds k in its first C output rows and v in the next C, as officially."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads = {num_heads} does not divide the stage width {dim}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, h * w, heads, c // heads).transpose(1, 2)
        src = x
        if self.sr_ratio > 1:
            src = self.norm(self.sr(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        kv = self.kv(src).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1])  # scale head_dim ** -0.5, as officially
        return self.proj(y.transpose(1, 2).reshape(b, h, w, c))


class MixFFN(nn.Module):
    """fc1 → 3×3 depthwise conv (``dwconv.dwconv``, with bias) → GELU → fc2, on (B, H, W, C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Module()
        self.dwconv.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dwconv.dwconv(self.fc1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(x))


class MiTBlock(nn.Module):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x))), on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.attn = EfficientAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MiTBackbone(nn.Module):
    """MiT (or SeMask-MiT when ``num_classes`` is set) backbone.

    Args:
        embed_dims, depths, num_heads, sr_ratios, mlp_ratio, drop_path_rate: the MiT variant (``MIT_VARIANTS`` of
            :mod:`semask_models.zoo.mit`).
        num_classes: K of the semantic layers; None builds a plain MiT backbone.
        sem_depths: SemanticAttention blocks per stage (N_S); sem_window_size: window of the windowed stages;
        global_stages: stages whose semantic attention is global.
        use_checkpoint: gradient checkpointing of every block. backend: backend of the SeMask ops.

    ``forward(img (B, 3, H, W))`` returns ``(features, priors)``: four (B, C_i, H_i, W_i) maps after ``norm{i}``
    at strides 4/8/16/32 (ceil) and, with semantic layers, the four prior maps (B, K, H_i, W_i) (else ``[]``).
    """

    def __init__(self, embed_dims: Sequence[int] = (32, 64, 160, 256), depths: Sequence[int] = (2, 2, 2, 2),
                 num_heads: Sequence[int] = (1, 2, 5, 8), sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.1, in_chans: int = 3,
                 num_classes: Optional[int] = None, sem_depths: Sequence[int] = (1, 1, 1, 1),
                 sem_window_size: int = 8, global_stages: Sequence[int] = (2, 3), use_checkpoint: bool = False,
                 backend: str = "auto"):
        super().__init__()
        lengths = {"embed_dims": len(embed_dims), "depths": len(depths), "num_heads": len(num_heads),
                   "sr_ratios": len(sr_ratios), "sem_depths": len(sem_depths)}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"MiTBackbone: one entry per stage expected in every per-stage argument, got {lengths}")
        self.num_stages = len(depths)
        self.num_features = list(embed_dims)
        self.use_checkpoint = use_checkpoint
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        for i in range(self.num_stages):
            first = i == 0
            self.add_module(f"patch_embed{i + 1}", OverlapPatchEmbed(
                in_chans if first else embed_dims[i - 1], embed_dims[i], 7 if first else 3, 4 if first else 2))
            start = sum(depths[:i])
            self.add_module(f"block{i + 1}", nn.ModuleList([
                MiTBlock(embed_dims[i], num_heads[i], sr_ratios[i], mlp_ratio, rates[start + j])
                for j in range(depths[i])]))
            self.add_module(f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=BLOCK_EPS))
        self.apply(init_weights)
        if num_classes is not None:  # after init_weights: the semantic layers keep their official constructor init
            for i in range(self.num_stages):
                window = None if i in global_stages else sem_window_size
                self.add_module(f"semantic_layer{i + 1}", SemanticLayer(
                    embed_dims[i], num_classes, window, backend, depth=sem_depths[i]))
        self.semantic = num_classes is not None

    def min_input_size(self) -> int:
        """The smallest image side whose every stage map covers that stage's reduction ratio."""
        size = 1
        for i in range(self.num_stages, 0, -1):  # invert H_i = ⌊(H_{i-1} - 1) / stride⌋ + 1, stage by stage
            block = getattr(self, f"block{i}")
            need = max(size, block[0].attn.sr_ratio if len(block) else 1)
            stride = getattr(self, f"patch_embed{i}").proj.stride[0]
            size = (need - 1) * stride + 1
        return size

    def forward(self, img: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if min(img.shape[-2:]) < self.min_input_size():
            raise ValueError(f"img of size {tuple(img.shape[-2:])} is too small for this MiT: each side must be at "
                             f"least {self.min_input_size()} pixels (the spatial-reduction conv of a stage needs a "
                             "map at least as large as its ratio)")
        x = img
        features, priors = [], []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"patch_embed{i}")(x)
            for block in getattr(self, f"block{i}"):
                if self.use_checkpoint and torch.is_grad_enabled():
                    x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if self.semantic:
                prior, x = getattr(self, f"semantic_layer{i}")(x)
                priors.append(prior.permute(0, 3, 1, 2).contiguous())
            x = getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous()
            features.append(x)
        return features, priors


def init_weights(module: nn.Module) -> None:
    """SegFormer's init: trunc-normal(0.02) Linear weights, zero biases, unit LayerNorms, and convs normal with
    std sqrt(2 / fan_out) (fan_out = k·k·out / groups), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)

"""Mask2Former's pixel decoder: a multi-scale deformable-attention encoder over strides 8/16/32, then an FPN step
to stride 4 (``MSDeformAttnPixelDecoder``), on the package's ``MSDeformAttn``.

Module and parameter names follow the official code (``input_proj.{l}.{0,1}``, ``transformer.level_embed``,
``transformer.encoder.layers.{i}.self_attn.sampling_offsets``, ``mask_features``, ``adapter_1``, ``layer_1`` ...).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semask_kernels.nn import MSDeformAttn

from ..maskformer.layers import Conv2dNorm, GroupNorm, c2_xavier_fill
from .position_encoding import PositionEmbeddingSine


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention (query = src + pos) → add & LayerNorm → FFN (ReLU) → add &
    LayerNorm. Tokens (B, S, C) over the concatenated levels."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.0, n_levels: int = 3,
                 n_heads: int = 8, n_points: int = 4, backend: str = "auto"):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, backend=backend)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor) -> Tensor:
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, reference_points, src, spatial_shapes,
                                                            level_start_index)))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnEncoder(nn.Module):
    """``layers`` of ``MSDeformAttnEncoderLayer``; every token's reference point is its own pixel center on each
    level (no padding: valid ratios 1)."""

    def __init__(self, num_layers: int, **layer_args):
        super().__init__()
        self.layers = nn.ModuleList(MSDeformAttnEncoderLayer(**layer_args) for _ in range(num_layers))

    @staticmethod
    def reference_points(spatial_shapes: Sequence[tuple[int, int]], batch: int, n_levels: int,
                         device: torch.device) -> Tensor:
        """(B, S, nL, 2): the normalized (x, y) pixel centers of every level's tokens, the same on each level."""
        refs = []
        for h, w in spatial_shapes:
            ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device) / h,
                                          torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device) / w,
                                          indexing="ij")
            refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
        return torch.cat(refs, 0)[None, :, None].expand(batch, -1, n_levels, -1)

    def forward(self, src: Tensor, pos: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                shapes: Sequence[tuple[int, int]]) -> Tensor:
        reference_points = self.reference_points(shapes, src.shape[0], len(shapes), src.device)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """The encoder and its learned per-level embedding (``level_embed``, (nL, C)) added to the position codes."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 1024,
                 dropout: float = 0.0, num_feature_levels: int = 3, enc_n_points: int = 4, backend: str = "auto"):
        super().__init__()
        self.encoder = MSDeformAttnEncoder(num_encoder_layers, d_model=d_model, d_ffn=dim_feedforward,
                                           dropout=dropout, n_levels=num_feature_levels, n_heads=nhead,
                                           n_points=enc_n_points, backend=backend)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        for p in self.parameters():  # official order: Xavier everywhere, then MSDeformAttn's own init
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: Sequence[Tensor], pos_embeds: Sequence[Tensor]) -> tuple[Tensor, list]:
        """srcs, pos_embeds: nL maps (B, C, h_l, w_l). Returns the encoded tokens (B, S, C) and the level shapes."""
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        src_flatten = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flatten = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                                 for lvl, p in enumerate(pos_embeds)], 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        return self.encoder(src_flatten, pos_flatten.to(src_flatten.dtype), spatial_shapes, level_start_index,
                            shapes), shapes


class MSDeformAttnPixelDecoder(nn.Module):
    """Backbone maps at strides 4/8/16/32 → ``(mask_features, multi_scale_features)``.

    The stride-8/16/32 maps are projected (1×1 conv + GroupNorm) to ``conv_dim``, encoded jointly by
    ``transformer_enc_layers`` deformable-attention layers (``transformer_nheads`` heads, ``n_points`` points,
    FFN ``transformer_dim_feedforward``), then the stride-4 map joins through a lateral 1×1 conv + GN
    (``adapter_1``) added to the upsampled stride-8 output and a 3×3 conv + GN + ReLU (``layer_1``).

    Args:
        in_channels: the 4 backbone channel counts, stride 4 first (Swin-L: 192, 384, 768, 1536).
        conv_dim, mask_dim, norm_groups, transformer_*, n_points: official defaults 256, 256, 32, 0.0 dropout,
            8 heads, 1024 FFN, 6 layers, 4 points.
        backend: the ``ms_deform_attn`` backend ("auto", "reference", "torch", "triton", "cuda").

    ``forward(features)`` (4 maps (B, in_channels[i], H/s, W/s)) returns ``mask_features`` (B, mask_dim, H/4, W/4)
    and ``multi_scale_features``: 3 maps (B, conv_dim, ·) at strides 32, 16, 8 (lowest resolution first).
    """

    def __init__(self, in_channels: Sequence[int], *, conv_dim: int = 256, mask_dim: int = 256,
                 norm_groups: int = 32, transformer_dropout: float = 0.0, transformer_nheads: int = 8,
                 transformer_dim_feedforward: int = 1024, transformer_enc_layers: int = 6, n_points: int = 4,
                 feature_strides: Sequence[int] = (4, 8, 16, 32), common_stride: int = 4, backend: str = "auto"):
        super().__init__()
        in_channels, feature_strides = list(in_channels), list(feature_strides)
        if len(in_channels) != 4 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in in_channels):
            raise ValueError(f"in_channels must be 4 channel counts (strides 4, 8, 16, 32), got {in_channels!r}")
        if len(feature_strides) != 4 or sorted(feature_strides) != feature_strides:
            raise ValueError(f"feature_strides must be 4 increasing strides, got {feature_strides!r}")
        if conv_dim % norm_groups:
            raise ValueError(f"conv_dim must be divisible by norm_groups={norm_groups} (GroupNorm), got {conv_dim}")
        self.in_channels = in_channels
        self.num_levels = 3  # the encoder's levels: the last three maps, always (Mask2Former's semantic configs)
        self.input_proj = nn.ModuleList()
        for c in in_channels[::-1][: self.num_levels]:  # lowest resolution first
            proj = nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), GroupNorm(norm_groups, conv_dim))
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
            self.input_proj.append(proj)
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            conv_dim, transformer_nheads, transformer_enc_layers, transformer_dim_feedforward, transformer_dropout,
            self.num_levels, n_points, backend)
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_features)
        # FPN levels below the encoder's finest stride, down to common_stride (1 for strides 8 → 4)
        self.num_fpn_levels = int(math.log2(feature_strides[-self.num_levels]) - math.log2(common_stride))
        self.lateral_names, self.output_names = [], []
        for idx, c in enumerate(in_channels[: self.num_fpn_levels]):
            lateral = Conv2dNorm(c, conv_dim, kernel_size=1, bias=False, norm=GroupNorm(norm_groups, conv_dim))
            output = Conv2dNorm(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                                norm=GroupNorm(norm_groups, conv_dim), activation=F.relu)
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            self.lateral_names.insert(0, f"adapter_{idx + 1}")  # top-down order: low to high resolution
            self.output_names.insert(0, f"layer_{idx + 1}")

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        _check_features(features, self.in_channels)
        srcs, pos = [], []
        for idx, x in enumerate(features[::-1][: self.num_levels]):
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        y, shapes = self.transformer(srcs, pos)
        b = y.shape[0]
        out = [z.transpose(1, 2).reshape(b, -1, h, w)
               for z, (h, w) in zip(y.split([h * w for h, w in shapes], dim=1), shapes)]
        for idx, x in enumerate(features[: self.num_fpn_levels][::-1]):
            cur = getattr(self, self.lateral_names[idx])(x)
            out.append(getattr(self, self.output_names[idx])(self._merge(idx, cur, out[-1])))
        return self.mask_features(out[-1]), out[: self.num_levels]

    def _merge(self, idx: int, lateral: Tensor, coarser: Tensor) -> Tensor:
        """FPN step ``idx`` (top-down): the lateral map plus the coarser output, bilinearly upsampled."""
        return lateral + F.interpolate(coarser, size=lateral.shape[-2:], mode="bilinear", align_corners=False)


def _check_features(features, in_channels: Sequence[int]) -> None:
    if not isinstance(features, (list, tuple)) or len(features) != len(in_channels):
        got = f"{type(features).__name__} of length {len(features)}" if hasattr(features, "__len__") else \
            type(features).__name__
        raise ValueError(f"features must be a list of {len(in_channels)} maps (B, C, H, W) at strides 4, 8, 16, 32, "
                         f"got {got}")
    for i, (f, c) in enumerate(zip(features, in_channels)):
        if not isinstance(f, Tensor) or f.dim() != 4 or f.shape[1] != c or f.shape[0] != features[0].shape[0]:
            got = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"features[{i}] must be (B, {c}, H, W) (in_channels[{i}] = {c}), got {got}")
        if f.shape[-2] < 1 or f.shape[-1] < 1:
            raise ValueError(f"features[{i}] must have a non-empty map, got {tuple(f.shape)}")

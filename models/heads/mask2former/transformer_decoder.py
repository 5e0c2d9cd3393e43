"""Mask2Former's multi-scale masked-attention transformer decoder (the "predictor" of the official head).

Module and parameter names follow the official code (``transformer_cross_attention_layers.{i}.multihead_attn``,
``query_feat``, ``class_embed``, ``mask_embed.layers.{j}`` ...), so an official state dict loads by prefix alone.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .position_encoding import PositionEmbeddingSine


def _xavier_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Self-attention among the queries (position added to q and k), residual, LayerNorm (post-norm, or pre-norm
    with ``normalize_before``). Sequence-first tensors (Q, B, C)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = x + query_pos
        tgt = tgt + self.dropout(self.self_attn(q, k, value=x, need_weights=False)[0])
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Masked cross-attention of the queries (Q, B, C) to one level's pixels (HW, B, C): query + query_pos attends
    to memory + pos, values from memory; ``memory_mask`` (B·nH, Q, HW) bool, True = not attended."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Optional[Tensor], pos: Tensor,
                query_pos: Tensor) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self.multihead_attn(query=x + query_pos, key=memory + pos, value=memory, attn_mask=memory_mask,
                                  need_weights=False)[0]
        tgt = tgt + self.dropout(out)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """linear1 → ReLU → dropout → linear2, residual, LayerNorm (post- or pre-norm)."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 normalize_before: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt: Tensor) -> Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


class MLP(nn.Module):
    """``num_layers`` Linear layers (``layers.{j}``) with ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for j, layer in enumerate(self.layers):
            x = layer(x) if j == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Learned queries refined by ``dec_layers − 1`` layers of (masked cross-attention → self-attention → FFN),
    layer i attending to feature level i mod 3, its cross-attention restricted to where the previous prediction's
    mask is foreground (sigmoid ≥ 0.5 at that level's size; a query with an empty mask attends everywhere).

    Args:
        in_channels: channels of the three input maps (the pixel decoder's ``conv_dim``); projected by a 1×1 conv
            to ``hidden_dim`` only when different (or ``enforce_input_project``).
        num_classes: K; class logits are K+1 way (last = no object).
        hidden_dim, num_queries, nheads, dim_feedforward, dec_layers, mask_dim, dropout, pre_norm: the official
            semantic config by default: 256, 100, 8, 2048, 10 (9 layers + the initial prediction), 256, 0, False.

    ``forward(features, mask_features)``: ``features`` 3 maps (B, in_channels, h_l, w_l), lowest resolution first
    (the pixel decoder's stride-32, 16, 8 outputs); ``mask_features`` (B, mask_dim, H/4, W/4). Returns
    ``{"pred_logits": (B, Q, K+1), "pred_masks": (B, Q, H/4, W/4), "aux_outputs": [dec_layers − 1 dicts]}``
    (the predictions before the first layer and after each but the last layer), in the inputs' dtype.
    """

    num_feature_levels = 3

    def __init__(self, in_channels: int, num_classes: int, *, hidden_dim: int = 256, num_queries: int = 100,
                 nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 10, mask_dim: int = 256,
                 dropout: float = 0.0, pre_norm: bool = False, enforce_input_project: bool = False):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("num_classes", num_classes, 1),
                                 ("hidden_dim", hidden_dim, 2), ("num_queries", num_queries, 1),
                                 ("nheads", nheads, 1), ("dim_feedforward", dim_feedforward, 1),
                                 ("dec_layers", dec_layers, 1), ("mask_dim", mask_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if hidden_dim % nheads or hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even and divisible by nheads={nheads}, got {hidden_dim}")
        self.num_classes = num_classes
        self.num_heads = nheads
        self.num_layers = dec_layers - 1
        self.num_queries = num_queries
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout, pre_norm) for _ in range(self.num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, dropout, pre_norm) for _ in range(self.num_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout, pre_norm) for _ in range(self.num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # the queries' initial content
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # their positional part, added at every layer
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)  # detectron2's c2_xavier_fill
                nn.init.zeros_(conv.bias)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(self, features: Sequence[Tensor], mask_features: Tensor) -> dict:
        self._check_inputs(features, mask_features)
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            sizes.append(tuple(features[i].shape[-2:]))
            pos.append(self.pe_layer(features[i]).flatten(2).permute(2, 0, 1))  # (HW, B, C)
            x = self.input_proj[i](features[i]).flatten(2) + self.level_embed.weight[i][None, :, None]
            src.append(x.permute(2, 0, 1))
        b = mask_features.shape[0]
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, b, 1)
        classes, masks = [], []
        cls, mask, attn_mask = self._predict(output, mask_features, sizes[0])
        classes.append(cls)
        masks.append(mask)
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # a query whose mask is empty at this level attends to every pixel instead of none
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](output, src[level], attn_mask, pos[level],
                                                                query_embed)
            output = self.transformer_self_attention_layers[i](output, query_embed)
            output = self.transformer_ffn_layers[i](output)
            cls, mask, attn_mask = self._predict(output, mask_features, sizes[(i + 1) % self.num_feature_levels])
            classes.append(cls)
            masks.append(mask)
        return {"pred_logits": classes[-1], "pred_masks": masks[-1],
                "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in zip(classes[:-1], masks[:-1])]}

    def _predict(self, output: Tensor, mask_features: Tensor, attn_size) -> tuple[Tensor, Tensor, Tensor]:
        """Class logits, mask logits and the next layer's attention mask (B·nH, Q, h·w) of the queries (Q, B, C)."""
        decoder_output = self.decoder_norm(output).transpose(0, 1)
        outputs_class = self.class_embed(decoder_output)
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        with torch.no_grad():
            attn = F.interpolate(outputs_mask, size=attn_size, mode="bilinear", align_corners=False)
            attn = attn.sigmoid().flatten(2) < 0.5  # sigmoid < 0.5, not logit < 0: the official rounding at 0
            attn = attn.unsqueeze(1).expand(-1, self.num_heads, -1, -1).flatten(0, 1)
        return outputs_class, outputs_mask, attn

    def _check_inputs(self, features, mask_features) -> None:
        if not isinstance(features, (list, tuple)) or len(features) != self.num_feature_levels:
            got = f"{type(features).__name__} of length {len(features)}" if hasattr(features, "__len__") else \
                type(features).__name__
            raise ValueError(f"features must be a list of {self.num_feature_levels} maps (B, C, h, w), lowest "
                             f"resolution first, got {got}")
        if not isinstance(mask_features, Tensor) or mask_features.dim() != 4 \
                or mask_features.shape[1] != self.mask_embed.layers[-1].out_features:
            got = tuple(mask_features.shape) if isinstance(mask_features, Tensor) else type(mask_features).__name__
            raise ValueError(f"mask_features must be (B, mask_dim={self.mask_embed.layers[-1].out_features}, H/4, "
                             f"W/4), got {got}")
        for i, f in enumerate(features):
            if not isinstance(f, Tensor) or f.dim() != 4 or f.shape[0] != mask_features.shape[0]:
                got = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                raise ValueError(f"features[{i}] must be (B={mask_features.shape[0]}, C, h, w), got {got}")

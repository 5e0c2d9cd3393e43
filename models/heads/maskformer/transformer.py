"""MaskFormer's transformer predictor: DETR's post-norm transformer decoder (no encoder layers in the SeMask
configs) over the stride-32 backbone features, with the class and mask-embedding outputs."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import MLP, Conv2dNorm, c2_xavier_fill, sine_position_embedding


class DecoderLayer(nn.Module):
    """DETR decoder layer, post-norm: self-attention (queries + query_pos as q/k), cross-attention to the memory
    (memory + pos as keys), FFN with ReLU; dropout after each and inside the FFN. Sequence-first (L, B, C)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt, need_weights=False)[0]))
        attn = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class TransformerDecoder(nn.Module):
    """``num_layers`` decoder layers; every layer's output goes through the shared final ``norm`` (deep
    supervision). Returns (L, Q, B, C)."""

    def __init__(self, layer: DecoderLayer, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        out = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            out.append(self.norm(tgt))
        return torch.stack(out)


class Transformer(nn.Module):
    """The decoder-only DETR transformer of MaskFormer (``transformer.decoder.*``; ENC_LAYERS = 0 adds no
    weights). Every weight with dim > 1 gets xavier-uniform, as officially."""

    def __init__(self, d_model: int, nhead: int, num_decoder_layers: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.decoder = TransformerDecoder(DecoderLayer(d_model, nhead, dim_feedforward, dropout),
                                          num_decoder_layers, d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model

    def forward(self, src: Tensor, query_embed: Tensor, pos_embed: Tensor) -> Tensor:
        """src, pos_embed: (B, C, H, W); query_embed: (Q, C). Returns the per-layer queries (L, B, Q, C)."""
        B = src.shape[0]
        memory = src.flatten(2).permute(2, 0, 1)
        pos = pos_embed.flatten(2).permute(2, 0, 1).to(memory.dtype)
        query_pos = query_embed.unsqueeze(1).repeat(1, B, 1)  # a copy: a view made under no_grad trips module hooks
        tgt = torch.zeros_like(query_pos)
        return self.decoder(tgt, memory, pos, query_pos).transpose(1, 2)


class TransformerPredictor(nn.Module):
    """MaskFormer's predictor: ``input_proj`` (1×1 conv to ``hidden_dim``), the decoder with ``num_queries``
    learned ``query_embed``, ``class_embed`` (Linear to K+1, the last = no object) and ``mask_embed`` (3-layer MLP
    to ``mask_dim``) applied to every decoder layer's queries.

    ``forward(x (B, in_channels, h, w), mask_features (B, mask_dim, H, W))`` returns ``{"pred_logits": (B, Q, K+1),
    "pred_masks": (B, Q, H, W), "aux_outputs": [{"pred_logits", "pred_masks"} of layers 0 .. L-2]}``.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_dim: int = 256, num_queries: int = 100,
                 nheads: int = 8, dropout: float = 0.1, dim_feedforward: int = 2048, dec_layers: int = 6,
                 mask_dim: int = 256, deep_supervision: bool = True):
        super().__init__()
        if hidden_dim % nheads:
            raise ValueError(f"hidden_dim {hidden_dim} must be divisible by nheads {nheads}")
        self.deep_supervision = deep_supervision
        self.transformer = Transformer(hidden_dim, nheads, dec_layers, dim_feedforward, dropout)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim:
            self.input_proj: nn.Module = Conv2dNorm(in_channels, hidden_dim, kernel_size=1)
            c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Identity()  # the official empty nn.Sequential: no weights
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.hidden_dim = hidden_dim

    def forward(self, x: Tensor, mask_features: Tensor) -> dict:
        pos = sine_position_embedding(x, self.hidden_dim // 2)
        hs = self.transformer(self.input_proj(x), self.query_embed.weight, pos)  # (L, B, Q, C)
        logits = self.class_embed(hs)
        masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        out = {"pred_logits": logits[-1], "pred_masks": masks[-1]}
        out["aux_outputs"] = ([{"pred_logits": a, "pred_masks": b} for a, b in zip(logits[:-1], masks[:-1])]
                              if self.deep_supervision else [])
        return out

"""SGR: semantically-aware global reasoning over latent "concept region" tokens.

The method ("Framework-agnostic Semantically-aware Global Reasoning for Segmentation", Hossain, Sigal, Little)
adds one component after the last backbone stage. Its main paper's equations are not available to us; where
the supplementary material leaves a choice, this is the standard one (the GloRe skeleton with a transformer in
place of the graph convolution):

1. projection φ: 1×1 conv C → D (+ BN + ReLU);
2. soft assignment: 1×1 conv D → K logits, softmax over the K tokens for each pixel: A (B, K, H, W);
3. tokens: mass-normalized weighted means t_k = Σ_p A_kp φ(x)_p / (Σ_p A_kp + ε);
4. global reasoning: a ``layers``-deep pre-norm transformer encoder over the K tokens;
5. reprojection with the same assignment: y_p = Σ_k A_kp t'_k;
6. fusion: x + BN(conv1×1(y)) with the BN weight initialized to zero, so a pretrained model is unchanged at start.

The assignment A is returned for the token supervision (``matching.py``) and the analysis (``analysis.py``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class SGR(nn.Module):
    """Args: in_channels C; dim D of the tokens; num_tokens K (256; the paper uses 128/256/512); layers of the
    transformer encoder (2); heads of its attention (8); eps of the mass normalization."""

    def __init__(self, in_channels: int, dim: int = 256, num_tokens: int = 256, layers: int = 2, heads: int = 8,
                 eps: float = 1e-6):
        super().__init__()
        if dim % heads:
            raise ValueError(f"SGR dim {dim} must be divisible by heads {heads}")
        self.num_tokens = num_tokens
        self.eps = eps
        self.project = nn.Sequential(nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim),
                                     nn.ReLU(inplace=True))
        self.assign = nn.Conv2d(dim, num_tokens, 1)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.reason = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_proj = nn.Conv2d(dim, in_channels, 1, bias=False)
        self.out_norm = nn.BatchNorm2d(in_channels)
        nn.init.zeros_(self.out_norm.weight)  # identity at start: a pretrained model is unchanged

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) -> (x + fused reasoning (B, C, H, W), assignment A (B, K, H, W), softmax over K)."""
        b, _, h, w = x.shape
        feats = self.project(x).flatten(2)  # B, D, HW
        assignment = self.assign(feats.view(b, -1, h, w)).flatten(2).softmax(dim=1)  # B, K, HW
        mass = assignment.sum(dim=2, keepdim=True)  # B, K, 1
        tokens = torch.bmm(assignment, feats.transpose(1, 2)) / (mass + self.eps)  # B, K, D
        tokens = self.reason(tokens)
        y = torch.bmm(tokens.transpose(1, 2), assignment).view(b, -1, h, w)  # B, D, H, W
        return x + self.out_norm(self.out_proj(y)), assignment.view(b, self.num_tokens, h, w)

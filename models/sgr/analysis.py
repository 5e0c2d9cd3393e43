"""How semantic SGR's tokens are: entropies of per-token class and instance histograms (lower = more semantic).

The paper names four metrics (S_c, D_c, S_I, D_I) without equations available to us; these are our definitions,
all entropies in bits, all histograms built from the soft assignment A (B, K, h, w) against the labels
area-pooled to (h, w):

- S_c: mass-weighted mean over tokens of the entropy of each token's class histogram (over the whole set):
  low when every token covers a single class.
- D_c: mean over classes of the entropy of each class's distribution over tokens: low when a class is captured
  by few tokens.
- S_I: mass-weighted mean over (image, token) of the entropy of the token's histogram over that image's
  connected components (instances): low when a token covers one instance.
- D_I: mean over (image, component) of the entropy of the component's distribution over tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .components import component_masks


def entropy_bits(hist: Tensor, dim: int) -> Tensor:
    p = hist / hist.sum(dim=dim, keepdim=True).clamp(min=1e-12)
    return -(p * p.clamp(min=1e-12).log2()).sum(dim=dim)


@dataclass
class TokenSemantics:
    """Accumulates the statistics over batches; ``result()`` gives {S_c, D_c, S_I, D_I}."""
    num_classes: int
    ignore_index: int = 255
    class_hist: Tensor | None = None  # K, C
    s_i: list = field(default_factory=list)  # (entropy sum weighted by mass, mass)
    d_i: list = field(default_factory=list)  # (entropy sum, count)

    def update(self, assignment: Tensor, labels: Tensor, components: Tensor) -> None:
        b, k, h, w = assignment.shape
        a = assignment.detach().float().flatten(2)  # B, K, hw
        lab = labels.long().clone()
        lab[lab == self.ignore_index] = self.num_classes
        onehot = F.one_hot(lab, self.num_classes + 1).permute(0, 3, 1, 2).float()
        pooled = F.adaptive_avg_pool2d(onehot, (h, w)).flatten(2)[:, : self.num_classes]  # B, C, hw
        hist = torch.bmm(a, pooled.transpose(1, 2)).sum(0)  # K, C
        self.class_hist = hist if self.class_hist is None else self.class_hist + hist
        masks, present = component_masks(components.to(assignment.device))
        if masks.shape[1] == 0:
            return
        comp = F.adaptive_avg_pool2d(masks, (h, w)).flatten(2)  # B, J, hw
        inst = torch.bmm(a, comp.transpose(1, 2))  # B, K, J
        mass = inst.sum(2)  # B, K
        self.s_i.append(((entropy_bits(inst, 2) * mass).sum().item(), mass.sum().item()))
        per_comp = entropy_bits(inst.transpose(1, 2), 2)  # B, J
        self.d_i.append(((per_comp * present).sum().item(), present.sum().item()))

    def result(self) -> dict[str, float]:
        if self.class_hist is None:
            raise ValueError("TokenSemantics.result(): no batch was added")
        mass = self.class_hist.sum(1)
        s_c = float((entropy_bits(self.class_hist, 1) * mass).sum() / mass.sum().clamp(min=1e-12))
        seen = self.class_hist.sum(0) > 0
        d_c = float(entropy_bits(self.class_hist.t()[seen], 1).mean()) if bool(seen.any()) else float("nan")
        s_i = sum(e for e, _ in self.s_i) / max(sum(m for _, m in self.s_i), 1e-12) if self.s_i else float("nan")
        d_i = sum(e for e, _ in self.d_i) / max(sum(n for _, n in self.d_i), 1) if self.d_i else float("nan")
        return {"S_c": s_c, "D_c": d_c, "S_I": s_i, "D_I": d_i}

    def token_class_entropies(self) -> Tensor:
        """Per-token class entropy (bits), for plots."""
        return entropy_bits(self.class_hist, 1)

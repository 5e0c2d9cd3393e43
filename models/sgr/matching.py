"""SGR's token supervision: the top-L tokens (largest total assignment mass) are matched greedily to the
ground-truth connected components with cost BCE + ρ·dice, and the matched mask losses, weighted by β, join the
segmentation loss. Everything is batched on the device; the greedy loop runs min(L, J) steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .components import component_masks


def pair_costs(pred: Tensor, target: Tensor, valid: Tensor, rho: float, eps: float = 1e-6) -> Tensor:
    """BCE + ρ·dice between every predicted mask and every target mask, over valid pixels.

    pred (B, L, P) probabilities, target (B, J, P) in [0, 1], valid (B, P) in [0, 1] -> (B, L, J).
    """
    pred = pred.clamp(eps, 1 - eps)
    vt = target * valid[:, None]
    vnt = (1 - target) * valid[:, None]
    count = valid.sum(dim=1).clamp(min=1)[:, None, None]
    bce = -(torch.bmm(pred.log(), vt.transpose(1, 2)) + torch.bmm((1 - pred).log(), vnt.transpose(1, 2))) / count
    inter = torch.bmm(pred * valid[:, None], target.transpose(1, 2))
    sizes = (pred * valid[:, None]).sum(2)[:, :, None] + vt.sum(2)[:, None, :]
    dice = 1 - (2 * inter + 1) / (sizes + 1)
    return bce + rho * dice


@torch.no_grad()
def greedy_match(cost: Tensor, present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Repeatedly take the cheapest remaining (token, component) pair of each image.

    cost (B, L, J), present (B, J) -> (batch, token, component) index tensors of the matched pairs.
    """
    b, l, j = cost.shape
    cost = cost.detach().float().masked_fill(~present[:, None, :], float("inf")).clone()
    batches, tokens, comps = [], [], []
    arange = torch.arange(b, device=cost.device)
    for _ in range(min(l, j)):
        value, flat = cost.view(b, -1).min(dim=1)
        ok = torch.isfinite(value)
        if not bool(ok.any()):
            break
        row, col = flat // j, flat % j
        batches.append(arange[ok])
        tokens.append(row[ok])
        comps.append(col[ok])
        cost[arange[ok], row[ok], :] = float("inf")
        cost[arange[ok], :, col[ok]] = float("inf")
    if not batches:
        empty = cost.new_zeros(0, dtype=torch.long)
        return empty, empty, empty
    return torch.cat(batches), torch.cat(tokens), torch.cat(comps)


def sgr_loss(assignment: Tensor, components: Tensor, *, top: int = 64, rho: float = 1.0,
             beta: float = 0.25) -> Tensor:
    """β · mean over matched pairs of (BCE + ρ·dice).

    assignment (B, K, h, w): the SGR soft assignment (softmax over K). components (B, H, W) long: component ids
    of the labels (0 = ignored). The component masks are area-downsampled to (h, w) as soft targets.
    """
    b, k, h, w = assignment.shape
    masks, present = component_masks(components)
    if masks.shape[1] == 0:
        return assignment.sum() * 0.0  # no component anywhere: a zero that keeps the graph
    target = F.adaptive_avg_pool2d(masks, (h, w)).flatten(2)  # B, J, hw
    valid = F.adaptive_avg_pool2d((components > 0).float()[:, None], (h, w)).flatten(1)
    probs = assignment.flatten(2)
    chosen = probs.sum(dim=2).topk(min(top, k), dim=1).indices  # the L tokens with the largest mass
    pred = probs.gather(1, chosen[:, :, None].expand(-1, -1, probs.shape[2]))
    cost = pair_costs(pred, target, valid, rho)
    bi, ti, ci = greedy_match(cost, present)
    if bi.numel() == 0:
        return assignment.sum() * 0.0
    return beta * cost[bi, ti, ci].mean()

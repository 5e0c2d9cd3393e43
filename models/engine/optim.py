"""The official SeMask-FPN optimization: AdamW with no weight decay on norms, position tables and embeddings,
and mmseg's poly schedule after a linear warmup."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float,
                 no_decay_keys: Sequence[str] = ("norm", "relative_position_bias_table", "absolute_pos_embed"),
                 lr: Optional[float] = None, backbone_lr_mult: float = 1.0):
    """Two groups: ``decay`` and ``no_decay`` (a parameter whose name contains any of ``no_decay_keys``: mmseg's
    ``paramwise_cfg.custom_keys`` with decay_mult 0). Decode-head BN (``bn``) and ``gamma`` keep weight decay.
    With ``backbone_lr_mult != 1`` (detectron2's BACKBONE_MULTIPLIER) each splits again into a ``backbone_``
    group (names starting with ``backbone.``) with lr ``lr × backbone_lr_mult``, and the rest."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "no_decay" if any(k in name for k in no_decay_keys) else "decay"
        if backbone_lr_mult != 1.0 and name.startswith("backbone."):
            kind = "backbone_" + kind
        groups.setdefault(kind, []).append(p)
    out = []
    for kind in ("decay", "no_decay", "backbone_decay", "backbone_no_decay"):
        if kind in groups:
            group = {"params": groups[kind], "weight_decay": 0.0 if kind.endswith("no_decay") else weight_decay,
                     "name": kind}
            if kind.startswith("backbone_"):
                if lr is None:
                    raise ValueError("param_groups: lr is needed to scale the backbone's lr by backbone_lr_mult")
                group["lr"] = lr * backbone_lr_mult
            out.append(group)
    return out


def build_optimizer(model: nn.Module, train_cfg: dict) -> torch.optim.AdamW:
    groups = param_groups(model, train_cfg["weight_decay"], train_cfg["no_decay_keys"], lr=train_cfg["lr"],
                          backbone_lr_mult=train_cfg.get("backbone_lr_mult", 1.0))
    return torch.optim.AdamW(groups, lr=train_cfg["lr"], betas=tuple(train_cfg["betas"]),
                             weight_decay=train_cfg["weight_decay"])


class PolyWarmupLR:
    """lr(it) = poly(it) · warmup(it), set on every group before the update of iteration ``it`` (0-based):

    poly(it) = (base − min_lr)·(1 − it/max_iters)^power + min_lr;
    warmup(it) = 1 − (1 − it/warmup_iters)·(1 − warmup_ratio) for it < warmup_iters, else 1 (mmcv's linear
    warmup, which scales the regular lr). The state is the iteration alone: the lr is a pure function of it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iters: int, power: float = 1.0, min_lr: float = 0.0,
                 warmup_iters: int = 0, warmup_ratio: float = 1e-6):
        self.optimizer = optimizer
        self.max_iters, self.power, self.min_lr = max_iters, power, min_lr
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.last_iter = -1

    def lr_at(self, base_lr: float, it: int) -> float:
        progress = min(it, self.max_iters) / self.max_iters
        lr = (base_lr - self.min_lr) * (1 - progress) ** self.power + self.min_lr
        if it < self.warmup_iters:
            lr *= 1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
        return lr

    def set_iter(self, it: int) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(g["initial_lr"], it)
        self.last_iter = it

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_iter": self.last_iter, "max_iters": self.max_iters, "power": self.power,
                "min_lr": self.min_lr, "warmup_iters": self.warmup_iters, "warmup_ratio": self.warmup_ratio}

    def load_state_dict(self, state: dict) -> None:
        self.last_iter = int(state["last_iter"])


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: dict) -> PolyWarmupLR:
    return PolyWarmupLR(optimizer, train_cfg["max_iters"], train_cfg["power"], train_cfg["min_lr"],
                        train_cfg["warmup_iters"], train_cfg["warmup_ratio"])

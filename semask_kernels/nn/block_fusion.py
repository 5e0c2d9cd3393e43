"""A Swin block's residual stream after the attention on the fused ops: ``s = x + attn_branch``,
``s + drop_path(fc2(gelu(fc1(norm2(s)))))`` as ``add_layer_norm`` (the add and norm2 in one pass), ``linear_gelu``
(fc1 + GELU) and ``linear_residual`` (fc2 + drop path as its per-sample scale + the residual, in fc2's epilogue).

Used by timm's patched block (``integrations/_timm_block.py``) and this package's Swin/SeMask backbone. Each op's
``auto`` picks its backend: on a CPU, or where no verified fused backend runs, the torch path, which makes the
very calls of stock timm (the same bits). ``mlp_branch_runs_ops`` says when the block keeps its stock MLP code
instead: FX tracing, TorchScript, autocast (the residual stream and the branch then have different dtypes) and
MLPs that are not a plain fc1 -> exact GELU -> fc2 (a norm inside, dropout in training, another activation).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.fx
from torch import Tensor, nn

from ..ops.add_layer_norm import add_layer_norm
from ..ops.linear_gelu import linear_gelu
from ..ops.linear_residual import linear_residual


def _drop_prob(drop: Optional[nn.Module]) -> float:
    return float(getattr(drop, "p", 0.0)) if drop is not None else 0.0


def mlp_branch_runs_ops(x, mlp: nn.Module, drop_path: nn.Module, training: bool) -> bool:
    """Whether the MLP branch of a block can run on ``linear_gelu`` + ``linear_residual`` with the same math."""
    if isinstance(x, torch.fx.Proxy) or not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        return False
    if torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type):
        return False
    fc1, act, fc2 = getattr(mlp, "fc1", None), getattr(mlp, "act", None), getattr(mlp, "fc2", None)
    if type(fc1) is not nn.Linear or type(fc2) is not nn.Linear or type(act) is not nn.GELU \
            or act.approximate != "none":
        return False
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        return False
    if training and (_drop_prob(getattr(mlp, "drop1", None)) > 0 or _drop_prob(getattr(mlp, "drop2", None)) > 0):
        return False
    if not isinstance(drop_path, nn.Identity) and not hasattr(drop_path, "drop_prob"):
        return False
    dtype = x.dtype
    return fc1.weight.dtype == dtype and fc2.weight.dtype == dtype


def drop_path_scale(x: Tensor, drop_path: nn.Module, training: bool) -> Optional[Tensor]:
    """Drop path's per-sample factor (B,), drawn as timm's ``DropPath`` draws it (one Bernoulli per sample, divided
    by the keep probability), so a seeded run drops the same samples; None where drop path is the identity."""
    p = float(getattr(drop_path, "drop_prob", 0.0))
    if not training or p == 0.0:
        return None
    keep = 1.0 - p
    scale = x.new_empty(x.shape[0]).bernoulli_(keep)
    if keep > 0.0 and getattr(drop_path, "scale_by_keep", True):
        scale.div_(keep)
    return scale


def mlp_residual(x: Tensor, norm: nn.Module, mlp: nn.Module, drop_path: nn.Module, training: bool,
                 backend: str = "auto") -> Tensor:
    """``x + drop_path(mlp(norm(x)))`` on the two ops; x (B, ..., C). Call where ``mlp_branch_runs_ops`` holds."""
    h = linear_gelu(norm(x), mlp.fc1.weight, mlp.fc1.bias, backend=backend)
    return linear_residual(h, mlp.fc2.weight, mlp.fc2.bias, residual=x,
                           scale=drop_path_scale(x, drop_path, training), backend=backend)


def norm_runs_op(x: Tensor, norm: nn.Module) -> bool:
    """Whether ``norm`` is a LayerNorm over x's channels that ``add_layer_norm`` computes (affine, x's dtype)."""
    return type(norm) is nn.LayerNorm and norm.elementwise_affine and tuple(norm.normalized_shape) == (x.shape[-1],) \
        and norm.weight.dtype == x.dtype


def add_norm_mlp_residual(x: Tensor, branch: Tensor, norm: nn.Module, mlp: nn.Module, drop_path: nn.Module,
                          training: bool, backend: str = "auto") -> Tensor:
    """``s = x + branch`` then ``s + drop_path(mlp(norm(s)))`` on the three ops; x, branch (B, ..., C). Call where
    ``mlp_branch_runs_ops`` and ``norm_runs_op`` hold."""
    s, y = add_layer_norm(branch, x, norm.weight, norm.bias, eps=norm.eps, backend=backend)
    h = linear_gelu(y, mlp.fc1.weight, mlp.fc1.bias, backend=backend)
    return linear_residual(h, mlp.fc2.weight, mlp.fc2.bias, residual=s,
                           scale=drop_path_scale(s, drop_path, training), backend=backend)

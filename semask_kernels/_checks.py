"""Argument checks shared by the ops: each error names the argument, what was expected and what was received."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from . import _env

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(name: str, t, *, ndim: Optional[int] = None, floating: bool = True) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)} ({t.dim()} dims)")
    if floating and t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype {FLOAT_DTYPES}, got {t.dtype}")
    return t


def same_kind(ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor) -> None:
    """``t`` must share ``ref``'s device and dtype."""
    if t.device != ref.device:
        raise ValueError(f"{name} must be on the same device as {ref_name} ({ref.device}), got {t.device}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have the same dtype as {ref_name} ({ref.dtype}), got {t.dtype}")


def shape(name: str, t: torch.Tensor, expected: Sequence[int]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def pair(name: str, value, *, minimum: int = 1) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    elif isinstance(value, torch.Size) or (isinstance(value, (tuple, list)) and len(value) == 2):
        value = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in value):
        raise ValueError(f"{name} must be >= {minimum} in each dimension, got {value}")
    return (int(value[0]), int(value[1]))


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def choice(name: str, value, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def number(name: str, value, *, finite: bool = True) -> float:
    """A real number (an int or a float; NaN and ±inf refused unless ``finite=False``). A symbolic number
    (``torch.SymFloat`` / ``SymInt``: ``torch.compile`` with dynamic shapes) is checked with plain comparisons,
    which the compiler guards on, and returned as it is."""
    if isinstance(value, (torch.SymFloat, torch.SymInt)):
        if finite and not -math.inf < value < math.inf:
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if finite and not -math.inf < value < math.inf:  # not math.isfinite: the compiler cannot trace it
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def fake(t: torch.Tensor) -> bool:
    """Whether ``t`` is a fake tensor of a ``FakeTensorMode`` or ``torch.export`` outside the compiler (while
    ``torch.compile`` traces, its tensors are the compiler's to handle: False)."""
    if torch.compiler.is_compiling():
        return False
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t)


def concrete(t: torch.Tensor) -> bool:
    """Whether ``t`` holds values a check may read: not a meta tensor, not a fake tensor (``torch.compile``,
    ``torch.export``, fake-tensor mode) and not traced by ``torch.jit.trace`` / FX / the compiler, where reading
    values would fail or bake one input's values into the graph."""
    if t.device.type == "meta" or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    from torch._subclasses.fake_tensor import is_fake
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return not is_fake(t) and get_proxy_mode() is None


def backend(name: str, value) -> str:
    """A backend name ("auto", "reference", "torch", "triton", "cuda", or a variant such as "triton.onepass"; any
    case), checked where it is stored (a module's
    constructor) rather than at its first call; returned lower-cased."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {_env.BACKEND_NAMES}; got {type(value).__name__}")
    if not _env.is_backend_name(value.lower()):
        raise ValueError(f"{name} must be one of {_env.BACKEND_NAMES} or a variant '<backend>.<variant>', "
                         f"got {value!r}")
    return value.lower()


def labels(target: torch.Tensor, classes: int, ignore_index: int) -> None:
    """Every label of ``target`` is a class in [0, ``classes``) or ``ignore_index``, else a ValueError naming the
    first bad one. It reads the values (one device sync), so it cannot run while tracing; without it a wrong label
    is an IndexError on the CPU, a device-side assert on CUDA, or silent garbage in a fused kernel. Skipped where
    there are no values to read (:func:`concrete`: meta and fake tensors, tracing, ``torch.compile``)."""
    if not concrete(target):
        return
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        raise ValueError(f"target holds label {int(target[bad][0])}, outside [0, {classes}) (K = logits.shape[1]) "
                         f"and not ignore_index={ignore_index}")


def linear(x: torch.Tensor, weight, bias) -> None:
    """The arguments of ``x @ weightᵀ + bias`` (``nn.Linear``'s layout): weight (out_features, in_features) of x's
    kind, x (..., in_features), bias (out_features,) or None."""
    tensor("x", x)
    tensor("weight", weight, ndim=2)
    same_kind("x", x, "weight", weight)
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension (..., in_features), got a 0-dim tensor")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x's last dim ({x.shape[-1]}) must equal weight's in_features, weight.shape[1] "
                         f"(weight has shape {tuple(weight.shape)})")
    if bias is not None:
        tensor("bias", bias, ndim=1)
        same_kind("x", x, "bias", bias)
        shape("bias", bias, (weight.shape[0],))

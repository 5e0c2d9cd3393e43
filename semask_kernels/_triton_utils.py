"""Small helpers shared by the Triton backends: import guard, capability checks that return reasons, dtype
mapping and a cache of launch configurations.

Nothing here queries a device or tunes anything at import time; ``triton`` is imported once, guarded, so that the
package imports (and the reference backends work) where Triton is missing.

Triton decides between compiling and interpreting (``TRITON_INTERPRET=1``) when a kernel is *defined*, i.e. when
this package is imported, so the variable must be set before ``import semask_kernels``.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Hashable, Optional

import torch

from . import _env

try:  # a missing or broken Triton must not break the package import
    import triton
    import triton.language as tl
    IMPORT_ERROR: Optional[str] = None
except Exception as exc:  # noqa: BLE001 - ImportError, or a Triton that fails to initialize
    triton, tl = None, None
    IMPORT_ERROR = f"triton is not importable ({type(exc).__name__}: {exc})"

# Whether the kernels of this process are interpreted: fixed when they were defined (now, at import).
INTERPRETED = IMPORT_ERROR is None and _env.triton_interpret()

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class _NoTriton:
    """Stands in for ``triton.language`` when Triton is missing, so that kernel signatures still parse."""
    constexpr = None


def language():
    """``triton.language``, or a stand-in whose ``constexpr`` lets kernel definitions parse without Triton."""
    return tl if tl is not None else _NoTriton


def jit(fn: Callable) -> Callable:
    """``triton.jit`` when Triton is importable; otherwise the plain function (never launched: see available)."""
    return triton.jit(fn) if triton is not None else fn


def triton_available() -> Optional[str]:
    """Why Triton kernels cannot run in this process, or None if they can (on a GPU or interpreted on the CPU)."""
    if IMPORT_ERROR is not None:
        return IMPORT_ERROR
    if INTERPRETED or torch.cuda.is_available():
        return None
    if _env.triton_interpret():
        return ("no CUDA GPU, and TRITON_INTERPRET was set after semask_kernels (and triton) were imported; set "
                "it in the environment before the import")
    return "no CUDA GPU is available and TRITON_INTERPRET=1 is not set (the Triton interpreter is off)"


def device_ok(t: Optional[torch.Tensor], name: str = "tensor") -> Optional[str]:
    """Why tensor ``name`` cannot go to a Triton kernel here, or None.

    CUDA tensors run (compiled; interpreted with host copies under TRITON_INTERPRET=1). CPU tensors run only
    under the interpreter (a test and debug path; ``backends.choose_backend`` never auto-selects it).
    """
    if t is None or t.device.type == "cuda":
        return None
    if t.device.type != "cpu":
        return f"{name} is on {t.device}; Triton kernels need a CUDA tensor"
    if not (INTERPRETED and _env.triton_interpret()):
        return f"{name} is on the CPU; Triton runs CPU tensors only under its interpreter (TRITON_INTERPRET=1)"
    return None


def dtype_ok(t: Optional[torch.Tensor], name: str = "tensor") -> Optional[str]:
    if t is None or t.dtype in SUPPORTED_DTYPES:
        return None
    return (f"{name} has dtype {t.dtype}; the Triton kernels support {SUPPORTED_DTYPES} "
            f"(the reference backend handles float64)")


def dot_dtype(dtype: torch.dtype):
    """The Triton dtype of tl.dot operands for inputs of ``dtype``.

    The interpreter multiplies bfloat16 bit patterns as integers (triton 3.8), so interpreted bf16 operands are
    rounded to bf16 first and multiplied in fp32: the same products, exactly, as a bf16 tensor-core dot.
    """
    if dtype == torch.float32 or (dtype == torch.bfloat16 and INTERPRETED):
        return tl.float32
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]


def tl_dtype(dtype: torch.dtype):
    """The Triton dtype of a torch dtype (fp16, bf16, fp32)."""
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}[dtype]


def dot_precision(dtype: torch.dtype) -> Optional[str]:
    """``input_precision`` of tl.dot: "ieee" for fp32 inputs (TF32 would miss the fp32 tolerance), else default."""
    return "ieee" if dtype == torch.float32 else None


def device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def next_pow2(n: int, minimum: int = 1) -> int:
    return max(minimum, 1 << max(0, (int(n) - 1).bit_length()))


_CONFIGS: dict[Hashable, object] = {}


def cached_config(key: Hashable, rule: Callable[[], object]) -> object:
    """The launch configuration for ``key`` (shape/dtype tuple), computed once by ``rule()`` and kept."""
    config = _CONFIGS.get(key)
    if config is None:
        config = _CONFIGS[key] = rule()
    return config

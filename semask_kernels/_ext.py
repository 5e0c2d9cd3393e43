"""The one place that imports the compiled CUDA extension ``semask_kernels._C``.

Importing this module never fails: ``HAS_CUDA_EXT`` says whether the extension loaded, ``EXT_ERROR`` why not.
Loading it registers the C++ ops ``torch.ops.semask_kernels.*_forward`` / ``*_backward`` (CUDA kernels only).

    >>> from semask_kernels import _ext
    >>> _ext.HAS_CUDA_EXT in (True, False)
    True
"""
from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Optional

BUILD_HINT = ("To build it, install nvcc and a CUDA build of torch, then run "
              "`SEMASK_BUILD_CUDA=1 pip install --no-build-isolation .` (or `-e .` from a checkout; "
              "SEMASK_CUDA_ARCHS picks the GPU architectures, e.g. sm_90).")


def _load() -> tuple[Optional[ModuleType], Optional[str]]:
    # find_spec first: "not built" and "built but broken" need different advice.
    try:
        if importlib.util.find_spec("semask_kernels._C") is None:
            return None, "the CUDA extension semask_kernels._C is not built (pure-Python install)"
    except Exception as exc:  # noqa: BLE001 - a broken package layout must not break import
        return None, f"cannot look for semask_kernels._C: {type(exc).__name__}: {exc}"
    try:
        import torch  # noqa: F401 - the extension links against torch's libraries, load them first
        from . import _C
    except Exception as exc:  # noqa: BLE001 - e.g. an ABI mismatch with the installed torch
        return None, (f"semask_kernels._C failed to import ({type(exc).__name__}: {exc}); it was probably built "
                      f"against another torch or CUDA version, rebuild it")
    return _C, None


_MODULE, EXT_ERROR = _load()
HAS_CUDA_EXT: bool = _MODULE is not None


def require() -> ModuleType:
    """The extension module, or a RuntimeError that says why it is missing and how to build it."""
    if _MODULE is None:
        raise RuntimeError(f"semask_kernels CUDA extension unavailable: {EXT_ERROR}. {BUILD_HINT}")
    return _MODULE


def unavailable_reason() -> Optional[str]:
    """Why the CUDA backends cannot run in this process (extension not built, or no GPU), or None: the
    ``available()`` of every op's CUDA backend."""
    if _MODULE is None:
        return f"{EXT_ERROR}. {BUILD_HINT}"
    import torch
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False (no CUDA GPU visible to torch)"
    return None


def build_info() -> Optional[dict]:
    """``{"cuda_archs", "cuda_version", "torch_version", "ops", "limits", "kernels"}`` of the built extension, or
    None. ``limits``: {op: {name: value}} of the CUDA kernels (csrc/common/limits.h); ``kernels``: {op: how
    kernel="auto" picks between its kernels}."""
    return None if _MODULE is None else dict(_MODULE.build_info())


def limits(op: str) -> Optional[dict]:
    """The CUDA kernels' limits of ``op`` as the built extension reports them, or None when it is not built (or
    was built before it reported limits: rebuild it). The Python side never restates them."""
    info = build_info()
    return None if info is None else info.get("limits", {}).get(op)

"""Whether the install builds the CUDA extension, for which GPU architectures, and the one line that says why.

Used by ``setup.py`` (loaded by file path: standard library only, no torch import). The rule: build when the
extension can run here (a GPU visible to torch), when the user named architectures (``SEMASK_CUDA_ARCHS`` or
torch's ``TORCH_CUDA_ARCH_LIST``), or when ``SEMASK_BUILD_CUDA=1`` forces it. A machine with nvcc but no GPU
gets a pure-Python install in seconds instead of a long build of code that cannot run on it.

    >>> plan = decide("auto", named=None, gpus=[], blocker=lambda: None, default_archs=["8.0", "9.0"])
    >>> plan.build
    False
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


class BuildError(RuntimeError):
    """SEMASK_BUILD_CUDA=1 but the extension cannot be built here."""


@dataclass(frozen=True)
class Plan:
    build: bool
    archs: tuple[str, ...]      # "X.Y" compute capabilities; empty when not building
    message: str                # one line: what the install does and why


def sm(archs) -> str:
    """["8.0", "9.0a"] -> "sm_80;sm_90a"."""
    return ";".join("sm_" + a.replace(".", "") for a in archs)


def decide(mode: str, *, named: tuple[list[str], str] | None, gpus: list[tuple[str, str]],
           blocker: Callable[[], Optional[str]], default_archs: list[str],
           torch_missing: bool = False) -> Plan:
    """The build plan.

    mode: SEMASK_BUILD_CUDA ("auto", "1", "0"); named: (archs, variable) the user named, or None;
    gpus: (name, "X.Y") of every GPU visible to torch; blocker: returns why the extension cannot be built here
    (no CUDA torch, no nvcc), or None; called only when a build is wanted; default_archs: the archs of a forced
    build with none named; torch_missing: torch is not importable here (so no GPU could be seen).
    Raises :class:`BuildError` when mode is "1" and there is a blocker.
    """
    if mode == "0":
        return Plan(False, (), "not building the CUDA extension: SEMASK_BUILD_CUDA=0 (pure-Python install)")
    if mode == "1":
        reason = blocker()
        if reason is not None:
            raise BuildError(f"SEMASK_BUILD_CUDA=1 but the CUDA extension cannot be built: {reason}")
        if named is not None:
            archs, why = named[0], f"SEMASK_BUILD_CUDA=1, archs from {named[1]}"
        elif gpus:
            archs = _gpu_archs(gpus)
            why = f"SEMASK_BUILD_CUDA=1, archs of the visible GPU(s): {_gpu_names(gpus)}"
        else:
            archs = list(default_archs)
            why = "SEMASK_BUILD_CUDA=1 with the default archs; SEMASK_CUDA_ARCHS narrows them"
        return _build(archs, why)
    if named is not None:
        why = f"archs named by {named[1]}"
        archs = named[0]
    elif gpus:
        why = f"GPU(s) visible to torch: {_gpu_names(gpus)}"
        archs = _gpu_archs(gpus)
    elif torch_missing:
        return Plan(False, (), "not building the CUDA extension: torch is not importable in the build environment "
                               "(pip's isolated build has none), so no GPU could be seen (pure-Python install; for "
                               "the extension install torch first, then `pip install --no-build-isolation .`)")
    else:
        return Plan(False, (), "not building the CUDA extension: no GPU is visible to torch here and no GPU "
                               "architectures were named, so it could not run (pure-Python install; "
                               "SEMASK_CUDA_ARCHS=sm_90 or SEMASK_BUILD_CUDA=1 builds it anyway)")
    reason = blocker()
    if reason is not None:
        return Plan(False, (), f"not building the CUDA extension ({why}): {reason} (pure-Python install; "
                               "SEMASK_BUILD_CUDA=1 makes this an error)")
    return _build(archs, why)


def _build(archs, why: str) -> Plan:
    archs = tuple(dict.fromkeys(archs))  # keep order, drop repeats (two GPUs of one kind)
    per_arch = "about 5 minutes per architecture on 2 cores"
    return Plan(True, archs, f"building the CUDA extension for {sm(archs)} ({why}); this takes {per_arch}; "
                             f"`pip install -v` shows each compile step")


def _gpu_archs(gpus) -> list[str]:
    return [cap for _, cap in gpus]


def _gpu_names(gpus) -> str:
    return ", ".join(f"{name} (sm_{cap.replace('.', '')})" for name, cap in gpus)

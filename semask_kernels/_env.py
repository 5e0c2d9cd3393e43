"""Every SEMASK_* environment variable is parsed here, and nowhere else.

This file imports nothing but the standard library, so that ``setup.py`` can load it before torch or the
package itself is importable.

Each function below reads one variable and says what it means; README.md holds the one table of them all
(SEMASK_BACKEND, SEMASK_BUILD_CUDA, SEMASK_CUDA_ARCHS, SEMASK_TEST_SWEEP, SEMASK_ALLOW_UNVERIFIED, MAX_JOBS).
"""
from __future__ import annotations

import os
import re

BACKEND_NAMES = ("auto", "reference", "torch", "triton", "cuda")
# a variant of a backend: "<backend>.<variant>", e.g. "triton.onepass" (new kernels beside the verified ones)
VARIANT_NAME = re.compile(r"(reference|torch|triton|cuda)\.[a-z0-9_]+")


def is_backend_name(value: str) -> bool:
    """Whether ``value`` (lower-cased) names a backend: one of BACKEND_NAMES or a variant "<backend>.<variant>"
    (whether the op has that variant is the registry's question)."""
    return value in BACKEND_NAMES or VARIANT_NAME.fullmatch(value) is not None
DEFAULT_CUDA_ARCHS = "sm_80;sm_89;sm_90"


def _get(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value if value else default


def default_backend() -> str:
    """``SEMASK_BACKEND``: the backend used when a call says ``backend="auto"`` (read at each call)."""
    value = _get("SEMASK_BACKEND", "auto").lower()
    if not is_backend_name(value):
        raise ValueError(f"SEMASK_BACKEND must be one of {BACKEND_NAMES} or a variant '<backend>.<variant>', "
                         f"got {value!r}")
    return value


def build_cuda() -> str:
    """``SEMASK_BUILD_CUDA``: "auto" (build when the extension can run here: a GPU visible to torch, or GPU
    architectures named by ``SEMASK_CUDA_ARCHS`` / ``TORCH_CUDA_ARCH_LIST``), "1" (must build), "0" (never)."""
    value = _get("SEMASK_BUILD_CUDA", "auto").lower()
    aliases = {"auto": "auto", "1": "1", "true": "1", "yes": "1", "on": "1",
               "0": "0", "false": "0", "no": "0", "off": "0"}
    if value not in aliases:
        raise ValueError(f"SEMASK_BUILD_CUDA must be auto, 1 or 0, got {value!r}")
    return aliases[value]


def _parse_archs(name: str, raw: str) -> list[str]:
    archs = []
    for item in re.split(r"[;,\s]+", raw):
        if not item:
            continue
        # "+PTX" (TORCH_CUDA_ARCH_LIST's suffix) is dropped: the build adds PTX for the newest arch itself
        m = re.fullmatch(r"(?:sm_|compute_)?(\d+)\.?(\d)([a-z]?)(?:\+ptx)?", item.lower())
        if not m:
            raise ValueError(f"{name}: cannot read {item!r} in {raw!r}; expected e.g. 'sm_90' or '9.0'")
        archs.append(f"{m.group(1)}.{m.group(2)}{m.group(3)}")
    if not archs:
        raise ValueError(f"{name} is empty: {raw!r}")
    return archs


def cuda_archs() -> list[str]:
    """``SEMASK_CUDA_ARCHS``: compute capabilities as "X.Y" strings, e.g. ["8.0", "9.0"] (default
    sm_80;sm_89;sm_90).

    Accepts "sm_90", "90", "9.0" or "9.0a", separated by ";", "," or spaces.
    """
    return _parse_archs("SEMASK_CUDA_ARCHS", _get("SEMASK_CUDA_ARCHS", DEFAULT_CUDA_ARCHS))


def named_cuda_archs() -> tuple[list[str], str] | None:
    """The GPU architectures the user named for the CUDA build, and the variable that named them:
    ``SEMASK_CUDA_ARCHS``, else torch's own ``TORCH_CUDA_ARCH_LIST`` (e.g. "8.0;9.0+PTX"); None if neither is set."""
    for name in ("SEMASK_CUDA_ARCHS", "TORCH_CUDA_ARCH_LIST"):
        raw = _get(name, "")
        if raw:
            return _parse_archs(name, raw), name
    return None


def test_sweep() -> bool:
    """``SEMASK_TEST_SWEEP``: run the long randomized shape sweeps in the test suite."""
    return _get("SEMASK_TEST_SWEEP", "0").lower() in ("1", "true", "yes", "on")


def allow_unverified() -> bool:
    """``SEMASK_ALLOW_UNVERIFIED``: let ``backend="auto"`` pick fused backends whose GPU tests have not yet passed
    on GPU hardware (they always run when asked for by name)."""
    return _get("SEMASK_ALLOW_UNVERIFIED", "0").lower() in ("1", "true", "yes", "on")


def triton_interpret() -> bool:
    """Whether Triton runs kernels on the CPU (``TRITON_INTERPRET=1``, Triton's own variable)."""
    return _get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")

"""The one compare-to-reference harness of the op tests (tolerances: ARCHITECTURE.md, Decisions): any op, any
backend, any ``Call`` of its spec.

``check(spec, backend, call, dtype)`` runs the public op on ``backend`` in ``dtype`` and the reference in float32
on the same (rounded) data, forward and every gradient, and asserts the tolerance policy of ``tests/utils.py``:
float32/float64 within the per-dtype bounds (scaled with the magnitude of summed results), float16/bfloat16 by the
self-calibrating rule (error <= 2x (output) / 3x (gradients) the reference's own error in the same precision).
The conformance suite (``test_conformance.py``) and the backend files' GPU tests both call it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import pytest

from semask_kernels import _env
from semask_kernels.ops._spec import Call, OpSpec
from tests.utils import assert_close, assert_error_within, poison_cuda_cache

EXACT = (torch.float32, torch.float64)


def device(backend: str) -> str:
    """Where ``backend``'s tests run: CUDA for the CUDA backend, and for Triton unless it is interpreted."""
    on_gpu = torch.cuda.is_available() and not (backend == "triton" and _env.triton_interpret())
    return "cuda" if backend == "cuda" or (backend == "triton" and on_gpu) else "cpu"


def fused(spec: OpSpec) -> list:
    """pytest params of ``spec``'s backends other than the reference, the CUDA one marked ``gpu``."""
    return [pytest.param(b, marks=[pytest.mark.gpu] if b == "cuda" else [], id=b) for b in spec.dtypes
            if b != "reference"]


def upstream(out: Tensor) -> Tensor:
    """The gradient fed to backward: seeded normal noise of the output's shape (1.5 for a scalar, not 1), the
    same for every backend and dtype that is compared."""
    if out.dim() == 0:
        return torch.full((), 1.5, dtype=out.dtype, device=out.device)
    gen = torch.Generator().manual_seed(1234)
    return torch.randn(out.shape, generator=gen).to(out)


def results(spec: OpSpec, backend: str, call: Call, dtype: Optional[torch.dtype] = None) -> list[tuple[str, Tensor]]:
    """[("output", out), ("d <arg>", grad), ...] of the public op on ``backend``, inputs cast to ``dtype``."""
    call = call.to(dtype)
    tensors = call.tensors()
    poison_cuda_cache(*tensors)  # an element a CUDA kernel never writes shows up as NaN
    out = spec.run(call, backend)
    leaves = call.leaves()
    named = [("output", out)]
    if leaves:
        # an input the output does not depend on (padding values when nothing is padded) gets zeros
        grads = torch.autograd.grad(out, [t for _, t in leaves], upstream(out), materialize_grads=True)
        named += [(f"d {name}", g) for (name, _), g in zip(leaves, grads)]
    return named


def _scale(spec: OpSpec, name: str, expected: Tensor) -> float:
    if spec.magnitude_scaled is not None and name not in spec.magnitude_scaled:
        return 1.0
    return max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0


def _unit(spec: OpSpec, tensor: Tensor, expected: Tensor) -> Tensor:
    """On the reference's unit scale when the spec asks (a gradient carrying 1/pixels)."""
    if not spec.unit_scale or expected.numel() == 0:
        return tensor
    mag = float(expected.detach().abs().max())
    return tensor / mag if mag > 0 else tensor


def check(spec: OpSpec, backend: str, call: Call, dtype: torch.dtype = torch.float32,
          device: Optional[torch.device | str] = None, rule: str = "calibrated") -> list[tuple[str, Tensor]]:
    """``backend`` matches the float32 reference on ``call`` in ``dtype``, output and every gradient, each of
    the dtype and shape of its input; returns the backend's results. ``rule`` for float16/bfloat16:
    "calibrated" (the self-calibrating rule) or "bounds" (the per-dtype bounds against float32)."""
    call = call.to(device=device)
    if dtype in EXACT or rule == "bounds":
        expected = results(spec, "reference", call.to(dtype), None if dtype == torch.float64 else torch.float32)
        got = results(spec, backend, call, dtype)
        assert [n for n, _ in got] == [n for n, _ in expected]
        for (name, a), (_, e) in zip(got, expected):
            assert a.dtype == dtype and a.shape == e.shape, f"{name}: {a.dtype} {tuple(a.shape)}"
            assert_close(_unit(spec, a, e), _unit(spec, e, e), dtype, name=f"{spec.name}/{backend} {name}",
                         scale=1.0 if spec.unit_scale else _scale(spec, name, e))
        return got
    call32 = call.to(dtype).to(torch.float32)  # the exact problem the low-precision runs see
    exact = results(spec, "reference", call32)
    got = results(spec, backend, call32, dtype)
    low = results(spec, "reference", call32, dtype)
    for i, ((name, a), (_, r), (_, e)) in enumerate(zip(got, low, exact)):
        assert a.dtype == dtype and a.shape == e.shape, f"{name}: {a.dtype} {tuple(a.shape)}"
        assert_error_within(_unit(spec, a, e), _unit(spec, r, e), _unit(spec, e, e), 2.0 if i == 0 else 3.0,
                            name=f"{spec.name}/{backend} {name} ({dtype})")
    return got


def assert_same_bits(first: list[tuple[str, Tensor]], second: list[tuple[str, Tensor]], what: str) -> None:
    for (name, a), (_, b) in zip(first, second):
        assert torch.equal(a, b), f"{name} differs {what}"


def strided(call: Call) -> Call:
    """The same values with other memory layouts: every tensor of 2+ dims with its last two dims' memory
    transposed (non-contiguous), list members too."""
    def relayout(t: Tensor) -> Tensor:
        if t.dim() < 2 or min(t.shape[-2:]) < 2:
            return t
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    kwargs = {}
    for k, v in call.kwargs.items():
        if isinstance(v, Tensor):
            v = relayout(v)
        elif isinstance(v, (list, tuple)):
            v = type(v)(relayout(t) if isinstance(t, Tensor) else t for t in v)
        kwargs[k] = v
    return Call(kwargs, call.grads)

"""Every (op x backend x case x dtype) of the op specs against the float32 reference: forward and every gradient
under the tolerance policy, the results' dtypes and shapes; and per (op x backend): other memory layouts give the
same bits, two runs give the same bits, ``torch.library.opcheck`` passes.

The cases are the specs' (``semask_kernels/ops/<op>/spec.py``): a new op or a new backend is tested here without
a line of test code. Triton runs on CPU tensors under the interpreter (tests/conftest.py); the CUDA backend's
parameters are marked ``gpu``. A backend that declines a case (its ``supports()`` gives a reason) must say why,
and ``auto`` must still run the case. Backend files (``test_<op>_<backend>.py``) keep only what is specific to a
backend (launch configurations, limits, dispatch, GPU-size runs).
"""
from __future__ import annotations

import pytest
import torch

from semask_kernels import backends
from semask_kernels.ops._spec import outputs, specs
from tests.ops import conformance

SPECS = specs()


def _marks(backend: str) -> list:
    return [pytest.mark.gpu] if backend.split(".", 1)[0] == "cuda" else []  # variants ("cuda.x") too


def _fused(spec) -> list[str]:
    return [b for b in spec.dtypes if b != "reference"]


def _cases():
    for name, spec in SPECS.items():
        for backend in _fused(spec):
            for case in spec.cases:
                if case.backends is not None and backend not in case.backends:
                    continue
                for dtype in case.dtypes:
                    if dtype in spec.dtypes[backend]:
                        yield pytest.param(name, backend, case.name, dtype, marks=_marks(backend),
                                           id=f"{name}-{backend}-{case.name}-{str(dtype).removeprefix('torch.')}")


def _per_backend():
    for name, spec in SPECS.items():
        for backend in _fused(spec):
            yield pytest.param(name, backend, marks=_marks(backend), id=f"{name}-{backend}")


def _call(spec, case_name: str, backend: str):
    case = next(c for c in spec.cases if c.name == case_name)
    call = case.make().to(device=conformance.device(backend))
    unavailable = backends.get_backend(spec.name, backend).available()
    if unavailable:
        pytest.skip(f"{spec.name}/{backend} cannot run here: {unavailable}")
    return call


@pytest.mark.parametrize("op,backend,case,dtype", list(_cases()))
def test_matches_the_reference(op, backend, case, dtype):
    spec = SPECS[op]
    call = _call(spec, case, backend)
    reason = backends.why_not(op, backend, *spec.arguments(call.to(dtype)))
    if reason is not None:  # a limit of this backend: it says why, and auto runs the case anyway
        assert isinstance(reason, str) and reason
        assert spec.run(call.to(dtype), "auto") is not None
        return
    conformance.check(spec, backend, call, dtype)


def _first_call(op: str, backend: str):
    spec = SPECS[op]
    return spec, _call(spec, spec.cases[0].name, backend)


@pytest.mark.parametrize("op,backend", list(_per_backend()))
def test_other_memory_layouts_give_the_same_bits(op, backend):
    spec, call = _first_call(op, backend)
    other = conformance.strided(call)
    assert any(not t.is_contiguous() for t in other.tensors()), "no tensor of the first case could be relaid"
    conformance.assert_same_bits(conformance.results(spec, backend, other), conformance.results(spec, backend, call),
                                 "between contiguous and strided inputs")


@pytest.mark.parametrize("op,backend", list(_per_backend()))
def test_two_runs_give_the_same_bits(op, backend):
    spec, call = _first_call(op, backend)
    conformance.assert_same_bits(conformance.results(spec, backend, call), conformance.results(spec, backend, call),
                                 "between two identical runs")


def _smallest(spec):
    return min(spec.cases, key=lambda c: sum(t.numel() for t in c.make().tensors()))


@pytest.mark.parametrize("op,backend", list(_per_backend()) + [pytest.param(op, "reference", id=f"{op}-reference")
                                                               for op in SPECS])
def test_opcheck(op, backend):
    spec = SPECS[op]
    call = _call(spec, _smallest(spec).name, backend).to()  # leaves: opcheck tests the autograd registration too
    torch.library.opcheck(spec.custom_op, (*spec.arguments(call), backend))


def _declining():
    for name, spec in SPECS.items():
        for backend in _fused(spec):
            missing = [d for d in (torch.float64, torch.float16, torch.bfloat16) if d not in spec.dtypes[backend]]
            if missing:
                yield pytest.param(name, backend, missing[0], marks=_marks(backend),
                                   id=f"{name}-{backend}-{str(missing[0]).removeprefix('torch.')}")


@pytest.mark.parametrize("op,backend,dtype", list(_declining()))
def test_a_dtype_it_does_not_run_is_declined_with_a_reason_and_auto_runs_it(op, backend, dtype):
    spec = SPECS[op]
    call = _call(spec, spec.cases[0].name, backend).to(dtype)
    reason = backends.why_not(op, backend, *spec.arguments(call))
    assert reason is not None and str(dtype).removeprefix("torch.") in reason, reason
    with pytest.raises(RuntimeError, match=f"backend '{backend}' was requested but cannot run"):
        spec.run(call, backend)
    assert all(out.dtype == dtype for out in outputs(spec.run(call, "auto")))


def test_every_op_has_cases_for_every_backend_and_low_precision():
    """The suite covers what the specs promise: each fused backend gets cases, and each backend that runs
    float16/bfloat16 is tested in them somewhere."""
    for name, spec in SPECS.items():
        for backend in _fused(spec):
            cases = [c for c in spec.cases if c.backends is None or backend in c.backends]
            assert cases, f"{name}/{backend}: no case"
            for dtype in (torch.float16, torch.bfloat16):
                if dtype in spec.dtypes[backend]:
                    assert any(dtype in c.dtypes for c in cases), f"{name}/{backend}: no {dtype} case"

"""``auto`` per (op, direction, shape class) from the committed choice table (``semask_kernels/_choice.py``):
with a synthetic table, the forward and the backward of one call run different backends; rows that name an
unverified backend, one that cannot run here, or no row at all fall back to the preference order; and backend
variants ("triton.onepass") are names of their own."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import semask_kernels as sk
from semask_kernels import _choice, _env, backends
from semask_kernels.ops.shifted_window_attention import spec

OP = "shifted_window_attention"


def _call(dtype=torch.float32):
    call = spec.inputs(1, 9, 8, 2, 16, (7, 7), (3, 3), "pad_then_roll", dtype=dtype)
    return call.kwargs


def _key(direction: str, kwargs) -> tuple:
    args = sk.shifted_window_attention.__globals__["arguments"](**kwargs)
    return (OP, direction, spec.shape_class(*args))


@pytest.fixture
def spied(monkeypatch):
    """Every backend of the op wrapped so that a call records (direction, backend)."""
    ran = []
    registry = {k: dict(v) for k, v in backends._REGISTRY.items()}
    for name, impl in registry[OP].items():
        def fwd(*a, _f=impl.forward, _n=name):
            ran.append(("forward", _n))
            return _f(*a)

        def bwd(*a, _b=impl.backward, _n=name):
            ran.append(("backward", _n))
            return _b(*a)
        registry[OP][name] = dataclasses.replace(impl, forward=fwd, backward=bwd)
    monkeypatch.setattr(backends, "_REGISTRY", registry)
    monkeypatch.delenv("SEMASK_ALLOW_UNVERIFIED", raising=False)
    monkeypatch.delenv("SEMASK_BACKEND", raising=False)
    return ran


def _table(monkeypatch, rows: dict):
    monkeypatch.setattr(_choice, "table", lambda: rows)


def _run(kwargs):
    kwargs = {**kwargs, "qkv": kwargs["qkv"].detach().requires_grad_()}
    out = sk.shifted_window_attention(**kwargs)
    out.sum().backward()
    return kwargs["qkv"].grad


def test_forward_and_backward_come_from_the_rows_of_their_direction(monkeypatch, spied):
    kwargs = _call()
    _table(monkeypatch, {_key("forward", kwargs): "reference", _key("backward", kwargs): "torch"})
    grad = _run(kwargs)
    assert spied == [("forward", "reference"), ("backward", "torch")]
    spied.clear()
    _table(monkeypatch, {})
    assert torch.allclose(_run(kwargs), grad, atol=1e-5)  # the torch path's own autograd: no custom op call
    assert spied == []


def test_a_row_for_one_direction_leaves_the_other_to_the_preference_order(monkeypatch, spied):
    kwargs = _call()
    _table(monkeypatch, {_key("backward", kwargs): "reference"})
    args = sk.shifted_window_attention.__globals__["arguments"](**kwargs)
    assert backends.choose_backends(OP, "auto", *args) == ("torch", "reference")
    _table(monkeypatch, {_key("forward", kwargs): "reference"})
    assert backends.choose_backends(OP, "auto", *args) == ("reference", "torch")


def test_rows_auto_cannot_use_fall_back_to_the_preference_order(monkeypatch, spied, caplog):
    kwargs = _call()
    args = sk.shifted_window_attention.__globals__["arguments"](**kwargs)
    for name in ("triton.onepass", "cuda", "flash"):  # unverified; cannot run on CPU tensors; not registered
        _table(monkeypatch, {_key("forward", kwargs): name, _key("backward", kwargs): name})
        with caplog.at_level("DEBUG", logger="semask_kernels"):
            assert backends.choose_backends(OP, "auto", *args) == ("torch", "torch"), name
        assert f"names {name!r}, which auto cannot run" in caplog.text
    other_dtype = _call(torch.float64)  # another shape class: the rows do not apply
    _table(monkeypatch, {_key("forward", kwargs): "reference"})
    args64 = sk.shifted_window_attention.__globals__["arguments"](**other_dtype)
    assert backends.choose_backends(OP, "auto", *args64) == ("torch", "torch")


def test_a_name_asked_for_runs_both_directions_whatever_the_table(monkeypatch, spied):
    kwargs = _call()
    _table(monkeypatch, {_key("forward", kwargs): "torch", _key("backward", kwargs): "torch"})
    _run({**kwargs, "backend": "reference"})
    assert spied == [("forward", "reference"), ("backward", "reference")]


def test_pairs_resolve_per_direction():
    assert backends.pair("triton", "cuda") == "triton/cuda" and backends.pair("cuda", "cuda") == "cuda"
    assert backends.resolve(OP, "triton/cuda") == "triton"
    assert backends.resolve(OP, "triton/cuda", direction="backward") == "cuda"


def test_the_committed_table_parses_and_bad_rows_name_their_field(tmp_path):
    assert isinstance(_choice.read(), dict)  # today's table: empty, every op on its preference order
    assert _choice.read(tmp_path / "missing.json") == {}
    path = tmp_path / "choice.json"
    path.write_text(json.dumps({"rows": [{"op": OP, "direction": "sideways", "shape_class": "x", "backend": "cuda"}]}))
    with pytest.raises(ValueError, match="direction must be one of"):
        _choice.read(path)
    path.write_text(json.dumps({"rows": [{"op": OP, "direction": "forward", "backend": "cuda"}]}))
    with pytest.raises(ValueError, match="'shape_class'"):
        _choice.read(path)


def test_variants_are_backend_names(monkeypatch):
    assert "triton.onepass" in backends.names(OP) and backends.base("triton.onepass") == "triton"
    assert not backends.get_backend(OP, "triton.onepass").verified
    assert _env.is_backend_name("triton.onepass") and not _env.is_backend_name("flash.onepass")
    monkeypatch.setenv("SEMASK_BACKEND", "triton.nosuch")
    kwargs = _call()
    with pytest.raises(RuntimeError, match="'triton.nosuch' was requested but cannot run: no triton.nosuch"):
        sk.shifted_window_attention(**kwargs)
    monkeypatch.setenv("SEMASK_BACKEND", "flash")
    with pytest.raises(ValueError, match="SEMASK_BACKEND must be one of"):
        sk.shifted_window_attention(**kwargs)
    with pytest.raises(ValueError, match=r"or a variant of shifted_window_attention \(triton.onepass\)"):
        sk.shifted_window_attention(**{**kwargs, "backend": "onepass"})
    assert "triton.onepass" in sk.available_backends()[OP]


def test_semask_backend_selects_a_variant(monkeypatch):
    """SEMASK_BACKEND=triton.onepass runs the variant (the Triton interpreter on CPU tensors, tests/conftest.py)."""
    if backends.why_not(OP, "triton.onepass"):
        pytest.skip(backends.why_not(OP, "triton.onepass"))
    kwargs = _call()
    monkeypatch.setenv("SEMASK_BACKEND", "triton.onepass")
    out = sk.shifted_window_attention(**kwargs)
    monkeypatch.setenv("SEMASK_BACKEND", "reference")
    assert torch.allclose(out, sk.shifted_window_attention(**kwargs), atol=1e-5)

"""Backend registry, selection, SEMASK_BACKEND, and ``python -m semask_kernels.info``."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import semask_kernels as sk
from semask_kernels import _env, backends, evidence
from semask_kernels.ops._spec import specs

EVIDENCE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "gpu"


def test_available_backends_lists_every_op_and_backend_with_a_reason():
    table = sk.available_backends()
    assert set(table) == set(specs()) and len(table) >= 5
    for op, per_backend in table.items():
        variants = {b for b in backends.names(op) if b not in backends.BACKENDS}
        assert set(per_backend) == {"reference", "torch", "triton", "cuda"} | variants
        assert all(backends.base(v) in backends.BACKENDS for v in variants), variants
        assert per_backend["reference"] == per_backend["torch"] == (True, "available")
        for ok, reason in per_backend.values():
            assert isinstance(ok, bool) and isinstance(reason, str) and reason


def test_auto_on_cpu_picks_the_torch_path_and_logs_why(caplog):
    """Without a GPU, auto runs the fast PyTorch path of every op, never the reference (selectable by name)."""
    q = torch.randn(2, 1, 4, 8)
    with caplog.at_level(logging.DEBUG, logger="semask_kernels"):
        assert backends.choose_backend("window_attention", "auto", q, q, q, None, [2, 2], None, 1.0) == "torch"
    assert "skipping backend 'cuda'" in caplog.text
    assert backends.choose_backend("window_attention", "reference", q, q, q, None, [2, 2], None, 1.0) == "reference"
    for op in backends.ops():
        assert backends._PREFERENCE[op][-2:] == ("torch", "reference"), op


def test_every_registered_op_has_a_spec_that_matches_its_registration():
    """The specs are the one list of ops: each names a registered op with the spec's preference, a backend
    registered for every dtype entry, and its public function exported by semask_kernels."""
    table = specs()
    assert set(table) == set(backends.ops())
    for name, spec in table.items():
        assert backends._PREFERENCE[name] == spec.preference
        assert set(spec.dtypes) == set(backends._REGISTRY[name]), name
        assert getattr(sk, name) is spec.function and name in sk.__all__
        assert spec.cases and len({c.name for c in spec.cases}) == len(spec.cases), name


def test_semask_backend_env_sets_the_default(monkeypatch):
    q = torch.randn(2, 1, 4, 8)
    monkeypatch.setenv("SEMASK_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="backend 'cuda' was requested but cannot run"):
        sk.window_attention(q, q, q)
    monkeypatch.setenv("SEMASK_BACKEND", "reference")
    sk.window_attention(q, q, q)
    monkeypatch.setenv("SEMASK_BACKEND", "fastest")
    with pytest.raises(ValueError, match="SEMASK_BACKEND must be one of"):
        sk.window_attention(q, q, q)


def test_unknown_backend_name_is_rejected():
    q = torch.randn(2, 1, 4, 8)
    with pytest.raises(ValueError, match=r"backend must be one of .* got 'flash'"):
        sk.window_attention(q, q, q, backend="flash")
    with pytest.raises(TypeError, match="backend must be a str"):
        sk.window_attention(q, q, q, backend=None)


def test_env_parsing():
    assert _env.cuda_archs.__doc__
    import os
    old = os.environ.get("SEMASK_CUDA_ARCHS")
    try:
        os.environ["SEMASK_CUDA_ARCHS"] = "sm_80; 9.0 ,sm_90a"
        assert _env.cuda_archs() == ["8.0", "9.0", "9.0a"]
        os.environ["SEMASK_CUDA_ARCHS"] = "hopper"
        with pytest.raises(ValueError, match="SEMASK_CUDA_ARCHS: cannot read 'hopper'"):
            _env.cuda_archs()
    finally:
        if old is None:
            os.environ.pop("SEMASK_CUDA_ARCHS")
        else:
            os.environ["SEMASK_CUDA_ARCHS"] = old


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without a GPU reports")
def test_info_on_a_cpu_machine():
    out = subprocess.run([sys.executable, "-m", "semask_kernels.info"], capture_output=True, text=True,
                         check=True).stdout
    assert "GPU: none" in out
    assert "reference  yes  available" in out
    assert "available only under the interpreter" in out
    from semask_kernels import _ext
    if _ext.HAS_CUDA_EXT:
        assert "CUDA extension: built for sm_" in out and "no GPU here to run it" in out
    else:
        assert "CUDA extension: not available" in out
    assert "shifted_window_attention   torch" in out


def test_auto_skips_backends_not_verified_on_hardware(monkeypatch):
    """A fused backend registered verified=False runs by name, but auto picks it only with
    SEMASK_ALLOW_UNVERIFIED=1 (the reason shows in the log and in available_backends)."""
    monkeypatch.setattr(backends, "_REGISTRY", {k: dict(v) for k, v in backends._REGISTRY.items()})
    monkeypatch.setattr(backends, "_PREFERENCE", dict(backends._PREFERENCE))
    monkeypatch.delenv("SEMASK_ALLOW_UNVERIFIED", raising=False)
    backends.register_op("toy", ("cuda", "reference"))
    backends.register_backend("toy", "reference", forward=lambda x: x, backward=lambda g: g)
    backends.register_backend("toy", "cuda", forward=lambda x: x, backward=lambda g: g, verified=False)
    x = torch.zeros(1)
    assert backends.choose_backend("toy", "auto", x) == "reference"
    assert backends.choose_backend("toy", "cuda", x) == "cuda"
    assert "not yet verified on GPU hardware" in backends.available_backends()["toy"]["cuda"][1]
    monkeypatch.setenv("SEMASK_ALLOW_UNVERIFIED", "1")
    assert backends.choose_backend("toy", "auto", x) == "cuda"


def test_every_verified_fused_backend_has_gpu_evidence_of_its_current_sources():
    """verified=True (register_module in op.py) only with a committed GPU run (``.ci/gpu-check all``) under
    benchmarks/results/gpu/ whose gpu tests of that op and backend all passed AND that recorded the SHA-256 of the
    very files that define the backend today (``SOURCES`` of its module, semask_kernels/evidence.py): the latest
    run that tested it decides, so a later failing run or any edit of its kernels revokes it. Reads only committed
    files (no git)."""
    runs = evidence.load_runs(EVIDENCE)
    assert runs, f"no GPU run committed under {EVIDENCE}"
    for run in runs:
        assert run["device"] != "cpu" and run["git_sha"] not in ("", "unknown"), run["folder"]
    now = evidence.current()
    for op, per_backend in backends._REGISTRY.items():
        for name, impl in per_backend.items():
            if not evidence.is_fused(name) or not impl.verified:  # plain PyTorch: no GPU evidence needed
                continue
            reason = evidence.unverified_because(op, name, runs, now[op][name])
            assert reason is None, f"{op}/{name} is verified=True, but {reason}"


def test_gpu_evidence_files_are_complete():
    """Each committed GPU run holds the files ``.ci/gpu-check all`` writes, from a GPU."""
    folders = [p.parent for p in EVIDENCE.glob("*/gpu_summary.json")]
    assert folders, f"no GPU run committed under {EVIDENCE}"
    for folder in folders:
        assert {"env.txt", "tests.jsonl", "bench.jsonl", "gpu_summary.json"} <= {p.name for p in folder.iterdir()}
        summary = json.loads((folder / "gpu_summary.json").read_text())
        assert summary["gpu"] is True and "torch" in summary["versions"], folder


@pytest.mark.parametrize("op", [op for op in backends.ops() if "cuda" in backends._REGISTRY[op]])
def test_cuda_backends_are_registered_and_say_why_they_cannot_run(op):
    """Each op with a CUDA backend: its C++ schemas <op>_forward/_backward are registered and listed in the
    build info when the extension is built, and available_backends gives the reason it cannot run here."""
    from semask_kernels import _ext
    ok, reason = sk.available_backends()[op]["cuda"]
    assert isinstance(reason, str) and reason
    if _ext.HAS_CUDA_EXT:
        info = _ext.build_info()
        for name in (f"{op}_forward", f"{op}_backward"):
            assert hasattr(torch.ops.semask_kernels, name) and name in info["ops"]
        assert info["cuda_archs"] and all("." in a for a in info["cuda_archs"])
        assert info["torch_version"] and info["cuda_version"]
        # the kernels' limits and kernel rules come from the extension (csrc/common/limits.h), not from Python
        assert info["limits"]["shifted_window_attention"]["max_tokens"] > 0
        assert info["limits"]["upsample_cross_entropy"]["max_side"] > 0
        assert "tensor_core" in info["kernels"]["shifted_window_attention"]
        assert _ext.limits("shifted_window_attention") == info["limits"]["shifted_window_attention"]
    if not (_ext.HAS_CUDA_EXT and torch.cuda.is_available()):
        assert not ok
        assert ("GPU" in reason) or ("extension" in reason), reason
    else:
        assert ok, reason


def test_supports_gives_every_reason_and_a_failed_auto_lists_every_backend(monkeypatch):
    """A backend that cannot run for several reasons names them all; when no backend of an op can run, the error
    names each backend with its reasons (the log at debug level has them one by one)."""
    from semask_kernels.ops.window_attention import triton
    q = torch.randn(1, 1, 1025, 8, dtype=torch.float64)
    reason = triton.supports(q, q, q, None, [1025, 1], None, 1.0)
    assert "float64" in reason and "N=1025" in reason, reason
    assert backends.reasons(None, "", "a", False, "b") == "a; b" and backends.reasons(None, False) is None
    monkeypatch.setattr(backends, "_REGISTRY", {k: dict(v) for k, v in backends._REGISTRY.items()})
    monkeypatch.setattr(backends, "_PREFERENCE", dict(backends._PREFERENCE))
    backends.register_op("toy", ("cuda", "torch"))
    backends.register_backend("toy", "cuda", forward=lambda x: x, backward=lambda g: g,
                              supports=lambda x: backends.reasons("x is on cpu", "x has dtype float64"))
    backends.register_backend("toy", "torch", forward=lambda x: x, backward=lambda g: g,
                              supports=lambda x: "x is too large")
    with pytest.raises(RuntimeError, match=r"toy: no backend can run these arguments; cuda: x is on cpu; x has "
                                           r"dtype float64 \| torch: x is too large"):
        backends.choose_backend("toy", "auto", torch.zeros(1))

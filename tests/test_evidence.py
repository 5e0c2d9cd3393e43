"""GPU evidence tied to the code: every fused backend declares the files that define it, their SHA-256 pins a run
to them, and an edit of any of them (or a run without hashes) takes ``verified`` away."""
import ast
import json
from pathlib import Path

import pytest

from semask_kernels import backends, evidence
from semask_kernels.ops._spec import specs

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "results" / "gpu"
PACKAGE = ROOT / "semask_kernels"


def _fused():
    specs()
    return [(op, name) for op in backends.ops() for name in sorted(backends._REGISTRY[op]) if evidence.is_fused(name)]


def _imported_files(path: Path) -> set[str]:
    """The package files ``path`` imports with ``from ... import`` (relative or absolute), as repository paths."""
    found = set()
    package = path.parent.relative_to(ROOT).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = list(package[:len(package) - node.level + 1]) if node.level else []
        parts = base + (node.module.split(".") if node.module else [])
        for alias in node.names:  # `from pkg import module` or `from module import name`
            for candidate in (parts + [alias.name], parts):
                file = ROOT.joinpath(*candidate).with_suffix(".py")
                if file.is_file():
                    found.add(file.relative_to(ROOT).as_posix())
                    break
    return found


@pytest.mark.parametrize("op,name", _fused())
def test_declared_sources_exist_and_cover_the_kernels_the_backend_imports(op, name):
    """Every declared file exists; every shared kernel file (semask_kernels/kernels/) and every helper of its own op
    folder that the backend imports, directly or through another kernel file, is declared; a CUDA backend
    declares its csrc/<op>/ folder and csrc/common/."""
    files = evidence.sources(op, name)
    assert all((ROOT / f).is_file() for f in files), files
    own = evidence.backend_module(op, name)
    folder = Path(own.__file__).resolve().parent.relative_to(ROOT).as_posix() + "/"
    todo, seen = [Path(own.__file__).resolve()], set()
    while todo:
        for dep in _imported_files(todo.pop()) - seen:
            seen.add(dep)
            if dep.startswith("semask_kernels/kernels/") and not dep.endswith("__init__.py"):
                todo.append(ROOT / dep)
    needed = {d for d in seen if (d.startswith("semask_kernels/kernels/") and not d.endswith("__init__.py"))
              or (d.startswith(folder) and Path(d).name not in ("op.py", "spec.py", "reference.py", "__init__.py"))}
    assert needed <= set(files), f"{op}/{name}: imports {sorted(needed - set(files))} without declaring it in SOURCES"
    if name.split(".")[0] == "cuda":
        assert any(f.startswith(f"csrc/{op}/") for f in files) and "csrc/common/limits.h" in files, files


def test_fingerprint_moves_with_any_edit_rename_or_removal():
    tree = {"a.py": b"x = 1\n", "csrc/k.cu": b"__global__ void k() {}\n"}
    base = evidence.fingerprint(tree, tree.get)
    assert set(base["files"]) == set(tree) and len(base["sha256"]) == 64
    assert evidence.fingerprint(tree, tree.get) == base  # repeatable
    edited = evidence.fingerprint(tree, {**tree, "a.py": b"x = 2\n"}.get)
    renamed = evidence.fingerprint(["b.py", "csrc/k.cu"], {"b.py": tree["a.py"], "csrc/k.cu": tree["csrc/k.cu"]}.get)
    removed = evidence.fingerprint(tree, {"csrc/k.cu": tree["csrc/k.cu"]}.get)
    assert len({base["sha256"], edited["sha256"], renamed["sha256"], removed["sha256"]}) == 4
    assert removed["files"]["a.py"] is None
    assert evidence.changed(base, edited) == ["a.py: edited"]
    assert evidence.changed(base, renamed) == ["a.py: removed", "b.py: added"]


def _run(started, counts, sources=None, folder="run"):
    run = {"started": started, "gpu": True, "device": "NVIDIA H100", "git_sha": "abc", "folder": folder,
           "tests_by_op": {"toy": {"triton": counts}}}
    if sources is not None:
        run["sources"] = {"toy": {"triton": sources}}
    return run


def test_a_verified_backend_needs_a_passing_latest_run_with_its_current_sources():
    now = evidence.fingerprint(["k.py"], {"k.py": b"v2"}.get)
    old = evidence.fingerprint(["k.py"], {"k.py": b"v1"}.get)
    ok = {"passed": 3, "failed": 0, "errored": 0, "skipped": 0}
    bad = {"passed": 3, "failed": 1, "errored": 0, "skipped": 0}
    assert evidence.unverified_because("toy", "triton", [_run("1", ok, now)], now) is None
    assert "no committed GPU run" in evidence.unverified_because("toy", "cuda", [_run("1", ok, now)], now)
    assert "recorded no hashes" in evidence.unverified_because("toy", "triton", [_run("1", ok)], now)
    reason = evidence.unverified_because("toy", "triton", [_run("1", ok, old, "first")], now)
    assert "sources changed since its latest GPU run (first): k.py: edited" in reason
    # the latest run decides: a newer passing run of today's sources re-verifies, a newer failing one revokes
    assert evidence.unverified_because("toy", "triton", [_run("1", ok, old), _run("2", ok, now)], now) is None
    assert "had" in evidence.unverified_because("toy", "triton", [_run("1", ok, now), _run("2", bad, now)], now)


def test_an_edit_of_a_kernel_file_revokes_a_verified_backend(tmp_path, monkeypatch):
    """End to end on a copy of the committed evidence: a run that recorded today's sources of a backend verifies
    it; the same files with one byte changed do not."""
    op, name = "shifted_window_attention", "triton"
    now = evidence.current()[op][name]
    run = tmp_path / "2099-01-01-h100-abc"
    run.mkdir()
    summary = {"started": "2099-01-01T00:00:00+00:00", "gpu": True, "device": "NVIDIA H100", "git_sha": "abc",
               "tests_by_op": {op: {name: {"passed": 5, "failed": 0, "errored": 0, "skipped": 0}}},
               "sources": {op: {name: now}}}
    (run / "gpu_summary.json").write_text(json.dumps(summary))
    runs = evidence.load_runs(tmp_path)
    assert evidence.unverified_because(op, name, runs, now) is None
    kernel = "semask_kernels/kernels/window_attention.py"
    edited = evidence.fingerprint(now["files"], lambda p: (ROOT / p).read_bytes() + (b"#" if p == kernel else b""))
    assert evidence.unverified_because(op, name, runs, edited).endswith(f"{kernel}: edited")


def test_committed_runs_without_hashes_carry_a_manifest_derived_from_their_commit():
    """The runs made before gpu_summary.json had "sources" hold evidence_manifest.json (a separate file, marked as
    derived after the fact from the commit the run recorded) with the hashes of every fused backend it tested."""
    folders = [p.parent for p in RUNS.glob("*/gpu_summary.json")]
    assert folders
    for folder in folders:
        summary = json.loads((folder / "gpu_summary.json").read_text())
        if "sources" in summary:
            continue
        manifest = json.loads((folder / evidence.MANIFEST).read_text())
        assert manifest["derived_after_the_fact"] is True and manifest["from_commit"] == summary["git_sha"]
        tested = {(op, b) for op, per in summary["tests_by_op"].items() for b in per
                  if b != "-" and evidence.is_fused(b) and b in backends._REGISTRY.get(op, {})}
        recorded = {(op, b) for op, per in manifest["sources"].items() for b in per}
        assert recorded == tested, folder
        for per in manifest["sources"].values():
            for fp in per.values():
                assert len(fp["sha256"]) == 64 and fp["files"]


def test_sources_of_a_backend_outside_the_repository_are_refused(monkeypatch):
    import sys
    import types
    module = types.ModuleType("elsewhere")
    module.__file__ = "/usr/lib/elsewhere.py"

    def forward(*args):
        return args
    forward.__module__ = "elsewhere"
    monkeypatch.setitem(sys.modules, "elsewhere", module)
    monkeypatch.setattr(backends, "_REGISTRY", {**backends._REGISTRY, "toy": {
        "triton": backends.Backend("triton", forward, forward, lambda: None, lambda *a: None)}})
    with pytest.raises(LookupError, match="outside the repository"):
        evidence.sources("toy", "triton")

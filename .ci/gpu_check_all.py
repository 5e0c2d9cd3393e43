"""``.ci/gpu-check all``: the whole GPU session in one self-budgeting command.

A GPU is lent to a session only by chance, for minutes, one command of at most ten minutes at a time. This
runs every check in order of value, each phase capped by what is left of one budget (``--budget``, default
540 s, so a call limited to 590 s ends cleanly), and writes each file to the output folder as its phase runs,
so that a killed call still returns what was done. The files (8 at most, the device tool's limit):

    env.txt           nvidia-smi, versions, git sha, what each op's backends say here
    build.log         the CUDA extension build (in the background, ninja, all cores)
    tests.log         every pytest phase's output, one after the other
    tests.jsonl       one line per test: phase, node id, outcome, seconds, first line of the failure
    bench.log         the benchmark tables as printed
    bench.jsonl       one line per measurement, written as each one finishes
    driver.log        what this script did: each phase's start, end, status and time left
    gpu_summary.json  per op and backend: tests passed / failed / errored; per fused backend the SHA-256 of the
                      files that define it ("sources": what ties verified=True to the code); the headline ratios;
                      device, versions, git sha (rewritten after every phase)

Phases, in order of value (``phases()``, one entry each): environment (with the SHA-256 of every fused
backend's sources, ``semask_kernels/evidence.py``) -> extension build (background) -> the Triton ``gpu`` tests of
shifted-window and window attention, every variant's test file included -> the CUDA ones -> the device-timed
kernel table of every backend the registry lists for shifted_window_attention (``benchmarks kernels``) -> the
headline (stock timm Swin-T 224 and stock with SDPA vs patched with each fused backend and auto, bf16, batch 128,
inference and a train step, eager) -> the per-component profile of one inference and one train step
(``benchmarks profile``) -> stock+compile vs patched+compile (inference) -> every other ``gpu`` test -> the
summary. Without a GPU every GPU phase is skipped with its reason and the files are still written (a dry run).
Fifteen minutes of device time: ``--budget 540`` (give the call 590 s), then, on the same warm machine,
``--skip`` the phases done (the build stays in place: ``--skip build``).

Adding a phase: one ``Phase`` entry in ``phases()`` (its name, the function that runs it, whether it needs the
extension built); ``--skip`` accepts its name at once.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
ATTENTION_OPS = ("shifted_window_attention", "window_attention")  # what patch_timm_swin runs: tested first
# tests/ops/test_<op>_<backend>[_<variant>].py: a variant's own test file counts for "<backend>.<variant>"
TEST_FILE = re.compile(r"tests/ops/test_(?P<op>\w+?)_(?P<backend>triton|cuda)(?:_(?P<variant>\w+))?\.py")
CONFORMANCE = "tests/ops/test_conformance.py"  # its test ids start with the op and the backend (variants too)
PARAM_ID = re.compile(r"\[(?P<op>[a-z0-9_]+)-(?P<backend>(?:reference|torch|triton|cuda)(?:\.\w+)?)(?:-[^\]]*)?\]")
RESERVE_S = 8  # kept back for the summary


class Session:
    def __init__(self, out: Path, budget: float, jobs: int):
        self.out, self.budget, self.jobs = out, budget, jobs
        self.t0 = time.monotonic()
        self.phases: list[dict] = []
        self.summary: dict = {"started": _now(), "budget_s": budget, "phases": self.phases}
        out.mkdir(parents=True, exist_ok=True)
        for name in ("tests.log", "tests.jsonl", "bench.log", "bench.jsonl", "driver.log", "build.log"):
            (out / name).write_text("")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0) - RESERVE_S

    def log(self, message: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {message}"
        print(line, flush=True)
        with (self.out / "driver.log").open("a") as f:
            f.write(line + "\n")

    def record(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        self.phases.append({"phase": name, "status": status, "seconds": round(seconds, 1), "detail": detail})
        self.log(f"{name}: {status} in {seconds:.1f}s{' (' + detail + ')' if detail else ''}; "
                 f"{max(0.0, self.left()):.0f}s left")
        self.write_summary()

    def write_summary(self) -> None:
        tmp = self.out / "gpu_summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, default=str) + "\n")
        tmp.replace(self.out / "gpu_summary.json")

    def run(self, name: str, cmd: list[str], log: str, cap: float, env: dict | None = None) -> tuple[str, float]:
        """Run ``cmd`` in its own process group, its output appended to ``log``, for at most ``cap`` seconds
        (and never past the budget); on time-out the whole group is killed. Returns (status, seconds)."""
        limit = min(cap, self.left())
        if limit < 5:
            return "skipped: no budget left", 0.0
        self.log(f"{name}: start (limit {limit:.0f}s): {' '.join(cmd)}")
        start = time.monotonic()
        with (self.out / log).open("a") as f:
            f.write(f"\n===== {name}: {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
            try:
                rc = proc.wait(timeout=limit)
                status = "ok" if rc == 0 else f"exit {rc}"
            except subprocess.TimeoutExpired:
                _kill(proc)
                status = f"timed out after {limit:.0f}s"
            f.write(f"===== {name}: {status}\n")
        return status, time.monotonic() - start


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _kill(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _sh(cmd: str) -> str:
    try:
        done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT)
        return (done.stdout + done.stderr).strip()
    except subprocess.SubprocessError as e:
        return f"{cmd}: {e}"


def _gpu_reason() -> str | None:
    """Why there is no GPU to check here, or None."""
    import torch
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False): GPU phase skipped (dry run)"
    return None


def _skipped_without_gpu(s: Session, name: str, log: str) -> bool:
    """Without a GPU: say so in the phase's log and the summary, and tell the caller to skip the phase."""
    reason = _gpu_reason()
    if reason:
        with (s.out / log).open("a") as f:
            f.write(f"===== {name}: {reason}\n")
        s.record(name, "skipped", 0.0, reason)
    return reason is not None


def _extension_info() -> str:
    """The extension's build info as the test processes will see it, or why it does not load."""
    return _sh(f"{sys.executable} -c 'from semask_kernels import _ext; print(_ext.build_info() or _ext.EXT_ERROR)'")


def phase_env(s: Session) -> None:
    start = time.monotonic()
    import torch
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    for dist in ("triton", "timm", "numpy", "transformers", "pytest", "pytest-xdist", "pytest-timeout"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA GPU)"
    sha = os.environ.get("GIT_SHA") or _sh("git rev-parse HEAD 2>/dev/null") or "unknown"
    os.environ["GIT_SHA"] = sha  # every phase's rows record this sha, not whatever the copied tree's git says
    s.summary.update({"device": device, "versions": versions, "git_sha": sha, "gpu": _gpu_reason() is None})
    s.summary.update(_sources())
    text = [f"date: {_now()}", f"git sha: {sha}", f"device: {device}",
            *(f"{k}: {v}" for k, v in versions.items()), "",
            _sh("nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv")
            if shutil.which("nvidia-smi") else "nvidia-smi: not found", "", _sh("nvcc --version | tail -2")]
    (s.out / "env.txt").write_text("\n".join(text) + "\n")
    s.record("env", "ok", time.monotonic() - start)


def _sources() -> dict:
    """``{"sources": {op: {backend: {"files": {path: sha256}, "sha256": ...}}}}`` of every fused backend, from
    the files this run tests (``python -m semask_kernels.evidence``): what ties the run's evidence to the code."""
    try:
        done = subprocess.run([sys.executable, "-m", "semask_kernels.evidence"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        if done.returncode == 0:
            return {"sources": json.loads(done.stdout)}
        return {"sources_error": (done.stderr or done.stdout).strip()[-2000:]}
    except (subprocess.SubprocessError, json.JSONDecodeError, OSError) as e:
        return {"sources_error": f"{type(e).__name__}: {e}"}


def start_build(s: Session):
    """The CUDA extension, built in place in the background (ninja, every core); None when not building."""
    if _gpu_reason():
        (s.out / "build.log").write_text("skipped: no CUDA GPU here (the CI build checks that the sources compile)\n")
        s.record("build", "skipped", 0.0, "no GPU")
        return None
    env = {**os.environ, "SEMASK_BUILD_CUDA": "1", "SEMASK_CUDA_ARCHS": os.environ.get("SEMASK_CUDA_ARCHS", "sm_90"),
           "MAX_JOBS": str(s.jobs)}
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "-v", "-e", "."]
    s.log(f"build: start in the background: {' '.join(cmd)}")
    f = (s.out / "build.log").open("a")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return proc, time.monotonic(), f


def wait_build(s: Session, build, cap: float) -> None:
    if build is None:
        return
    proc, start, f = build
    try:
        rc = proc.wait(timeout=max(1.0, min(cap, s.left())))
        status = "ok" if rc == 0 else f"exit {rc}: the CUDA backends stay unavailable (pure Python)"
    except subprocess.TimeoutExpired:
        _kill(proc)
        status = "timed out: the CUDA backends stay unavailable (pure Python)"
    f.close()
    if status != "ok":  # semask_models must still import for the later phases: a pure-Python editable install
        s.run("build-pure-python", [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                                    "--no-index", "-e", "."], "build.log", 60, env={"SEMASK_BUILD_CUDA": "0"})
    s.summary["extension"] = _extension_info()
    s.record("build", status, time.monotonic() - start)


def _pytest(s: Session, files: list[str], extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-m", "gpu"]
    if importlib.util.find_spec("xdist"):
        cmd += ["-n", str(min(8, s.jobs))]
    if importlib.util.find_spec("pytest_timeout"):
        cmd += ["--timeout", "120"]
    return cmd + (extra or []) + files


def phase_tests(s: Session, name: str, files: list[str], cap: float, extra: list[str] | None = None) -> None:
    if _skipped_without_gpu(s, name, "tests.log"):
        return
    xml = Path(f"/tmp/gpu-check-{name}.xml")
    xml.unlink(missing_ok=True)
    status, seconds = s.run(name, _pytest(s, files, (extra or []) + [f"--junitxml={xml}"]), "tests.log", cap,
                            env={"PYTHONUNBUFFERED": "1"})
    counts = _collect_junit(s, name, xml)
    s.summary.setdefault("tests", {})[name] = counts
    _tally(s)
    s.record(name, status, seconds, ", ".join(f"{v} {k}" for k, v in counts.items()))


def _collect_junit(s: Session, phase: str, xml: Path) -> dict:
    """Append one line per test case of ``xml`` to tests.jsonl; counts by outcome."""
    counts = {"passed": 0, "failed": 0, "errored": 0, "skipped": 0}
    if not xml.exists():
        return {**counts, "no_report": 1}
    with (s.out / "tests.jsonl").open("a") as f:
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag, name in (("failure", "failed"), ("error", "errored"), ("skipped", "skipped")):
                node = case.find(tag)
                if node is not None:
                    outcome, message = name, (node.get("message") or node.text or "").strip().splitlines()[:1]
                    message = message[0][:300] if message else ""
                    break
            counts[outcome] += 1
            path = case.get("classname", "").replace(".", "/")
            f.write(json.dumps({"phase": phase, "file": path + ".py", "test": case.get("name"),
                                "outcome": outcome, "seconds": float(case.get("time") or 0),
                                "message": message}) + "\n")
    return counts


def _tally(s: Session) -> None:
    """Per op and backend from tests.jsonl: {op: {backend: {passed, failed, errored, skipped}}}."""
    table: dict = {}
    for line in (s.out / "tests.jsonl").read_text().splitlines():
        row = json.loads(line)
        m, case = TEST_FILE.search(row["file"]), PARAM_ID.search(row["test"] or "")
        if m:
            op, backend = m["op"], m["backend"] + (f".{m['variant']}" if m["variant"] else "")
        elif row["file"].endswith(CONFORMANCE) and case:  # [op-backend-...] of the one suite over the specs
            op, backend = case["op"], case["backend"]
        else:
            op, backend = Path(row["file"]).stem.removeprefix("test_"), "-"
        cell = table.setdefault(op, {}).setdefault(backend, {"passed": 0, "failed": 0, "errored": 0, "skipped": 0})
        cell[row["outcome"]] += 1
    s.summary["tests_by_op"] = table


def phase_bench(s: Session, name: str, args: list[str], cap: float) -> None:
    if _skipped_without_gpu(s, name, "bench.log"):
        return
    cmd = [sys.executable, "-m", "benchmarks", *args, "--jsonl", str(s.out / "bench.jsonl")]
    status, seconds = s.run(name, cmd, "bench.log", cap,
                            env={"PYTHONUNBUFFERED": "1", "SEMASK_ALLOW_UNVERIFIED": "0"})
    s.record(name, status, seconds)
    _headline(s)


def _headline(s: Session) -> None:
    """Ratios patched / stock from bench.jsonl's compare-swin rows: {mode: {variant: speedup}}."""
    ratios: dict = {}
    path = s.out / "bench.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if row.get("bench") != "compare-swin" or row["variant"].startswith("stock"):
            continue
        compiled = row["variant"].endswith("+compile")
        key = "speedup_vs_stock_compiled" if compiled else "speedup_vs_stock"
        ratios.setdefault(f"{row['mode']} {row['dtype']} batch {row['batch']}", {})[
            f"{row['variant']} ({row['backend']})"] = row[key]
    s.summary["headline"] = ratios


def attention_test_files(backend: str) -> list[str]:
    """The test files of the attention ops for ``backend``, every variant's own file included
    (``tests/ops/test_<op>_<backend>[_<variant>].py``), as they are in the tree."""
    found = []
    for op in ATTENTION_OPS:
        found += sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "ops").glob(f"test_{op}_{backend}*.py")
                        if TEST_FILE.search(p.relative_to(ROOT).as_posix())
                        and TEST_FILE.search(p.relative_to(ROOT).as_posix())["op"] == op)
    return found


def _built(s: Session) -> bool:
    return "'ops'" in s.summary.get("extension", "")  # build_info() printed: the extension loads


def _fused(s: Session) -> list[str]:
    """The fused backends the headline and the profile patch with: triton, cuda where built, then auto."""
    return ["triton"] + (["cuda"] if _built(s) else []) + ["auto"]


SWIN_T = ["--variants", "T", "--img-size", "224", "--batch", "128", "--dtype", "bf16"]


class Phase(NamedTuple):
    """One step of the session: its name (what ``--skip`` takes), what runs it, whether it needs the extension's
    build to have finished (the phases before the first such one overlap the build)."""
    name: str
    run: Callable[[Session], None]
    needs_build: bool = False


def phases() -> list[Phase]:
    """Every phase after the environment and the build's start, in order of value. Adding a phase: one entry."""
    return [
        Phase("tests-triton", lambda s: phase_tests(s, "tests-triton", attention_test_files("triton"), cap=150)),
        Phase("tests-cuda", lambda s: phase_tests(s, "tests-cuda", attention_test_files("cuda"), cap=90),
              needs_build=True),
        Phase("kernels", lambda s: phase_bench(s, "kernels", [
            "kernels", "--models", "swin_t_224", "--dtypes", "bf16", "--rounds", "10", "--samples", "5"], cap=150),
              needs_build=True),
        Phase("headline", lambda s: phase_bench(s, "headline", [
            "compare-swin", *SWIN_T, "--modes", "inference", "train", "--backends", *_fused(s), "--no-ours",
            "--no-compile", "--warmup", "3", "--repeats", "10"], cap=90), needs_build=True),
        Phase("profile", lambda s: phase_bench(s, "profile", [
            "profile", "--backends", *_fused(s), "--dtype", "bf16", "--batch", "128", "--img-size", "224"], cap=90),
              needs_build=True),
        Phase("compile", lambda s: phase_bench(s, "compile", [
            "compare-swin", *SWIN_T, "--modes", "inference", "--backends", *_fused(s)[:-1], "--no-ours",
            "--no-stock-sdpa", "--compile-only", "--warmup", "2", "--repeats", "10"], cap=130), needs_build=True),
        Phase("tests-rest", lambda s: phase_tests(s, "tests-rest", ["tests"], cap=s.left(), extra=[
            f"--ignore={f}" for b in ("triton", "cuda") for f in attention_test_files(b)]), needs_build=True),
    ]


PHASES = ("build", *(p.name for p in phases()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET", 540)),
                        help="seconds for the whole session (default 540, or $GPU_CHECK_BUDGET)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "benchmarks/results/gpu-check")))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip", nargs="+", default=[], choices=PHASES,
                        help="phases to leave out (build: use the extension already built in place)")
    args = parser.parse_args(argv)
    s = Session(args.out.resolve(), args.budget, args.jobs)
    s.log(f"gpu-check all: budget {args.budget:.0f}s, output in {s.out}")
    skip = set(args.skip)

    def wanted(name: str) -> bool:
        if name in skip:
            s.record(name, "skipped", 0.0, "--skip")
        return name not in skip

    phase_env(s)
    build = start_build(s) if wanted("build") else None
    waited = False
    for phase in phases():
        if phase.needs_build and not waited:
            wait_build(s, build, cap=150)
            waited = True
            if "extension" not in s.summary:
                s.summary["extension"] = _extension_info()
        if wanted(phase.name):
            phase.run(s)
    if not waited:
        wait_build(s, build, cap=150)
    s.summary["finished"] = _now()
    s.record("summary", "ok", 0.0)
    failed = sum(c.get("failed", 0) + c.get("errored", 0) for c in s.summary.get("tests", {}).values())
    s.log(f"done: {failed} failed or errored tests; files in {s.out}")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())

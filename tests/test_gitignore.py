"""Benchmark outputs and training work dirs are ignored; the committed GPU evidence is not (issue 16)."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                                reason="needs git and a git checkout")


def _ignored(path: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, timeout=60)
    return done.returncode == 0


@pytest.mark.parametrize("path", ["work_dirs/run/log.jsonl", "benchmarks/results/compare_swin.jsonl",
                                  "benchmarks/results/ops.md", "benchmarks/results/compare_swin_cpu.png"])
def test_outputs_are_ignored(path):
    assert _ignored(path)


@pytest.mark.parametrize("path", ["benchmarks/results/gpu/2026-01-01-h200-abc/gpu_summary.json",
                                  "benchmarks/results/gpu/2026-01-01-h200-abc/tests.log",
                                  "benchmarks/results/gpu/2026-01-01-h200-abc/bench.jsonl"])
def test_gpu_evidence_is_not_ignored(path):
    assert not _ignored(path)

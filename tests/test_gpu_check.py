"""``.ci/gpu-check all`` on a machine without a GPU: a dry run that skips every GPU phase cleanly and still writes
its 8 files; its test bookkeeping (junit xml -> tests.jsonl -> per op and backend) counts what pytest reported."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
FILES = {"env.txt", "build.log", "tests.log", "tests.jsonl", "bench.log", "bench.jsonl", "driver.log",
         "gpu_summary.json"}


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check_all", ROOT / ".ci" / "gpu_check_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is what a machine without a GPU does")
def test_dry_run_skips_every_gpu_phase_and_writes_the_files(tmp_path):
    done = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check"), "all", "--budget", "60"], cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OUT": str(tmp_path),
                               "GIT_SHA": "0123abc"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.name for p in tmp_path.iterdir()} == FILES  # the device tool brings back 8 files at most
    summary = json.loads((tmp_path / "gpu_summary.json").read_text())
    assert summary["git_sha"] == "0123abc" and summary["gpu"] is False and summary["finished"]
    phases = {p["phase"]: p["status"] for p in summary["phases"]}
    assert list(phases) == ["env", "build", "tests-triton", "tests-cuda", "kernels", "headline", "profile",
                            "compile", "tests-rest", "summary"]
    # the sources of every fused backend this run would test, hashed: the evidence is tied to the code
    from semask_kernels import evidence
    assert summary["sources"] == evidence.current()
    assert all(status == "skipped" for name, status in phases.items() if name not in ("env", "summary"))
    assert "torch: " in (tmp_path / "env.txt").read_text()
    assert "no CUDA GPU" in (tmp_path / "tests.log").read_text()


def test_unknown_stage_is_refused():
    done = subprocess.run(["bash", str(ROOT / ".ci" / "gpu-check"), "everything"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "unknown stage 'everything'" in done.stderr


def test_junit_results_are_counted_per_op_and_backend(tmp_path):
    driver = _driver()
    session = driver.Session(tmp_path, budget=60, jobs=1)
    xml = tmp_path / "report.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite>
      <testcase classname="tests.ops.test_semantic_attention_triton" name="test_a[x]" time="1.5"/>
      <testcase classname="tests.ops.test_semantic_attention_triton" name="test_b">
        <failure message="OutOfResources: shared memory">trace</failure></testcase>
      <testcase classname="tests.ops.test_shifted_window_attention_cuda" name="test_c"><error message="boom"/>
      </testcase>
      <testcase classname="tests.ops.test_shifted_window_attention_cuda" name="test_d"><skipped message="no"/>
      </testcase>
      <testcase classname="tests.nn.test_patch_timm" name="test_e" time="0.1"/>
      <testcase classname="tests.ops.test_conformance"
                name="test_matches_the_reference[shifted_window_attention-cuda-padded-shifted-bfloat16]"/>
      <testcase classname="tests.ops.test_conformance" name="test_opcheck[ms_deform_attn-triton]">
        <failure message="mismatch">trace</failure></testcase>
      <testcase classname="tests.ops.test_conformance" name="test_every_op_has_cases_for_every_backend"/>
    </testsuite></testsuites>""")
    counts = driver._collect_junit(session, "tests-rest", xml)
    assert counts == {"passed": 4, "failed": 2, "errored": 1, "skipped": 1}
    driver._tally(session)
    table = session.summary["tests_by_op"]
    assert table["semantic_attention"]["triton"] == {"passed": 1, "failed": 1, "errored": 0, "skipped": 0}
    # with the conformance suite's test of that op and backend (its id says which)
    assert table["shifted_window_attention"]["cuda"] == {"passed": 1, "failed": 0, "errored": 1, "skipped": 1}
    assert table["patch_timm"]["-"]["passed"] == 1
    assert table["ms_deform_attn"]["triton"] == {"passed": 0, "failed": 1, "errored": 0, "skipped": 0}
    assert table["conformance"]["-"]["passed"] == 1
    rows = [json.loads(line) for line in (tmp_path / "tests.jsonl").read_text().splitlines()]
    failed = next(r for r in rows if r["outcome"] == "failed")
    assert failed["message"] == "OutOfResources: shared memory" and failed["phase"] == "tests-rest"
    assert driver._collect_junit(session, "tests-cuda", tmp_path / "missing.xml")["no_report"] == 1


def test_a_phase_past_its_limit_is_killed_and_the_budget_holds(tmp_path):
    driver = _driver()
    session = driver.Session(tmp_path, budget=30, jobs=1)
    status, seconds = session.run("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], "bench.log",
                                  cap=6)
    assert status.startswith("timed out") and seconds < 20
    session.t0 -= 60  # the budget is spent: nothing more starts
    assert session.run("late", [sys.executable, "-c", "pass"], "bench.log", cap=10)[0].startswith("skipped")


def test_variants_count_for_their_own_backend_name(tmp_path):
    """A variant's test file (test_<op>_<backend>_<variant>.py) and its conformance ids ([op-<backend>.<variant>-
    ...]) count for "<backend>.<variant>", so the evidence of a variant is its own."""
    driver = _driver()
    session = driver.Session(tmp_path, budget=60, jobs=1)
    xml = tmp_path / "report.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite>
      <testcase classname="tests.ops.test_shifted_window_attention_triton_onepass" name="test_a"/>
      <testcase classname="tests.ops.test_shifted_window_attention_triton" name="test_b"/>
      <testcase classname="tests.ops.test_conformance"
                name="test_matches_the_reference[shifted_window_attention-triton.allheads-padded-bfloat16]"/>
    </testsuite></testsuites>""")
    driver._collect_junit(session, "tests-triton", xml)
    driver._tally(session)
    table = session.summary["tests_by_op"]["shifted_window_attention"]
    assert set(table) == {"triton", "triton.onepass", "triton.allheads"}
    assert all(cell["passed"] == 1 for cell in table.values())


def test_phases_are_one_list_in_order_of_value_and_find_variant_test_files(tmp_path, monkeypatch):
    driver = _driver()
    names = [p.name for p in driver.phases()]
    assert len(set(names)) == len(names) and driver.PHASES == ("build", *names)
    assert names.index("tests-triton") < names.index("kernels") < names.index("headline") < names.index("profile")
    assert not driver.phases()[0].needs_build  # the Triton tests overlap the build
    ops = tmp_path / "tests" / "ops"
    ops.mkdir(parents=True)
    for name in ("test_shifted_window_attention_triton.py", "test_shifted_window_attention_triton_onepass.py",
                 "test_shifted_window_attention_cuda.py", "test_shifted_window_attention.py",
                 "test_window_attention_triton.py", "test_semantic_attention_triton.py"):
        (ops / name).write_text("")
    monkeypatch.setattr(driver, "ROOT", tmp_path)
    assert driver.attention_test_files("triton") == [
        "tests/ops/test_shifted_window_attention_triton.py", "tests/ops/test_shifted_window_attention_triton_onepass.py",
        "tests/ops/test_window_attention_triton.py"]
    assert driver.attention_test_files("cuda") == ["tests/ops/test_shifted_window_attention_cuda.py"]

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
    assert list(phases) == ["env", "build", "tests-triton", "tests-cuda", "headline", "tests-decoders",
                            "deform-table", "models", "kernels", "compile",
                            "tests-rest", "summary"]
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


def test_the_benchmark_presets_parse():
    """The GPU phases' command lines are valid benchmark commands (a typo would only show on a lent GPU)."""
    from benchmarks.__main__ import build_parser
    driver = _driver()
    parser = build_parser()
    models = parser.parse_args(driver.MODELS_PRESET)
    assert models.models == ["semask_swin_t_fpn", "semask_swin_l_mask2former"] and models.modes == ["train",
                                                                                                     "inference"]
    assert models.dtypes == ["bf16"] and models.adaptive
    table = parser.parse_args(driver.DEFORM_TABLE)
    assert table.ops == ["ms_deform_attn"] and table.dtypes == ["bf16", "fp32"]
    assert "tests/ops/test_conformance.py" in driver.DECODER_TESTS
    assert all((ROOT / f).is_file() for f in driver.DECODER_TESTS)


def test_the_summary_states_inconclusive_ratios_as_such(tmp_path):
    driver = _driver()
    session = driver.Session(tmp_path, budget=60, jobs=1)
    rows = [{"bench": "compare-swin", "variant": "patched[torch]", "backend": "torch", "mode": "train",
             "dtype": "bf16", "batch": 128, "speedup_vs_stock": 3.62, "speedup_vs_stock_p10": 0.46,
             "speedup_vs_stock_p90": 2.31, "speedup_conclusive": False},
            {"bench": "compare-swin", "variant": "patched[triton]", "backend": "triton", "mode": "train",
             "dtype": "bf16", "batch": 128, "speedup_vs_stock": 1.4, "speedup_vs_stock_p10": 1.35,
             "speedup_vs_stock_p90": 1.45, "speedup_conclusive": True},
            {"bench": "compare-models", "backend": "auto", "model": "semask_swin_t_fpn", "mode": "train",
             "dtype": "bf16", "batch": 8, "crop": "512x512", "speedup_vs_torch": 1.6, "speedup_vs_torch_p10": 1.5,
             "speedup_vs_torch_p90": 1.7, "speedup_conclusive": True, "mem_ratio_vs_torch": 0.7}]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    driver._headline(session)
    train = session.summary["headline"]["train bf16 batch 128"]
    assert train == {"patched[torch] (torch)": "inconclusive (0.46-2.31)", "patched[triton] (triton)": 1.4}
    assert session.summary["models"] == {"semask_swin_t_fpn train bf16 batch 8 512x512": {
        "speedup_vs_torch": 1.6, "mem_ratio_vs_torch": 0.7}}

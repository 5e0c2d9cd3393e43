"""compare-swin --library hf: stock and patched transformers Swin in one run, in their own results file."""
import json

import pytest

from benchmarks import __main__ as cli
from benchmarks import harness

pytest.importorskip("transformers")


def test_compare_swin_hf_runs_both_models_in_one_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    cli.main(["compare-swin", "--library", "hf", "--quick", "--modes", "inference", "--warmup", "0",
              "--repeats", "1", "--img-size", "224"])
    out = capsys.readouterr().out
    assert "Hugging Face transformers" in out and "failed" not in out
    rows = [json.loads(line) for line in (tmp_path / "compare_swin_hf.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["backend"]) for r in rows] == [("stock", "transformers"), ("patched", "torch")]
    assert all(r["model"] == "hf-swin_tiny_patch4_window7" and r["transformers"] for r in rows)
    assert rows[0]["speedup_vs_stock"] == 1.0 and rows[1]["speedup_vs_stock"] > 0
    assert not (tmp_path / "compare_swin.jsonl").exists()  # timm's results and report stay untouched

"""benchmarks report on a corrupt results file names the file and the line (issue 15, item 10)."""
import json

import pytest

from benchmarks import __main__ as cli
from benchmarks.report import latest_runs

ROW = {"device": "CPU (x86_64)", "device_type": "cpu", "torch": "2.14.1", "triton": "3.8.0", "cuda": None,
       "git_sha": "abc", "date": "2025-01-01T00:00:00+00:00", "model": "swin_t_fpn", "img_size": 512,
       "params": 1, "gmacs": 1.0, "gflops": 2.0}


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_half_a_line_is_named_with_file_and_line(tmp_path):
    path = tmp_path / "flops.jsonl"
    _write(path, [json.dumps(ROW), "", json.dumps(ROW)[:40]])  # a run killed while writing its last row
    with pytest.raises(ValueError, match=r"flops.jsonl:3: not valid JSON"):
        latest_runs(path)
    with pytest.raises(SystemExit, match=r"error: .*flops.jsonl:3: not valid JSON"):
        cli.main(["report", "--results", str(tmp_path)])


def test_rows_without_their_fields_are_named(tmp_path):
    path = tmp_path / "flops.jsonl"
    _write(path, [json.dumps(ROW), json.dumps({k: v for k, v in ROW.items() if k != "date"})])
    with pytest.raises(ValueError, match=r"flops.jsonl:2: the row has no date"):
        latest_runs(path)
    _write(path, [json.dumps([1, 2])])
    with pytest.raises(ValueError, match=r"flops.jsonl:1: expected a JSON object"):
        latest_runs(path)
    _write(path, [json.dumps({k: v for k, v in ROW.items() if k != "model"})])
    with pytest.raises(SystemExit, match=r"flops.jsonl:1: the row has no model"):
        cli.main(["report", "--results", str(tmp_path)])


def test_a_good_file_still_reports(tmp_path, capsys):
    _write(tmp_path / "flops.jsonl", [json.dumps(ROW)])
    cli.main(["report", "--results", str(tmp_path)])
    assert "| swin_t_fpn |" in (tmp_path / "flops.md").read_text()

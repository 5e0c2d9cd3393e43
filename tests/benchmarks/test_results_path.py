"""A results path that cannot be written (benchmarks/results is a file, the jsonl is a folder) stops a benchmark
before it measures anything, with one line naming the path, instead of failing after the run."""
import pytest

from benchmarks import __main__ as cli
from benchmarks import compare_swin, harness, ops


@pytest.mark.parametrize("command", [["compare-swin", "--quick", "--modes", "inference"],
                                     ["ops", "--ops", "window_attention"], ["flops"]])
def test_a_results_path_that_is_a_file_stops_the_run_first(tmp_path, monkeypatch, command):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    monkeypatch.setattr(harness, "RESULTS", blocker)
    measured = []
    monkeypatch.setattr(compare_swin, "time_contenders", lambda *a, **k: measured.append(1))
    monkeypatch.setattr(ops, "time_fn", lambda *a, **k: measured.append(1))
    with pytest.raises(SystemExit, match=r"results is a file, not a folder"):
        cli.main(command)
    assert not measured


def test_a_jsonl_that_is_a_folder_is_named(tmp_path):
    with pytest.raises(SystemExit, match="is not a writable file"):
        harness.check_output("x.jsonl", tmp_path)
    assert harness.check_output("x.jsonl", tmp_path / "new" / "x.jsonl") == tmp_path / "new" / "x.jsonl"

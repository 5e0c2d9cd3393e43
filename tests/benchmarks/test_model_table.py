"""The README's model tables are generated from the committed results (never typed by hand): the block between
the markers is what ``model-table`` renders, a committed GPU run wins over the CPU file, and CPU rows say CPU."""
import json
import shutil

import pytest

from benchmarks import harness, model_table


def test_the_readme_block_is_the_generated_one():
    text = (model_table.ROOT / "README.md").read_text()
    block = text.split(model_table.START, 1)[1].split(model_table.END, 1)[0].strip()
    assert block == model_table.render().strip(), "run: python -m benchmarks model-table --readme"
    assert "CPU run: CPU numbers, not GPU numbers" in block  # no GPU run has compare-models rows yet
    assert "| semask_swin_t_fpn | train |" in block and "| semask_swin_t_mask2former | train |" in block
    assert "Hungarian matcher" in block


def _row(**kw):
    base = {"device": "NVIDIA H100", "device_type": "cuda", "torch": "2", "triton": "3", "cuda": "13",
            "git_sha": "abc", "date": "2026-12-01T00:00:00+00:00", "bench": "compare-models",
            "model": "semask_swin_t_fpn", "mode": "train", "dtype": "bf16", "batch": 8, "crop": "512x512",
            "backend": "auto", "median_ms": 100.0, "p10_ms": 99.0, "p90_ms": 101.0, "img_per_s": 80.0,
            "peak_mem_mb": 9000.0, "gflops": 1000.0, "speedup_vs_torch": 1.6, "speedup_vs_torch_p10": 1.55,
            "speedup_vs_torch_p90": 1.65, "speedup_conclusive": True, "mem_ratio_vs_torch": 0.7, "reduced": None}
    return {**base, **kw}


def test_a_committed_gpu_run_wins_over_the_cpu_file(tmp_path):
    shutil.copy(harness.RESULTS / "compare_models_cpu.jsonl", tmp_path / "compare_models_cpu.jsonl")
    assert "CPU run" in model_table.render(tmp_path).split("\n\n")[0]
    run = tmp_path / "gpu" / "2026-12-01-h100-abc"
    run.mkdir(parents=True)
    rows = [_row(backend="torch", speedup_vs_torch=1.0, speedup_vs_torch_p10=1.0, speedup_vs_torch_p90=1.0,
                 mem_ratio_vs_torch=1.0), _row(),
            _row(date="2025-01-01T00:00:00+00:00", model="old_run"),  # an older run: not shown
            {"bench": "compare-swin", "device": "x", "date": "2026-12-02"}]  # another suite: not shown
    (run / "bench.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    block = model_table.render(tmp_path)
    assert block.startswith("GPU run. Device NVIDIA H100") and "old_run" not in block
    assert "| 1.60x (1.55–1.65) | 0.70 |" in block and "| 1 (baseline) |" in block
    assert "No model-breakdown results committed yet" in block


def test_an_inconclusive_speedup_is_not_tabulated_as_one():
    table = model_table.models_table([_row(speedup_conclusive=False, speedup_vs_torch_p10=0.5,
                                           speedup_vs_torch_p90=3.0)], "x")
    assert "inconclusive (0.50–3.00)" in table and "1.60x" not in table


def test_markers_are_required(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no model-table markers"):
        model_table.update_readme(readme, "x")
    readme.write_text(f"a\n{model_table.START}\nold\n{model_table.END}\nb\n")
    assert model_table.update_readme(readme, "new") and not model_table.update_readme(readme, "new")
    assert readme.read_text() == f"a\n{model_table.START}\nnew\n{model_table.END}\nb\n"

"""``compare-models`` runs end to end on the CPU: an FPN and a Mask2Former model, a training step and inference,
fused (auto) against plain (torch), with every row field; the recipes and the synthetic labels are right."""
import json

import pytest
import torch

from benchmarks import __main__ as cli
from benchmarks import compare_models

FIELDS = {"model", "mode", "dtype", "batch", "crop", "backend", "median_ms", "p10_ms", "p90_ms", "img_per_s",
          "peak_mem_mb", "gflops", "speedup_vs_torch", "mem_ratio_vs_torch", "device", "torch", "triton",
          "git_sha", "date", "reduced", "speedup_conclusive", "rounds", "stopped", "max_batch", "max_batch_note"}


def test_quick_rows_for_fpn_and_mask2former(tmp_path, capsys):
    out_file = tmp_path / "models.jsonl"
    cli.main(["compare-models", "--quick", "--models", "semask_swin_t_fpn", "semask_swin_t_mask2former",
              "--crop", "32", "32", "--warmup", "0", "--repeats", "1", "--max-rounds", "1", "--max-warmup", "0",
              "--mem-limit-gb", "1", "--jsonl", str(out_file)])
    out = capsys.readouterr().out
    assert "CPU numbers, not GPU numbers" in out and "failed" not in out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert {(r["model"], r["mode"], r["backend"]) for r in rows} == {
        (m, mode, b) for m in ("semask_swin_t_fpn", "semask_swin_t_mask2former")
        for mode in ("train", "inference") for b in ("torch", "auto")}
    for r in rows:
        assert FIELDS <= set(r), FIELDS - set(r)
        assert r["device_type"] == "cpu" and r["dtype"] == "fp32" and r["batch"] == 2 and r["crop"] == "32x32"
        assert r["median_ms"] > 0 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["peak_mem_mb"] is None and r["mem_ratio_vs_torch"] is None  # not measured on a CPU, said so
        assert r["peak_mem_note"] == "not measured on a CPU"
        assert "crop 32x32 (recipe 640x640)" in r["reduced"] or "crop 32x32 (recipe 512x512)" in r["reduced"]
        assert ("batch 2 (recipe 8 per GPU)" in r["reduced"]) == r["model"].endswith("fpn")  # M2F: 2 per GPU
        assert ("num_points 1024" in r["reduced"]) == ("former" in r["model"])
        # one round: never a stated speedup, except the baseline against itself
        assert r["speedup_conclusive"] == (r["backend"] == "torch")
        if r["mode"] == "train":
            assert r["max_batch"] is None and "skipped on a CPU" in r["max_batch_note"]
    by = {(r["model"], r["mode"], r["backend"]): r for r in rows}
    for m in ("semask_swin_t_fpn", "semask_swin_t_mask2former"):
        train, infer = by[(m, "train", "torch")], by[(m, "inference", "torch")]
        assert train["gflops"] > 2 * infer["gflops"] > 0  # backward ~ 2x the forward
        assert by[(m, "train", "auto")]["gflops"] == pytest.approx(train["gflops"], rel=1e-6)  # same computations
    assert by[("semask_swin_t_mask2former", "inference", "torch")]["gflops"] > \
        by[("semask_swin_t_fpn", "inference", "torch")]["gflops"]
    assert "inconclusive" in out
    # the table and the plot (error bars; hatched where inconclusive) beside the results
    assert "| semask_swin_t_mask2former |" in (tmp_path / "compare_models.md").read_text()
    assert len(list(tmp_path.glob("compare_models_*.png"))) == 1


def test_recipes():
    assert compare_models.recipe("semask_swin_t_fpn", "ade20k") == compare_models.Recipe((512, 512), 8, 150)
    assert compare_models.recipe("semask_swin_l_fpn", "ade20k") == compare_models.Recipe((640, 640), 4, 150)
    assert compare_models.recipe("semask_swin_l_mask2former", "ade20k").crop == (640, 640)
    assert compare_models.recipe("semask_swin_t_mask2former", "ade20k").batch == 2
    assert compare_models.recipe("semask_swin_l_mask2former", "cityscapes") == \
        compare_models.Recipe((512, 1024), 2, 19)


def test_synthetic_labels_have_a_scene_worth_of_segments():
    img, target = compare_models.synthetic_batch(3, (40, 72), 150, "cpu")
    assert img.shape == (3, 3, 40, 72) and target.shape == (3, 40, 72) and target.dtype == torch.int64
    for t in target:
        classes = set(t.unique().tolist()) - {255}
        assert 3 <= len(classes) <= 12 and max(classes) < 150
    again = compare_models.synthetic_batch(3, (40, 72), 150, "cpu")[1]
    assert torch.equal(target, again)  # deterministic


def test_unknown_model_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["compare-models", "--models", "semask_swin_x_fpn"])
    assert "unknown model 'semask_swin_x_fpn'" in capsys.readouterr().err


@pytest.mark.parametrize("limit,start,cap", [(37, 8, 256), (1, 8, 256), (0, 8, 256), (300, 8, 256), (8, 8, 256),
                                             (5, 1, 6), (6, 1, 6), (100, 3, 100)])
def test_largest_fitting_batch_search(limit, start, cap):
    tried = []

    def fits(n):
        tried.append(n)
        return n <= limit
    assert compare_models.largest_fitting(fits, start, cap) == min(limit, cap)
    assert len(tried) <= 20 and all(1 <= n <= cap for n in tried)

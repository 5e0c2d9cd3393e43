"""``model-breakdown`` attributes a training step's time to its parts (module hooks, function wrappers) and
leaves the model and the wrapped functions as they were."""
import json

import pytest
import torch

from benchmarks import __main__ as cli
from benchmarks import model_breakdown


def test_clock_counts_the_outermost_call_of_a_part(monkeypatch):
    now = iter([0.0, 1.0, 2.0, 5.0, 6.0, 10.0])
    monkeypatch.setattr(model_breakdown.time, "perf_counter", lambda: next(now))
    clock = model_breakdown.Clock(torch.device("cpu"))
    with clock.part("a"):        # 0
        with clock.part("a"):    # nested: not timed again
            with clock.part("b"):  # 1 .. 2
                pass
    # a ends at 5
    with clock.part("a"):        # 6 .. 10
        pass
    assert clock.seconds == {"a": 9.0, "b": 1.0}


def test_mask2former_step_parts(tmp_path, capsys):
    from semask_models.heads.mask_classification import point_sampling
    before = point_sampling.point_sample
    out = tmp_path / "parts.jsonl"
    cli.main(["model-breakdown", "--models", "semask_swin_t_mask2former", "--steps", "1", "--warmup", "0",
              "--jsonl", str(out)])
    rows = {r["part"]: r for r in map(json.loads, out.read_text().splitlines())}
    for part in ("step", "forward (with every loss)", "backward + optimizer step", "backbone (Swin + semantic layers)",
                 "pixel decoder (ms_deform_attn encoder)", "transformer decoder (masked attention)",
                 "criterion (matching + mask/class losses)", "Hungarian matcher (costs + assignment)",
                 "point sampling (point_sample, uncertain points)", "linear_sum_assignment (scipy, on the CPU)"):
        assert part in rows and rows[part]["median_ms"] > 0, part
    step = rows["step"]["median_ms"]
    assert rows["step"]["share_of_step"] == 1.0
    assert rows["forward (with every loss)"]["median_ms"] + rows["backward + optimizer step"]["median_ms"] == \
        pytest.approx(step)
    assert rows["Hungarian matcher (costs + assignment)"]["median_ms"] <= \
        rows["criterion (matching + mask/class losses)"]["median_ms"]
    assert all(r["device_type"] == "cpu" and "num_points 1024" in r["reduced"] for r in rows.values())
    assert point_sampling.point_sample is before  # unwrapped again
    assert "CPU numbers" in capsys.readouterr().out

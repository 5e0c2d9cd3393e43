"""The main job runs end to end on the CPU and reports both models in the same run."""
import json

from benchmarks import __main__ as cli
from benchmarks import harness


def test_compare_swin_quick_runs_and_saves(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    cli.main(["compare-swin", "--quick", "--modes", "inference", "train", "--warmup", "0", "--repeats", "1",
              "--img-size", "64"])
    captured = capsys.readouterr()
    out = captured.out
    assert "CPU run" in out and "patched" in out and "stock" in out
    # clean output: no failed contender (inference first must not break training), no checkpoint-loader report,
    # and where the results, the table and the plot went
    assert "failed" not in out and "missing keys" not in out + captured.err
    assert "unexpected keys" not in out + captured.err
    assert f"results appended to {tmp_path / 'compare_swin.jsonl'}" in out
    assert f"wrote {tmp_path / 'compare_swin.md'}" in out and (tmp_path / "compare_swin.md").is_file()
    assert len(list(tmp_path.glob("compare_swin_*.png"))) == 1
    rows = [json.loads(line) for line in (tmp_path / "compare_swin.jsonl").read_text().splitlines()]
    assert {(r["variant"], r["mode"]) for r in rows} == {(v, m) for v in ("stock", "stock+sdpa", "patched", "ours")
                                                        for m in ("inference", "train")}
    for r in rows:
        assert r["median_ms"] > 0 and r["device_type"] == "cpu" and r["git_sha"] and r["torch"]
        # no fused kernel runs on a CPU: auto picks the plain-PyTorch path
        assert r["backend"] == {"stock": "timm", "stock+sdpa": "timm-sdpa"}.get(r["variant"], "torch")
        assert r["batch"] == 1  # the CPU preset
    stock = [r for r in rows if r["variant"] == "stock"]
    assert all(r["speedup_vs_stock"] == 1.0 for r in stock)
    # on the CPU the contenders are timed round-robin, with the spread of the per-round speedups
    for r in rows:
        assert r["interleaved"] and r["speedup_vs_stock_p10"] <= r["speedup_vs_stock"] <= r["speedup_vs_stock_p90"]


def test_the_stock_baselines_are_timm_as_timm_builds_it_and_its_sdpa_path():
    """Stock is built with timm's defaults (strict image size: the shift masks are buffers, not rebuilt each
    forward); the second baseline is the same model with timm's fused_attn (SDPA) on, which computes the same."""
    import timm
    import torch
    from benchmarks.compare_swin import stock_sdpa

    stock = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64).eval()
    blocks = [m for m in stock.modules() if hasattr(m, "dynamic_mask")]
    assert blocks and not any(b.dynamic_mask for b in blocks)
    sdpa = stock_sdpa(stock)
    attns = [m for m in sdpa.modules() if hasattr(m, "fused_attn") and hasattr(m, "relative_position_bias_table")]
    assert len(attns) == 12 and all(a.fused_attn for a in attns)
    assert not any(m.fused_attn for m in stock.modules() if hasattr(m, "fused_attn"))  # stock left as it was
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x), stock(x), rtol=1e-4, atol=1e-4)
    import pytest
    with pytest.raises(RuntimeError, match="no timm WindowAttention"):
        stock_sdpa(torch.nn.Linear(2, 2))

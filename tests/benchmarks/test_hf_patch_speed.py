"""patch_hf_swin keeps stock transformers' speed on the CPU: Swin-T at batch 2, inference, interleaved rounds (one
call of each model per round, order alternating), the median of the per-round ratios. The floor here is generous
(a shared 2-core machine is noisy); the strict 0.97x check is the benchmark row:
``python -m benchmarks compare-swin --library hf --batch 2 --repeats 9 --min-speedup 0.97`` (CPU numbers)."""
import copy

import pytest
import torch

from benchmarks import harness, hf_swin

pytest.importorskip("transformers")

FLOOR = 0.85


def test_patched_hf_swin_t_is_not_slower_than_stock_on_the_cpu():
    torch.manual_seed(0)
    stock = hf_swin.create("T", 224).eval()
    patched = hf_swin.patch(copy.deepcopy(stock), "auto")
    x = torch.randn(2, 3, 224, 224)

    def infer(model):
        def run():
            with torch.inference_mode():
                return model(x).logits
        return run

    with torch.inference_mode():
        torch.testing.assert_close(patched(x).logits, stock(x).logits, rtol=1e-4, atol=1e-4)
    contest = harness.time_contenders({"stock": infer(stock), "patched": infer(patched)}, torch.device("cpu"),
                                      warmup=1, repeats=7, interleave=True)
    assert not contest.failures
    median, p10, p90 = contest.speedup("patched", "stock")
    assert median >= FLOOR, f"patched/stock speed {median:.3f}x (p10 {p10:.3f}, p90 {p90:.3f}) under {FLOOR}x (CPU)"

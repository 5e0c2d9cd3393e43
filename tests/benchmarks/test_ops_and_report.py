"""The ops suite runs on the CPU (tiny shapes) with every applicable baseline, and report turns stored results
into markdown tables and plots."""
import json

from benchmarks import __main__ as cli
from benchmarks import harness
from tests.ops.cuda_marks import gpu_test


def test_ops_quick_then_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    cli.main(["ops", "--quick", "--warmup", "0", "--repeats", "1", "--modes", "forward"])
    rows = [json.loads(line) for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    impls = {(r["op"], r["impl"]) for r in rows}
    for expected in [("shifted_window_attention", "timm_eager"), ("shifted_window_attention", "sdpa"),
                     ("shifted_window_attention", "flex"), ("shifted_window_attention", "op:reference"),
                     ("upsample_cross_entropy", "interpolate+cross_entropy"),
                     ("upsample_cross_entropy", "op:reference"), ("semantic_attention", "op:reference"),
                     ("prior_map_decode", "op:reference")]:
        assert expected in impls, expected
    assert all(r["median_ms"] > 0 and r["tflops"] >= 0 and r["dtype"] == "fp32" for r in rows)
    assert "CPU numbers, not GPU numbers" in capsys.readouterr().out
    cli.main(["compare-swin", "--quick", "--modes", "inference", "--warmup", "0", "--repeats", "1",
              "--img-size", "64", "--batch", "1", "2"])
    cli.main(["flops", "--models", "swin_t_fpn", "--img-size", "128"])
    cli.main(["report"])
    ops_md = (tmp_path / "ops.md").read_text()
    assert "| shifted_window_attention |" in ops_md and "CPU run" in ops_md
    assert "| swin_tiny_patch4_window7_224 |" in (tmp_path / "compare_swin.md").read_text()
    assert "| swin_t_fpn |" in (tmp_path / "flops.md").read_text()
    assert len(list(tmp_path.glob("*.png"))) == 2


@gpu_test
def test_cuda_core_candidate_matches_the_cuda_backend():
    """bf16 runs time the CUDA-core kernels (forced) beside the tensor-core ones: same results, forward and
    backward."""
    import torch

    from benchmarks.ops import attention_cases
    from tests.utils import assert_close
    case = next(attention_cases("tiny_64", torch.bfloat16, torch.device("cuda"), quick=True))
    assert {"op:cuda", "op:cuda[cuda_core]"} <= set(case.candidates)
    results = {}
    for name in ("op:cuda", "op:cuda[cuda_core]"):
        torch.manual_seed(0)
        inputs = case.inputs()
        out = case.candidates[name](**inputs)
        out.float().square().sum().backward()
        results[name] = [out] + [t.grad for t in inputs.values()]
    for a, b in zip(*results.values()):
        assert_close(a.float(), b.float(), torch.bfloat16, scale=max(1.0, float(b.float().abs().max())))


def test_every_op_is_benchmarked_with_the_flops_flop_counter_counts():
    """``benchmarks ops`` lists every op from its spec, and its FLOPs are those ``torch.utils.flop_counter``
    counts for the op (one formula: they cannot drift apart again)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.ops import OPS, attention_cases, spec_cases
    from semask_kernels.ops._spec import specs
    assert set(OPS) == set(specs())
    for name, spec in specs().items():
        if name == "shifted_window_attention":
            case = next(attention_cases("tiny_64", torch.float32, torch.device("cpu"), quick=True))
        else:
            case = next(spec_cases(spec, "tiny_64", torch.float32, torch.device("cpu"), quick=True))
        inputs = case.inputs()
        fn = case.candidates["op:reference"]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(**inputs)
        assert case.op == name and case.flops == counter.get_total_flops() > 0, name
        assert case.bytes > 0

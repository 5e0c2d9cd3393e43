"""``benchmarks ops`` times an op with its own workloads (``SPEC.extra["benchmarks"]``: ms_deform_attn at
Mask2Former's pixel decoder) once, not per Swin stage, forward and forward+backward, with the spec's backward
traffic and the bitwise repeatability of the gradients."""
import json

import torch

from benchmarks import __main__ as cli
from benchmarks import ops
from semask_kernels.ops._spec import spec


def test_ms_deform_attn_at_the_pixel_decoder_workloads(tmp_path, capsys):
    out = tmp_path / "ops.jsonl"
    cli.main(["ops", "--ops", "ms_deform_attn", "--quick", "--warmup", "0", "--repeats", "1", "--jsonl", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert "ms_deform_attn" in ops.WORKLOAD_OPS
    workloads = spec("ms_deform_attn").extra["benchmarks"]
    shapes = {r["shape"] for r in rows}
    assert len(shapes) == len(workloads)  # once per workload, not per model stage
    assert all(any(s.startswith(name) for s in shapes) for name in workloads)
    assert {(r["impl"], r["mode"]) for r in rows} == {(i, m) for i in ("op:reference", "op:torch")
                                                     for m in ("forward", "forward+backward")}
    for r in rows:
        assert r["gbps"] > 0 and r["tflops"] > 0 and r["median_ms"] > 0
        assert r["grads_bitwise_repeatable"] is (True if r["mode"] == "forward+backward" else None)
    assert "repeatable" in capsys.readouterr().out


def test_backward_traffic_and_flops_come_from_the_spec():
    s = spec("ms_deform_attn")
    case = next(ops.workload_cases(s, torch.float32, torch.device("cpu"), quick=True))
    call = s.sample(ops.replace(next(iter(s.extra["benchmarks"].values())), batch=1, height=16, width=16),
                    torch.float32, "cpu")
    assert case.backward_bytes == s.extra["io_bytes_backward"](call)
    assert case.backward_flops == s.backward_flops_of(call)
    assert list(case.candidates)[0] == "op:reference"


def test_gradients_that_change_between_runs_are_caught():
    calls = []

    class Jitter(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            calls.append(1)
            return g * 2 + len(calls) * 1e-7  # an accumulation order that differs per run

    case = ops.Case("toy", "4", lambda: {"x": torch.ones(4, requires_grad=True)}, {}, 4, 32)
    assert ops.grads_repeatable(case, lambda x: x * 2)
    assert not ops.grads_repeatable(case, lambda x: Jitter.apply(x))

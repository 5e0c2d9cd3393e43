"""pytest-benchmark microbenchmarks of every op (from its spec), forward and forward+backward, on the backend
``auto`` picks.

    pytest benchmarks/microbench --benchmark-json=benchmarks/results/microbench.json

Inputs are each spec's sample at Swin-T stage 1, batch 8, bf16 on a GPU (``SIZES["swin_t_stage1"]``), and at
"tiny" in fp32 on a CPU (where they only show the harness works).
"""
import pytest
import torch

from semask_kernels.ops._spec import SIZES, outputs, specs

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
DTYPE = torch.bfloat16 if GPU else torch.float32
SIZE = SIZES["swin_t_stage1" if GPU else "tiny"]


@pytest.mark.parametrize("op", sorted(specs()))
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_op(benchmark, op, backward):
    spec = specs()[op]
    call = spec.sample(SIZE, DTYPE, DEVICE)
    call = call.to() if backward else call

    def run():
        outs = outputs(spec.run(call))
        if backward:
            sum(out.float().sum() for out in outs).backward()
        if GPU:
            torch.cuda.synchronize()

    benchmark.group = op
    benchmark(run)

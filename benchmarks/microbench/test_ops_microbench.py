"""pytest-benchmark microbenchmarks of the ops, forward and forward+backward, on the backend ``auto`` picks.

    pytest benchmarks/microbench --benchmark-json=benchmarks/results/microbench.json

Shapes are Swin-T stage 1 at batch 8 on a GPU, and tiny on a CPU (where they only show the harness works).
"""
import pytest
import torch

import semask_kernels as sk

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
DTYPE = torch.bfloat16 if GPU else torch.float32
B, HW, C, HEADS = (8, 56, 96, 3) if GPU else (1, 14, 32, 1)


def _sync():
    if GPU:
        torch.cuda.synchronize()


def _swa(grad: bool):
    qkv = torch.randn(B, HW, HW, 3 * C, device=DEVICE, dtype=DTYPE, requires_grad=grad)
    table = torch.randn(169, HEADS, device=DEVICE, dtype=DTYPE, requires_grad=grad)
    return lambda: sk.shifted_window_attention(qkv, table, num_heads=HEADS, window_size=7, shift_size=3)


def _semantic(grad: bool):
    s, k = (torch.randn(B, HW, HW, 150, device=DEVICE, dtype=DTYPE, requires_grad=grad) for _ in range(2))
    v = torch.randn(B, HW, HW, C, device=DEVICE, dtype=DTYPE, requires_grad=grad)
    return lambda: sk.semantic_attention(s, k, v, window_size=7)


def _loss(grad: bool):
    logits = torch.randn(B, 150, HW, HW, device=DEVICE, dtype=DTYPE, requires_grad=grad)
    target = torch.randint(0, 150, (B, 4 * HW, 4 * HW), device=DEVICE)
    return lambda: sk.upsample_cross_entropy(logits, target)


def _decode(grad: bool):
    maps = [torch.randn(B, 150, HW // 2 ** i, HW // 2 ** i, device=DEVICE, dtype=DTYPE, requires_grad=grad)
            for i in range(4)]
    return lambda: sk.prior_map_decode(maps)


@pytest.mark.parametrize("make", [_swa, _semantic, _loss, _decode], ids=["swa", "semantic", "loss", "decode"])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_op(benchmark, make, backward):
    fn = make(backward)

    def run():
        out = fn()
        if backward:
            out.float().sum().backward()
        _sync()

    benchmark.group = make.__name__.strip("_")
    benchmark(run)

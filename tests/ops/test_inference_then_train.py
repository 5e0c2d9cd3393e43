"""A cached geometry first built under ``torch.inference_mode`` must still serve a training step: the benchmark
times inference before training on the same model, and the torch backend's cached index tensors made it fail
with "Inference tensors cannot be saved for backward" (issue 16)."""
import pytest
import torch

import semask_kernels as sk


def _twice(fn, *shapes):
    with torch.inference_mode():
        fn(*[torch.randn(*s) for s in shapes])
    inputs = [torch.randn(*s, requires_grad=True) for s in shapes]
    fn(*inputs).float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in inputs)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_shifted_window_attention(backend):
    _twice(lambda qkv, table: sk.shifted_window_attention(qkv, table, num_heads=2, window_size=7, shift_size=3,
                                                          backend=backend), (1, 10, 9, 3 * 16), (169, 2))


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_prior_map_decode(backend):
    _twice(lambda a, b, c, d: sk.prior_map_decode([a, b, c, d], backend=backend),
           (1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 4, 4), (1, 3, 2, 2))


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_semantic_attention(backend):
    _twice(lambda s, k, v: sk.semantic_attention(s, k, v, window_size=7, backend=backend),
           (1, 9, 10, 5), (1, 9, 10, 5), (1, 9, 10, 8))


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_window_attention(backend):
    _twice(lambda q, k, v, table: sk.window_attention(q, k, v, bias_table=table, window_size=7, backend=backend),
           (2, 2, 49, 8), (2, 2, 49, 8), (2, 2, 49, 8), (169, 2))


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_upsample_cross_entropy(backend):
    target = torch.randint(0, 4, (1, 16, 16))
    _twice(lambda logits: sk.upsample_cross_entropy(logits, target, backend=backend), (1, 4, 8, 8))

"""Inputs with an empty dimension give the empty result of the right shape on every backend that runs here, with
zero gradients, instead of an error deep inside a backend; a head dim of 0 without a scale is an error naming it."""
import pytest
import torch

import semask_kernels as sk


def _leaf(*shape):
    return torch.randn(*shape, requires_grad=True)


CASES = {
    "shifted_window_attention H=0": (lambda b, t: sk.shifted_window_attention(
        t[0], t[1], num_heads=2, window_size=7, shift_size=3, qkv_bias=t[2], backend=b),
        lambda: [_leaf(2, 0, 9, 48), _leaf(169, 2), _leaf(48)], (2, 0, 9, 16)),
    "shifted_window_attention B=0": (lambda b, t: sk.shifted_window_attention(
        t[0], t[1], num_heads=2, window_size=7, shift_size=3, qkv_bias=t[2], pad_order="pad_then_roll", backend=b),
        lambda: [_leaf(0, 10, 9, 48), _leaf(169, 2), _leaf(48)], (0, 10, 9, 16)),
    "semantic_attention global B=0": (lambda b, t: sk.semantic_attention(t[0], t[1], t[2], backend=b),
                                      lambda: [_leaf(0, 4, 4, 5), _leaf(0, 4, 4, 5), _leaf(0, 4, 4, 6)], (0, 4, 4, 6)),
    "semantic_attention windowed H=0": (lambda b, t: sk.semantic_attention(
        t[0], t[1], t[2], window_size=3, pad_k=t[3], pad_v=t[4], backend=b),
        lambda: [_leaf(1, 0, 4, 5), _leaf(1, 0, 4, 5), _leaf(1, 0, 4, 6), _leaf(5), _leaf(6)], (1, 0, 4, 6)),
    "prior_map_decode K=0": (lambda b, t: sk.prior_map_decode(t, backend=b),
                             lambda: [_leaf(1, 0, 8, 8), _leaf(1, 0, 4, 4)], (1, 0, 8, 8)),
}


@pytest.mark.parametrize("backend", ["reference", "torch", "auto"])
@pytest.mark.parametrize("case", list(CASES))
def test_empty_dimension_gives_the_empty_result(case, backend):
    fn, make, shape = CASES[case]
    tensors = make()
    out = fn(backend, tensors)
    assert out.shape == shape and out.numel() == 0
    out.sum().backward()
    for t in tensors:
        assert t.grad is not None and t.grad.shape == t.shape and not t.grad.any()


def test_head_dim_zero_needs_a_scale():
    q = torch.randn(2, 1, 4, 0)
    with pytest.raises(ValueError, match="head dim d = 0"):
        sk.window_attention(q, q, torch.randn(2, 1, 4, 3))

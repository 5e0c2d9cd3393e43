"""Module and op arguments that are wrong are refused where they are given (issue 15, item 10): a bad backend name
at module construction (not at the first forward), a non-finite scale or mask_value."""
import pytest
import torch

import semask_kernels as sk


@pytest.mark.parametrize("make", [
    lambda backend: sk.nn.WindowAttention(16, num_heads=2, window_size=4, backend=backend),
    lambda backend: sk.nn.ShiftedWindowAttention(16, num_heads=2, window_size=4, shift_size=2, backend=backend),
    lambda backend: sk.nn.SemanticAttention(16, num_classes=3, window_size=4, backend=backend),
], ids=["WindowAttention", "ShiftedWindowAttention", "SemanticAttention"])
def test_bad_backend_name_is_refused_at_construction(make):
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'reference', 'torch', 'triton', 'cuda'\) "
                                         r"or a variant '<backend>.<variant>', got 'bogus'"):
        make("bogus")
    with pytest.raises(TypeError, match="backend must be a str"):
        make(None)
    assert make("Reference").backend == "reference"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_mask_value_is_refused(value):
    with pytest.raises(ValueError, match=rf"mask_value must be a finite number, got {value}"):
        sk.nn.ShiftedWindowAttention(16, num_heads=2, window_size=4, shift_size=2, mask_value=value)
    qkv, table = torch.randn(1, 8, 8, 48), torch.randn(49, 2)
    with pytest.raises(ValueError, match="mask_value must be a finite number"):
        sk.shifted_window_attention(qkv, table, num_heads=2, window_size=4, shift_size=2, mask_value=value,
                                    backend="reference")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_scale_is_refused(value):
    qkv, table = torch.randn(1, 8, 8, 48), torch.randn(49, 2)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        sk.shifted_window_attention(qkv, table, num_heads=2, window_size=4, scale=value, backend="reference")
    q = torch.randn(2, 2, 16, 8)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        sk.window_attention(q, q, q, scale=value, backend="reference")

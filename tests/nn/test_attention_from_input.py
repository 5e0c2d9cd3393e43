"""``nn.ShiftedWindowAttention`` runs the plain-PyTorch path from its input (the qkv Linear on windowed rows of x,
``torch_path.from_input``) whenever the op would pick the ``torch`` backend: same outputs and gradients as the
op path (qkv Linear on the map, then the op), and the op path wherever that shortcut would change meaning."""
import pytest
import torch
from torch import nn

import semask_kernels as sk
from semask_kernels.ops.shifted_window_attention import torch_path
from tests.utils import assert_close

CASES = [  # (H, W, window, shift, pad_order, head_dim, qkv_bias)
    (14, 14, 7, 0, "roll_then_pad", None, True),        # no padding, no shift
    (10, 13, 7, 3, "roll_then_pad", None, True),        # padding and shift (timm)
    (10, 13, 7, 3, "pad_then_roll", None, True),        # padding and shift (official segmentation)
    (5, 9, (3, 4), (1, 2), "pad_then_roll", 10, False),  # rectangular window, head_dim override, no qkv bias
    (3, 2, 7, 0, "roll_then_pad", None, True),          # map smaller than the window
]


@pytest.fixture
def calls(monkeypatch):
    seen = []
    original = torch_path.from_input

    def counting(*args, **kwargs):
        seen.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch_path, "from_input", counting)
    return seen


def _pair(dim, heads, window, shift, pad_order, head_dim, qkv_bias, dtype):
    torch.manual_seed(0)
    fast = sk.nn.ShiftedWindowAttention(dim, heads, window_size=window, shift_size=shift, head_dim=head_dim,
                                        qkv_bias=qkv_bias, pad_order=pad_order, backend="torch", dtype=dtype)
    with torch.no_grad():
        fast.relative_position_bias_table.normal_()
        if qkv_bias:
            fast.qkv.bias.normal_()  # padded tokens carry it: a wrong padding rule shows
    ref = sk.nn.ShiftedWindowAttention(dim, heads, window_size=window, shift_size=shift, head_dim=head_dim,
                                       qkv_bias=qkv_bias, pad_order=pad_order, backend="reference", dtype=dtype)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("h,w,window,shift,pad_order,head_dim,qkv_bias", CASES)
def test_from_input_matches_the_op_path(calls, dtype, h, w, window, shift, pad_order, head_dim, qkv_bias):
    fast, ref = _pair(24, 3, window, shift, pad_order, head_dim, qkv_bias, dtype)
    x = torch.randn(2, h, w, 24, dtype=dtype, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, expected = fast(x), ref(x_ref)
    assert calls == [x.shape], "the torch backend must run from the input"
    assert_close(out, expected, name="out")
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g)
    assert_close(x.grad, x_ref.grad, name="dx")
    for (name, p), (_, q) in zip(fast.named_parameters(), ref.named_parameters()):
        assert_close(p.grad, q.grad, name=name, scale=10)


def test_auto_takes_it_on_the_cpu_and_the_reference_does_not(calls):
    auto = sk.nn.ShiftedWindowAttention(24, 3, window_size=7, shift_size=3)
    auto(torch.randn(1, 9, 9, 24))
    assert len(calls) == 1
    auto.backend = "reference"
    auto(torch.randn(1, 9, 9, 24))
    assert len(calls) == 1


def test_a_token_wise_qkv_module_is_called_on_the_windows(calls):
    """A wrapped qkv (here a LoRA-style adapter) is called, not bypassed through its weight."""

    class LoRA(nn.Module):
        def __init__(self, base: nn.Linear, rank: int = 2):
            super().__init__()
            self.base, self.down = base, nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
            nn.init.normal_(self.up.weight)

        def forward(self, x):
            return self.base(x) + self.up(self.down(x))

    fast, ref = _pair(24, 3, 7, 3, "roll_then_pad", None, True, torch.float64)
    fast.qkv = LoRA(fast.qkv).double()
    ref.qkv = fast.qkv
    x = torch.randn(2, 10, 13, 24, dtype=torch.float64)
    assert_close(fast(x), ref(x), name="out")
    assert len(calls) == 1


def test_autocast_and_bad_inputs_take_the_op_path(calls):
    attn = sk.nn.ShiftedWindowAttention(24, 3, window_size=7, shift_size=3, backend="torch")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(torch.randn(1, 9, 9, 24))
    assert out.dtype == torch.bfloat16 and calls == []
    with pytest.raises(ValueError, match="shift_size must be < window_size"):
        attn(torch.randn(1, 9, 9, 24), (7, 0))
    with pytest.raises(ValueError, match="qkv"):
        attn(torch.randn(9, 9, 24))
    assert calls == []


def test_fx_keeps_the_op_as_one_leaf(calls):
    attn = sk.nn.ShiftedWindowAttention(24, 3, window_size=7, shift_size=3, backend="torch").eval()
    graph = torch.fx.symbolic_trace(attn, concrete_args={"shift_size": None})
    assert any(n.op == "call_function" and n.target.__name__ == "_attend" for n in graph.graph.nodes)
    x = torch.randn(1, 9, 9, 24)
    assert_close(graph(x), attn(x))

"""shifted_window_attention: the reference against timm's block and the official order; the custom op wiring."""
import pytest
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention, window_partition, window_reverse

import semask_kernels as sk
from tests.utils import assert_close

# (H, W, window, shift): exact multiples, padding on one or both axes, a map smaller than the window,
# non-square windows and shifts on one axis only.
CASES = [
    (14, 14, (7, 7), (3, 3)),
    (14, 14, (7, 7), (0, 0)),
    (10, 9, (7, 7), (3, 3)),
    (10, 9, (7, 7), (0, 0)),
    (5, 3, (7, 7), (3, 3)),
    (9, 13, (4, 6), (2, 3)),
    (8, 11, (4, 4), (0, 2)),
    (1, 1, (2, 2), (1, 1)),
]


def _block(dim, heads, hw, window, shift):
    block = SwinTransformerBlock(dim, input_resolution=hw, num_heads=heads, window_size=window, shift_size=shift,
                                 always_partition=True, dynamic_mask=True)
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_(0, 0.5)
        block.attn.qkv.bias.normal_(0, 0.5)  # padded tokens carry this bias
    return block.eval()


def _ours(block, x, **kw):
    attn = block.attn
    qkv = attn.qkv(x)
    out = sk.shifted_window_attention(qkv, attn.relative_position_bias_table, num_heads=attn.num_heads,
                                      window_size=block.window_size, shift_size=block.shift_size,
                                      qkv_bias=attn.qkv.bias, **kw)
    return attn.proj(out)


@pytest.mark.parametrize("h,w,window,shift", CASES)
def test_roll_then_pad_matches_timm_block(h, w, window, shift):
    block = _block(24, 3, (h, w), window, shift)
    x = torch.randn(2, h, w, 24, requires_grad=True)
    expected = block._attn(x)
    got = _ours(block, x, backend="reference")
    assert_close(got, expected, name="output")
    g = torch.randn_like(expected)
    params = [x, block.attn.relative_position_bias_table, block.attn.qkv.bias, block.attn.qkv.weight]
    exp_grads = torch.autograd.grad(expected, params, g)
    got_grads = torch.autograd.grad(got, params, g)
    for name, a, e in zip(["x", "bias_table", "qkv_bias", "qkv_weight"], got_grads, exp_grads):
        assert_close(a, e, name=name)


def _official_pad_then_roll(attn: WindowAttention, x, window, shift):
    """Transcription of the official Swin-segmentation block's attention path (pad, roll, ..., roll, crop)."""
    b, h, w, c = x.shape
    ws = window[0]  # the official code has square windows and one shift
    s = shift[0]
    pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, hp, wp, _ = x.shape
    mask = None
    if s > 0:
        x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        img_mask = torch.zeros((1, hp, wp, 1))
        cnt = 0
        for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                img_mask[:, hs, wsl, :] = cnt
                cnt += 1
        mw = window_partition(img_mask, (ws, ws)).view(-1, ws * ws)
        mask = mw.unsqueeze(1) - mw.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
    xw = window_partition(x, (ws, ws)).view(-1, ws * ws, c)
    out = attn(xw, mask=mask).view(-1, ws, ws, c)
    x = window_reverse(out, (ws, ws), hp, wp)
    if s > 0:
        x = torch.roll(x, shifts=(s, s), dims=(1, 2))
    return x[:, :h, :w, :]


@pytest.mark.parametrize("h,w,shift", [(14, 14, 3), (10, 9, 3), (10, 9, 0), (5, 3, 3), (16, 20, 2)])
def test_pad_then_roll_matches_official_order(h, w, shift):
    block = _block(24, 3, (h, w), (7, 7), (shift, shift))
    x = torch.randn(2, h, w, 24, requires_grad=True)
    expected = _official_pad_then_roll(block.attn, x, (7, 7), (shift, shift))
    got = _ours(block, x, pad_order="pad_then_roll", backend="reference")
    assert_close(got, expected, name="output")
    g = torch.randn_like(expected)
    params = [x, block.attn.relative_position_bias_table, block.attn.qkv.bias]
    for name, a, e in zip(["x", "bias_table", "qkv_bias"], torch.autograd.grad(got, params, g),
                          torch.autograd.grad(expected, params, g)):
        assert_close(a, e, name=name)


def test_pad_orders_differ_when_padding_and_shift_meet():
    """The two orders are different functions on padded shifted maps, and the same without padding."""
    block = _block(24, 3, (10, 9), (7, 7), (3, 3))
    x = torch.randn(1, 10, 9, 24)
    a = _ours(block, x, pad_order="roll_then_pad")
    b = _ours(block, x, pad_order="pad_then_roll")
    assert (a - b).abs().max() > 1e-3
    block = _block(24, 3, (14, 14), (7, 7), (3, 3))
    x = torch.randn(1, 14, 14, 24)
    assert_close(_ours(block, x, pad_order="roll_then_pad"), _ours(block, x, pad_order="pad_then_roll"))


def _args(h=10, w=9, heads=3, d=4, window=(7, 7), dtype=torch.float64, bias=True):
    qkv = torch.randn(2, h, w, 3 * heads * d, dtype=dtype, requires_grad=True)
    table = torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, dtype=dtype, requires_grad=True)
    qkv_bias = torch.randn(3 * heads * d, dtype=dtype, requires_grad=True) if bias else None
    return qkv, table, qkv_bias


@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("shift", [(0, 0), (3, 2)])
def test_gradcheck(pad_order, shift):
    qkv, table, qkv_bias = _args(h=5, w=4, d=2, window=(4, 3))

    def fn(qkv, table, qkv_bias):
        return sk.shifted_window_attention(qkv, table, num_heads=3, window_size=(4, 3), shift_size=shift,
                                           qkv_bias=qkv_bias, pad_order=pad_order, backend="reference")

    assert torch.autograd.gradcheck(fn, (qkv, table, qkv_bias))


def test_no_qkv_bias_pads_with_zeros():
    qkv, table, _ = _args(dtype=torch.float32)
    with_zero = sk.shifted_window_attention(qkv, table, num_heads=3, window_size=7, shift_size=3,
                                            qkv_bias=torch.zeros(qkv.shape[-1]))
    without = sk.shifted_window_attention(qkv, table, num_heads=3, window_size=7, shift_size=3)
    assert_close(without, with_zero)
    without.sum().backward()
    assert qkv.grad is not None and table.grad is not None


def test_opcheck():
    qkv, table, qkv_bias = _args(dtype=torch.float32)
    op = torch.ops.semask_kernels.shifted_window_attention
    for bias in (qkv_bias, None):
        torch.library.opcheck(op, (qkv, table, bias, 3, [7, 7], [3, 3], 0.5, "roll_then_pad", -100.0, "reference"))
    torch.library.opcheck(op, (qkv, table, qkv_bias, 3, [7, 7], [0, 0], 0.5, "pad_then_roll", -100.0, "reference"))


def test_compile_fullgraph_matches_eager():
    qkv, table, qkv_bias = (t.detach().float() for t in _args())

    def fn(qkv, table, qkv_bias):
        return sk.shifted_window_attention(qkv, table, num_heads=3, window_size=7, shift_size=3, qkv_bias=qkv_bias)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    assert_close(compiled(qkv, table, qkv_bias), fn(qkv, table, qkv_bias))


def test_flop_counter_uses_the_formula():
    qkv, table, qkv_bias = (t.detach().float().requires_grad_() for t in _args(h=14, w=14))
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = sk.shifted_window_attention(qkv, table, num_heads=3, window_size=7, shift_size=3, qkv_bias=qkv_bias)
    windows, heads, n, d = 2 * 4, 3, 49, 4
    assert counter.get_total_flops() == 4 * windows * heads * n * n * d
    with FlopCounterMode(display=False) as counter:
        out.sum().backward()
    assert counter.get_total_flops() == 8 * windows * heads * n * n * d


BAD = [
    (dict(qkv=torch.randn(10, 9, 36)), ValueError, "qkv must have 4 dimensions"),
    (dict(qkv=torch.randn(2, 10, 9, 35)), ValueError, "qkv's last dim"),
    (dict(bias_table=torch.randn(168, 3)), ValueError, r"bias_table must have shape \(169, 3\)"),
    (dict(bias_table=torch.randn(169, 3, dtype=torch.float64)), TypeError, "bias_table must have the same dtype"),
    (dict(bias_table=torch.randn(169, 3, device="meta")), ValueError, "bias_table must be on the same device"),
    (dict(qkv_bias=torch.randn(35)), ValueError, r"qkv_bias must have shape \(36,\)"),
    (dict(shift_size=7), ValueError, "shift_size must be < window_size"),
    (dict(shift_size=-1), ValueError, "shift_size must be >= 0"),
    (dict(window_size=0), ValueError, "window_size must be >= 1"),
    (dict(window_size=(7, 7, 7)), TypeError, "window_size must be an int or a pair"),
    (dict(num_heads=0), ValueError, "num_heads must be >= 1"),
    (dict(num_heads=5), ValueError, "qkv's last dim must be 3·num_heads·d"),
    (dict(pad_order="pad"), ValueError, "pad_order must be one of"),
    (dict(backend="fast"), ValueError, "backend must be one of"),
    (dict(qkv=torch.randint(0, 3, (2, 10, 9, 36))), TypeError, "qkv must have a floating dtype"),
]


@pytest.mark.parametrize("override,exc,match", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_names_the_argument(override, exc, match):
    kw = dict(qkv=torch.randn(2, 10, 9, 36), bias_table=torch.randn(169, 3), num_heads=3, window_size=7,
              shift_size=3, qkv_bias=torch.randn(36), pad_order="roll_then_pad", backend="auto")
    kw.update(override)
    with pytest.raises(exc, match=match):
        sk.shifted_window_attention(kw.pop("qkv"), kw.pop("bias_table"), **kw)

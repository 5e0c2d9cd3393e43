"""window_attention: the reference against timm's WindowAttention; the custom op wiring; bad input."""
import pytest
import torch
from timm.models.swin_transformer import WindowAttention as TimmWindowAttention

import semask_kernels as sk
from semask_kernels.ops._windows import shift_mask
from tests.utils import assert_close


def _timm_attn(dim, heads, window):
    attn = TimmWindowAttention(dim, num_heads=heads, window_size=window).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 0.5)
    return attn


def _ours(attn, x, mask=None):
    b_, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b_, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    out = sk.window_attention(q, k, v, bias_table=attn.relative_position_bias_table, window_size=attn.window_size,
                              mask=mask, backend="reference")
    return attn.proj(out.transpose(1, 2).reshape(b_, n, -1))


@pytest.mark.parametrize("window,masked", [((7, 7), False), ((7, 7), True), ((4, 6), True), ((1, 1), False)])
def test_matches_timm_window_attention(window, masked):
    attn = _timm_attn(24, 3, window)
    n = window[0] * window[1]
    nw = 4
    x = torch.randn(2 * nw, n, 24, requires_grad=True)
    mask = shift_mask(2 * window[0], 2 * window[1], window, (window[0] // 2, window[1] // 2), -100.0) \
        if masked else None
    expected = attn(x, mask=mask)
    got = _ours(attn, x, mask)
    assert_close(got, expected, name="output")
    g = torch.randn_like(got)
    params = [x, attn.relative_position_bias_table, attn.qkv.weight]
    for name, a, e in zip(["x", "bias_table", "qkv_weight"], torch.autograd.grad(got, params, g),
                          torch.autograd.grad(expected, params, g)):
        assert_close(a, e, name=name)


def _qkv(b_=6, heads=2, window=(3, 2), d=4, dv=None, dtype=torch.float64):
    n = window[0] * window[1]
    q = torch.randn(b_, heads, n, d, dtype=dtype, requires_grad=True)
    k = torch.randn(b_, heads, n, d, dtype=dtype, requires_grad=True)
    v = torch.randn(b_, heads, n, dv or d, dtype=dtype, requires_grad=True)
    table = torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, dtype=dtype, requires_grad=True)
    return q, k, v, table


def test_gradcheck_with_bias_and_mask():
    q, k, v, table = _qkv(dv=3)
    mask = torch.randn(3, 6, 6, dtype=torch.float64)

    def fn(q, k, v, table):
        return sk.window_attention(q, k, v, bias_table=table, window_size=(3, 2), mask=mask, scale=0.3,
                                   backend="reference")

    assert torch.autograd.gradcheck(fn, (q, k, v, table))


def test_gradcheck_without_bias():
    q, k, v, _ = _qkv()
    assert torch.autograd.gradcheck(lambda q, k, v: sk.window_attention(q, k, v), (q, k, v))


def test_square_window_is_inferred():
    q, k, v, _ = _qkv(window=(3, 3))
    table = torch.randn(25, 2, dtype=torch.float64)
    assert_close(sk.window_attention(q, k, v, bias_table=table),
                 sk.window_attention(q, k, v, bias_table=table, window_size=3))


def test_opcheck():
    q, k, v, table = (t.detach().float().requires_grad_() for t in _qkv())
    mask = torch.randn(3, 6, 6)
    op = torch.ops.semask_kernels.window_attention
    torch.library.opcheck(op, (q, k, v, table, [3, 2], mask, 0.5, "reference"))
    torch.library.opcheck(op, (q, k, v, None, [3, 2], None, 0.5, "reference"))


def test_compile_fullgraph_matches_eager():
    q, k, v, table = (t.detach().float() for t in _qkv())

    def fn(q, k, v, table):
        return sk.window_attention(q, k, v, bias_table=table, window_size=(3, 2))

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(q, k, v, table), fn(q, k, v, table))


BAD = [
    (dict(q=torch.randn(6, 2, 6)), ValueError, "q must have 4 dimensions"),
    (dict(k=torch.randn(6, 2, 5, 4)), ValueError, "k must have the shape of q"),
    (dict(v=torch.randn(6, 2, 5, 4)), ValueError, "v must have shape"),
    (dict(k=torch.randn(6, 2, 6, 4, dtype=torch.float64)), TypeError, "k must have the same dtype"),
    (dict(bias_table=torch.randn(14, 2)), ValueError, r"bias_table must have shape \(15, 2\)"),
    (dict(window_size=(2, 2)), ValueError, "window_size .* has 4 tokens"),
    (dict(mask=torch.randn(4, 6, 6)), ValueError, "mask has nW=4 windows"),
    (dict(mask=torch.randn(3, 5, 6)), ValueError, "mask must have shape"),
    (dict(backend="cuda"), RuntimeError, "backend 'cuda' was requested but cannot run"),
]


@pytest.mark.parametrize("override,exc,match", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_names_the_argument(override, exc, match):
    kw = dict(q=torch.randn(6, 2, 6, 4), k=torch.randn(6, 2, 6, 4), v=torch.randn(6, 2, 6, 4),
              bias_table=torch.randn(15, 2), window_size=(3, 2), mask=None, backend="auto")
    kw.update(override)
    with pytest.raises(exc, match=match):
        sk.window_attention(kw.pop("q"), kw.pop("k"), kw.pop("v"), **kw)

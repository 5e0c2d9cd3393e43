"""semantic_attention: the reference and the module against a transcription of the official SeMask layers."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import semask_kernels as sk
from tests.utils import assert_close


class OfficialSemanticAttention(nn.Module):
    """Transcription of the official ``SemanticAttention`` forward on a set of tokens (B', N, C)."""

    def __init__(self, dim, n_cls):
        super().__init__()
        self.mlp_cls_q = nn.Linear(dim, n_cls)
        self.mlp_cls_k = nn.Linear(dim, n_cls)
        self.mlp_v = nn.Linear(dim, dim)
        self.mlp_res = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x):
        s = self.mlp_cls_q(x)
        a = torch.softmax(s @ self.mlp_cls_k(x).transpose(-2, -1), dim=-1)
        return s, a @ self.mlp_v(x)

    def forward(self, x):
        s, y = self.attention(x)
        return s, self.gamma * self.proj_drop(self.mlp_res(y)) + x


def _windows(x, m):
    b, h, w, c = x.shape
    return x.view(b, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, m * m, c)


def _unwindows(x, m, h, w):
    c = x.shape[-1]
    return x.view(-1, h // m, w // m, m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def official_layer(layer, x, window):
    """``SWSeMaskBlock`` (windowed, zero-padded normed input) or ``SeMaskBlock`` (global) after ``norm1``,
    with a function ``layer(tokens) -> (S, out)``."""
    b, h, w, c = x.shape
    if window is None:
        s, out = layer(x.reshape(b, h * w, c))
        return s.view(b, h, w, -1), out.view(b, h, w, c)
    pad_b, pad_r = (window - h % window) % window, (window - w % window) % window
    xp = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = xp.shape[1:3]
    s, out = layer(_windows(xp, window))
    return _unwindows(s, window, hp, wp)[:, :h, :w], _unwindows(out, window, hp, wp)[:, :h, :w]


def _official(dim=16, k=19):
    ref = OfficialSemanticAttention(dim, k).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)
    return ref


@pytest.mark.parametrize("h,w,window", [(9, 10, 7), (7, 7, 7), (3, 5, 7), (12, 8, 4), (6, 5, None), (1, 1, None)])
def test_op_matches_official_math(h, w, window):
    ref = _official()
    x = torch.randn(2, h, w, 16, requires_grad=True)
    _, expected = official_layer(lambda t: ref.attention(t), x, window)
    got = sk.semantic_attention(ref.mlp_cls_q(x), ref.mlp_cls_k(x), ref.mlp_v(x), window_size=window,
                                pad_k=ref.mlp_cls_k.bias if window else None,
                                pad_v=ref.mlp_v.bias if window else None, backend="reference")
    assert_close(got, expected, name="output")
    g = torch.randn_like(got)
    params = [x, ref.mlp_cls_k.bias, ref.mlp_v.bias, ref.mlp_cls_q.weight]
    for name, a, e in zip(["x", "k_bias", "v_bias", "q_weight"], torch.autograd.grad(got, params, g),
                          torch.autograd.grad(expected, params, g)):
        assert_close(a, e, name=name)


@pytest.mark.parametrize("window", [7, None])
def test_module_matches_official_layer(window):
    ref = _official()
    layer = sk.nn.SemanticAttention(16, 19, window_size=window).eval()
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 10, 16)
    s_exp, out_exp = official_layer(ref, x, window)
    s, out = layer(x)
    assert_close(s, s_exp, name="S")
    assert_close(out, out_exp, name="out")


def test_module_official_init_is_identity():
    layer = sk.nn.SemanticAttention(16, 19, window_size=7)
    assert set(layer.state_dict()) == {f"{m}.{p}" for m in ("mlp_cls_q", "mlp_cls_k", "mlp_v", "mlp_res")
                                       for p in ("weight", "bias")} | {"gamma"}
    assert float(layer.gamma.detach()) == 0 and float(layer.mlp_res.weight.detach().abs().sum()) == 0
    assert float(layer.mlp_cls_q.weight.std()) > 0.1  # kaiming, not the tiny trunc-normal
    x = torch.randn(1, 9, 10, 16)
    assert torch.equal(layer(x)[1], x)


def _maps(h=5, w=6, k=3, c=4, dtype=torch.float64):
    return (torch.randn(2, h, w, k, dtype=dtype, requires_grad=True),
            torch.randn(2, h, w, k, dtype=dtype, requires_grad=True),
            torch.randn(2, h, w, c, dtype=dtype, requires_grad=True))


@pytest.mark.parametrize("window", [None, 4, (3, 4)])
def test_gradcheck(window):
    s, k, v = _maps()
    pk = torch.randn(3, dtype=torch.float64, requires_grad=True)
    pv = torch.randn(4, dtype=torch.float64, requires_grad=True)
    if window is None:
        assert torch.autograd.gradcheck(lambda s, k, v: sk.semantic_attention(s, k, v), (s, k, v))
    else:
        assert torch.autograd.gradcheck(
            lambda s, k, v, pk, pv: sk.semantic_attention(s, k, v, window_size=window, pad_k=pk, pad_v=pv),
            (s, k, v, pk, pv))


def test_opcheck():
    s, k, v = (t.detach().float().requires_grad_() for t in _maps())
    pk, pv = torch.randn(3, requires_grad=True), torch.randn(4, requires_grad=True)
    op = torch.ops.semask_kernels.semantic_attention
    torch.library.opcheck(op, (s, k, v, [4, 4], pk, pv, "reference"))
    torch.library.opcheck(op, (s, k, v, [], None, None, "reference"))


def test_compile_fullgraph_matches_eager():
    s, k, v = (t.detach().float() for t in _maps())

    def fn(s, k, v):
        return sk.semantic_attention(s, k, v, window_size=4)

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(s, k, v), fn(s, k, v))


BAD = [
    (dict(k=torch.randn(2, 5, 6, 4)), ValueError, "k must have the shape of s .*K, the number of classes"),
    (dict(v=torch.randn(2, 5, 5, 4)), ValueError, "v must have shape"),
    (dict(s=torch.randn(5, 6, 3)), ValueError, "s must have 4 dimensions"),
    (dict(pad_k=torch.randn(4)), ValueError, r"pad_k must have shape \(3,\)"),
    (dict(pad_v=torch.randn(4, dtype=torch.float64)), TypeError, "pad_v must have the same dtype"),
    (dict(window_size=-2), ValueError, "window_size must be >= 1"),
]


@pytest.mark.parametrize("override,exc,match", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_names_the_argument(override, exc, match):
    kw = dict(s=torch.randn(2, 5, 6, 3), k=torch.randn(2, 5, 6, 3), v=torch.randn(2, 5, 6, 4), window_size=4,
              pad_k=None, pad_v=None)
    kw.update(override)
    with pytest.raises(exc, match=match):
        sk.semantic_attention(kw.pop("s"), kw.pop("k"), kw.pop("v"), **kw)

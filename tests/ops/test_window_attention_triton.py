"""window_attention, Triton backend: forward and the gradients of q, k, v and the bias table against the float32
reference (the mask gets none). On the CPU the kernels run under the Triton interpreter, so shapes are small."""
import pytest
import torch

import semask_kernels as sk
from semask_kernels import _env, _triton_utils, backends
from semask_kernels.ops._windows import shift_mask
from semask_kernels.kernels import window_attention as wa
from semask_kernels.ops.window_attention import reference, triton
from tests.utils import assert_close

OP = "window_attention"
interpreted = pytest.mark.skipif(not (_triton_utils.INTERPRETED and _env.triton_interpret()),
                                 reason="the Triton interpreter is off (set TRITON_INTERPRET=1 before the import)")


def _inputs(b_, heads, window, d, dv=None, n_mask=0, table=True, dtype=torch.float32, device="cpu", scale=None):
    n = window[0] * window[1]
    q, k = (torch.randn(b_, heads, n, d, device=device).to(dtype) for _ in range(2))
    v = torch.randn(b_, heads, n, dv or d, device=device).to(dtype)
    bias = (0.5 * torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, device=device)).to(dtype) \
        if table else None
    mask = None
    if n_mask:  # a realistic shift mask (0 / -100) plus noise, so every window index matters
        mask = shift_mask(window[0] * n_mask, window[1], window, (window[0] // 2, 0), -100.0, device=device)
        mask = (mask + torch.randn_like(mask)).to(dtype)
    return q, k, v, bias, list(window), mask, (d ** -0.5 if scale is None else scale)


def _fp32(args):
    return tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)


def check_against_reference(args):
    dtype = args[0].dtype
    exact = _fp32(args)
    expected = reference.forward(*exact)
    out = triton.forward(*args)
    assert out.dtype == dtype and out.shape == expected.shape
    assert_close(out, expected, dtype, name="output")
    grad = torch.randn_like(expected)
    got = triton.backward(grad.to(dtype), *args)
    want = reference.backward(grad, *exact)
    for name, g, e in zip(("q", "k", "v", "bias_table"), got, want):
        if e is None:
            assert g is None, f"{name}: expected None"
            continue
        assert g.dtype == dtype and g.shape == e.shape, name
        assert_close(g, e, dtype, name=name, scale=1.0 if name != "bias_table" else max(1.0, float(e.abs().max())))
    return got


# (B_, heads, window, d, dv, windows in the mask, with table)
CASES = [
    (4, 2, (7, 7), 32, None, 2, True),
    (4, 2, (7, 7), 16, None, 0, True),
    (3, 1, (7, 7), 16, None, 3, False),
    (6, 2, (3, 5), 16, 24, 3, True),     # non-square window, dv != d
    (2, 3, (4, 6), 20, 8, 1, True),      # head dims that are not powers of two
    (5, 1, (1, 1), 16, None, 0, True),   # N = 1
]


@interpreted
@pytest.mark.parametrize("b_,heads,window,d,dv,n_mask,table", CASES)
def test_matches_reference(b_, heads, window, d, dv, n_mask, table):
    check_against_reference(_inputs(b_, heads, window, d, dv, n_mask, table))


@interpreted
@pytest.mark.parametrize("d", [64, 128])
def test_head_dims(d):
    check_against_reference(_inputs(2, 1, (7, 7), d, n_mask=2))


@interpreted
@pytest.mark.parametrize("window,n_mask", [((12, 12), 1), ((14, 14), 0)])
def test_large_windows(window, n_mask):
    """N = 144, 196: tails of several key blocks and the separate dQ kernel."""
    check_against_reference(_inputs(1, 1, window, 16, n_mask=n_mask))


@interpreted
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    check_against_reference(_inputs(4, 2, (7, 7), 32, n_mask=2, dtype=dtype))


@interpreted
def test_non_contiguous_inputs():
    """q, k, v as timm makes them: views of one qkv tensor, permuted."""
    b_, n, heads, d = 4, 12, 2, 16
    qkv = torch.randn(b_, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    assert not q.is_contiguous()
    table = 0.5 * torch.randn(5 * 7, heads)
    mask = torch.randn(8, 12, 12)[::4]  # a strided mask
    dq, dk, dv, _ = check_against_reference((q, k, v, table, [3, 4], mask, 0.3))
    assert dq.shape == q.shape


@interpreted
def test_several_windows_per_program(monkeypatch):
    """Force the multi-window loop (used at real sizes) with a ragged last group."""
    monkeypatch.setattr(wa, "TARGET_PROGRAMS", 3)
    monkeypatch.setattr(_triton_utils, "_CONFIGS", {})
    cfg = wa.config(49, 16, 16, 10, 2, torch.float32)
    assert cfg.wpp > 1 and 10 % cfg.wpp
    check_against_reference(_inputs(10, 2, (7, 7), 16, n_mask=5))
    check_against_reference(_inputs(3, 1, (12, 12), 16, n_mask=3))


@interpreted
def test_minus_inf_in_the_mask():
    """A user mask may hold -inf (not a whole row): those keys get probability 0 and no NaNs appear."""
    q, k, v, table, window, mask, scale = _inputs(4, 2, (3, 4), 16, n_mask=2)
    mask[:, :, 5:9] = float("-inf")
    mask[0, 3, :] = float("-inf")
    mask[0, 3, 0] = 0.0  # a row with a single key left
    got = check_against_reference((q, k, v, table, window, mask, scale))
    assert all(torch.isfinite(g).all() for g in got)


@interpreted
def test_backward_is_bitwise_deterministic():
    args = _inputs(8, 2, (7, 7), 16, n_mask=4)
    grad = torch.randn(8, 2, 49, 16)
    first, second = triton.backward(grad, *args), triton.backward(grad, *args)
    for name, a, b in zip(("q", "k", "v", "bias_table"), first, second):
        assert torch.equal(a, b), f"{name} differs between two identical backward runs"


@interpreted
def test_autograd_through_the_op():
    q, k, v, table, window, mask, _ = _inputs(4, 2, (3, 4), 16, n_mask=2)
    leaves = [t.requires_grad_() for t in (q, k, v, table)]
    got = sk.window_attention(q, k, v, bias_table=table, window_size=window, mask=mask, backend="triton")
    expected = sk.window_attention(q, k, v, bias_table=table, window_size=window, mask=mask, backend="reference")
    assert_close(got, expected, name="output")
    g = torch.randn_like(got)
    for name, a, e in zip("q k v bias_table".split(), torch.autograd.grad(got, leaves, g),
                          torch.autograd.grad(expected, leaves, g)):
        assert_close(a, e, name=name, scale=max(1.0, float(e.abs().max())))


@interpreted
def test_opcheck():
    q, k, v, table, window, mask, scale = _inputs(2, 1, (2, 3), 16, dv=8, n_mask=1)
    torch.library.opcheck(torch.ops.semask_kernels.window_attention, (q, k, v, table, window, mask, scale, "triton"))


def test_dispatch(monkeypatch):
    """Triton runs CPU tensors only under the interpreter and only when named; auto on the CPU is the reference."""
    args = _inputs(2, 1, (2, 2), 8)
    assert backends.choose_backend(OP, "auto", *args) == "torch"
    if _triton_utils.INTERPRETED and _env.triton_interpret():
        assert backends.choose_backend(OP, "triton", *args) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="backend 'triton' was requested but cannot run: .*TRITON_INTERPRET"):
        sk.window_attention(*args[:3], backend="triton")
    assert backends.choose_backend(OP, "auto", *args) == "torch"


@interpreted
def test_declines_what_it_cannot_run_with_a_reason():
    args = _inputs(2, 1, (2, 2), 8, dtype=torch.float64)
    assert "float64" in triton.supports(*args)
    assert sk.window_attention(*args[:3]).dtype == torch.float64  # auto falls back to the reference
    assert "head dim 300" in triton.supports(*_inputs(1, 1, (2, 2), 8, dv=300))
    q = torch.randn(1, 1, 1025, 8)
    assert "N=1025" in triton.supports(q, q, q, None, [1025, 1], None, 1.0)


@interpreted
@pytest.mark.skipif(not _env.test_sweep(), reason="randomized sweep: set SEMASK_TEST_SWEEP=1")
def test_random_shapes_sweep():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=50, deadline=None, derandomize=True)
    @hypothesis.given(wh=st.integers(1, 9), ww=st.integers(1, 9), heads=st.integers(1, 3), n_mask=st.integers(0, 3),
                      per_mask=st.integers(1, 2), d=st.integers(1, 40), dv=st.integers(1, 40), table=st.booleans(),
                      dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    def run(wh, ww, heads, n_mask, per_mask, d, dv, table, dtype):
        b_ = max(n_mask, 1) * per_mask
        check_against_reference(_inputs(b_, heads, (wh, ww), d, dv, n_mask, table, dtype=dtype))

    run()


# ------------------------------------------------------------------------------------------------ on a CUDA GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b_,heads,n_mask", [(128, 3, 64), (32, 6, 16), (8, 12, 4), (2, 24, 0)])  # Swin-T, batch 2
def test_gpu_swin_t_shapes(b_, heads, n_mask, dtype):
    check_against_reference(_inputs(b_, heads, (7, 7), 32, n_mask=n_mask, dtype=dtype, device="cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("window,d,dv", [((12, 12), 32, 32), ((14, 14), 32, 32), ((7, 7), 128, 128),
                                         ((12, 12), 128, 64), ((6, 10), 24, 40)])
def test_gpu_windows_and_head_dims(window, d, dv):
    check_against_reference(_inputs(16, 4, window, d, dv, n_mask=4, dtype=torch.float16, device="cuda"))


@pytest.mark.gpu
def test_gpu_deterministic():
    args = _inputs(2048, 3, (7, 7), 32, n_mask=64, dtype=torch.float16, device="cuda")
    grad = torch.randn(2048, 3, 49, 32, device="cuda", dtype=torch.float16)
    first, second = triton.backward(grad, *args), triton.backward(grad, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)

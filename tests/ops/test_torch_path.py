"""The fast PyTorch path (backend "torch") of every op against the reference, forward and backward, on awkward
shapes and in every dtype; it is what auto runs without a GPU; torch.compile traces it without a graph break."""
import pytest
import torch

import semask_kernels as sk
from semask_kernels import backends
from semask_kernels.ops.shifted_window_attention.spec import SHAPES as SWA_CASES
from tests.utils import assert_close, assert_error_within

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def _grads(out, leaves, grad):
    used = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, used, grad, allow_unused=True, materialize_grads=True)
    return list(grads)


def _compare(run, leaves64, dtype, names):
    """run(backend, *leaves) -> output. torch vs reference: equal in fp32/fp64 (tolerance policy); in half
    precision, within 2x (output) / 3x (gradients) of the reference's own error in that dtype."""
    def go(backend, dt):
        leaves = [t.detach().to(dt).requires_grad_(t.is_floating_point()) if t is not None else None
                  for t in leaves64]
        out = run(backend, *leaves)
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dt)
        return [out] + _grads(out, [t for t in leaves if t is not None and t.requires_grad], grad)

    got, ref = go("torch", dtype), go("reference", dtype)
    exact = go("reference", torch.float64)
    for i, (name, g, r, e) in enumerate(zip(names, got, ref, exact)):
        if dtype in (torch.float32, torch.float64):
            assert_close(g, r, name=name, scale=max(1.0, float(r.abs().max())))
        else:
            assert_error_within(g, r, e, 2.0 if i == 0 else 3.0, name=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("case", SWA_CASES, ids=str)
def test_shifted_window_attention(case, pad_order, dtype):
    b, h, w, window, shift = case
    heads, d = 2, 8
    n_table = (2 * window[0] - 1) * (2 * window[1] - 1)
    leaves = [torch.randn(b, h, w, 3 * heads * d, dtype=torch.float64), torch.randn(n_table, heads).double(),
              torch.randn(3 * heads * d, dtype=torch.float64)]

    def run(backend, qkv, table, qkv_bias):
        return sk.shifted_window_attention(qkv, table, num_heads=heads, window_size=window, shift_size=shift,
                                           qkv_bias=qkv_bias, pad_order=pad_order, backend=backend)
    _compare(run, leaves, dtype, ["out", "dqkv", "dtable", "dqkv_bias"])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("masked", [False, True])
def test_window_attention(masked, dtype):
    window, heads, nw = (3, 5), 2, 4
    n = window[0] * window[1]
    leaves = [torch.randn(8, heads, n, 8, dtype=torch.float64) for _ in range(3)]
    leaves.append(torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, dtype=torch.float64))
    mask = (torch.randint(0, 2, (nw, n, n)) * -100.0).double() if masked else None

    def run(backend, q, k, v, table):
        return sk.window_attention(q, k, v, bias_table=table, window_size=window,
                                   mask=mask.to(q.dtype) if masked else None, backend=backend)
    _compare(run, leaves, dtype, ["out", "dq", "dk", "dv", "dtable"])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("window", [None, 3, (4, 5)], ids=str)
def test_semantic_attention(window, dtype):
    b, h, w, k, c = 2, 7, 9, 5, 6
    leaves = [torch.randn(b, h, w, k, dtype=torch.float64) * 0.5, torch.randn(b, h, w, k, dtype=torch.float64),
              torch.randn(b, h, w, c, dtype=torch.float64), torch.randn(k, dtype=torch.float64),
              torch.randn(c, dtype=torch.float64)]

    def run(backend, s, k_, v, pad_k, pad_v):
        return sk.semantic_attention(s, k_, v, window_size=window, pad_k=pad_k if window else None,
                                     pad_v=pad_v if window else None, backend=backend)
    _compare(run, leaves, dtype, ["out", "ds", "dk", "dv", "dpad_k", "dpad_v"])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("align_corners", [False, True])
def test_prior_map_decode(align_corners, dtype):
    sizes = [(13, 9), (7, 5), (4, 3), (2, 2)]
    leaves = [torch.randn(2, 3, *s, dtype=torch.float64) for s in sizes]

    def run(backend, *maps):
        return sk.prior_map_decode(list(maps), align_corners=align_corners, backend=backend)
    _compare(run, leaves, dtype, ["out"] + [f"dmaps[{i}]" for i in range(4)])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_upsample_cross_entropy(avg_non_ignore, dtype):
    target = torch.randint(0, 5, (2, 21, 15))
    target[0, :4] = 255

    def run(backend, logits):
        return sk.upsample_cross_entropy(logits, target, avg_non_ignore=avg_non_ignore, backend=backend)
    _compare(run, [torch.randn(2, 5, 6, 4, dtype=torch.float64)], dtype, ["loss", "dlogits"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_half_precision_loss_accumulates_in_fp32(backend, dtype):
    """2x19x32x32 logits x3 against 2x256x256 labels: the sum passes fp16's 65504 (the loss was inf), and large
    logits (x30) stress the log-sum-exp; every path sums in fp32 and returns the logits' dtype."""
    torch.manual_seed(0)
    for scale in (3.0, 30.0):
        logits = torch.randn(2, 19, 32, 32, dtype=torch.float64) * scale
        target = torch.randint(0, 19, (2, 256, 256))
        exact = sk.upsample_cross_entropy(logits, target, backend="reference")
        low = logits.to(dtype).requires_grad_()
        loss = sk.upsample_cross_entropy(low, target, backend=backend)
        assert loss.dtype == dtype and torch.isfinite(loss)
        expected = sk.upsample_cross_entropy(low.detach().double(), target, backend="reference")
        assert abs(float(loss) - float(expected)) <= 2 * TOL[dtype] * abs(float(expected)), (float(loss), float(exact))
        loss.backward()
        assert torch.isfinite(low.grad).all()


TOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3}  # one rounding of the fp32 result to the logits' dtype


def test_auto_runs_the_torch_path_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("checks what a machine without a GPU runs")
    qkv = torch.randn(1, 10, 9, 48)
    args = (qkv, torch.randn(169, 2), None, 2, [7, 7], [3, 3], 0.25, "roll_then_pad", -100.0)
    assert backends.choose_backend("shifted_window_attention", "auto", *args) == "torch"
    out = sk.shifted_window_attention(qkv.requires_grad_(), args[1], num_heads=2, window_size=7, shift_size=3)
    assert out.grad_fn is not None and "Reverse" in type(out.grad_fn).__name__ + str(out.grad_fn.next_functions)


def test_layout_cache_is_keyed_by_geometry_not_values():
    from semask_kernels.ops.shifted_window_attention import torch_path
    torch_path._CACHE.clear()
    for _ in range(3):
        qkv = torch.randn(2, 10, 9, 48)
        sk.shifted_window_attention(qkv, torch.randn(169, 2), num_heads=2, window_size=7, shift_size=3,
                                    backend="torch")
    assert len(torch_path._CACHE) == 1
    sk.shifted_window_attention(torch.randn(2, 11, 9, 48), torch.randn(169, 2), num_heads=2, window_size=7,
                                shift_size=3, backend="torch")
    assert len(torch_path._CACHE) == 2


def test_patched_timm_swin_compiles_without_a_graph_break():
    timm = pytest.importorskip("timm")
    model = sk.patch_timm_swin(timm.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=3,
                                                 embed_dim=16, num_heads=(1, 2, 2, 4), depths=(1, 2, 1, 1),
                                                 num_classes=5)).eval()
    x = torch.randn(2, 3, 96, 96)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert_close(compiled(x), model(x))

"""shifted_window_attention, the ``triton.onepass`` variant: what is specific to it (one launch per backward and
no statistics pass for one-tile windows, the fixed-order bias-table bins, launch arguments cached per geometry,
the saved log-sum-exp of larger windows: the op's second output, the backward that starts from it).

Its forward and gradients against the reference on every case of the spec (fp32/fp16/bf16, shifted, padded, both
pad orders, 7x7, 12x12, 14x14, odd head dims), layouts, determinism and opcheck are in the conformance suite
(tests/ops/test_conformance.py, backend id ``triton.onepass``). Under the Triton interpreter on the CPU.
"""
import pytest
import torch

import semask_kernels as sk
from semask_kernels import _env, _triton_utils
from semask_kernels.kernels import window_attention as wa
from semask_kernels.kernels import window_attention_lse as lse_kernels
from semask_kernels.kernels import window_attention_onepass as onepass
from semask_kernels.ops._windows import relative_position_index
from semask_kernels.ops.shifted_window_attention import triton, triton_onepass
from semask_kernels.ops.shifted_window_attention.spec import SPEC, inputs
from tests.ops.conformance import check

interpreted = pytest.mark.skipif(not (_triton_utils.INTERPRETED and _env.triton_interpret()),
                                 reason="the Triton interpreter is off (set TRITON_INTERPRET=1 before the import)")


def _args(b, h, w, heads, d, window, shift, pad_order="roll_then_pad"):
    kw = inputs(b, h, w, heads, d, window, shift, pad_order).kwargs
    return (kw["qkv"].detach(), kw["bias_table"].detach(), kw["qkv_bias"].detach(), heads, list(window),
            list(shift), d ** -0.5, pad_order, -100.0)


class _Launches:
    """Counts the launches of the window-attention kernels (both families) while active."""

    def __init__(self, monkeypatch):
        self.names = []
        for mod in (wa, onepass, lse_kernels):
            for name in [n for n in vars(mod) if n.endswith("_kernel")]:
                kernel = getattr(mod, name)
                monkeypatch.setattr(mod, name, self._wrap(name, kernel))

    def _wrap(self, name, kernel):
        outer = self

        class Wrapped:
            def __getitem__(self, grid):
                def launch(*args, **kwargs):
                    outer.names.append(name)
                    return kernel[grid](*args, **kwargs)
                return launch
        return Wrapped()


@interpreted
def test_one_tile_backward_is_one_pass_and_one_reduction(monkeypatch):
    """7x7 windows: the backward launches the one-pass kernel and the bins reduction, no statistics pass (no
    forward kernel), and matches the verified backward."""
    args = _args(1, 10, 9, 2, 16, (7, 7), (3, 3))
    grad = torch.randn(1, 10, 9, 32)
    launches = _Launches(monkeypatch)
    got = triton_onepass.backward(grad, *args)
    assert launches.names == ["_onepass_bwd_kernel", "_table_bins_kernel"]
    launches.names.clear()
    triton_onepass.forward(*args)
    assert launches.names == ["_allheads_fwd_kernel"] * 2  # every window, then the padded ones with qkv_bias
    want = triton.backward(grad, *args)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@interpreted
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
def test_windows_over_one_tile_save_the_lse_and_the_backward_starts_from_it(monkeypatch, pad_order):
    """12x12: the forward saves the log-sum-exp (the verified statistics pass's numbers), the backward from it
    runs no forward kernel (dQ with delta, then dK/dV, then the bins), and gives the bits of the backward that
    recomputes the statistics first."""
    args = _args(1, 13, 12, 2, 16, (12, 12), (6, 6), pad_order)
    grad = torch.randn(1, 13, 12, 32)
    launches = _Launches(monkeypatch)
    out, lse = triton_onepass.forward_saving_stats(*args)
    assert launches.names == ["_lse_fwd_kernel"]
    assert lse.dtype == torch.float32 and lse.shape == (2, 2, 144)
    p = triton._problem(*args)
    want_lse, delta = torch.empty_like(lse), torch.empty_like(lse)
    wa.attention_forward(p, grad, stats=(grad, want_lse, delta))
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, triton.forward(*args), atol=1e-5, rtol=1e-5)
    launches.names.clear()
    got = triton_onepass.backward_from_stats(grad, out, lse, *args)
    assert launches.names == ["_lse_bwd_q_kernel", "_bwd_kv_kernel", "_table_bins_kernel"]
    for g, w in zip(got, triton.backward(grad, *args)):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    launches.names.clear()
    recomputed = triton_onepass.backward(grad, *args)
    assert launches.names[0] == "_lse_fwd_kernel" and "_lse_bwd_q_kernel" in launches.names
    for g, w in zip(got, recomputed):
        assert torch.equal(g, w)
    for g, w in zip(got, triton_onepass.backward_from_stats(grad, out, lse, *args)):
        assert torch.equal(g, w)  # bitwise repeatable


@interpreted
def test_the_op_saves_statistics_only_when_a_gradient_is_needed_over_one_tile():
    op = torch.ops.semask_kernels.shifted_window_attention
    large = _args(1, 13, 12, 2, 16, (12, 12), (6, 6))
    out, stats = op(*large, "triton.onepass", True)
    assert stats.shape == (2, 2, 144) and torch.isfinite(stats).all()
    assert op(*large, "triton.onepass", False)[1].numel() == 0
    assert op(*large, "triton", True)[1].numel() == 0  # only backends that use it save it
    assert op(*large, "triton.onepass/triton", True)[1].numel() == 0  # the backward would not use it
    assert op(*_args(1, 10, 9, 2, 16, (7, 7), (3, 3)), "triton.onepass", True)[1].numel() == 0  # one tile


@interpreted
def test_opcheck_with_saved_statistics():
    """The custom op's second output, its fake kernel and the backward from the saved statistics."""
    call = inputs(1, 13, 12, 1, 16, (12, 12), (6, 6), "pad_then_roll").to()
    args = SPEC.arguments(call)
    torch.library.opcheck(torch.ops.semask_kernels.shifted_window_attention, (*args, "triton.onepass", True))


@interpreted
def test_saved_statistics_of_the_wrong_shape_are_refused():
    args = _args(1, 13, 12, 2, 16, (12, 12), (6, 6))
    out, lse = triton_onepass.forward_saving_stats(*args)
    with pytest.raises(ValueError, match="lse must be float32 of shape"):
        triton_onepass.backward_from_stats(torch.randn_like(out), out, lse[:1], *args)


@interpreted
def test_compiled_training_step_over_one_tile_matches_eager():
    """torch.compile(fullgraph): the op's two outputs and the saved statistics trace through the fake kernels."""
    call = inputs(1, 13, 12, 2, 16, (12, 12), (6, 6), "pad_then_roll")

    def step(qkv, table, qkv_bias):
        out = sk.shifted_window_attention(qkv, table, num_heads=2, window_size=12, shift_size=6, qkv_bias=qkv_bias,
                                          pad_order="pad_then_roll", backend="triton.onepass")
        return (out * out).sum()

    results = []
    for fn in (step, torch.compile(step, fullgraph=True, backend="aot_eager")):
        leaves = [call.kwargs[k].detach().clone().requires_grad_() for k in ("qkv", "bias_table", "qkv_bias")]
        loss = fn(*leaves)
        results.append([loss, *torch.autograd.grad(loss, leaves)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@interpreted
def test_launch_arguments_are_built_once_per_geometry(monkeypatch):
    onepass._LAUNCH_ARGS.clear()
    built = []
    original = onepass._geometry_args
    monkeypatch.setattr(onepass, "_geometry_args", lambda p: built.append(1) or original(p))
    args = _args(1, 10, 9, 2, 16, (7, 7), (3, 3))
    for _ in range(3):
        triton_onepass.forward(*args)
    assert len(built) == 2  # the launch over every window and the one over the padded windows
    triton_onepass.forward(*_args(1, 10, 9, 2, 16, (7, 7), (3, 3), "pad_then_roll"))  # another geometry
    assert len(built) == 4


@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("h,w,window,shift", [(10, 9, (7, 7), (3, 3)), (30, 27, (7, 7), (3, 3)),
                                              (16, 13, (4, 6), (2, 3)), (14, 14, (7, 7), (3, 3)),
                                              (9, 20, (3, 8), (1, 0))])
def test_padded_windows_are_exactly_those_with_a_padding_token(h, w, window, shift, pad_order):
    """The forward's second launch covers every window with a padding token and no other (brute force over
    the padded grid, the reference's geometry)."""
    p = triton._problem(*_args(2, h, w, 1, 16, window, shift, pad_order))
    s = p.shift
    want = set()
    for b in range(2):
        for ph in range(s.hp):
            for pw in range(s.wp):
                if pad_order == "pad_then_roll":
                    pad = (ph + s.sh) % s.hp >= h or (pw + s.sw) % s.wp >= w
                else:
                    pad = ph >= h or pw >= w
                if pad:
                    want.add(b * s.nwin + (ph // window[0]) * s.nwc + pw // window[1])
    got = onepass.padded_windows(p, torch.device("cpu"))
    assert got.dtype == torch.int32 and got.tolist() == sorted(want)


@interpreted
def test_a_map_without_padding_tokens_is_one_launch(monkeypatch):
    launches = _Launches(monkeypatch)
    triton_onepass.forward(*_args(1, 14, 14, 2, 16, (7, 7), (3, 3)))
    assert launches.names == ["_allheads_fwd_kernel"]


@pytest.mark.parametrize("window", [(7, 7), (4, 6), (2, 2)])
def test_bin_index_covers_every_pair_once_in_row_major_order(window):
    n = window[0] * window[1]
    block = 64
    index = onepass.bin_index(window, block, torch.device("cpu"))
    assert index.shape[0] == (2 * window[0] - 1) * (2 * window[1] - 1)
    flat = index[index >= 0]
    assert sorted(flat.tolist()) == sorted(i * block + j for i in range(n) for j in range(n))
    rel = relative_position_index(window).flatten()
    for t in range(index.shape[0]):
        row = index[t][index[t] >= 0].tolist()
        assert row == sorted(row)  # a fixed, row-major order within each bin
        assert all(rel[(p // block) * n + p % block] == t for p in row)


@interpreted
def test_table_bins_match_a_scatter_add_and_are_bitwise_repeatable():
    window, block, heads = (7, 7), 64, 3
    pt = torch.randn(5, heads, block, block)
    n = 49
    rel = relative_position_index(window).flatten()
    want = torch.zeros(169, heads, dtype=torch.float64)
    plane = pt[:, :, :n, :n].double().sum(0).reshape(heads, -1).t()  # (n*n, heads)
    want.index_add_(0, rel, plane)
    got = onepass.table_bins(pt, window, block)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)
    assert torch.equal(got, onepass.table_bins(pt, window, block))


# GPU sizes: the Swin-T stages at 224 (batch 2) and the windows / head dims beyond one tile; the evidence that
# `.ci/gpu-check all` collects for this variant.

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("pad_order", ["roll_then_pad", "pad_then_roll"])
@pytest.mark.parametrize("h,w,heads", [(56, 56, 3), (28, 28, 6), (14, 14, 12), (7, 7, 24), (30, 27, 4)])
def test_gpu_swin_t_shapes(h, w, heads, pad_order, dtype):
    shift = (3, 3) if min(h, w) > 7 else (0, 0)
    check(SPEC, "triton.onepass", inputs(2, h, w, heads, 32, (7, 7), shift, pad_order, device="cuda"), dtype,
          rule="bounds")


@pytest.mark.gpu
@pytest.mark.parametrize("window,d", [((12, 12), 32), ((7, 7), 64), ((7, 7), 128), ((8, 8), 32)])
def test_gpu_windows_and_head_dims(window, d):
    call = inputs(2, 30, 27, 4, d, window, (window[0] // 2, window[1] // 2), "pad_then_roll", device="cuda")
    check(SPEC, "triton.onepass", call, torch.float16, rule="bounds")


@pytest.mark.gpu
def test_gpu_backward_is_bitwise_repeatable():
    args = _args(2, 56, 56, 3, 32, (7, 7), (3, 3))
    args = tuple(a.to("cuda", torch.float16) if isinstance(a, torch.Tensor) else a for a in args)
    grad = torch.randn(2, 56, 56, 96, device="cuda", dtype=torch.float16)
    first, second = triton_onepass.backward(grad, *args), triton_onepass.backward(grad, *args)
    for a, b in zip(first, second):
        assert torch.equal(a, b)

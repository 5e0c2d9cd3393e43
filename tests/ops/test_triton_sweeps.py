"""Randomized shape sweeps of the window-attention Triton kernels against the reference (``SEMASK_TEST_SWEEP=1``;
hypothesis draws the shapes, derandomized so a failure reproduces), through both ops that launch them."""
import pytest
import torch

from semask_kernels import _env, _triton_utils
from semask_kernels.ops.shifted_window_attention import spec as swa
from semask_kernels.ops.window_attention import spec as wa
from tests.ops.conformance import check

pytestmark = [
    pytest.mark.skipif(not (_triton_utils.INTERPRETED and _env.triton_interpret()),
                       reason="the Triton interpreter is off (set TRITON_INTERPRET=1 before the import)"),
    pytest.mark.skipif(not _env.test_sweep(), reason="randomized sweep: set SEMASK_TEST_SWEEP=1"),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _sweep(examples: int, strategies, build) -> None:
    """Check the Triton backend on ``examples`` draws: ``strategies(st)`` names the drawn values,
    ``build(st, **drawn)`` returns (spec, call, dtype)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True)
    @hypothesis.given(**strategies(st))
    def run(**drawn):
        spec, call, dtype = build(st, **drawn)
        check(spec, "triton", call, dtype, rule="bounds")

    run()


def test_window_attention():
    def build(st, wh, ww, heads, n_mask, per_mask, d, dv, table, dtype):
        return wa.SPEC, wa.inputs(max(n_mask, 1) * per_mask, heads, (wh, ww), d, dv, n_mask, table), dtype
    _sweep(50, lambda st: dict(wh=st.integers(1, 9), ww=st.integers(1, 9), heads=st.integers(1, 3),
                               n_mask=st.integers(0, 3), per_mask=st.integers(1, 2), d=st.integers(1, 40),
                               dv=st.integers(1, 40), table=st.booleans(), dtype=st.sampled_from(DTYPES)), build)


def test_shifted_window_attention():
    def build(st, b, h, w, wh, ww, heads, d, data, pad_order, bias, dtype):
        shift = (data.draw(st.integers(0, wh - 1)), data.draw(st.integers(0, ww - 1)))
        return swa.SPEC, swa.inputs(b, h, w, heads, d, (wh, ww), shift, pad_order, bias), dtype
    _sweep(25, lambda st: dict(b=st.integers(1, 2), h=st.integers(1, 15), w=st.integers(1, 15), wh=st.integers(1, 8),
                               ww=st.integers(1, 8), heads=st.integers(1, 3), d=st.sampled_from([8, 16, 20, 32]),
                               data=st.data(), pad_order=st.sampled_from(["roll_then_pad", "pad_then_roll"]),
                               bias=st.booleans(), dtype=st.sampled_from(DTYPES)), build)

"""The banded interpolation weights of prior_map_decode reproduce torch's composite bilinear upsampling (CPU)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semask_kernels.kernels.bilinear_bands import band_weights, composite_matrix, dense_matrix

# (H0, W0) of maps[0] and the (h_i, w_i) of levels 1.. : halves, odd sizes, not-exactly-half, 1×1, growing.
CASES = [
    ((16, 16), [(8, 8), (4, 4), (2, 2)]),
    ((13, 9), [(7, 5), (4, 3), (2, 2)]),
    ((13, 9), [(1, 1), (1, 1), (1, 1)]),
    ((1, 1), [(1, 1), (1, 1)]),
    ((5, 12), [(3, 6), (2, 3), (1, 2)]),
    ((6, 7), [(5, 7), (3, 2)]),  # 2^i·h_i > H0: the final resize shrinks
    ((2, 3), [(4, 9)]),  # a level larger than maps[0]
]


def composite_up(x: torch.Tensor, level: int, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """The decoder's up_i, written out: ``level`` ×2 bilinear upsamplings, then a resize when sizes differ."""
    for _ in range(level):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=align_corners)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    return x


def _dense(in_size, out_size, level, ac, transpose):
    start, weight = band_weights(in_size, out_size, level, ac, transpose, torch.float64, "cpu")
    cols = out_size if transpose else in_size
    return dense_matrix(start, weight, cols)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size0,levels", CASES)
def test_bands_reproduce_composite_2d(size0, levels, align_corners):
    torch.manual_seed(0)
    (h0, w0) = size0
    x0 = torch.randn(2, 3, h0, w0, dtype=torch.float64)
    expected, got = x0.clone(), x0.clone()
    for level, (h, w) in enumerate(levels, start=1):
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        up = composite_up(x, level, size0, align_corners)
        a = _dense(h, h0, level, align_corners, False)
        b = _dense(w, w0, level, align_corners, False)
        torch.testing.assert_close(a @ x @ b.t(), up, rtol=0, atol=1e-12, msg=f"level {level} {(h, w)}")
        expected += up
        got += a @ x @ b.t()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size0,levels", CASES)
def test_transposed_bands_are_the_transpose(size0, levels, align_corners):
    for level, (h, w) in enumerate(levels, start=1):
        for n, n0 in ((h, size0[0]), (w, size0[1])):
            m = _dense(n, n0, level, align_corners, False)
            mt = _dense(n, n0, level, align_corners, True)
            assert mt.shape == (n, n0)
            torch.testing.assert_close(mt, m.t(), rtol=0, atol=0)
            torch.testing.assert_close(m, composite_matrix(n, n0, level, align_corners), rtol=0, atol=0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_transposed_bands_give_the_autograd_gradient(align_corners):
    torch.manual_seed(1)
    (h0, w0), (h, w), level = (13, 9), (4, 3), 2
    x = torch.randn(1, 2, h, w, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(1, 2, h0, w0, dtype=torch.float64)
    composite_up(x, level, (h0, w0), align_corners).backward(grad)
    at = _dense(h, h0, level, align_corners, True)
    bt = _dense(w, w0, level, align_corners, True)
    torch.testing.assert_close(at @ grad @ bt.t(), x.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("in_size,out_size,level", [(7, 13, 1), (4, 13, 2), (2, 13, 3), (1, 13, 3), (9, 5, 1),
                                                     (3, 3, 0), (64, 256, 2)])
def test_band_layout(in_size, out_size, level, transpose):
    start, weight = band_weights(in_size, out_size, level, False, transpose, torch.float32, "cpu")
    rows, cols = (in_size, out_size) if transpose else (out_size, in_size)
    assert start.dtype == torch.int32 and start.shape == (rows,)
    assert weight.dtype == torch.float32 and weight.dim() == 2 and weight.shape[0] == rows
    assert weight.shape[1] >= 1 and weight.is_contiguous() and start.is_contiguous()
    assert int(start.min()) >= 0 and int(start.max()) + weight.shape[1] <= cols  # never reads out of bounds
    if not transpose:
        assert weight.shape[1] <= 4  # the forward band stays a few taps wide


def test_bands_are_cached_on_cpu_and_converted():
    s1, w1 = band_weights(7, 13, 1, False, False, torch.float64, "cpu")
    s2, w2 = band_weights(7, 13, 1, False, False, torch.float16, "cpu")
    assert w2.dtype == torch.float16 and torch.equal(s1, s2)
    torch.testing.assert_close(w2.double(), w1, rtol=0, atol=1e-3)
    w1.zero_()  # a caller mutating its result (same dtype and device as the cache) must not poison the cache
    s1.zero_()
    s3, w3 = band_weights(7, 13, 1, False, False, torch.float64, "cpu")
    assert w3.abs().sum() > 0 and torch.equal(s3, s2)


@pytest.mark.parametrize("bad", [dict(in_size=0), dict(out_size=0), dict(levels=-1)])
def test_band_weights_rejects_bad_sizes(bad):
    args = dict(in_size=4, out_size=8, levels=1) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        band_weights(args["in_size"], args["out_size"], args["levels"], False, False)

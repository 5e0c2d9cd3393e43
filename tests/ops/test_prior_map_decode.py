"""prior_map_decode: the reference against the official composite (nn.Upsample ×2 repeated, then resize)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import semask_kernels as sk
from tests.utils import assert_close


def official_decode(maps, align_corners):
    """Transcription of the semantic branch of the official ``BranchFPNHead``: ``log2(stride_i/4)`` modules
    ``nn.Upsample(scale_factor=2, mode='bilinear')`` per level, then an mmseg ``resize`` to maps[0]'s size."""
    out = maps[0]
    for level, x in enumerate(maps[1:], start=1):
        heads = nn.Sequential(*[nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners)
                                for _ in range(level)])
        out = out + F.interpolate(heads(x), size=out.shape[2:], mode="bilinear", align_corners=align_corners)
    return out


# maps[0] size and level sizes: exact halves, odd sizes (ceil), a 1×1 level, and two levels only.
SIZES = [
    [(16, 16), (8, 8), (4, 4), (2, 2)],
    [(13, 9), (7, 5), (4, 3), (2, 2)],
    [(10, 7), (5, 4), (3, 2), (1, 1)],
    [(6, 6), (3, 3)],
    [(5, 5)],
]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_matches_official_composite(sizes, align_corners):
    maps = [torch.randn(2, 3, h, w, requires_grad=True) for h, w in sizes]
    expected = official_decode(maps, align_corners)
    got = sk.prior_map_decode(maps, align_corners=align_corners, backend="reference")
    assert_close(got, expected, name="output")
    g = torch.randn_like(got)
    for i, (a, e) in enumerate(zip(torch.autograd.grad(got, maps, g), torch.autograd.grad(expected, maps, g))):
        assert_close(a, e, name=f"grad maps[{i}]")


def test_not_one_big_resize():
    """Successive ×2 upsamplings differ from a single ×8 resize: the op must be the composite."""
    maps = [torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4),
            torch.randn(1, 1, 2, 2)]
    single = F.interpolate(maps[3], size=(16, 16), mode="bilinear", align_corners=False)
    assert (sk.prior_map_decode(maps) - single).abs().max() > 1e-3


def test_single_map_is_a_copy():
    m = torch.randn(1, 2, 3, 3)
    out = sk.prior_map_decode([m])
    assert torch.equal(out, m) and out.data_ptr() != m.data_ptr()


def test_gradcheck():
    maps = [torch.randn(1, 2, h, w, dtype=torch.float64, requires_grad=True) for h, w in SIZES[1]]
    assert torch.autograd.gradcheck(lambda *m: sk.prior_map_decode(list(m), backend="reference"), tuple(maps))


def test_opcheck():
    maps = [torch.randn(2, 3, h, w, requires_grad=True) for h, w in SIZES[1]]
    torch.library.opcheck(torch.ops.semask_kernels.prior_map_decode, (maps, False, "reference"))


def test_compile_fullgraph_matches_eager():
    maps = [torch.randn(2, 3, h, w) for h, w in SIZES[0]]

    def fn(*maps):
        return sk.prior_map_decode(list(maps))

    assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(*maps), fn(*maps))


BAD = [
    (torch.randn(2, 3, 4, 4), TypeError, "maps must be a non-empty list"),
    ([], TypeError, "maps must be a non-empty list"),
    ([torch.randn(2, 3, 4, 4), torch.randn(2, 4, 2, 2)], ValueError, r"maps\[1\] must have \(B, K\)"),
    ([torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2)], ValueError, r"maps\[1\] must have 4 dimensions"),
    ([torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2).double()], TypeError, r"maps\[1\] must have the same dtype"),
    ([torch.randn(2, 3, 4, 4), torch.randn(2, 3, 0, 2)], ValueError, r"maps\[1\] must have a non-empty"),
]


@pytest.mark.parametrize("maps,exc,match", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_names_the_argument(maps, exc, match):
    with pytest.raises(exc, match=match):
        sk.prior_map_decode(maps)


def test_forced_cuda_backend_without_gpu_says_why():
    with pytest.raises(RuntimeError, match="backend 'cuda' was requested but cannot run"):
        sk.prior_map_decode([torch.randn(1, 1, 2, 2)], backend="cuda")

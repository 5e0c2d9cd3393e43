"""Padded maps with shifted windows: the patched timm block, the patched transformers SwinLayer and
MaskFormerSwinLayer and the SeMask backbone's block against the stock code, over every pad width 0..window-1 on
each axis crossed with every shift 0..window-1 (W-MSA and SW-MSA blocks), including pads at least as wide as the
shift (a 7x9 map with window 4 and shift 2 pads one row and three columns). Eval and train mode (drop path 0),
outputs, the input gradient and every parameter gradient, for the reference, torch and Triton backends (Triton on
a subset: the interpreter is slow).

All weights are random, biases and position-bias tables included: padded tokens carry the qkv bias and real tokens
attend to them, so a padding or mask error shows up in the outputs."""
import copy

import pytest
import torch
import torch.nn.functional as F

import semask_kernels as sk
from tests.utils import assert_close

timm = pytest.importorskip("timm")
from timm.models.swin_transformer import SwinTransformerBlock  # noqa: E402

WINDOW = 4
# (H, W) with pads (-H % 4, -W % 4): (0, 3), (1, 2), (2, 1), (3, 0), (1, 3), (3, 3), (0, 0)
MAPS = [(8, 5), (7, 6), (6, 7), (5, 8), (7, 9), (9, 5), (8, 8)]
SHIFTS = [(0, 0), (1, 1), (2, 2), (3, 3), (1, 3), (2, 0)]
TRITON_MAPS = [(7, 9), (5, 8)]
TRITON_SHIFTS = [(0, 0), (2, 2), (3, 1)]


def _randomize(module: torch.nn.Module, std: float = 0.5) -> None:
    """Every parameter random (biases, LayerNorm affine and position-bias tables too)."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def _compare(stock, patched, x, train: bool, run=lambda m, x: m(x), scale: float = 10) -> None:
    """Same output, input gradient and parameter gradients in ``train`` or eval mode."""
    stock.train(train)
    patched.train(train)
    xs, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch.manual_seed(1)
    expected = run(stock, xs)
    torch.manual_seed(1)
    got = run(patched, xp)
    assert_close(got, expected, name="output", scale=scale)
    g = torch.randn_like(expected)
    expected.backward(g)
    got.backward(g)
    assert_close(xp.grad, xs.grad, name="input grad", scale=scale)
    stock_grads = dict(stock.named_parameters())
    for name, p in patched.named_parameters():
        expected_grad = stock_grads[name].grad
        assert (p.grad is None) == (expected_grad is None), f"grad {name}: only one model has it"
        if expected_grad is not None:  # None: a parameter the run does not use (a head after forward_features)
            assert_close(p.grad, expected_grad, name=f"grad {name}", scale=scale)


def _timm_pair(hw, shift, backend, dynamic_mask=False, always_partition=False, resolution=None):
    stock = SwinTransformerBlock(16, resolution or hw, num_heads=2, window_size=WINDOW, shift_size=shift,
                                 dynamic_mask=dynamic_mask, always_partition=always_partition)
    _randomize(stock)
    patched = sk.patch_timm_swin(copy.deepcopy(stock), backend=backend)
    assert type(patched).__name__ == "FusedSwinTransformerBlock"
    return stock, patched


def test_the_grid_covers_pads_at_least_as_wide_as_the_shift():
    pads = {(-h % WINDOW, -w % WINDOW) for h, w in MAPS}
    assert {p for pair in pads for p in pair} == set(range(WINDOW))
    assert any(p >= s > 0 for (h, w) in MAPS for (sh, sw) in SHIFTS for p, s in ((-h % 4, sh), (-w % 4, sw)))
    assert any(0 < p < s for (h, w) in MAPS for (sh, sw) in SHIFTS for p, s in ((-h % 4, sh), (-w % 4, sw)))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("shift", SHIFTS, ids=str)
@pytest.mark.parametrize("hw", MAPS, ids=str)
def test_timm_block_matches_stock(hw, shift, backend, train):
    stock, patched = _timm_pair(hw, shift, backend)
    assert stock.shift_size == shift  # every map here is larger than the window: timm keeps the shift
    _compare(stock, patched, torch.randn(2, *hw, 16), train)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("shift", [(2, 2), (3, 1)], ids=str)
@pytest.mark.parametrize("hw", [(7, 9), (5, 8), (9, 5)], ids=str)
def test_timm_block_dynamic_mask_matches_stock(hw, shift, backend):
    """strict_img_size=False: timm builds the mask from the padded map on every forward, here from a block built
    for another resolution."""
    stock, patched = _timm_pair(hw, shift, backend, dynamic_mask=True, resolution=(16, 16))
    _compare(stock, patched, torch.randn(2, *hw, 16), train=False)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("hw", [(3, 5), (2, 7), (3, 3)], ids=str)
def test_timm_block_always_partition_on_maps_smaller_than_the_window(hw, backend):
    """always_partition=True keeps window 4 and shift 2 on maps of 3 or fewer rows: the padded grid is one window
    row, mostly padding, and the shift still splits it into regions."""
    stock, patched = _timm_pair(hw, (2, 2), backend, always_partition=True)
    assert stock.window_size == (4, 4) and stock.shift_size == (2, 2)
    _compare(stock, patched, torch.randn(2, *hw, 16), train=True)


@pytest.mark.parametrize("shift", TRITON_SHIFTS, ids=str)
@pytest.mark.parametrize("hw", TRITON_MAPS, ids=str)
def test_timm_block_triton_matches_stock(hw, shift):
    stock, patched = _timm_pair(hw, shift, "triton")
    _compare(stock, patched, torch.randn(2, *hw, 16), train=True)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "dynamic"])
@pytest.mark.parametrize("backend", ["auto", "reference", "torch"])
def test_timm_model_7x9_map_matches_stock(backend, strict):
    """The reported geometry in a whole model: 28x36 images give a 7x9 stage-1 map (window 4, shift 2 in its
    second block, pads 1 and 3) and a 4x5 stage-2 map (window 4, shift (0, 2))."""
    stock = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=(28, 36), window_size=4,
                              embed_dim=16, depths=(2, 2), num_heads=(2, 4), num_classes=3, drop_path_rate=0.0,
                              strict_img_size=strict)
    assert [tuple(b.shift_size) for b in stock.layers[0].blocks] == [(0, 0), (2, 2)]
    assert [tuple(b.shift_size) for b in stock.layers[1].blocks] == [(0, 0), (0, 2)]
    _randomize(stock)
    patched = sk.patch_timm_swin(copy.deepcopy(stock), backend=backend)
    _compare(stock, patched, torch.randn(2, 3, 28, 36), train=False, run=lambda m, x: m.forward_features(x))


# ------------------------------------------------------------------------------------ transformers (pad, then roll)

def _hf_pair(hw, shift, backend, kind="SwinLayer"):
    transformers = pytest.importorskip("transformers")
    from transformers.models.maskformer.modeling_maskformer_swin import MaskFormerSwinLayer
    from transformers.models.swin.modeling_swin import SwinLayer

    if kind == "SwinLayer":
        config = transformers.SwinConfig(embed_dim=16, window_size=WINDOW, num_heads=[2], depths=[1])
        stock = SwinLayer(config, dim=16, input_resolution=hw, num_heads=2, shift_size=shift)
    else:
        config = transformers.MaskFormerSwinConfig(embed_dim=16, window_size=WINDOW, num_heads=[2], depths=[1])
        stock = MaskFormerSwinLayer(config, dim=16, input_resolution=hw, num_heads=2, shift_size=shift)
    _randomize(stock)
    patched = sk.patch_hf_swin(copy.deepcopy(stock), backend=backend, strict=True)
    assert type(patched).__name__ == f"Fused{kind}"
    return stock, patched


HF_MAPS = [(8, 5), (7, 6), (6, 7), (5, 8), (7, 9), (5, 5)]  # transformers clamps the window on maps <= 4


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("shift", [0, 1, 2, 3])
@pytest.mark.parametrize("hw", HF_MAPS, ids=str)
def test_hf_layer_matches_stock(hw, shift, backend, train):
    stock, patched = _hf_pair(hw, shift, backend)
    _compare(stock, patched, torch.randn(2, hw[0] * hw[1], 16), train, run=lambda m, x: m(x, hw)[0])


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("shift", [0, 2, 3])
@pytest.mark.parametrize("hw", [(7, 9), (8, 5), (5, 6)], ids=str)
def test_hf_maskformer_layer_matches_stock(hw, shift, backend):
    stock, patched = _hf_pair(hw, shift, backend, kind="MaskFormerSwinLayer")
    _compare(stock, patched, torch.randn(2, hw[0] * hw[1], 16), True, run=lambda m, x: m(x, hw)[0])


@pytest.mark.parametrize("shift", [0, 2, 3])
@pytest.mark.parametrize("hw", [(7, 9)], ids=str)
def test_hf_layer_triton_matches_stock(hw, shift):
    stock, patched = _hf_pair(hw, shift, "triton")
    _compare(stock, patched, torch.randn(2, hw[0] * hw[1], 16), True, run=lambda m, x: m(x, hw)[0])


# -------------------------------------------------- semask_models' Swin block vs the official order, step by step

def _official_attention(attn, x: torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """The official Swin-segmentation / SeMask-FPN block attention on the normed map x (B, H, W, C): zero-pad
    bottom/right, roll the padded map, the 9-slice region mask on the padded grid, partition, attention with the
    gathered bias, reverse, roll back, crop; ``attn`` only lends its weights."""
    b, h, w, c = x.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    n, heads = window * window, attn.num_heads

    def partition(t):
        return t.view(t.shape[0], hp // window, window, wp // window, window, -1).permute(0, 1, 3, 2, 4, 5) \
            .reshape(-1, n, t.shape[-1])

    x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    mask = None
    if shift > 0:
        x = torch.roll(x, (-shift, -shift), (1, 2))
        img = torch.zeros(1, hp, wp, 1)
        cnt = 0
        for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                img[:, hs, ws, :] = cnt
                cnt += 1
        regions = partition(img).squeeze(-1)
        mask = (regions[:, None, :] != regions[:, :, None]).float() * -100.0
    windows = partition(x)
    q, k, v = attn.qkv(windows).view(-1, n, 3, heads, attn.attn_dim // heads).permute(2, 0, 3, 1, 4)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    index = attn.relative_position_index.view(-1)
    scores = scores + attn.relative_position_bias_table[index].view(n, n, heads).permute(2, 0, 1)
    if mask is not None:
        scores = (scores.view(b, -1, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
    out = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, attn.attn_dim))
    out = out.view(b, hp // window, wp // window, window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    if shift > 0:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out[:, :h, :w]


class _OfficialBlock(torch.nn.Module):
    """The SeMask backbone block's modules run in the official code's order."""

    def __init__(self, block, window, shift):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = block.norm1, block.attn, block.norm2, block.mlp
        self.window, self.shift = window, shift

    def forward(self, x):
        x = x + _official_attention(self.attn, self.norm1(x), self.window, self.shift)
        return x + self.mlp(self.norm2(x))


@pytest.mark.parametrize("backend, hw, shift",
                         [(backend, hw, shift) for backend in ("reference", "torch") for hw in ((7, 9), (8, 5), (5, 6))
                          for shift in (0, 2, 3)] + [("triton", (7, 9), 2), ("triton", (7, 9), 3)], ids=str)
def test_semask_swin_block_matches_official_order(backend, hw, shift):
    from semask_models.backbones.swin import SwinBlock

    block = SwinBlock(16, 2, WINDOW, shift, mlp_ratio=2.0, qkv_bias=True, drop_path=0.0, backend=backend)
    _randomize(block)
    official = _OfficialBlock(copy.deepcopy(block), WINDOW, shift)
    _compare(official, block, torch.randn(2, *hw, 16), train=True)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_roll_then_pad_leaves_a_wrapped_column_unmasked_on_a_padded_map(backend):
    """docs/ops.md's example, on timm and on the patched block alike, window 4, shift 2: on a 9-column map (pad 3)
    the grid window of map columns 6, 7, 8 and 0 is one region, so column 8 attends to column 0; on an 11-column
    map (pad 1) grid columns 8 and 9 (map columns 10 and 0) share a window and a region; without padding (8
    columns) the last region is exactly the wrapped strip and column 7 never sees column 0."""
    def reach(block, w):
        x = torch.randn(1, 4, w, 16, requires_grad=True)
        (g,) = torch.autograd.grad(block._attn(x)[0, 0, w - 1].sum(), x)
        return g[0, 0, 0].abs().max().item()  # column w-1's dependence on column 0, same row

    for w, linked in ((9, True), (11, True), (8, False)):
        stock, patched = _timm_pair((4, w), (0, 2), backend)
        stock.eval()
        patched.eval()
        for block in (stock, patched):
            assert (reach(block, w) > 1e-6) == linked, (w, type(block).__name__)

"""SGR: connected components, the greedy matcher, the loss, the module, the analysis metrics, and learning."""
import builtins

import numpy as np
import pytest
import torch

import semask_models as sm
from semask_models.sgr import SGR, component_masks, connected_components, greedy_match, sgr_loss
from semask_models.sgr.analysis import TokenSemantics
from semask_models.sgr.matching import pair_costs

# Two classes touching along an edge and at a corner, class 0 in two separate pieces, an ignore band.
LABEL = np.array([
    [0, 0, 1, 1, 255, 0],
    [0, 0, 1, 2, 255, 0],
    [3, 3, 2, 2, 255, 0],
    [3, 1, 0, 0, 255, 255],
])


@pytest.fixture(params=["cc3d", "skimage"])
def library(request, monkeypatch):
    if request.param == "skimage":  # the fallback when connected-components-3d is not installed
        real_import = builtins.__import__

        def no_cc3d(name, *args, **kwargs):
            if name == "cc3d":
                raise ImportError("no cc3d")
            return real_import(name, *args, **kwargs)
        monkeypatch.setattr(builtins, "__import__", no_cc3d)
    return request.param


def test_components_4_connectivity(library):
    ids, classes = connected_components(LABEL, connectivity=4)
    expected = np.array([
        [1, 1, 2, 2, 0, 3],
        [1, 1, 2, 4, 0, 3],
        [5, 5, 4, 4, 0, 3],
        [5, 6, 7, 7, 0, 0],
    ])
    assert np.array_equal(ids, expected)
    assert classes.tolist() == [0, 1, 0, 2, 3, 1, 0]


def test_components_8_connectivity_joins_diagonals_of_one_class_only(library):
    ids, classes = connected_components(LABEL, connectivity=8)
    # the 1 at (3,1) touches the 2 at (2,2) diagonally but is another class: still apart; 0 at (3,2) touches
    # no other 0 diagonally across the 2s. The diagonal 1 at (3,1) does not reach the 1s of row 0-1.
    assert ids[3, 1] != ids[0, 2] and ids[3, 1] != ids[2, 2]
    assert ids.max() == 7 and classes.tolist() == [0, 1, 0, 2, 3, 1, 0]
    diag = np.array([[1, 0], [0, 1]])
    ids4, _ = connected_components(diag, connectivity=4)
    ids8, _ = connected_components(diag, connectivity=8)
    assert ids4.max() == 4 and ids8.max() == 2  # the two 1s and the two 0s join diagonally under 8


def test_components_min_area_and_all_ignored(library):
    ids, classes = connected_components(LABEL, connectivity=4, min_area=3)
    assert sorted(np.unique(ids).tolist()) == [0, 1, 2, 3, 4, 5] and classes.tolist() == [0, 1, 0, 2, 3]
    ids, classes = connected_components(np.full((3, 3), 255), connectivity=4)
    assert ids.max() == 0 and classes.size == 0
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        connected_components(LABEL, connectivity=6)


def test_component_masks_one_hot_on_device():
    ids = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [0, 0]]])
    masks, present = component_masks(ids)
    assert masks.shape == (2, 2, 2, 2)
    assert present.tolist() == [[True, True], [True, False]]
    assert masks[0, 1].tolist() == [[0, 0], [1, 1]]


def test_greedy_match_takes_the_cheapest_pair_first():
    cost = torch.tensor([[[1.0, 0.2, 5.0],
                          [0.1, 0.3, 5.0],
                          [0.9, 0.8, 0.7]]])
    b, t, c = greedy_match(cost, torch.tensor([[True, True, False]]))
    assert sorted(zip(t.tolist(), c.tolist())) == [(0, 1), (1, 0)]  # (1,0) at 0.1, then (0,1) at 0.2
    assert b.tolist() == [0, 0]


def test_pair_costs_match_a_direct_computation():
    pred = torch.rand(1, 3, 10)
    target = (torch.rand(1, 2, 10) > 0.5).float()
    valid = torch.ones(1, 10)
    cost = pair_costs(pred, target, valid, rho=1.0)
    p, t = pred[0, 2], target[0, 1]
    bce = torch.nn.functional.binary_cross_entropy(p, t)
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert torch.allclose(cost[0, 2, 1], bce + dice, atol=1e-5)


def test_module_is_identity_at_start_and_assignment_is_a_distribution():
    sgr = SGR(24, dim=16, num_tokens=8, heads=4).eval()
    x = torch.randn(2, 24, 5, 7)
    out, assignment = sgr(x)
    assert torch.equal(out, x)
    assert assignment.shape == (2, 8, 5, 7)
    assert torch.allclose(assignment.sum(1), torch.ones(2, 5, 7), atol=1e-5)


def test_zoo_switch_and_parameter_overhead():
    with torch.device("meta"):
        base = sm.build_model("swin_t_upernet", 150)
        with_sgr = sm.build_model("swin_t_upernet_sgr", 150)
        also = sm.build_model("swin_t_upernet", 150, sgr=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(with_sgr) == count(also) > count(base)
    assert with_sgr.sgr is not None and base.sgr is None


def test_analysis_metrics_on_a_perfectly_semantic_assignment():
    labels = torch.tensor([[[0, 0, 1, 1]] * 2])  # (1, 2, 4): left class 0, right class 1
    components = torch.tensor([[[1, 1, 2, 2]] * 2])
    assignment = torch.zeros(1, 2, 2, 4)
    assignment[0, 0, :, :2] = 1
    assignment[0, 1, :, 2:] = 1
    stats = TokenSemantics(num_classes=2)
    stats.update(assignment, labels, components)
    assert stats.result() == pytest.approx({"S_c": 0.0, "D_c": 0.0, "S_I": 0.0, "D_I": 0.0}, abs=1e-6)
    mixed = torch.full((1, 2, 2, 4), 0.5)
    stats = TokenSemantics(num_classes=2)
    stats.update(mixed, labels, components)
    assert stats.result() == pytest.approx({"S_c": 1.0, "D_c": 1.0, "S_I": 1.0, "D_I": 1.0}, abs=1e-6)


def test_training_with_sgr_reduces_its_loss():
    """A tiny SGR model on a fixed synthetic batch of blobs: the matched token loss goes down."""
    torch.manual_seed(0)
    model = sm.build_model("swin_t_fpn_sgr", num_classes=3, embed_dim=16, depths=(1, 1, 1, 1),
                           num_heads=(1, 2, 2, 4), window_size=4, head_channels=16, sgr_dim=32, sgr_tokens=16,
                           sgr_top=8, drop_path_rate=0.0).train()
    img = torch.randn(2, 3, 64, 64)
    target = torch.zeros(2, 64, 64, dtype=torch.long)
    target[:, 8:40, 8:40] = 1
    target[:, 40:, 30:] = 2
    img[:, 0] += target.float()  # the classes are visible in the image
    components = model.components(target)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(25):
        losses = model(img, target, components)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(float(losses["loss_sgr"].detach()))
    assert history[-1] < 0.8 * history[0], history
    assert sgr_loss(torch.full((1, 4, 2, 2), 0.25), torch.zeros(1, 8, 8, dtype=torch.long)) == 0

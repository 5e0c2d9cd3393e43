"""Mask classification machinery: losses against hand-computed values, the matcher against brute force, targets,
point sampling, semantic inference and the errors on bad input."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from semask_models.heads.mask_classification import (HungarianMatcher, SetCriterion, dice_loss, pairwise_dice,
                                                     pairwise_sigmoid_ce, pairwise_sigmoid_focal, point_sample,
                                                     sample_uncertain_points, semantic_inference, semantic_targets,
                                                     sigmoid_ce_loss, sigmoid_focal_loss)
from tests.utils import assert_close


def _outputs(b=2, q=5, k=3, h=6, w=7, aux=0, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {"pred_logits": torch.randn(b, q, k + 1, generator=g).requires_grad_(requires_grad),
                "pred_masks": (3 * torch.randn(b, q, h, w, generator=g)).requires_grad_(requires_grad)}
    out = one()
    out["aux_outputs"] = [one() for _ in range(aux)]
    return out


def _labels(b=2, h=12, w=14, k=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, k, (b, h, w), generator=g)
    t[:, :2] = 255
    return t


# --- losses, by hand -------------------------------------------------------------------------------------------

def test_mask_losses_at_zero_logits_by_hand():
    # sigmoid(0) = 1/2: BCE = log 2 everywhere; dice = 1 − (Σt + 1)/(P/2 + Σt + 1); focal = α_t · 1/4 · log 2.
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    x = torch.zeros_like(targets)
    assert_close(sigmoid_ce_loss(x, targets, 4.0), torch.tensor(2 * math.log(2) / 4))
    expected_dice = (1 - 3 / 5) + (1 - 4 / 6)
    assert_close(dice_loss(x, targets, 2.0), torch.tensor(expected_dice / 2))
    alpha_t = torch.where(targets > 0, 0.25, 0.75)
    expected_focal = (alpha_t * 0.25 * math.log(2)).mean(1).sum() / 3.0
    assert_close(sigmoid_focal_loss(x, targets, 3.0), expected_focal)
    # alpha < 0 drops the α_t weighting
    assert_close(sigmoid_focal_loss(x, targets, 1.0, alpha=-1), torch.tensor(2 * 0.25 * math.log(2)))


def test_mask_losses_confident_logits_by_hand():
    # logits ±L agreeing with the targets: BCE = log(1 + e^-L) per point, dice → 1 − (2Σt·σ + 1)/(...)
    L = 4.0
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    x = (2 * targets - 1) * L
    s = 1 / (1 + math.exp(-L))
    assert_close(sigmoid_ce_loss(x, targets, 1.0), torch.tensor(math.log1p(math.exp(-L))))
    num = 2 * 2 * s + 1
    den = (2 * s + (1 - s)) + 2 + 1
    assert_close(dice_loss(x, targets, 1.0), torch.tensor(1 - num / den))
    pt = s
    focal = [0.25 * (1 - pt) ** 2 * math.log1p(math.exp(-L)), 0.75 * (1 - pt) ** 2 * math.log1p(math.exp(-L)),
             0.25 * (1 - pt) ** 2 * math.log1p(math.exp(-L))]
    assert_close(sigmoid_focal_loss(x, targets, 1.0), torch.tensor(sum(focal) / 3))


@pytest.mark.parametrize("pairwise, single", [
    (pairwise_sigmoid_ce, sigmoid_ce_loss), (pairwise_dice, dice_loss), (pairwise_sigmoid_focal, sigmoid_focal_loss)])
def test_pairwise_costs_equal_the_pair_losses(pairwise, single):
    g = torch.Generator().manual_seed(3)
    inputs = 2 * torch.randn(4, 9, generator=g)
    targets = (torch.rand(3, 9, generator=g) > 0.5).float()
    cost = pairwise(inputs, targets)
    assert cost.shape == (4, 3)
    for q in range(4):
        for m in range(3):
            assert_close(cost[q, m], single(inputs[q:q + 1], targets[m:m + 1], 1.0), name=f"cost[{q}, {m}]")


def test_class_loss_with_no_object_weight_by_hand():
    # Q = 3 queries, K = 2: query 1 matched to class 0, the others target no-object (weight 0.1).
    crit = SetCriterion(2, class_weight=1.0, num_points=None)
    logits = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 0.0, -1.0], [0.5, 0.5, 0.5]]])
    indices = [(torch.tensor([1]), torch.tensor([0]))]
    targets = [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 2, 2, dtype=torch.bool)}]
    logp = logits[0].log_softmax(-1)
    expected = -(0.1 * logp[0, 2] + 1.0 * logp[1, 0] + 0.1 * logp[2, 2]) / (0.1 + 1.0 + 0.1)
    assert_close(crit.loss_labels(logits, targets, indices), expected)


def test_full_mask_losses_upsample_predictions_by_hand():
    # a constant prediction upsamples to itself: focal/dice over the target pixels, divided by num_masks.
    crit = SetCriterion(2, num_points=None, mask_loss="focal")
    pred = torch.full((1, 2, 2, 3), 0.7)
    tgt = torch.zeros(2, 4, 6, dtype=torch.bool)
    tgt[0, :2] = True
    tgt[1, :, :1] = True
    indices = [(torch.tensor([0, 1]), torch.tensor([1, 0]))]
    losses = crit.loss_masks(pred, [{"labels": torch.tensor([0, 1]), "masks": tgt}], indices, num_masks=4.0)
    flat_t = tgt[[1, 0]].flatten(1).float()
    flat_x = torch.full_like(flat_t, 0.7)
    assert_close(losses["loss_mask"], sigmoid_focal_loss(flat_x, flat_t, 4.0))
    assert_close(losses["loss_dice"], dice_loss(flat_x, flat_t, 4.0))


# --- matcher ---------------------------------------------------------------------------------------------------

def _brute_force(cost: torch.Tensor) -> float:
    q, n = cost.shape
    if n > q:
        return _brute_force(cost.T)
    return min(sum(float(cost[p[j], j]) for j in range(n)) for p in itertools.permutations(range(q), n))


@pytest.mark.parametrize("q, n, mask_cost", [(5, 3, "bce"), (4, 4, "focal"), (3, 5, "bce"), (6, 1, "focal")])
def test_matcher_finds_the_least_total_cost(q, n, mask_cost):
    g = torch.Generator().manual_seed(q * 10 + n)
    outputs = {"pred_logits": torch.randn(1, q, 4, generator=g), "pred_masks": 2 * torch.randn(1, q, 5, 6, generator=g)}
    targets = [{"labels": torch.randint(0, 3, (n,), generator=g),
                "masks": torch.rand(n, 10, 12, generator=g) > 0.5}]
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=None, mask_cost=mask_cost)
    (rows, cols), = matcher(outputs, targets)
    cost = matcher.cost_matrices(outputs, targets)[0]
    assert len(rows) == len(cols) == min(q, n)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert rows.tolist() == sorted(rows.tolist())
    assert math.isclose(float(cost[rows, cols].sum()), _brute_force(cost), rel_tol=1e-6, abs_tol=1e-6)


def test_matcher_cost_matrix_by_hand():
    # full-mask mode: cost = −w_c·p(class) + w_m·BCE + w_d·dice, the targets resized (nearest) to the predictions
    g = torch.Generator().manual_seed(7)
    outputs = {"pred_logits": torch.randn(1, 3, 3, generator=g), "pred_masks": torch.randn(1, 3, 2, 2, generator=g)}
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 2:] = True
    targets = [{"labels": torch.tensor([1, 0]), "masks": masks}]
    cost = HungarianMatcher(2.0, 5.0, 3.0, num_points=None).cost_matrices(outputs, targets)[0]
    small = masks[:, ::2, ::2].flatten(1).float()  # nearest 4→2 picks even rows/cols
    p = outputs["pred_logits"][0].softmax(-1)
    for qi in range(3):
        for m in range(2):
            x = outputs["pred_masks"][0, qi].flatten()[None]
            expected = (-2.0 * p[qi, targets[0]["labels"][m]] + 5.0 * sigmoid_ce_loss(x, small[m:m + 1], 1.0)
                        + 3.0 * dice_loss(x, small[m:m + 1], 1.0))
            assert_close(cost[qi, m], expected, name=f"cost[{qi}, {m}]")


def test_matcher_point_mode_matches_on_the_masks():
    # each query predicts exactly one target's mask (large logits): the matching must pair them up.
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, :8] = True
    masks[1, 8:, :8] = True
    masks[2, 8:, 8:] = True
    order = torch.tensor([2, 0, 3])  # query 2 → target 0, query 0 → target 1, query 3 → target 2
    pred = torch.full((1, 5, 16, 16), -10.0)
    pred[0, order] = masks.float() * 20 - 10
    outputs = {"pred_logits": torch.zeros(1, 5, 4), "pred_masks": pred}
    torch.manual_seed(0)
    (rows, cols), = HungarianMatcher(num_points=500)(outputs, [{"labels": torch.tensor([0, 1, 2]), "masks": masks}])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 2, 1: 0, 2: 3}


def test_matcher_with_no_targets_and_nonfinite_costs():
    outputs = _outputs(b=1)
    (rows, cols), = HungarianMatcher()(outputs, [{"labels": torch.zeros(0, dtype=torch.long),
                                                  "masks": torch.zeros(0, 12, 14, dtype=torch.bool)}])
    assert rows.numel() == 0 and cols.numel() == 0
    outputs["pred_masks"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        HungarianMatcher(num_points=None)(outputs, semantic_targets(_labels(b=1), 3))


# --- targets, point sampling, criterion, inference -------------------------------------------------------------

def test_semantic_targets_split_classes_and_drop_ignore():
    t = torch.tensor([[[2, 2, 255], [0, 2, 0]]])
    (target,) = semantic_targets(t, 3)
    assert target["labels"].tolist() == [0, 2]
    assert target["masks"].dtype == torch.bool
    assert target["masks"].int().tolist() == [[[0, 0, 0], [1, 0, 1]], [[1, 1, 0], [0, 1, 0]]]
    with pytest.raises(ValueError, match="label 3"):
        semantic_targets(t.clamp(max=3) + (t == 0).long() * 3, 3)
    with pytest.raises(TypeError, match="integer dtype"):
        semantic_targets(t.float(), 3)


def test_point_sample_is_grid_sample_on_normalized_points():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    pts = torch.tensor([[[0.125, 1 / 6], [0.875, 5 / 6], [0.5, 0.5]]])  # pixel centers (0,0), (3,2), and between
    out = point_sample(x, pts)
    assert_close(out, torch.tensor([[[0.0, 11.0, 5.5]]]))


def test_uncertain_points_concentrate_where_logits_are_near_zero():
    logits = torch.full((2, 1, 32, 32), 8.0)
    logits[:, :, :, 12:20] = 0.0  # the uncertain band: x in [12/32, 20/32)
    torch.manual_seed(0)
    # ~22% of the 1200 candidates read exactly 0 (between the band's pixel centers); keep 200 of them. (The map's
    # border is uncertain too: zero padding pulls it to 2..4, so a larger share would leak there.)
    pts = sample_uncertain_points(logits, 400, 3.0, 0.5)
    assert pts.shape == (2, 400, 2)
    important = pts[:, :200, 0]
    assert bool(((important >= 12 / 32) & (important <= 20 / 32)).all())
    assert float(((pts[:, 200:, 0] < 12 / 32) | (pts[:, 200:, 0] > 20 / 32)).float().mean()) > 0.5  # uniform rest
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        sample_uncertain_points(logits, 10, 3.0, 1.5)
    with pytest.raises(ValueError, match="num_points"):
        sample_uncertain_points(logits, 0)


def test_criterion_keys_weights_and_gradients():
    outputs = _outputs(aux=3, requires_grad=True)
    targets = semantic_targets(_labels(), 3)
    torch.manual_seed(0)
    losses = SetCriterion.mask2former(3, num_points=50)(outputs, targets)
    expected = {f"loss_{n}{s}" for n in ("ce", "mask", "dice") for s in ["", "_0", "_1", "_2"]}
    assert set(losses) == expected
    sum(losses.values()).backward()
    for out in [outputs, *outputs["aux_outputs"]]:
        assert out["pred_logits"].grad.abs().sum() > 0 and out["pred_masks"].grad.abs().sum() > 0
    # weights multiply the terms: same RNG, weights ×(1/2, 1/5, 1/5) give the unweighted terms
    torch.manual_seed(0)
    unweighted = SetCriterion(3, class_weight=1, mask_weight=1, dice_weight=1,
                              matcher=HungarianMatcher(2, 5, 5, num_points=50), num_points=50)(outputs, targets)
    for name, value in losses.items():
        w = {"ce": 2.0, "mask": 5.0, "dice": 5.0}[name.split("_")[1]]
        assert_close(value, w * unweighted[name], name=name)
    no_aux = SetCriterion.mask2former(3, num_points=50, deep_supervision=False)(outputs, targets)
    assert set(no_aux) == {"loss_ce", "loss_mask", "loss_dice"}


def test_criterion_with_empty_targets_keeps_the_graph():
    outputs = _outputs(requires_grad=True)
    labels = torch.full((2, 12, 14), 255)
    losses = SetCriterion.maskformer(3)(outputs, semantic_targets(labels, 3))
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    assert losses["loss_ce"].item() > 0  # every query targets no-object
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad is not None


def test_criterion_rejects_bad_input():
    crit = SetCriterion(3, num_points=20)
    outputs, targets = _outputs(), semantic_targets(_labels(), 3)
    with pytest.raises(ValueError, match=r"K\+1 = 5 classes.*got \(2, 5, 4\)"):
        SetCriterion(4)(outputs, targets)
    with pytest.raises(ValueError, match="list of 2 dicts"):
        crit(outputs, targets[:1])
    with pytest.raises(ValueError, match=r"pred_masks'\] must be \(B, Q, h, w\)"):
        crit({**outputs, "pred_masks": outputs["pred_masks"][:, :2]}, targets)
    with pytest.raises(ValueError, match=r"must be in \[0, 3\)"):
        crit(outputs, [targets[0], {"labels": torch.tensor([5]), "masks": torch.zeros(1, 12, 14)}])
    with pytest.raises(ValueError, match="pad the batch"):
        crit(outputs, [targets[0], {"labels": torch.tensor([1]), "masks": torch.zeros(1, 10, 14)}])
    with pytest.raises(ValueError, match="mask_loss must be one of"):
        SetCriterion(3, mask_loss="l1")
    with pytest.raises(ValueError, match="no_object_weight"):
        SetCriterion(3, no_object_weight=-1)
    with pytest.raises(ValueError, match="num_classes"):
        SetCriterion(0)
    with pytest.raises(ValueError, match="oversample_ratio must be >= 1"):
        SetCriterion(3, oversample_ratio=0.5)
    with pytest.raises(ValueError, match="num_points must be an int >= 1 or None"):
        SetCriterion(3, num_points=0)
    with pytest.raises(ValueError, match="all 0"):
        HungarianMatcher(0, 0, 0)


def test_semantic_inference_against_a_loop():
    out = _outputs(b=2, q=4, k=3, h=3, w=5)
    scores = semantic_inference(out["pred_logits"], out["pred_masks"])
    assert scores.shape == (2, 3, 3, 5)
    for b in range(2):
        for c in range(3):
            expected = sum(out["pred_logits"][b, q].softmax(-1)[c] * out["pred_masks"][b, q].sigmoid()
                           for q in range(4))
            assert_close(scores[b, c], expected, name=f"scores[{b}, {c}]")
    big = semantic_inference(out["pred_logits"], out["pred_masks"], size=(6, 10))
    up = F.interpolate(out["pred_masks"], size=(6, 10), mode="bilinear", align_corners=False)
    assert_close(big, semantic_inference(out["pred_logits"], up))
    with pytest.raises(ValueError, match="pred_masks must be"):
        semantic_inference(out["pred_logits"], out["pred_masks"][:, :3])
    with pytest.raises(ValueError, match="pred_logits must be"):
        semantic_inference(out["pred_logits"][0], out["pred_masks"])


def test_num_masks_is_the_mean_over_processes(monkeypatch):
    # two processes: this one holds 3 target masks, the other 5 -> every process divides by 4
    from semask_models.heads.mask_classification import criterion as module
    monkeypatch.setattr(module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(module.dist, "all_reduce", lambda t: t.add_(5.0))
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.zeros(2, 4, 4)},
               {"labels": torch.tensor([2]), "masks": torch.zeros(1, 4, 4)}]
    assert SetCriterion._num_masks(targets, torch.device("cpu")) == 4.0
    monkeypatch.setattr(module.dist, "all_reduce", lambda t: t.mul_(0.0))
    assert SetCriterion._num_masks(targets, torch.device("cpu")) == 1.0  # at least 1

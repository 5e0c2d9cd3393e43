"""The set criterion and matcher against Hugging Face transformers' Mask2Former and MaskFormer losses (an
independent implementation of the official detectron2 code), on the same random points (same seed, same draws)."""
from __future__ import annotations

import pytest
import torch

from semask_models.heads.mask_classification import HungarianMatcher, SetCriterion, semantic_targets
from tests.utils import assert_close

m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
mf = pytest.importorskip("transformers.models.maskformer.modeling_maskformer")

K = 4
HF_NAMES = {"loss_ce": "loss_cross_entropy", "loss_mask": "loss_mask", "loss_dice": "loss_dice"}


def _case(seed, b=2, q=6, h=8, w=9, aux=2):
    g = torch.Generator().manual_seed(seed)
    outs = [{"pred_logits": torch.randn(b, q, K + 1, generator=g), "pred_masks": 3 * torch.randn(b, q, h, w,
                                                                                                   generator=g)}
            for _ in range(aux + 1)]
    labels = torch.randint(0, K, (b, 4 * h, 4 * w), generator=g)
    labels[:, : h] = 255
    labels[0, :, :w] = 2  # some structure so the classes are not all present everywhere
    outputs = {**outs[-1], "aux_outputs": outs[:-1]}
    return outputs, semantic_targets(labels, K)


def _hf_args(outputs, targets):
    aux = [{"masks_queries_logits": a["pred_masks"], "class_queries_logits": a["pred_logits"]}
           for a in outputs["aux_outputs"]]
    return (outputs["pred_masks"], outputs["pred_logits"], [t["masks"].float() for t in targets],
            [t["labels"] for t in targets], aux)


def _compare(ours, theirs, num_aux):
    for suffix in [""] + [f"_{i}" for i in range(num_aux)]:
        for name, hf_name in HF_NAMES.items():
            assert_close(ours[name + suffix], theirs[hf_name + suffix], name=name + suffix)


@pytest.mark.parametrize("seed", [0, 1])
def test_mask2former_criterion_matches_hf(seed):
    outputs, targets = _case(seed)
    config = m2f.Mask2FormerConfig(num_labels=K, no_object_weight=0.1, class_weight=2.0, mask_weight=5.0,
                                   dice_weight=5.0, train_num_points=300, oversample_ratio=3.0,
                                   importance_sample_ratio=0.75)
    hf = m2f.Mask2FormerLoss(config, weight_dict={})
    # unweighted losses (HF returns them so), the official matching costs 2 / 5 / 5
    ours = SetCriterion.mask2former(K, num_points=300, class_weight=1.0, mask_weight=1.0, dice_weight=1.0,
                                    matcher=HungarianMatcher(2.0, 5.0, 5.0, num_points=300))
    torch.manual_seed(seed)
    theirs = hf(*_hf_args(outputs, targets))
    torch.manual_seed(seed)
    mine = ours(outputs, targets)
    _compare(mine, theirs, len(outputs["aux_outputs"]))


def test_mask2former_matcher_matches_hf():
    outputs, targets = _case(5, q=8)
    hf = m2f.Mask2FormerHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=200)
    ours = SetCriterion.mask2former(K, num_points=200).matcher
    torch.manual_seed(3)
    theirs = hf(outputs["pred_masks"], outputs["pred_logits"], [t["masks"].float() for t in targets],
                [t["labels"] for t in targets])
    torch.manual_seed(3)
    mine = ours(outputs, targets)
    for (r, c), (hr, hc) in zip(mine, theirs):
        assert r.tolist() == hr.tolist() and c.tolist() == hc.tolist()


def test_maskformer_criterion_matches_hf():
    outputs, targets = _case(2, aux=3)
    matcher = mf.MaskFormerHungarianMatcher(cost_class=1.0, cost_mask=20.0, cost_dice=1.0)
    hf = mf.MaskFormerLoss(K, matcher=matcher, weight_dict={}, eos_coef=0.1)
    ours = SetCriterion.maskformer(K, class_weight=1.0, mask_weight=1.0, dice_weight=1.0,
                                   matcher=HungarianMatcher(1.0, 20.0, 1.0, num_points=None, mask_cost="focal"))
    theirs = hf(*_hf_args(outputs, targets))
    mine = ours(outputs, targets)
    _compare(mine, theirs, len(outputs["aux_outputs"]))

"""Confusion-matrix mIoU against a hand-computed case (mmseg semantics)."""
import math

import pytest
import torch
from semask_models.metrics import confusion_matrix, format_table, summarize


def test_hand_computed_case():
    # K = 4; class 3 appears in neither labels nor predictions; 255 is ignored (its prediction does not count).
    label = torch.tensor([[0, 0, 1, 1],
                          [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 2, 0, 3]])
    cm = confusion_matrix(pred, label, 4)
    assert cm.tolist() == [[2, 1, 0, 0],
                           [0, 2, 0, 0],
                           [1, 0, 1, 0],
                           [0, 0, 0, 0]]
    m = summarize(cm, ["a", "b", "c", "d"])
    # class 0: TP 2, FP 1 (a 2 predicted 0), FN 1 -> 2/4; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    assert m["IoU"] == {"a": 0.5, "b": round(2 / 3, 6), "c": 0.5, "d": None}
    assert m["Acc"] == {"a": round(2 / 3, 6), "b": 1.0, "c": 0.5, "d": None}
    assert m["mIoU"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3, abs=1e-6)
    assert m["mAcc"] == pytest.approx((2 / 3 + 1 + 0.5) / 3, abs=1e-6)
    assert m["aAcc"] == pytest.approx(5 / 7, abs=1e-6)
    assert m["classes"] == ["a", "b", "c", "d"] and m["num_pixels"] == 7
    assert "mIoU 55.56" in format_table(m)


def test_predicted_but_absent_class_counts_as_zero():
    cm = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), 2)
    m = summarize(cm)
    assert m["IoU"] == {"0": 0.5, "1": 0.0} and m["mIoU"] == 0.25  # 1 is in the union: IoU 0, not NaN
    assert m["Acc"]["1"] is None and m["mAcc"] == 0.5


def test_confusion_matrices_add_over_shards():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 5, (4, 30), generator=g)
    label[label == 4] = 255
    pred = torch.randint(0, 4, (4, 30), generator=g)
    whole = confusion_matrix(pred, label, 4)
    parts = sum(confusion_matrix(pred[i], label[i], 4) for i in range(4))
    assert torch.equal(whole, parts)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix(torch.zeros(3), torch.tensor([0, 1, 5]), 2)
    assert math.isnan(float("nan"))
    assert summarize(torch.zeros(2, 2, dtype=torch.int64))["mIoU"] is None

"""The Mask2Former head and the set criterion together: a few optimizer steps lower the loss, and the head runs
under bfloat16 autocast with the losses in float32."""
from __future__ import annotations

import torch

from semask_models.heads.mask2former import Mask2FormerHead
from semask_models.heads.mask_classification import SetCriterion, semantic_inference, semantic_targets

CH = [8, 16, 24, 40]


def _setup():
    torch.manual_seed(0)
    head = Mask2FormerHead(CH, 3, conv_dim=32, mask_dim=32, enc_layers=1, enc_nheads=4, enc_dim_feedforward=32,
                           hidden_dim=32, num_queries=6, nheads=4, dim_feedforward=32, dec_layers=3)
    feats = [torch.randn(2, c, 32 // s, 32 // s) for c, s in zip(CH, (4, 8, 16, 32))]
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[0, :, 16:] = 1
    labels[1, :16] = 2
    labels[1, 16:, :16] = 255
    return head, feats, labels


def test_a_few_steps_lower_the_loss():
    head, feats, labels = _setup()
    criterion = SetCriterion.mask2former(3, num_points=256)
    targets = semantic_targets(labels, 3)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    history = []
    for _ in range(12):
        losses = criterion(head(feats), targets)
        assert set(losses) == {f"loss_{n}{s}" for n in ("ce", "mask", "dice") for s in ("", "_0", "_1")}
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.85 * history[0], history
    head.eval()
    with torch.no_grad():
        out = head(feats)
    scores = semantic_inference(out["pred_logits"], out["pred_masks"], size=(32, 32))
    assert scores.shape == (2, 3, 32, 32) and bool(torch.isfinite(scores).all())


def test_bfloat16_autocast():
    head, feats, labels = _setup()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats)
        losses = SetCriterion.mask2former(3, num_points=64)(out, semantic_targets(labels, 3))
    assert out["pred_masks"].dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())

"""The Python API refuses a checkpoint that fits only in part, as the CLI does without --allow-partial: a deeper
model's checkpoint, one missing keys, one with weights the model has no place for; the model keeps the values it
had. ``allow_partial=True`` loads it (what is partial by design, such as an ImageNet backbone into a segmentor)."""
import pickle

import pytest
import torch

import semask_models as sm
from semask_models.checkpoints import convert
from semask_models.checkpoints.detectron2 import load_detectron2_checkpoint
from semask_models.checkpoints.training import CheckpointError
from tests.models.test_detectron2_checkpoint import _official_tiny_keys, _synthetic_arrays, _tiny_model

SMALL = dict(num_classes=5, embed_dim=16, num_heads=(1, 2, 2, 4), head_channels=16)


def _fpn(depths=(2, 2, 2, 2)):
    torch.manual_seed(0)
    return sm.build_model("semask_swin_t_fpn", depths=depths, **SMALL).eval()


def _same(a, b):
    return all(torch.equal(x, b[k]) for k, x in a.items())


@pytest.mark.parametrize("case", ["deeper_model", "missing_key", "extra_weight"])
def test_load_checkpoint_refuses_a_partial_fit_and_leaves_the_model_alone(tmp_path, case):
    source = _fpn(depths=(2, 2, 4, 2)) if case == "deeper_model" else _fpn()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # differs from the target model's values everywhere
    sd = source.state_dict()
    if case == "missing_key":
        del sd["decode_head.conv_seg.weight"]
    elif case == "extra_weight":
        sd["decode_head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd}, path)
    model = _fpn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"fits the model only in part: .*allow_partial=True"):
        convert.load_checkpoint(model, path)
    assert _same(before, model.state_dict()), "a refused checkpoint changed the model"
    report = convert.load_checkpoint(model, path, allow_partial=True)
    assert not report.complete and not _same(before, model.state_dict())


def test_a_complete_checkpoint_loads_by_default(tmp_path):
    source = _fpn()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    assert convert.load_checkpoint(_fpn(), path).complete


def test_detectron2_loader_refuses_a_partial_fit_by_default(tmp_path):
    arrays = _synthetic_arrays(_official_tiny_keys())
    del arrays["sem_seg_head.predictor.class_embed.bias"]
    path = tmp_path / "partial.pkl"
    path.write_bytes(pickle.dumps({"model": arrays}))
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for load in (lambda: load_detectron2_checkpoint(model, path), lambda: convert.load_checkpoint(model, path)):
        with pytest.raises(CheckpointError, match="class_embed.bias"):
            load()
        assert _same(before, model.state_dict())
    assert not load_detectron2_checkpoint(model, path, allow_partial=True).complete

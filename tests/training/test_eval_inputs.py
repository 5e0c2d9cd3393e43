"""semask-eval / semask-analyze under bad input (issue 15): a checkpoint that fits only in part is an error unless
allowed (item 5); more than 255 classes are saved without wrapping (item 6); a work dir that is a file and a
non-SGR model for semask-analyze are refused before any work (item 10)."""
import logging

import numpy as np
import pytest
import semask_models.evaluate as ev
import torch
from PIL import Image
from semask_models.builder import build_segmentor
from semask_models.checkpoint import CheckpointError
from semask_models.cli import main as cli_main
from semask_models.config import ConfigError, load_config
from semask_models.distributed import DistInfo
from semask_models.workdir import RunDirError

from tests.training.fakes import TINY


def _cfg(*sets):
    return load_config("synthetic-tiny", TINY + ["data.synthetic.num_val=2", *sets])


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_segmentor({**cfg, "pretrained": None}, 5)


def test_a_checkpoint_without_the_decode_head_is_refused_unless_allowed(tmp_path, caplog):
    cfg = _cfg()
    sd = {k: v for k, v in _model(cfg).state_dict().items() if not k.startswith("decode_head.")}
    torch.save({"state_dict": sd}, tmp_path / "no_head.pth")
    with pytest.raises(CheckpointError, match=r"fits the model only in part.*decode_head\..*--allow-partial"):
        ev.load_for_eval(_model(cfg, 1), str(tmp_path / "no_head.pth"))
    with caplog.at_level(logging.WARNING, logger="semask_models"):
        loaded = ev.load_for_eval(_model(cfg, 1), str(tmp_path / "no_head.pth"), allow_partial=True)
    assert loaded["partial"] is True
    assert "decode_head.conv_seg.weight" in caplog.text  # exactly what stayed random is said


def test_a_deeper_models_checkpoint_is_refused(tmp_path):
    deeper = _cfg("model_overrides.depths=[1,2,1,1]")
    torch.save(_model(deeper).state_dict(), tmp_path / "deeper.pth")
    with pytest.raises(CheckpointError, match=r"13 weight\(s\) of the file have no place in the model") as e:
        ev.load_for_eval(_model(_cfg()), str(tmp_path / "deeper.pth"))
    assert "backbone.layers.1.blocks.1." in str(e.value)


def test_an_imagenet_backbone_is_not_a_segmentor_checkpoint(tmp_path):
    cfg = _cfg()
    sd = {k[len("backbone."):]: v for k, v in _model(cfg).state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": sd}, tmp_path / "swin.pth")
    with pytest.raises(CheckpointError, match="decode_head"):
        ev.load_for_eval(_model(cfg, 1), str(tmp_path / "swin.pth"))


def test_a_complete_checkpoint_loads_and_old_buffers_are_not_counted(tmp_path):
    cfg = _cfg()
    sd = dict(_model(cfg).state_dict())
    sd["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    torch.save(sd, tmp_path / "full.pth")
    assert ev.load_for_eval(_model(cfg, 1), str(tmp_path / "full.pth"))["partial"] is False


def test_cli_partial_checkpoint_is_one_error_line_and_allow_partial_evaluates(tmp_path, capsys):
    cfg = _cfg()
    sd = {k: v for k, v in _model(cfg).state_dict().items() if not k.startswith("decode_head.")}
    torch.save(sd, tmp_path / "no_head.pth")
    args = ["eval", "synthetic-tiny", "--checkpoint", str(tmp_path / "no_head.pth"), "--work-dir",
            str(tmp_path / "out"), *_sets(TINY + ["data.synthetic.num_val=2"])]
    assert cli_main(args) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out" / "eval_whole.json").exists()
    assert cli_main(args + ["--allow-partial"]) == 0
    assert (tmp_path / "out" / "eval_whole.json").is_file()


K = 300


class ManyClasses(torch.utils.data.Dataset):
    """One image whose label holds ids 0, 255, 256 and 299 (and ignored pixels)."""
    num_classes, ignore_index = K, 65535
    classes = tuple(f"c{i}" for i in range(K))
    palette = [(i % 256, 0, 0) for i in range(K)]

    def __len__(self):
        return 1

    def __getitem__(self, i):
        label = torch.zeros(8, 8, dtype=torch.int64)
        label[:, 2:4], label[:, 4:6], label[:, 6:] = 255, 256, 299
        label[0, 0] = self.ignore_index
        return {"image": torch.zeros(3, 8, 8, dtype=torch.uint8), "label": label, "name": "many"}


class LabelOracle(torch.nn.Module):
    """Predicts ManyClasses' label exactly (logits one-hot at any input size)."""
    align_corners = False

    def forward(self, img):
        label = ManyClasses()[0]["label"].clamp(max=K - 1)
        logits = torch.nn.functional.one_hot(label, K).permute(2, 0, 1)[None].float() * 10
        return torch.nn.functional.interpolate(logits, size=img.shape[-2:], mode="nearest")


def test_more_than_255_classes_are_saved_without_wrapping(tmp_path):
    cfg = load_config("synthetic-tiny", ["test.scale=[8,8]", "data.num_workers=0", "train.progress=false"])
    metrics = ev.evaluate(LabelOracle(), ManyClasses(), cfg, DistInfo(), progress=False, save_dir=tmp_path)
    assert metrics["aAcc"] == 1.0
    arr = np.asarray(Image.open(tmp_path / "many.png"))
    assert arr.dtype == np.uint16 or arr.max() > 255, arr.dtype
    assert arr[0, 0] == ev.IGNORE_16  # ignore is its own value, not class 255
    assert arr[1, 0] == 0 and arr[1, 2] == 255 and arr[1, 4] == 256 and arr[1, 7] == 299


def test_few_classes_keep_the_palette_png(tmp_path):
    pred = torch.tensor([[0, 1], [2, 254]])
    ev.save_prediction(tmp_path / "p.png", pred, [(1, 2, 3)] * 255, ignore=torch.tensor([[False, True],
                                                                                          [False, False]]),
                       num_classes=255)
    im = Image.open(tmp_path / "p.png")
    assert im.mode == "P" and np.asarray(im).tolist() == [[0, 255], [2, 254]]


def test_eval_work_dir_that_is_a_file_fails_before_the_evaluation(tmp_path, monkeypatch):
    cfg = _cfg()
    torch.save(_model(cfg).state_dict(), tmp_path / "model.pth")
    calls = []
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: calls.append(1) or {"mIoU": 0.5})
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(RunDirError, match="is a file"):
        ev.run_eval(cfg, str(tmp_path / "model.pth"), work_dir=str(tmp_path / "taken"))
    with pytest.raises(RunDirError, match="--save-pred"):
        ev.run_eval(cfg, str(tmp_path / "model.pth"), work_dir=str(tmp_path / "out"),
                    save_dir=str(tmp_path / "taken"))
    assert calls == []  # refused before the (long) evaluation, not after it


def test_analyze_refuses_a_model_without_sgr_before_reading_anything(tmp_path, capsys):
    from semask_models.analyze import run_analyze
    with pytest.raises(ConfigError, match=r"'semask_swin_t_fpn' has no SGR module.*_sgr"):
        run_analyze(_cfg(), str(tmp_path / "does-not-exist.pth"), work_dir=str(tmp_path))
    assert cli_main(["analyze", "synthetic-tiny", "--checkpoint", str(tmp_path / "x.pth"), "--work-dir",
                     str(tmp_path)]) == 2
    assert "no SGR module" in capsys.readouterr().err

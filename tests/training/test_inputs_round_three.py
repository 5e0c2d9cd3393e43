"""Bad or odd input of the training/eval side, each a clear error or a working run: a 1x1 train/test scale (torch's
uint8 resize asserted), a seed beyond numpy's range, a binary YAML, a float64 batch (FPN and mask models), a shift
not smaller than the window, and semask-eval of a run folder writing its results into that run."""
import pytest
import torch
from semask_models.checkpoints.training import save_checkpoint
from semask_models.engine.builder import build_segmentor
from semask_models.engine.config import ConfigError, load_config
from semask_models.engine.evaluate import run_eval

import semask_kernels as sk
import semask_models as sm
from tests.models.test_detectron2_checkpoint import TINY as MASK_TINY
from tests.training.fakes import TINY


def _cfg(*sets):
    return load_config("synthetic-tiny", TINY + ["data.synthetic.num_val=2", *sets])


def test_a_1x1_test_scale_evaluates_and_a_1x1_train_scale_trains(tmp_path):
    from semask_models.data.transforms import resize_for_test, resize_pair
    from torchvision import tv_tensors

    image = torch.randint(0, 255, (3, 20, 30), dtype=torch.uint8)
    assert resize_for_test(image, (1, 1)).shape == (3, 1, 1)
    assert resize_pair(tv_tensors.Image(image), (1, 1)).shape == (3, 1, 1)
    cfg = _cfg("test.scale=[1,1]")
    model = build_segmentor({**cfg, "pretrained": None}, 5)
    weights, _ = save_checkpoint(tmp_path / "ckpt", 1, model, {})
    assert 0 <= run_eval(cfg, str(weights), work_dir=str(tmp_path / "eval"))["mIoU"] <= 1
    from semask_models.engine.train import run_train
    run_train(_cfg("augment.scale=[1,1]", "train.max_iters=1"), work_dir=str(tmp_path / "train"))


def test_seed_range_and_binary_yaml(tmp_path):
    assert _cfg("seed=4294967295")["seed"] == 4294967295
    with pytest.raises(ConfigError, match=r"seed = 4294967296 is not allowed.*<= 4294967295"):
        _cfg("seed=4294967296")
    binary = tmp_path / "x.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01\x80binary")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(str(binary), [])


@pytest.mark.parametrize("name", ["semask_swin_t_fpn", "semask_swin_t_maskformer", "semask_swin_t_mask2former"])
def test_a_float64_batch_is_named(name):
    kw = MASK_TINY if "mask" in name else dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                                               head_channels=16)
    model = sm.build_model(name, num_classes=5, **kw).eval()
    with pytest.raises(TypeError, match=r"img has dtype torch.float64, the model's weights torch.float32"):
        model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"img must be a batch \(B, 3, H, W\)"):
        model(torch.randn(1, 4, 64, 64))
    with torch.no_grad():  # a float64 model takes it
        assert model.double()(torch.randn(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize("shift", [7, (0, 7), (3, 9)])
def test_a_shift_not_smaller_than_the_window_is_refused_by_the_module(shift):
    with pytest.raises(ValueError, match="shift_size must be < window_size"):
        sk.nn.ShiftedWindowAttention(32, num_heads=2, window_size=7, shift_size=shift)
    assert sk.nn.ShiftedWindowAttention(32, num_heads=2, window_size=7, shift_size=3).shift_size == (3, 3)


def test_eval_of_a_run_folder_writes_into_that_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _cfg()
    assert cfg["work_dir"] is None
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints", 1, build_segmentor({**cfg, "pretrained": None}, 5), {})
    run_eval(cfg, str(run))
    assert (run / "eval_whole.json").is_file()
    assert not (tmp_path / "work_dirs").exists()

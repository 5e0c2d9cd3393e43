"""Every run-config value is range-checked when the config is loaded: the error names the key, the value and what
is allowed (issue 15, item 4)."""
import pytest
from semask_models.config import ConfigError, load_config, shipped_configs


@pytest.mark.parametrize("override, key, allowed", [
    ("train.clip_grad=-1", "train.clip_grad = -1", "> 0"),           # would flip the gradient's sign
    ("train.power=-1", "train.power = -1.0", ">= 0"),
    ("train.warmup_ratio=2", "train.warmup_ratio = 2.0", "<= 1"),
    ("train.warmup_iters=-5", "train.warmup_iters = -5", ">= 0"),
    ("train.checkpoint_interval=0", "train.checkpoint_interval = 0", ">= 1"),
    ("train.eval_interval=0", "train.eval_interval = 0", ">= 1"),  # ZeroDivisionError after iteration 1
    ("train.max_iters=2.5", "train.max_iters = 2.5", "an integer"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints = -1", ">= 0"),
    ("train.lr=0", "train.lr = 0.0", "> 0"),
    ("train.betas=[0.9,1.5]", "train.betas = [0.9, 1.5]", "[0, 1)"),
    ("model_overrides.ohem_min_kept=-1", "model_overrides.ohem_min_kept = -1", ">= 1"),
    ("augment.ratios=[0.5,0]", "augment.ratios = [0.5, 0]", "> 0"),  # a PyTorch internal assert in the resize
    ("augment.ratio_range=[-1,2]", "augment.ratio_range = [-1, 2]", "> 0"),
    ("test.aug_ratios=[1.0,-0.5]", "test.aug_ratios = [1.0, -0.5]", "> 0"),
    ("augment.flip=1.5", "augment.flip = 1.5", "<= 1"),
    ("augment.std=[1,0,1]", "augment.std = [1, 0, 1]", "> 0"),
    ("data.num_workers=-1", "data.num_workers = -1", ">= 0"),
    ("data.ignore_index=99999999999999999999", "data.ignore_index = 99999999999999999999", "<= 9223372036854775807"),
    ("device=gpu", "device = 'gpu'", "'cuda:N'"),
    ("train.dist_backend=mpi", "train.dist_backend = 'mpi'", "gloo"),
    ("model=swin_x_fpn", "model = 'swin_x_fpn'", "semask_swin_t_fpn"),
])
def test_out_of_range_value_is_refused_naming_key_value_and_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as e:
        load_config("synthetic-tiny", [override])
    assert key in str(e.value) and allowed in str(e.value), str(e.value)


def test_stride_larger_than_crop_is_refused():
    # uncovered pixels would get NaN logits, be predicted as class 0 and counted in a mIoU reported as valid
    with pytest.raises(ConfigError, match=r"test.stride = \[80, 40\].*test.crop = \[64, 64\].*stride <= crop"):
        load_config("synthetic-tiny", ["test.crop=[64,64]", "test.stride=[80,40]"])
    load_config("synthetic-tiny", ["test.crop=[64,64]", "test.stride=[64,64]"])  # touching windows are fine


@pytest.mark.parametrize("override, key, allowed", [
    ("model_overrides.num_classes='150'", "model_overrides.num_classes = '150'", "an integer >= 1"),
    ("model_overrides.drop_path_rate=1.5", "model_overrides.drop_path_rate = 1.5", "< 1"),
    ("model_overrides.global_stages=[7]", "model_overrides.global_stages = [7]", "[0, 4)"),
    ("model_overrides.sem_window_size=0", "model_overrides.sem_window_size = 0", ">= 1"),
    ("model_overrides.backend=bogus", "model_overrides.backend = 'bogus'", "'triton'"),
    ("model_overrides.num_heads=[3,3,3]", "model_overrides.num_heads = [3, 3, 3]", "one entry per stage"),
])
def test_model_overrides_are_checked_at_load(override, key, allowed):
    with pytest.raises(ConfigError) as e:
        load_config("synthetic-tiny", [override])
    assert key in str(e.value) and allowed in str(e.value), str(e.value)


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_passes_the_checks(name):
    load_config(name)


def test_slide_inference_refuses_a_stride_larger_than_the_crop():
    import torch
    from semask_models.evaluate import slide_logits
    with pytest.raises(ValueError, match=r"stride \(20, 8\) must be positive and at most crop \(16, 16\)"):
        slide_logits(lambda x: x[:, :2], torch.zeros(1, 3, 40, 40), 2, (16, 16), (20, 8))

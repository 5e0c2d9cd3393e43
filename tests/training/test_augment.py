"""The mmseg training augmentation (torchvision v2) and the resumable, seeded loading."""
import pytest
import torch
from semask_models.config import MEAN, STD, load_config
from semask_models.data.loader import AugmentedDataset, IterationBatchSampler, build_train_loader
from semask_models.data.synthetic import SyntheticSegmentation
from semask_models.data.transforms import (
    PadTo,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomRescale,
    build_train_transform,
    rescale_size,
    resize_for_test,
)
from torchvision import tv_tensors


def _pair(h, w, label=None):
    label = torch.zeros(h, w, dtype=torch.uint8) if label is None else label
    return tv_tensors.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8)), tv_tensors.Mask(label)


def test_rescale_size_is_mmcv_keep_ratio():
    assert rescale_size((375, 500), (2048, 512)) == (512, 683)
    assert rescale_size((1024, 2048), (2048, 1024)) == (1024, 2048)
    assert rescale_size((1024, 2048), (1024, 512)) == (512, 1024)
    assert rescale_size((100, 1000), (2048, 512)) == (205, 2048)  # the long edge binds
    assert resize_for_test(torch.zeros(3, 375, 500, dtype=torch.uint8), (2048, 512)).shape == (3, 512, 683)


def test_ratios_from_a_list_or_a_range():
    img, mask = _pair(100, 200)
    t = RandomRescale((200, 100), ratios=[0.5, 1.5])
    sizes = {tuple(t(img, mask)[0].shape[1:]) for _ in range(40)}
    assert sizes == {(50, 100), (150, 300)}
    t = RandomRescale((200, 100), ratio_range=[0.5, 2.0])
    hs = [t(img, mask)[0].shape[1] for _ in range(40)]
    assert min(hs) >= 50 and max(hs) <= 200 and len(set(hs)) > 10
    out_img, out_mask = t(img, mask)
    assert out_img.dtype == torch.uint8 and out_mask.shape == out_img.shape[1:]


def test_mask_resize_is_nearest():
    label = torch.randint(0, 3, (50, 60), dtype=torch.uint8)
    label[0, 0] = 7
    _, m = RandomRescale((120, 100), ratios=[1.7])(*_pair(50, 60, label))
    assert set(torch.unique(m).tolist()) <= {0, 1, 2, 7}


def test_cat_max_ratio_retries_crops():
    label = torch.zeros(64, 128, dtype=torch.uint8)
    label[:, 96:] = 1          # a 64x64 crop is valid (max share < 0.75) only when it starts after column 48
    label[:8, :] = 255         # ignored pixels do not count
    img, mask = _pair(64, 128, label)

    def valid_share(cat_max_ratio):
        t = RandomCropCatMax((64, 64), cat_max_ratio)
        torch.manual_seed(0)
        ok = 0
        for _ in range(100):
            top, left, h, w = t.make_params([img, mask])["bbox"]
            assert (top, h, w) == (0, 64, 64)
            ok += left > 48
        return ok / 100

    assert valid_share(1.0) < 0.4      # about 16/65 of the windows
    assert valid_share(0.75) > 0.85    # 10 tries: 1 - (49/65)^10 ≈ 0.94


def test_crop_flip_pad_keep_image_and_label_aligned():
    label = torch.arange(20 * 30, dtype=torch.int64).reshape(20, 30) % 200
    image = tv_tensors.Image(label.to(torch.uint8).expand(3, -1, -1).clone())
    t = build_train_transform({"scale": [30, 20], "ratios": [1.0], "ratio_range": None, "crop": [24, 24],
                               "cat_max_ratio": 1.0, "flip": 0.5, "photometric": False, "mean": [0, 0, 0],
                               "std": [1, 1, 1]})
    for s in range(10):
        torch.manual_seed(s)
        img, lab = t(image, tv_tensors.Mask(label.to(torch.uint8)))
        assert img.shape == (3, 24, 24) and lab.shape == (24, 24) and img.dtype == torch.float32
        pad = lab[20:]                               # 20 rows of image, 4 padded
        assert bool((pad == 255).all()) and bool((img[:, 20:] == 0).all())
        assert torch.equal(img[0, :20], lab[:20].float())


def test_photometric_distortion_changes_only_the_image():
    img, mask = _pair(16, 16, torch.randint(0, 4, (16, 16), dtype=torch.uint8))
    changed = 0
    for s in range(8):
        torch.manual_seed(s)
        out, m = PhotoMetricDistortion()(img, mask)
        assert torch.equal(m, mask) and out.dtype == torch.uint8
        changed += not torch.equal(out, img)
        torch.manual_seed(s)
        assert torch.equal(PhotoMetricDistortion()(img, mask)[0], out)
    assert changed >= 6


def test_pad_values():
    img, mask = _pair(5, 7)
    out, m = PadTo((8, 9), 0.0, 255)(tv_tensors.Image(img.float()), mask)
    assert out.shape == (3, 8, 9) and bool((out[:, 5:] == 0).all()) and bool((m[:, 7:] == 255).all())


def _augmented():
    cfg = load_config("synthetic-tiny", ["augment.crop=[48,48]"])
    ds = SyntheticSegmentation("train", num_classes=5, size=((40, 70), (40, 70)), num_train=12)
    return AugmentedDataset(ds, build_train_transform(cfg["augment"]), seed=5)


def test_augmentation_is_a_pure_function_of_seed_epoch_index():
    data = _augmented()
    state = torch.get_rng_state()
    a, b, c = data[(0, 3)], data[(0, 3)], data[(1, 3)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 48, 48) and a[1].dtype == torch.int64
    assert abs(float(a[0].mean())) < 3  # normalized with MEAN/STD
    assert MEAN == [123.675, 116.28, 103.53] and STD == [58.395, 57.12, 57.375]


def test_batch_sampler_is_addressable_and_sharded():
    full = IterationBatchSampler(10, 2, total_steps=12, world_size=2, rank=0, seed=1)
    other = IterationBatchSampler(10, 2, total_steps=12, world_size=2, rank=1, seed=1)
    tail = IterationBatchSampler(10, 2, total_steps=12, start_step=5, world_size=2, rank=0, seed=1)
    batches = list(full)
    assert len(batches) == 12 and list(tail) == batches[5:]
    assert full.batches_per_epoch == 2  # 10 // 4, the tail of each epoch dropped
    for step in range(12):
        mine, theirs = full.batch(step), other.batch(step)
        assert {e for e, _ in mine} == {step // 2}
        assert not {i for _, i in mine} & {i for _, i in theirs}
    epoch0 = [i for s in (0, 1) for b in (full.batch(s), other.batch(s)) for _, i in b]
    assert len(set(epoch0)) == 8
    assert [i for _, i in full.batch(0)] != [i for _, i in full.batch(2)]  # a new permutation per epoch
    with pytest.raises(ValueError, match="fewer than one global batch"):
        IterationBatchSampler(3, 2, total_steps=1, world_size=2)


def test_workers_give_the_same_batches():
    data = _augmented()
    kw = dict(batch_per_rank=3, total_steps=4, start_step=1, rank=0, world_size=1, seed=2, pin_memory=False)
    serial = list(build_train_loader(data, num_workers=0, **kw))
    parallel = list(build_train_loader(data, num_workers=2, **kw))
    assert len(serial) == 3
    for (a, b), (c, d) in zip(serial, parallel):
        assert torch.equal(a, c) and torch.equal(b, d)

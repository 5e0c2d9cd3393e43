"""Dataset readers on fake folders of each layout, their errors, and the synthetic dataset."""
import numpy as np
import pytest
import torch
from PIL import Image
from semask_models.data import ADE20K, Cityscapes, COCOStuff10k, DataError, FolderDataset, build_dataset
from semask_models.data.synthetic import SyntheticSegmentation

from tests.training.fakes import make_ade, make_cityscapes, make_cocostuff, make_folder


def test_ade20k_reduce_zero_label(tmp_path):
    root = make_ade(tmp_path)
    ds = ADE20K(root, "training")
    assert len(ds) == 2 and ds.num_classes == 150 and ds.classes[0] == "wall"
    raw = torch.from_numpy(np.array(Image.open(ds.samples[0][1])))
    item = ds[0]
    assert item["image"].shape == (3, 20, 24) and item["image"].dtype == torch.uint8
    label = item["label"]
    assert torch.equal(label == 255, raw == 0)
    assert torch.equal(label[raw == 1], torch.zeros_like(label[raw == 1]))
    assert torch.equal(label[raw == 150], torch.full_like(label[raw == 150], 149))
    assert len(ADE20K(root, "validation")) == 2


def test_cityscapes_nested_cities(tmp_path):
    ds = Cityscapes(make_cityscapes(tmp_path), "val")
    assert len(ds) == 2 and ds.num_classes == 19 and ds.palette[0] == (128, 64, 128)
    assert {p[0].parent.name for p in ds.samples} == {"aachen", "bremen"}
    assert set(torch.unique(ds[1]["label"]).tolist()) <= {0, 5, 18, 255}


def test_cocostuff10k_171_classes(tmp_path):
    ds = COCOStuff10k(make_cocostuff(tmp_path), "train2014")
    assert ds.num_classes == 171 and ds.classes[-1] == "wood"
    assert int(ds[0]["label"][ds[0]["label"] != 255].max()) <= 170


def test_folder_dataset_and_build(tmp_path):
    root = make_folder(tmp_path)
    ds = FolderDataset(root, "val")
    assert ds.classes == ("sky", "road", "car") and len(ds) == 2
    cfg = {"type": "folder", "root": str(root), "train_split": None, "val_split": None, "num_classes": None,
           "classes": ["a", "b", "c"], "ignore_index": 255, "reduce_zero_label": None, "img_suffix": None,
           "seg_suffix": None, "synthetic": {}}
    assert build_dataset(cfg, "train").classes == ("a", "b", "c")
    with pytest.raises(DataError, match="num_classes is 5"):
        build_dataset({**cfg, "num_classes": 5}, "train")


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        ADE20K(tmp_path / "nowhere", "training")
    assert "nowhere" in str(e.value)
    root = make_ade(tmp_path)
    with pytest.raises(DataError, match="annotations"):
        import shutil
        shutil.rmtree(root / "annotations" / "validation")
        ADE20K(root, "validation")


def test_image_without_label_is_named(tmp_path):
    root = make_cityscapes(tmp_path)
    victim = next((root / "gtFine" / "train").rglob("*.png"))
    victim.unlink()
    with pytest.raises(DataError, match="has no label map"):
        Cityscapes(root, "train")


def test_unreadable_image_is_named(tmp_path):
    ds = COCOStuff10k(make_cocostuff(tmp_path), "train2014")
    ds.samples[0][0].write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(ds.samples[0][0]) in str(e.value)


def test_size_mismatch_is_named(tmp_path):
    ds = FolderDataset(make_folder(tmp_path), "train")
    img, seg = ds.samples[1]
    Image.fromarray(np.zeros((12, 13), np.uint8), mode="L").save(seg)
    with pytest.raises(DataError) as e:
        ds[1]
    assert str(img) in str(e.value) and str(seg) in str(e.value)


def test_labels_out_of_range_are_named(tmp_path):
    ds = Cityscapes(make_cityscapes(tmp_path), "train")
    seg = ds.samples[0][1]
    bad = np.asarray(Image.open(seg)).copy()
    bad[0, :3] = [19, 200, 254]
    Image.fromarray(bad, mode="L").save(seg)
    with pytest.raises(DataError) as e:
        ds[0]
    msg = str(e.value)
    assert str(seg) in msg and "19, 200, 254" in msg and "[0, 19)" in msg


def test_rgb_label_map_is_refused(tmp_path):
    ds = FolderDataset(make_folder(tmp_path), "train")
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(ds.samples[0][1])
    with pytest.raises(DataError, match="single-channel"):
        ds[0]


def test_synthetic_is_deterministic_and_varied():
    a = SyntheticSegmentation("train", num_classes=5, size=((40, 56), (40, 56)), num_train=8, seed=3)
    b = SyntheticSegmentation("train", num_classes=5, size=((40, 56), (40, 56)), num_train=8, seed=3)
    v = SyntheticSegmentation("val", num_classes=5, size=((40, 56), (40, 56)), num_val=8, seed=3)
    for i in range(8):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        assert 40 <= x["image"].shape[1] <= 56 and x["image"].shape[1:] == x["label"].shape
        assert int(x["label"].max()) < 5
        assert not torch.equal(x["image"], v[i]["image"]) or x["image"].shape != v[i]["image"].shape
    present = torch.zeros(5, dtype=torch.bool)
    for i in range(8):
        present[torch.unique(a[i]["label"]).long()] = True
    assert bool(present.all())  # every class appears
    assert not torch.equal(a[0]["label"], a[1]["label"])
    with pytest.raises(IndexError):
        a[8]

"""SGR end to end on the CPU: components computed in the data workers, the matched token loss decreasing over a
short synthetic-tiny-sgr run, and semask-analyze writing the token semantics and their plot."""
import json

import torch

from semask_models.cli import main as cli_main
from semask_models.config import load_config
from semask_models.data.datasets import build_dataset
from semask_models.data.loader import AugmentedDataset
from semask_models.data.transforms import build_train_transform

SHORT = ["train.max_iters=60", "train.eval_interval=60", "train.checkpoint_interval=60", "train.log_interval=10",
         "data.synthetic.num_val=8", "data.num_workers=1", "train.progress=false"]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def test_workers_return_components_of_the_augmented_label():
    cfg = load_config("synthetic-tiny-sgr")
    data = AugmentedDataset(build_dataset(cfg["data"], "train", seed=0),
                            build_train_transform(cfg["augment"], 255), seed=0,
                            components={"connectivity": 8, "ignore_index": 255})
    image, label, ids = data[(0, 3)]
    assert ids.shape == label.shape and ids.dtype == torch.int32
    assert bool(((ids == 0) == (label == 255)).all())  # exactly the ignored (padded) pixels have no component
    for c in ids.unique()[1:]:
        assert label[ids == c].unique().numel() == 1  # a component never spans two classes


def test_sgr_training_reduces_its_loss_and_analyze_writes_results(tmp_path):
    work = tmp_path / "run"
    assert cli_main(["train", "synthetic-tiny-sgr", "--work-dir", str(work), *_sets(SHORT)]) == 0
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    sgr = [r["loss_sgr"] for r in records if "loss_sgr" in r]
    assert len(sgr) == 6 and all(v > 0 for v in sgr)
    assert sgr[-1] < 0.85 * sgr[0], sgr
    out = tmp_path / "analyze"
    assert cli_main(["analyze", "synthetic-tiny-sgr", "--checkpoint", str(work), "--work-dir", str(out),
                     *_sets(SHORT)]) == 0
    result = json.loads((out / "token_semantics.json").read_text())
    assert set(result) >= {"S_c", "D_c", "S_I", "D_I", "num_images"} and result["num_images"] == 8
    assert 0 <= result["S_c"] <= torch.log2(torch.tensor(5.0)) + 1e-6
    assert (out / "token_semantics.png").stat().st_size > 1000

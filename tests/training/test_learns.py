"""End to end through the CLI: a short synthetic-tiny run learns (well above chance), writes every artifact, and
semask-eval reproduces its metrics."""
import json

import pytest
import yaml
from semask_models.cli import main as cli_main
from semask_models.config import load_config
from semask_models.train import Trainer

from tests.training.fakes import TINY

# 150 iterations, about 20-35 s on 2 shared CPU cores. Measured final mIoU over seeds 0/1/2: 0.49 / 0.67 / 0.63;
# predicting the background everywhere scores about 0.16 (5 classes).
SHORT = ["train.max_iters=150", "train.eval_interval=150", "train.checkpoint_interval=150", "train.warmup_iters=10",
         "data.synthetic.num_val=24", "train.progress=false"]
MIN_MIOU = 0.3


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("synthetic-tiny")
    assert cli_main(["train", "synthetic-tiny", "--work-dir", str(work), *_sets(SHORT)]) == 0
    return work


def test_short_run_learns(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["iter"] == 150 and metrics["mIoU"] >= MIN_MIOU, metrics
    assert metrics["classes"] == ["background", "circle_1", "rectangle_2", "triangle_3", "ellipse_4"]
    assert set(metrics["IoU"]) == set(metrics["classes"]) and metrics["aAcc"] > 0.8
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 15  # every 10 iterations
    assert losses[-1] < 0.6 * losses[0]
    assert {"lr", "loss_ce", "loss_cate", "time_per_iter"} <= set(records[0])
    assert records[-1]["event"] == "eval" and records[-1]["mIoU"] == metrics["mIoU"]


def test_run_artifacts(trained):
    saved = yaml.safe_load((trained / "config.yaml").read_text())
    assert saved == load_config("synthetic-tiny", SHORT)
    try:
        import tensorboard  # noqa: F401  (the 'train' extra)
        assert list((trained / "tb").glob("events.out.tfevents.*"))
    except ImportError:
        assert not (trained / "tb").exists()  # without TensorBoard the run warns and goes on
    ckpts = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert ckpts == ["iter_0000150.safetensors", "iter_0000150.state.pt", "latest.json"]


def test_eval_reproduces_and_aug_test_runs(trained, tmp_path):
    out = tmp_path / "eval"
    assert cli_main(["eval", "synthetic-tiny", "--checkpoint", str(trained), "--work-dir", str(out),
                     *_sets(SHORT)]) == 0
    assert not (out / "metrics.json").exists()  # the evaluation writes its own files, never a run's metrics.json
    again = json.loads((out / "eval_whole.json").read_text())
    first = json.loads((trained / "metrics.json").read_text())
    assert again["mIoU"] == first["mIoU"] and again["IoU"] == first["IoU"]
    assert again["checkpoint"].endswith("iter_0000150.safetensors") and again["iter"] == 150

    weights = trained / "checkpoints" / "iter_0000150.safetensors"
    preds = tmp_path / "preds"
    assert cli_main(["eval", "synthetic-tiny", "--checkpoint", str(weights), "--aug-test", "--work-dir", str(out),
                     "--save-pred", str(preds), *_sets(SHORT + ["data.synthetic.num_val=3"])]) == 0
    aug = json.loads((out / "eval_whole_aug.json").read_text())
    assert aug["aug_test"] is True and aug["num_images"] == 3 and aug["mIoU"] is not None
    assert json.loads((out / "eval_whole.json").read_text()) == again  # the single-scale result is kept
    assert len(list(preds.glob("*.png"))) == 3


def test_progress_bar_shows_rate_eta_and_loss(tmp_path, capsys):
    Trainer(load_config("synthetic-tiny", TINY + ["train.max_iters=2", "train.progress=true"]),
            work_dir=tmp_path).train()
    err = capsys.readouterr().err
    assert "train" in err and "loss=" in err and "<" in err and ("it/s" in err or "s/it" in err)

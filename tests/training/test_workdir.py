"""A work dir holds one run (issue 15): a second run is refused unless resumed or overwritten (item 1); an
evaluation cut by a kill runs again on resume, and semask-eval never touches the run's metrics.json (item 2);
a resumed run logs each iteration once (item 9)."""
import json

import pytest
import semask_models.train as train_module
from semask_models.checkpoint import latest_checkpoint
from semask_models.cli import main as cli_main
from semask_models.config import load_config
from semask_models.train import Trainer
from semask_models.workdir import RunDirError

from tests.training.fakes import TINY

SETS = TINY + ["train.max_iters=2", "train.checkpoint_interval=2", "train.eval_interval=2",
               "train.keep_checkpoints=1", "data.synthetic.num_val=2"]


def _records(work):
    return [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]


def test_a_second_run_into_a_work_dir_is_refused(tmp_path):
    Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path).train()
    before = (tmp_path / "log.jsonl").read_text()
    with pytest.raises(RunDirError, match=r"already holds a training run.*--resume.*--overwrite"):
        Trainer(load_config("synthetic-tiny", SETS + ["train.max_iters=1"]), work_dir=tmp_path)
    assert (tmp_path / "log.jsonl").read_text() == before  # nothing of the refused run was written


def test_overwrite_replaces_the_run(tmp_path):
    Trainer(load_config("synthetic-tiny", SETS + ["train.max_iters=4", "train.checkpoint_interval=4"]),
            work_dir=tmp_path).train()
    (tmp_path / "notes.txt").write_text("mine")
    Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path, overwrite=True).train()
    assert [r["iter"] for r in _records(tmp_path) if "loss" in r] == [1, 2]  # one run in the log
    weights, state = latest_checkpoint(tmp_path)
    assert weights.name == "iter_0000002.safetensors" and state.is_file()
    assert [p.name for p in (tmp_path / "checkpoints").glob("iter_*.safetensors")] == [weights.name]
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files are removed
    cfg = load_config("synthetic-tiny", SETS)
    assert Trainer(cfg, work_dir=tmp_path, resume=True).start_iter == 2  # and it resumes
    with pytest.raises(RunDirError, match="contradict"):
        Trainer(cfg, work_dir=tmp_path, resume=True, overwrite=True)


def test_cli_refuses_a_second_run_with_one_error_line(tmp_path, capsys):
    Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path).train()
    sets = [a for s in SETS for a in ("--set", s)]
    assert cli_main(["train", "synthetic-tiny", "--work-dir", str(tmp_path), *sets]) == 2
    assert "error: work dir" in capsys.readouterr().err
    assert cli_main(["train", "synthetic-tiny", "--work-dir", str(tmp_path), "--overwrite", *sets]) == 0


def test_a_work_dir_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path / "file")


def test_an_interrupted_final_evaluation_runs_again_on_resume(tmp_path, monkeypatch):
    real = train_module.evaluate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the kill arrives during the final evaluation, after the last checkpoint

    monkeypatch.setattr(train_module, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path).train()
    assert latest_checkpoint(tmp_path)[0].name == "iter_0000002.safetensors"
    assert not (tmp_path / "metrics.json").exists()

    monkeypatch.setattr(train_module, "evaluate", real)
    result = Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path, resume=True).train()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["iter"] == 2 and result["metrics"]["mIoU"] == metrics["mIoU"]
    assert [r["iter"] for r in _records(tmp_path) if r.get("event") == "eval"] == [2]

    calls = []
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path, resume=True).train()
    assert calls == []  # a finished evaluation is not repeated


def test_resume_logs_each_iteration_once(tmp_path):
    sets = SETS + ["train.max_iters=4", "train.eval_interval=100"]
    Trainer(load_config("synthetic-tiny", sets), work_dir=tmp_path).train(stop_at=3)  # checkpoint at 2, killed at 3
    assert [r["iter"] for r in _records(tmp_path)] == [1, 2, 3]
    Trainer(load_config("synthetic-tiny", sets), work_dir=tmp_path, resume=True).train()
    assert [r["iter"] for r in _records(tmp_path) if "loss" in r] == [1, 2, 3, 4]


def test_eval_writes_its_own_file_next_to_a_training_run(tmp_path):
    Trainer(load_config("synthetic-tiny", SETS), work_dir=tmp_path).train()
    run_metrics = (tmp_path / "metrics.json").read_text()
    log = (tmp_path / "log.jsonl").read_text()
    sets = [a for s in SETS for a in ("--set", s)]
    assert cli_main(["eval", "synthetic-tiny", "--checkpoint", str(tmp_path), "--work-dir", str(tmp_path),
                     "--aug-test", *sets]) == 0
    assert (tmp_path / "metrics.json").read_text() == run_metrics and (tmp_path / "log.jsonl").read_text() == log
    aug = json.loads((tmp_path / "eval_whole_aug.json").read_text())
    assert aug["aug_test"] is True and aug["iter"] == 2
    assert (tmp_path / "eval_whole_aug.yaml").is_file()

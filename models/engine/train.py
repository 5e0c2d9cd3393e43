"""Iteration-based training (``semask-train``): the official SeMask-FPN recipe, single process or DDP.

Reproducibility: the data order and each sample's augmentation are pure functions of (seed, iteration, index)
(:mod:`semask_models.data.loader`), and torch's generator is reseeded at every iteration from (seed, iteration,
rank) before the forward pass (dropout, drop path), so a run resumed from a checkpoint repeats the losses and
weights of an uninterrupted one bit for bit on the CPU, logs each iteration once (the log is cut back to the
checkpoint) and re-runs an evaluation that a kill interrupted. A work dir holds one run: starting a new run in a
folder that holds one is refused unless it is resumed or ``overwrite`` is given (:mod:`semask_models.engine.workdir`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .builder import build_segmentor
from ..checkpoints.training import (
    latest_checkpoint,
    load_weights,
    read_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from .config import dump
from ..data.datasets import build_dataset
from ..data.loader import AugmentedDataset, build_train_loader
from ..data.synthetic import mix_seed
from ..data.transforms import build_train_transform
from .distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    broadcast_object,
    cleanup,
    init_distributed,
)
from .evaluate import evaluate
from .metrics import format_table
from .optim import build_optimizer, build_scheduler
from .runlog import RunLogger, setup_console_logging
from .workdir import evaluated_at, prepare, truncate_log

logger = logging.getLogger("semask_models")
LOSS_KEYS = ("loss", "loss_ce", "loss_cate", "loss_sgr", "loss_mask", "loss_dice")  # logged per iteration; absent
# terms count as 0 (loss_mask / loss_dice: mask classification, final layer)


class Trainer:
    """Builds everything from a resolved config (:func:`semask_models.engine.config.load_config`); :meth:`train`
    runs it.

    Example:
        >>> from semask_models.engine.config import load_config
        >>> cfg = load_config("synthetic-tiny", ["train.max_iters=2", "train.eval_interval=2"])
        >>> result = Trainer(cfg, work_dir="/tmp/run").train()   # doctest: +SKIP
    """

    def __init__(self, cfg: dict, work_dir: Optional[str] = None, resume: bool = False,
                 info: Optional[DistInfo] = None, overwrite: bool = False):
        self.cfg = cfg
        t = cfg["train"]
        self.info = info or init_distributed(cfg["device"], t["dist_backend"])
        self._own_dist = info is None
        setup_console_logging(self.info.rank)
        self.work_dir = Path(work_dir or cfg["work_dir"] or Path("work_dirs") / cfg["name"])
        prepare(self.work_dir, resume=resume, overwrite=overwrite, is_main=self.info.is_main)
        barrier(self.info)  # every rank has checked the folder before rank 0 writes to it
        world, accum = self.info.world_size, t["accum_steps"]
        if t["batch_size"] % (world * accum):
            raise ValueError(f"train.batch_size {t['batch_size']} must be divisible by world size {world} x "
                             f"accum_steps {accum}")
        self.batch_per_rank = t["batch_size"] // (world * accum)
        self.seed = cfg["seed"]
        self.device = self.info.device
        if self.device.type == "cuda" and t["cudnn_benchmark"]:
            torch.backends.cudnn.benchmark = True
        if self.device.type == "cpu" and t["cpu_threads"]:
            torch.set_num_threads(t["cpu_threads"])  # small models on few cores run faster on one thread

        self.train_set = build_dataset(cfg["data"], "train", seed=self.seed)
        self.val_set = build_dataset(cfg["data"], "val", seed=self.seed)
        self.num_classes = self.train_set.num_classes

        found = latest_checkpoint(self.work_dir) if resume else None
        if resume and found is None:
            logger.warning("--resume: no checkpoint in %s, starting from iteration 0", self.work_dir / "checkpoints")
        torch.manual_seed(self.seed)  # identical initial weights on every rank
        model = build_segmentor({**cfg, "pretrained": None} if found else cfg, self.num_classes)
        if self.info.enabled and self.device.type == "cuda" and t["sync_bn"]:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        self.optimizer = build_optimizer(model, t)
        self.scheduler = build_scheduler(self.optimizer, t)
        self.start_iter = 0
        if found:
            self._load(model, *found)
        self.model = model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                             find_unused_parameters=t["find_unused_parameters"])
        if resume and self.info.is_main:
            truncate_log(self.work_dir / "log.jsonl", self.start_iter)  # the iterations after it run again
        self.run = RunLogger(self.work_dir, enabled=self.info.is_main,
                             purge_step=self.start_iter + 1 if resume else None)
        if self.info.is_main:
            dump(cfg, self.work_dir / "config.yaml")
        self.history: list[float] = []
        self.last_metrics: Optional[dict] = None

    # -- checkpoints -------------------------------------------------------------------------------------------
    def _sampler_state(self) -> dict:
        return {"seed": self.seed, "world_size": self.info.world_size, "batch_per_rank": self.batch_per_rank,
                "accum_steps": self.cfg["train"]["accum_steps"], "num_samples": len(self.train_set)}

    def _load(self, model: nn.Module, weights: Path, state_path: Path) -> None:
        state = read_state(state_path)
        meta = load_weights(model, weights)
        if "iter" in meta and int(meta["iter"]) != state["iter"]:
            raise ValueError(f"{weights} (iteration {meta['iter']}) and {state_path} (iteration {state['iter']}) "
                             "do not belong together")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_iter = int(state["iter"])
        if state.get("sampler") != self._sampler_state():
            logger.warning("resuming with other data settings than the checkpoint (%s, now %s): the data order "
                           "will differ from the interrupted run", state.get("sampler"), self._sampler_state())
        rngs = state.get("rng") or []
        if len(rngs) == self.info.world_size:
            set_rng_state(rngs[self.info.rank])
        logger.info("resumed from %s at iteration %d", weights, self.start_iter)

    def save(self, iteration: int) -> None:
        broadcast_buffers(unwrap_model(self.model), self.info)
        rngs = all_gather_object(rng_state(), self.info)  # every rank's generators, saved by rank 0
        if self.info.is_main:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "rng": rngs, "sampler": self._sampler_state(), "config_name": self.cfg["name"]}
            weights, _ = save_checkpoint(self.work_dir / "checkpoints", iteration, self.model, state,
                                         keep=self.cfg["train"]["keep_checkpoints"],
                                         metadata={"model": self.cfg["model"], "num_classes": self.num_classes})
            logger.info("checkpoint %s", weights)
        barrier(self.info)

    # -- evaluation --------------------------------------------------------------------------------------------
    def evaluate(self, iteration: int) -> dict:
        broadcast_buffers(unwrap_model(self.model), self.info)  # every rank evaluates rank 0's model
        metrics = evaluate(self.model, self.val_set, self.cfg, self.info, progress=self.cfg["train"]["progress"])
        metrics = {"iter": iteration, "config": self.cfg["name"], **metrics}
        if self.info.is_main:
            self.run.write_metrics(metrics, step=iteration)
            logger.info("iteration %d evaluation\n%s", iteration, format_table(metrics))
        self.last_metrics = metrics
        return metrics

    def _evaluation_pending(self) -> bool:
        """A resumed run's checkpoint iteration is an evaluation point whose evaluation never finished (a kill
        after the checkpoint): metrics.json (rank 0's file, the decision broadcast) is of another iteration."""
        t, it = self.cfg["train"], self.start_iter
        if it == 0 or (it % t["eval_interval"] and it != t["max_iters"]):
            return False
        done = evaluated_at(self.work_dir) if self.info.is_main else None
        return broadcast_object(done, self.info) != it

    # -- training ----------------------------------------------------------------------------------------------
    def train(self, stop_at: Optional[int] = None) -> dict:
        """Run from the start (or resumed) iteration to ``max_iters`` (or to ``stop_at``, as if interrupted
        there: the schedule still ends at ``max_iters``); returns ``{"history": [loss per iteration of this
        call], "metrics": the last evaluation}``."""
        cfg, t, info = self.cfg, self.cfg["train"], self.info
        max_iters, accum = t["max_iters"], t["accum_steps"]
        end = min(stop_at, max_iters) if stop_at is not None else max_iters
        if self._evaluation_pending():
            logger.info("the evaluation of iteration %d was interrupted: running it again", self.start_iter)
            self.evaluate(self.start_iter)
        if self.start_iter >= end:
            logger.info("nothing to do: iteration %d >= %d", self.start_iter, end)
            return {"history": [], "metrics": self.last_metrics}
        sgr = getattr(unwrap_model(self.model), "sgr", None) is not None
        components = (dict(connectivity=unwrap_model(self.model).sgr_connectivity,
                           ignore_index=cfg["data"]["ignore_index"]) if sgr else None)
        data = AugmentedDataset(self.train_set, build_train_transform(cfg["augment"], cfg["data"]["ignore_index"]),
                                self.seed, components=components)
        loader = build_train_loader(
            data, batch_per_rank=self.batch_per_rank, total_steps=max_iters * accum,
            start_step=self.start_iter * accum, rank=info.rank, world_size=info.world_size, seed=self.seed,
            num_workers=cfg["data"]["num_workers"], pin_memory=cfg["data"]["pin_memory"] and self.device.type == "cuda")
        batches = iter(loader)
        use_amp = t["amp"] == "bf16" and self.device.type == "cuda"
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.model.train()
        from tqdm.auto import tqdm
        bar = tqdm(total=max_iters, initial=self.start_iter, desc="train", unit="it", dynamic_ncols=True,
                   disable=not (t["progress"] and info.is_main))
        pending: list[torch.Tensor] = []
        window_start, data_time = time.time(), 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            for it in range(self.start_iter, end):
                torch.manual_seed(mix_seed(self.seed, 0x7E1, it, info.rank))
                self.scheduler.set_iter(it)
                self.optimizer.zero_grad(set_to_none=True)
                parts = torch.zeros(len(LOSS_KEYS), device=self.device)  # this iteration's LOSS_KEYS
                for a in range(accum):
                    t0 = time.time()
                    images, labels, *extra = (t.to(self.device, non_blocking=True) for t in next(batches))
                    data_time += time.time() - t0
                    sync = (self.model.no_sync() if info.enabled and a < accum - 1 else contextlib.nullcontext())
                    with sync:
                        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                            losses = self.model(images, labels, *extra)  # extra: SGR's components
                        (losses["loss"] / accum).backward()
                    parts += torch.stack([losses.get(k, torch.zeros((), device=self.device)).detach().float()
                                          for k in LOSS_KEYS]) / accum
                grad_norm = None
                if t["clip_grad"]:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, t["clip_grad"])
                self.optimizer.step()
                pending.append(parts)
                done = it + 1
                if done % t["log_interval"] == 0 or done == end:
                    self._log(done, pending, bar, window_start, data_time, grad_norm)
                    pending, window_start, data_time = [], time.time(), 0.0
                bar.update(1)
                if done % t["checkpoint_interval"] == 0 or done == max_iters:
                    self.save(done)
                if done % t["eval_interval"] == 0 or done == max_iters:
                    self.evaluate(done)
                    self.model.train()
        finally:
            bar.close()
            self.run.close()
        return {"history": self.history, "metrics": self.last_metrics}

    def _log(self, done: int, pending: list, bar, window_start: float, data_time: float, grad_norm) -> None:
        values = torch.stack(pending)  # (n, len(LOSS_KEYS)), this rank
        self.history.extend(values[:, 0].tolist())
        mean = all_reduce_sum(values.mean(0), self.info) / self.info.world_size
        n = len(pending)
        elapsed = time.time() - window_start
        record = {"iter": done, "lr": self.scheduler.get_last_lr()[0], **dict(zip(LOSS_KEYS, mean.tolist())),
                  "time_per_iter": elapsed / n, "data_time_per_iter": data_time / n}
        loss = record["loss"]
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        if self.device.type == "cuda":
            record["memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss} at iteration {done}")
        self.run.log(record, step=done)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}")

    def close(self) -> None:
        if self._own_dist:
            cleanup(self.info)


def run_train(cfg: dict, work_dir: Optional[str] = None, resume: bool = False, overwrite: bool = False) -> dict:
    """``semask-train``: train (and evaluate) as configured; returns :meth:`Trainer.train`'s result."""
    trainer = Trainer(cfg, work_dir=work_dir, resume=resume, overwrite=overwrite)
    try:
        return trainer.train()
    finally:
        trainer.close()

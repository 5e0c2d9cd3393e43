"""What a run writes besides checkpoints: the resolved config, a JSONL log, TensorBoard events and metrics.json.
Only rank 0 writes; other ranks get a logger whose methods do nothing."""
from __future__ import annotations

import errno
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional

logger = logging.getLogger("semask_models")


def setup_console_logging(rank: int = 0) -> None:
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunLogger:
    """``log.jsonl`` (one JSON object a line), TensorBoard events under ``tb/``, ``metrics.json``."""

    def __init__(self, work_dir: Path, enabled: bool = True, tensorboard: bool = True,
                 purge_step: Optional[int] = None):
        """``purge_step``: a resumed run's first step; TensorBoard events from there on are dropped."""
        self.work_dir, self.enabled = Path(work_dir), enabled
        self.writer = None
        if not enabled:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.work_dir / "log.jsonl", "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.work_dir / "tb"), purge_step=purge_step)
            except ImportError as e:
                logger.warning("TensorBoard events are not written: %s (pip install tensorboard, or the package's "
                               "'train' extra)", e)

    def log(self, record: dict, step: Optional[int] = None, prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **{k: _clean(v) for k, v in record.items()}}
        try:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OSError(errno.ENOSPC, f"no space left on device (ENOSPC) while appending to "
                              f"{self.work_dir / 'log.jsonl'}: free some space and run again") from e
            raise
        if self.writer is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("time", "iter") and v is not None:
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)
            self.writer.flush()

    def write_metrics(self, metrics: dict, step: Optional[int] = None) -> Optional[Path]:
        if not self.enabled:
            return None
        from ..checkpoints.training import atomic_write
        path = self.work_dir / "metrics.json"
        text = json.dumps(metrics, indent=2)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        self.log({"event": "eval", **{k: metrics[k] for k in ("iter", "mIoU", "mAcc", "aAcc") if k in metrics}},
                 step=None)
        if self.writer is not None and step is not None:
            for k in ("mIoU", "mAcc", "aAcc"):
                if metrics.get(k) is not None:
                    self.writer.add_scalar(f"val/{k}", metrics[k], step)
            self.writer.flush()
        return path

    def close(self) -> None:
        if not self.enabled:
            return
        self.jsonl.close()
        if self.writer is not None:
            self.writer.close()

"""The work dir of a training run: one run per folder. A folder that already holds a run is refused unless the
run is resumed (``--resume``) or explicitly replaced (``--overwrite``), so two runs never mix their logs and
checkpoints; a resumed run's log is cut back to the checkpoint it resumes from, so no iteration is logged twice.

Layout: ``config.yaml``, ``log.jsonl``, ``metrics.json`` (the last evaluation), ``tb/`` (TensorBoard events),
``checkpoints/`` (see :mod:`semask_models.checkpoints.training`).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

from ..checkpoints.atomic import atomic_write, remove_stale_temporaries

logger = logging.getLogger("semask_models")
_CHECKPOINT_FILES = re.compile(r"^(iter_\d+\.(safetensors|state\.pt)|latest\.json|\..+\.tmp\d+)$")
_TB_FILES = re.compile(r"^events\.out\.tfevents\.")


class RunDirError(ValueError):
    """A work dir that cannot take this run: a file, or a folder that holds another run."""


def check_dir(path: Path, what: str = "--work-dir") -> Path:
    """``path`` must be a folder or not exist yet (it is created later); a file there is refused now, before any
    work whose results could not be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{what} {path} is a file, not a folder: give a folder for the run's outputs")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{what} {path} cannot be created: {parent} is a file")
            break
    return path


def run_files(work_dir: Path) -> list[Path]:
    """What of a previous training run ``work_dir`` holds: checkpoints, a non-empty log, metrics, events."""
    work_dir = Path(work_dir)
    found = []
    ckpt = work_dir / "checkpoints"
    if ckpt.is_dir():
        found += sorted(p for p in ckpt.iterdir() if _CHECKPOINT_FILES.match(p.name))
    for name in ("log.jsonl", "metrics.json"):
        p = work_dir / name
        if p.is_file() and p.stat().st_size > 0:
            found.append(p)
    tb = work_dir / "tb"
    if tb.is_dir():
        found += sorted(p for p in tb.iterdir() if _TB_FILES.match(p.name))
    return found


def prepare(work_dir: Path, *, resume: bool, overwrite: bool, is_main: bool = True) -> Path:
    """Check ``work_dir`` for a new run (refused when it holds one, unless ``resume`` or ``overwrite``); with
    ``overwrite`` the main process removes the previous run's files (only those; other files stay)."""
    work_dir = check_dir(work_dir)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: resume continues the run in "
                          f"{work_dir}, overwrite deletes it")
    found = run_files(work_dir)
    if found and not resume and not overwrite:
        names = ", ".join(str(p.relative_to(work_dir)) for p in found[:5]) + (" ..." if len(found) > 5 else "")
        raise RunDirError(f"work dir {work_dir} already holds a training run ({names}): continue it with --resume, "
                          "replace it with --overwrite, or choose another --work-dir")
    if found and overwrite and is_main:
        for p in found:
            p.unlink(missing_ok=True)
        (work_dir / "config.yaml").unlink(missing_ok=True)
        logger.warning("--overwrite: removed %d file(s) of the previous run in %s", len(found), work_dir)
    if is_main:
        remove_stale_temporaries(work_dir)
    return work_dir


def truncate_log(path: Path, iteration: int) -> int:
    """Drop the records of ``log.jsonl`` logged after ``iteration`` (a resumed run logs them again); returns how
    many were dropped. Lines that are not JSON (a write cut by a kill) are dropped too."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = _record(line)
        if record is None or record.get("iter", 0) > iteration:
            dropped += bool(line.strip())
            continue
        kept.append(line)
    if dropped:
        text = "".join(line + "\n" for line in kept)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        logger.info("resume: dropped %d record(s) after iteration %d from %s", dropped, iteration, path)
    return dropped


def _record(line: str) -> Optional[dict]:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("iter", 0), int) else None


def evaluated_at(work_dir: Path) -> Optional[int]:
    """The iteration of the last complete evaluation of the run (``metrics.json``), or None."""
    path = Path(work_dir) / "metrics.json"
    try:
        it = json.loads(path.read_text(encoding="utf-8")).get("iter")
    except (OSError, ValueError, AttributeError):
        return None
    return it if isinstance(it, int) else None

"""Atomic file writes: a temporary name in the same folder, fsync, ``os.replace`` over the final name, so a crash
leaves either the old file or the new one, never half of one. A killed writer's temporary files
(``.<name>.tmp<pid>``) are found and removed by :func:`remove_stale_temporaries`; a full disk is reported as an
``OSError`` with errno ENOSPC that names the file and the free space, whatever the writer raised."""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Optional, Union

logger = logging.getLogger("semask_models")
_TMP = re.compile(r"^\..+\.tmp(\d+)$")  # atomic_write's temporary names: .<name>.tmp<pid>
_LOW_SPACE = 1 << 20  # bytes: a write that failed with less free space than this ran out of disk


def atomic_write(path: Union[str, Path], write: Callable[[str], None]) -> Path:
    """``write(tmp)`` then fsync and ``os.replace(tmp, path)``; the temporary file is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = _out_of_space(e, path.parent)  # before the unlink frees the partial file's space
        tmp.unlink(missing_ok=True)
        if full is not None:
            raise OSError(errno.ENOSPC, f"no space left on device (ENOSPC) while writing {path}: {full} bytes free "
                          f"in {path.parent}; free some space (fewer train.keep_checkpoints?) and run again "
                          f"(semask-train --resume continues from the last complete checkpoint)") from e
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def _out_of_space(error: BaseException, folder: Path) -> Optional[int]:
    """The free bytes of ``folder`` when ``error`` is a full disk, else None. torch.save reports a full disk as a
    RuntimeError without errno ("unexpected pos ..."), so the free space decides when the errno cannot."""
    if not isinstance(error, Exception):
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    chain, e = [], error
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(getattr(x, "errno", None) == errno.ENOSPC or "No space left" in str(x) or "os error 28" in str(x)
           for x in chain):
        return free if free is not None else 0
    return free if free is not None and free < _LOW_SPACE else None


def remove_stale_temporaries(folder: Union[str, Path]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` of a killed process left in ``folder`` (a full
    checkpoint each); files of live processes (including this one) are kept."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and not _alive(int(m.group(1))) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.info("removed %d temporary file(s) of an interrupted save: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a pid we cannot ask about: keep its files
    return True

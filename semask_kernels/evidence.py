"""GPU evidence tied to the code it ran: the source files that define each fused backend, and their SHA-256.

A fused backend's module (an op folder's ``triton.py`` / ``cuda.py``, or a variant module registered beside it)
declares the files it is made of in one module attribute::

    SOURCES = ("semask_kernels/kernels/window_attention.py", "semask_kernels/kernels/window_attention_tiles.py")

paths relative to the repository root; a path ending in ``/`` stands for every file below that folder (the
``csrc/<op>/`` and ``csrc/common/`` folders of a CUDA backend). The module's own file is always part of it.
``sources(op, backend)`` reads the declaration through the registry (the module that holds the backend's
``forward``), so a backend registered under any name, variants included, is covered without a list here.

``fingerprint(paths)`` hashes each file as committed (``{path: sha256 or None when absent}``) and one digest over
all of them; ``.ci/gpu-check all`` writes it per (op, backend) into ``gpu_summary.json`` (``"sources"``), and
``tests/test_backends.py`` fails when a ``verified=True`` backend's files today differ from those of its latest
passing run. Runs made before the hashes existed carry ``evidence_manifest.json``, derived after the fact from
the git commit the run recorded (``.ci/evidence_manifest.py``). Nothing here needs git: a clean checkout's files
are what is hashed.

    >>> sorted(sources("shifted_window_attention", "cuda"))[:2]
    ['csrc/common/checks.h', 'csrc/common/limits.h']
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from . import backends

ROOT = Path(__file__).resolve().parent.parent  # the repository root of a source checkout / editable install
PLAIN = ("reference", "torch")  # plain PyTorch: no GPU evidence, no sources to pin

Reader = Callable[[str], Optional[bytes]]  # path -> the file's bytes, None when absent
Lister = Callable[[str], list]  # folder path ending in "/" -> the file paths below it


def is_fused(backend: str) -> bool:
    """A backend that needs GPU evidence: anything but the plain-PyTorch paths (``"triton"``, ``"cuda"`` and their
    variants ``"<backend>.<variant>"``)."""
    return backend.split(".")[0] not in PLAIN


def backend_module(op: str, backend: str):
    """The module that defines ``backend`` of ``op``: the one that holds its ``forward`` (through wrappers and
    ``functools.partial``)."""
    fn = backends.get_backend(op, backend).forward
    fn = inspect.unwrap(fn)
    while isinstance(fn, functools.partial):
        fn = inspect.unwrap(fn.func)
    name = getattr(fn, "__module__", None)
    module = sys.modules.get(name or "")
    if module is None or not getattr(module, "__file__", None):
        raise LookupError(f"{op}/{backend}: cannot find the module of its forward ({fn!r}, module {name!r})")
    return module


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        raise LookupError(f"{path} is outside the repository {ROOT}: its evidence cannot be tied to the sources")


def declared(op: str, backend: str) -> tuple[str, ...]:
    """The module's own file, then its ``SOURCES`` entries (folders still ending in ``/``)."""
    module = backend_module(op, backend)
    entries = getattr(module, "SOURCES", ())
    if isinstance(entries, str) or not all(isinstance(e, str) and e and not e.startswith("/") for e in entries):
        raise TypeError(f"{module.__name__}.SOURCES must be a tuple of repository-relative paths, got {entries!r}")
    return (_relative(Path(module.__file__)), *entries)


def expand(entries: Iterable[str], lister: Lister) -> list[str]:
    """Folder entries replaced by the files below them; sorted, without repeats."""
    files: set[str] = set()
    for entry in entries:
        files.update(lister(entry) if entry.endswith("/") else [entry])
    return sorted(files)


def _tree_reader(path: str) -> Optional[bytes]:
    file = ROOT / path
    return file.read_bytes() if file.is_file() else None


def _tree_lister(folder: str) -> list[str]:
    base = ROOT / folder
    return [p.relative_to(ROOT).as_posix() for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".so", ".o")]


def sources(op: str, backend: str, lister: Lister = _tree_lister) -> list[str]:
    """Every file that defines ``backend`` of ``op`` (repository-relative paths, sorted)."""
    return expand(declared(op, backend), lister)


def fingerprint(paths: Iterable[str], reader: Reader = _tree_reader) -> dict:
    """``{"files": {path: sha256 hex or None when absent}, "sha256": digest of all of them}``.

    The digest hashes "path\\0sha256\\n" per file in path order (an absent file as "-"), so renaming, adding or
    removing a file changes it as much as editing one does."""
    files = {}
    for path in sorted(set(paths)):
        data = reader(path)
        files[path] = hashlib.sha256(data).hexdigest() if data is not None else None
    total = hashlib.sha256("".join(f"{p}\0{h or '-'}\n" for p, h in files.items()).encode())
    return {"files": files, "sha256": total.hexdigest()}


def current() -> dict:
    """``{op: {backend: fingerprint}}`` of every fused backend registered in this process, from the files here."""
    from .ops._spec import specs
    specs()  # imports every op folder, so every backend is registered
    return {op: {name: fingerprint(sources(op, name)) for name in sorted(backends._REGISTRY[op]) if is_fused(name)}
            for op in backends.ops()}


def changed(recorded: dict, now: dict) -> list[str]:
    """What differs between two fingerprints of one backend, one line per file ("edited", "added", "removed")."""
    old, new = recorded.get("files", {}), now.get("files", {})
    lines = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        lines.append(f"{path}: " + ("added" if a is None else "removed" if b is None else "edited"))
    return lines


MANIFEST = "evidence_manifest.json"  # beside a run's own files, for runs made before gpu_summary had "sources"


def load_runs(folder: Path) -> list[dict]:
    """Every committed run under ``folder`` (``<run>/gpu_summary.json``), oldest first, each with ``"sources"``:
    the run's own record, else its after-the-fact manifest's, else ``{}``; ``"folder"`` names its folder."""
    runs = []
    for path in folder.glob("*/gpu_summary.json"):
        summary = json.loads(path.read_text())
        manifest = path.parent / MANIFEST
        if "sources" not in summary and manifest.is_file():
            summary["sources"] = json.loads(manifest.read_text())["sources"]
        summary.setdefault("sources", {})
        summary["folder"] = path.parent.name
        runs.append(summary)
    return sorted(runs, key=lambda s: s["started"])


def unverified_because(op: str, backend: str, runs: list[dict], now: dict) -> Optional[str]:
    """Why ``backend`` of ``op`` may not be ``verified=True`` given the committed ``runs`` and its fingerprint
    ``now``, or None: the latest GPU run that tested it must have passed all its tests and recorded the very
    sources it has today."""
    tested = [s for s in runs if s.get("gpu") and backend in s.get("tests_by_op", {}).get(op, {})]
    if not tested:
        return f"{op}/{backend}: no committed GPU run tested it"
    latest = tested[-1]
    counts = latest["tests_by_op"][op][backend]
    if not (counts.get("passed", 0) > 0 and counts.get("failed", 0) == counts.get("errored", 0) == 0):
        return f"{op}/{backend}: its latest GPU run ({latest['folder']}) had {counts}"
    recorded = latest.get("sources", {}).get(op, {}).get(backend)
    if recorded is None:
        return f"{op}/{backend}: its latest GPU run ({latest['folder']}) recorded no hashes of its sources"
    if recorded.get("sha256") != now.get("sha256"):
        return (f"{op}/{backend}: its sources changed since its latest GPU run ({latest['folder']}): "
                + "; ".join(changed(recorded, now)))
    return None


def main(argv=None) -> int:
    """``python -m semask_kernels.evidence``: the files and digest of every fused backend, as JSON."""
    json.dump(current(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

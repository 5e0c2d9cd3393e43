"""The committed choice table of ``auto``: which backend runs each (op, direction, shape class), chosen from device
times measured on a GPU, so that an op's forward and backward may come from different backends.

The table is ``benchmarks/results/gpu/auto_choice.json``, beside the GPU runs whose timings it records. Each row::

    {"op": "shifted_window_attention", "direction": "backward", "shape_class": "bfloat16 w7x7 d32 h24",
     "backend": "cuda", "times_ms": {"triton": 1.9, "cuda": 1.0}, "run": "2026-12-06-h200-<sha>"}

``direction`` is "forward" or "backward"; ``shape_class`` is what the op's ``shape_class(*args)`` (registered
with ``backends.register_op``) returns for a call. No row (the table today: no GPU has timed the backends per
direction yet), or a missing file (an installed package without the repository's results), means the op's
preference order. ``backends.choose_backends`` applies the rows, using only verified backends from them.
"""
from __future__ import annotations

import json
from pathlib import Path

DIRECTIONS = ("forward", "backward")
CHOICE_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gpu" / "auto_choice.json"


def read(path: Path = CHOICE_FILE) -> dict[tuple[str, str, str], str]:
    """{(op, direction, shape class): backend} of the table at ``path``; {} when the file is absent. A malformed
    row raises, naming the file, the row and the field."""
    if not path.exists():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    table = {}
    for i, row in enumerate(rows):
        for key in ("op", "direction", "shape_class", "backend"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise ValueError(f"{path}: row {i} needs a non-empty string {key!r}, got {row.get(key)!r}")
        if row["direction"] not in DIRECTIONS:
            raise ValueError(f"{path}: row {i}: direction must be one of {DIRECTIONS}, got {row['direction']!r}")
        table[(row["op"], row["direction"], row["shape_class"])] = row["backend"].lower()
    return table


_TABLE: dict[tuple[str, str, str], str] = read()  # at import: torch.compile cannot trace a file read (a graph break)


def table() -> dict[tuple[str, str, str], str]:
    """The committed table, read once per process (when this module is imported)."""
    return _TABLE

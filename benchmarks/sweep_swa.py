"""``sweep-swa``: choose the tile settings of the ``triton.onepass`` forward (all heads of a window per program)
per Swin stage on a GPU, and write them to its table ``semask_kernels/kernels/window_attention_onepass.json``.

For each stage shape (window tokens, head dim, heads) it times every (num_warps, num_stages, pairs per program)
of a small grid by CUDA events over many launches (``triton.testing.do_bench``, which clears the L2 between
launches), checks each setting's output against the verified ``triton`` forward, and keeps the fastest. The
rows record the time, the achieved bandwidth (the minimum traffic: qkv read once, the output written once) and
the run's device and git sha; ``--write`` replaces the table's rows with them (commit the file with the run).

``--dry-run`` runs the same code on the CPU under the Triton interpreter at a tiny batch and map, two settings
per stage and no timing: it proves the sweep, the correctness check and the table format, not a speed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os

import torch

from .harness import append_rows, at_least, run_metadata

# Swin-T at 224: (map side, heads) per stage; window 7, head dim 32
STAGES = ((56, 3), (28, 6), (14, 12), (7, 24))
GRID = {"num_warps": (2, 4, 8), "num_stages": (1, 2, 3), "pairs_per_program": (1, 4, 16, 64)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=at_least(1), default=128)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, Triton interpreter, batch 1, map 14, two settings per stage, no timing")
    parser.add_argument("--write", action="store_true", help="replace the tile table's rows with the winners")
    parser.add_argument("--output", default=None, help="JSON lines file of every timed setting")


def _settings(dry_run: bool):
    combos = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    return combos[:2] if dry_run else combos


def _inputs(batch, side, heads, dtype, device):
    from semask_kernels.ops.shifted_window_attention import spec
    call = spec.inputs(batch, side, side, heads, 32, (7, 7), (3, 3) if side > 7 else (0, 0), dtype=dtype,
                       device=device)
    return call.kwargs


def sweep(batch: int, dtype: torch.dtype, device: str, dry_run: bool) -> tuple[list[dict], list[dict]]:
    """(every measured setting, the winner per stage). Dry run: times are None, the first setting wins."""
    import semask_kernels as sk
    from semask_kernels.kernels import window_attention_onepass as onepass
    rows, winners = [], []
    stages = [(14, heads) for _, heads in STAGES[:2]] if dry_run else STAGES
    for side, heads in stages:
        kwargs = _inputs(batch, side, heads, dtype, device)
        with torch.no_grad():
            expected = sk.shifted_window_attention(**kwargs, backend="triton")
        key = (49, 32, heads)
        best = None
        for setting in _settings(dry_run):
            saved = dict(onepass.TILE_TABLE)
            onepass.TILE_TABLE[key] = onepass.Tiles(**setting)
            onepass._LAUNCH_ARGS.clear()
            try:
                with torch.no_grad():
                    fn = lambda: sk.shifted_window_attention(**kwargs, backend="triton.onepass")  # noqa: E731
                    out = fn()
                    err = (out.float() - expected.float()).abs().max().item()
                    ms = None if dry_run else _device_ms(fn)
            finally:
                onepass.TILE_TABLE.clear()
                onepass.TILE_TABLE.update(saved)
                onepass._LAUNCH_ARGS.clear()
            moved = kwargs["qkv"].numel() * kwargs["qkv"].element_size() * 4 // 3  # qkv in, output out
            row = {"tokens": 49, "head_dim": 32, "heads": heads, **setting, "batch": batch, "map": side,
                   "max_abs_diff_vs_triton": err, "time_ms": ms, "bytes": moved,
                   "gb_s": round(moved / ms / 1e6, 1) if ms else None, "timer": None if dry_run else "events"}
            ok = err <= (1e-4 if dtype == torch.float32 else 2e-2)
            row["ok"] = ok
            rows.append(row)
            if ok and (best is None or (ms is not None and ms < best["time_ms"])):
                best = row
        if best is None:
            raise RuntimeError(f"sweep-swa: no setting matched the verified forward at heads={heads}: {rows[-1]}")
        winners.append(best)
    return rows, winners


def _device_ms(fn) -> float:
    from triton.testing import do_bench
    return float(do_bench(fn, warmup=25, rep=200))


def table_rows(winners: list[dict], meta: dict) -> list[dict]:
    keep = ("tokens", "head_dim", "heads", "num_warps", "num_stages", "pairs_per_program", "time_ms", "gb_s")
    return [{**{k: w[k] for k in keep}, "device": meta.get("device"), "git_sha": meta.get("git_sha")}
            for w in winners]


def run(args) -> None:
    from semask_kernels.kernels import window_attention_onepass as onepass
    dtype = DTYPES[args.dtype]
    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("sweep-swa --dry-run needs TRITON_INTERPRET=1 in the environment (set before Python "
                             "starts: Triton reads it when the kernels are defined)")
        device, batch = "cpu", 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("sweep-swa times on a GPU; on the CPU use --dry-run (no timing)")
        device, batch = "cuda", args.batch
    rows, winners = sweep(batch, dtype, device, args.dry_run)
    meta = run_metadata(torch.device(device))
    for r in rows:
        print(json.dumps(r))
    print("winners:")
    for w in table_rows(winners, meta):
        print(json.dumps(w))
    if args.dry_run:
        print("dry run: no timing (CPU interpreter); the table was not written")
        return
    path = append_rows("sweep_swa.jsonl", [{**r, **meta, "dtype": args.dtype} for r in rows], args.output)
    print(f"wrote {path}")
    if args.write:
        doc = json.loads(onepass.TABLE_FILE.read_text())
        doc["rows"] = table_rows(winners, meta)
        onepass.TABLE_FILE.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {onepass.TABLE_FILE}: commit it with the run folder")


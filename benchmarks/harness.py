"""Shared timing harness: warm-up, CUDA-event (GPU) or perf_counter (CPU) timing, median and spread, peak
memory, run metadata, and long-format JSONL results under ``benchmarks/results/``."""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    peak_mem_mb: float | None

    @property
    def spread(self) -> str:
        return f"{self.p10_ms:.2f}-{self.p90_ms:.2f}"


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 3, repeats: int = 10) -> Timing:
    """Time ``fn()`` ``repeats`` times after ``warmup`` calls; on CUDA with events, and peak memory. Raises what
    ``fn`` raises."""
    contest = time_contenders({"fn": fn}, device, warmup=warmup, repeats=repeats, interleave=False)
    if "fn" in contest.failures:
        raise contest.failures["fn"]
    return contest.timings["fn"]


@dataclass
class Contest:
    """Timings of several contenders measured together (``time_contenders``): each one's ``Timing``, its per-call
    times, and the contenders that raised."""
    timings: dict[str, Timing]
    times: dict[str, list[float]]
    interleaved: bool
    failures: dict[str, BaseException]

    def speedup(self, name: str, baseline: str) -> tuple[float, float | None, float | None] | None:
        """(median, p10, p90) speedup of ``name`` over ``baseline``: interleaved, of the per-round ratios (baseline
        time / its time, in the same round); else the ratio of medians (no spread). None if either is missing."""
        if name not in self.timings or baseline not in self.timings:
            return None
        if not self.interleaved:
            return self.timings[baseline].median_ms / self.timings[name].median_ms, None, None
        ratios = [b / t for b, t in zip(self.times[baseline], self.times[name])]
        return statistics.median(ratios), _percentile(ratios, 0.1), _percentile(ratios, 0.9)


def time_contenders(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 3, repeats: int = 10,
                    interleave: bool = True) -> Contest:
    """Time each ``fns[name]()`` ``repeats`` times after ``warmup`` calls (CUDA events on a GPU, with peak memory).

    ``interleave``: one call of every contender per round, the order alternating (forward, then backward) so none
    always runs first; a load change on a shared machine then hits every contender of a round alike and the
    per-round ratios cancel it (``Contest.speedup``). Otherwise each contender's calls run back to back. A
    contender that raises is dropped and reported in ``failures``.
    """
    failures: dict[str, BaseException] = {}
    live = dict(fns)

    def call(name: str) -> float | None:
        try:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                live[name]()
                end.record()
                torch.cuda.synchronize(device)
                return start.elapsed_time(end)
            t0 = time.perf_counter()
            live[name]()
            return (time.perf_counter() - t0) * 1e3
        except Exception as e:  # noqa: BLE001 - one contender failing (OOM, a backend) is reported, not fatal
            failures[name] = e
            del live[name]
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return None

    times: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, float] = {}

    def timed(name: str) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t = call(name)
        if t is not None:
            times[name].append(t)
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)

    if interleave:
        for name in list(fns):
            for _ in range(warmup):
                if name in live:
                    call(name)
        for r in range(repeats):
            for name in (list(live) if r % 2 == 0 else list(live)[::-1]):
                timed(name)
    else:
        for name in list(fns):
            for _ in range(warmup):
                if name in live:
                    call(name)
            for _ in range(repeats):
                if name in live:
                    timed(name)
    timings = {name: Timing(statistics.median(ts), _percentile(ts, 0.1), _percentile(ts, 0.9), len(ts),
                            peaks.get(name)) for name, ts in times.items() if name in live and ts}
    return Contest(timings, {name: times[name] for name in timings}, interleave, failures)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=RESULTS.parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_metadata(device: torch.device) -> dict:
    """Device name and versions written with every result row."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    return {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "timm": _version("timm"),
        "cuda": torch.version.cuda,
        "git_sha": _git_sha(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def check_output(filename: str, path: str | Path | None = None) -> Path:
    """The file :func:`append_rows` would write, checked before any measurement: its folder must be (or become) a
    folder and the file, if there, a writable file; otherwise ``SystemExit`` with one line naming the path (a run
    must not measure for minutes and then lose its results)."""
    path = Path(path) if path is not None else RESULTS / filename
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise SystemExit(f"error: cannot write results to {path}: {parent} is a file, not a folder "
                                 "(move it, pass --jsonl PATH, or --no-save)")
            break
    if path.exists() and (not path.is_file() or not os.access(path, os.W_OK)):
        raise SystemExit(f"error: cannot write results to {path}: it is not a writable file (pass --jsonl PATH, "
                         "or --no-save)")
    return path


def append_rows(filename: str, rows: list[dict], path: str | Path | None = None) -> Path:
    """Append ``rows`` to ``path``, by default ``benchmarks/results/<filename>`` (JSON lines, one measurement
    per line), flushed at once: a run killed later keeps every row written so far."""
    path = Path(path) if path is not None else RESULTS / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def at_least(minimum: int):
    """argparse type: an integer >= ``minimum`` (sizes, batches and repeats >= 1, warm-up >= 0)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse

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
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Stopping:
    """When the adaptive timing of ``time_contenders`` stops warming up and stops running rounds.

    Warm-up: at least ``warmup`` calls of each contender, then more until its last ``settle_calls`` times lie within
    ``settle_tol`` of each other (max / min <= 1 + settle_tol; caches, allocator and autotuning have settled), at
    most ``max_warmup`` calls or ``warmup_cap_s`` seconds each. Rounds: at least ``repeats``, then more until the
    p10-p90 spread of every contender's speedup over ``baseline`` is below ``max_spread`` (p90 / p10), at most
    ``max_rounds`` or ``time_cap_s`` seconds of rounds. A ratio whose spread stays wide is "inconclusive"
    (:func:`verdict`), never a speedup."""
    baseline: str
    max_spread: float = 1.3
    time_cap_s: float = 120.0
    max_rounds: int = 50
    settle_calls: int = 3
    settle_tol: float = 0.15
    max_warmup: int = 10
    warmup_cap_s: float = 60.0


def settled(times: list[float], calls: int = 3, tol: float = 0.15) -> bool:
    """Whether the last ``calls`` times of a warm-up agree within ``tol`` (max / min <= 1 + tol)."""
    last = times[-calls:]
    return len(last) >= calls and min(last) > 0 and max(last) / min(last) <= 1 + tol


@dataclass(frozen=True)
class Verdict:
    """A speedup with its p10-p90 spread and whether the spread is narrow enough to state it (``conclusive``)."""
    median: float
    p10: float
    p90: float
    conclusive: bool

    @property
    def spread(self) -> float:
        return self.p90 / self.p10 if self.p10 > 0 else float("inf")

    def __str__(self) -> str:
        interval = f"{self.p10:.2f}-{self.p90:.2f}"
        return f"{self.median:.2f}x ({interval})" if self.conclusive else f"inconclusive ({interval})"


MIN_SAMPLES = 3  # fewer ratios than this have no spread to speak of: never conclusive


def verdict(median: float, p10: float, p90: float, max_spread: float = 1.3, samples: int = MIN_SAMPLES) -> Verdict:
    """A speedup is stated only when its p10-p90 spread (p90 / p10) is below ``max_spread`` and it rests on at
    least ``MIN_SAMPLES`` measurements (``samples``)."""
    return Verdict(median, p10, p90, samples >= MIN_SAMPLES and p10 > 0 and p90 / p10 < max_spread)


@dataclass
class Contest:
    """Timings of several contenders measured together (``time_contenders``): each one's ``Timing``, its per-call
    times, and the contenders that raised; with a ``Stopping``, the warm-up calls each took, the rounds run and
    why they stopped."""
    timings: dict[str, Timing]
    times: dict[str, list[float]]
    interleaved: bool
    failures: dict[str, BaseException]
    warmup_calls: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    stopped: str = "fixed repeats"

    def speedup(self, name: str, baseline: str) -> tuple[float, float | None, float | None] | None:
        """(median, p10, p90) speedup of ``name`` over ``baseline``: interleaved, of the per-round ratios (baseline
        time / its time, in the same round); else the ratio of medians (no spread). None if either is missing."""
        if name not in self.timings or baseline not in self.timings:
            return None
        if not self.interleaved:
            return self.timings[baseline].median_ms / self.timings[name].median_ms, None, None
        ratios = [b / t for b, t in zip(self.times[baseline], self.times[name])]
        return statistics.median(ratios), _percentile(ratios, 0.1), _percentile(ratios, 0.9)

    def verdict(self, name: str, baseline: str, max_spread: float = 1.3) -> Verdict | None:
        """The speedup of ``name`` over ``baseline`` with its spread: interleaved, of the per-round ratios; back to
        back, the widest the two spreads allow (baseline p10 / its p90 to baseline p90 / its p10)."""
        if name not in self.timings or baseline not in self.timings:
            return None
        if name == baseline:  # 1 by definition
            return Verdict(1.0, 1.0, 1.0, True)
        median, p10, p90 = self.speedup(name, baseline)
        if p10 is None:
            b, t = self.timings[baseline], self.timings[name]
            p10, p90 = b.p10_ms / t.p90_ms, b.p90_ms / t.p10_ms
        return verdict(median, p10, p90, max_spread, min(len(self.times[name]), len(self.times[baseline])))


def time_contenders(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 3, repeats: int = 10,
                    interleave: bool = True, until: Stopping | None = None) -> Contest:
    """Time each ``fns[name]()`` ``repeats`` times after ``warmup`` calls (CUDA events on a GPU, with peak memory).

    ``interleave``: one call of every contender per round, the order alternating (forward, then backward) so none
    always runs first; a load change on a shared machine then hits every contender of a round alike and the
    per-round ratios cancel it (``Contest.speedup``). Otherwise each contender's calls run back to back. A
    contender that raises is dropped and reported in ``failures``.

    ``until``: adaptive (``Stopping``): warm up each contender until its times settle, then run rounds (at least
    ``repeats``) until every speedup over ``until.baseline`` is tight or a cap is hit; back to back, each
    contender's calls continue until its own p10-p90 spread is below ``until.max_spread``.
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

    warmups: dict[str, int] = {}

    def warm(name: str) -> None:
        done: list[float] = []
        start = time.perf_counter()
        while name in live:
            if len(done) >= warmup and (until is None or settled(done, until.settle_calls, until.settle_tol)
                                        or len(done) >= until.max_warmup
                                        or time.perf_counter() - start > until.warmup_cap_s):
                break
            t = call(name)
            if t is not None:
                done.append(t)
        warmups[name] = len(done)

    def tight(names: list[str]) -> bool:
        """Interleaved: every speedup over the baseline (per-round ratios) has a narrow p10-p90 spread; back to
        back: every time has."""
        for name in names:
            if interleave:
                if name == until.baseline or until.baseline not in live:
                    continue
                values = [b / t for b, t in zip(times[until.baseline], times[name])]
            else:
                values = times[name]
            if values and not verdict(statistics.median(values), _percentile(values, 0.1),
                                      _percentile(values, 0.9), until.max_spread, len(values)).conclusive:
                return False
        return True

    stopped = "fixed repeats"
    rounds = 0
    if interleave:
        for name in list(fns):
            warm(name)
        start = time.perf_counter()
        while live:
            if rounds >= repeats:
                if until is None:
                    break
                if tight(list(live)):
                    stopped = f"spread below {until.max_spread:g}x"
                    break
                if rounds >= until.max_rounds:
                    stopped = f"max rounds ({until.max_rounds}) with a wide spread"
                    break
                if time.perf_counter() - start > until.time_cap_s:
                    stopped = f"time cap ({until.time_cap_s:g} s) with a wide spread"
                    break
            for name in (list(live) if rounds % 2 == 0 else list(live)[::-1]):
                timed(name)
            rounds += 1
    else:
        for name in list(fns):
            warm(name)
            start = time.perf_counter()
            n = 0
            while name in live:
                if n >= repeats and (until is None or tight([name]) or n >= until.max_rounds
                                     or time.perf_counter() - start > until.time_cap_s):
                    break
                timed(name)
                n += 1
            rounds = max(rounds, n)
        if until is not None:
            stopped = "back to back: until each time's spread is narrow or a cap"
    timings = {name: Timing(statistics.median(ts), _percentile(ts, 0.1), _percentile(ts, 0.9), len(ts),
                            peaks.get(name)) for name, ts in times.items() if name in live and ts}
    return Contest(timings, {name: times[name] for name in timings}, interleave, failures, warmups, rounds, stopped)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _git_sha() -> str:
    """The run's own commit: ``GIT_SHA`` when the caller knows it (``.ci/gpu-check all`` exports the sha it
    records to every phase, so the rows and gpu_summary.json agree; on a GPU machine the copied tree's git
    metadata can be stale: the first run's rows said 0df8481, an ancestor of the c29f02c it ran), else git's
    HEAD."""
    if os.environ.get("GIT_SHA"):
        return os.environ["GIT_SHA"]
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

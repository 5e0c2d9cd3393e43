"""Device time of a kernel call, without the host in the figure: CUDA-graph replay (or CUDA events over many
back-to-back launches when a call cannot be captured), rotating over several input sets that together exceed
the L2 cache, so that every call reads its inputs from HBM as it would inside a model.

    sets = [make_inputs() for _ in range(input_sets(bytes_per_call, device))]
    t = time_device([lambda s=s: op(**s) for s in sets], device)   # DeviceTiming(ms per call, timer, ...)
    copy = copy_bandwidth(device)                                    # GB/s of a large device-to-device copy
    row["gbps"] = traffic_bytes / t.ms / 1e6; row["of_copy"] = row["gbps"] / copy

``timer`` says which clock gave the figure: ``cuda_graph`` (one graph holds one call per input set; it is replayed
``rounds`` times between two events: launch cost is gone) or ``events`` (the calls launched back to back between
two events: the host's launch cost hides behind the device time only where the device is the slower of the two).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

# L2 sizes by device name, for devices whose properties do not report it (bytes; H100 50 MB, H200 60 MB)
L2_BY_NAME = {"H100": 50 * 2 ** 20, "H200": 60 * 2 ** 20, "A100": 40 * 2 ** 20}
L2_FALLBACK = 64 * 2 ** 20
MIN_SETS, MAX_SETS = 2, 64


@dataclass(frozen=True)
class DeviceTiming:
    ms: float            # median device milliseconds per call
    p10_ms: float
    p90_ms: float
    timer: str           # "cuda_graph" or "events"
    calls: int           # calls timed in each sample (input sets x rounds)
    samples: int
    input_sets: int
    note: str = ""       # why the graph was not used, when it was not


def l2_bytes(device: torch.device | str) -> int:
    """The device's L2 cache in bytes: from its properties, else by name (``L2_BY_NAME``), else 64 MiB."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device must be a CUDA device for device timing, got {device}")
    props = torch.cuda.get_device_properties(device)
    size = getattr(props, "L2_cache_size", 0) or 0
    if size:
        return int(size)
    return next((v for k, v in L2_BY_NAME.items() if k in props.name), L2_FALLBACK)


def input_sets(bytes_per_call: int, l2: int, factor: float = 2.0) -> int:
    """How many input sets to rotate so that they hold at least ``factor`` times the L2 (each call then finds its
    inputs evicted by the others): at least 2, at most 64.

        >>> input_sets(10 * 2 ** 20, 50 * 2 ** 20)
        10
        >>> input_sets(400 * 2 ** 20, 50 * 2 ** 20)
        2
    """
    if bytes_per_call <= 0:
        raise ValueError(f"bytes_per_call must be > 0, got {bytes_per_call}")
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    return max(MIN_SETS, min(MAX_SETS, math.ceil(factor * l2 / bytes_per_call)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _events_ms(run: Callable[[], None], samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def time_device(calls: Sequence[Callable[[], object]], device: torch.device | str, *, rounds: int = 20,
                samples: int = 10, warmup: int = 2, graph: bool = True) -> DeviceTiming:
    """Median device time of one call. ``calls``: one closure per input set (each runs the op on its own set).

    With ``graph``, the calls are captured once into a CUDA graph (one call per set) after ``warmup`` eager runs
    on a side stream; each sample replays it ``rounds`` times between two events. A call that cannot be captured
    (a host sync, an allocation the graph refuses) falls back to ``events``: each sample launches the calls
    ``rounds`` times over, back to back, between two events. Either way the figure is per call."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device must be a CUDA device for device timing, got {device}")
    if not calls:
        raise ValueError("calls must hold at least one closure (one per input set)")
    if rounds < 1 or samples < 1 or warmup < 0:
        raise ValueError(f"rounds and samples must be >= 1 and warmup >= 0, got {rounds}, {samples}, {warmup}")

    def eager():
        for call in calls:
            call()

    note = ""
    with torch.cuda.device(device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(max(1, warmup)):
                eager()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        if graph:
            try:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    eager()
                g.replay()
                torch.cuda.synchronize()

                def replay():
                    for _ in range(rounds):
                        g.replay()
                times = _events_ms(replay, samples)
                return _timing(times, "cuda_graph", len(calls), rounds, samples, note)
            except Exception as e:  # not capturable: time launches between events instead, and say why
                torch.cuda.synchronize()
                note = f"not captured ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"

        def launches():
            for _ in range(rounds):
                eager()
        times = _events_ms(launches, samples)
    return _timing(times, "events", len(calls), rounds, samples, note)


def _timing(times: list[float], timer: str, sets: int, rounds: int, samples: int, note: str) -> DeviceTiming:
    per_call = [t / (sets * rounds) for t in times]
    return DeviceTiming(statistics.median(per_call), _percentile(per_call, 0.1), _percentile(per_call, 0.9),
                        timer, sets * rounds, samples, sets, note)


def copy_timing(device: torch.device | str, nbytes: int | None = None, samples: int = 10) -> tuple[float, DeviceTiming, int]:
    """(GB/s, timing, bytes) of a large device-to-device copy (``dst.copy_(src)``; read + write counted), the
    roofline a memory-bound kernel is measured against in the same run. ``nbytes``: the buffer, default 8x the
    L2."""
    device = torch.device(device)
    nbytes = nbytes or 8 * l2_bytes(device)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = time_device([lambda: dst.copy_(src)], device, rounds=5, samples=samples, graph=True)
    return 2 * nbytes / t.ms / 1e6, t, nbytes


def copy_bandwidth(device: torch.device | str, nbytes: int | None = None, samples: int = 10) -> float:
    """GB/s of a large device-to-device copy (``copy_timing``)."""
    return copy_timing(device, nbytes, samples)[0]


def gbps(traffic_bytes: int, ms: float) -> float:
    """Achieved GB/s of ``traffic_bytes`` moved in ``ms`` milliseconds.

        >>> gbps(2_000_000_000, 1000.0)
        2.0
    """
    if ms <= 0:
        raise ValueError(f"ms must be > 0, got {ms}")
    return traffic_bytes / ms / 1e6

"""``host-cost``: the host's share of one op call, measured on the CPU: the Python work before the kernels start
(argument checks and ``arguments()``, backend dispatch through the custom op, launch-argument building), with
every Triton launch stubbed out by a launch recorder that counts the launches and the keyword arguments each
one passes, and the torch ops the call dispatches besides (each one a small kernel launch on a GPU).

It times every Triton backend the registry lists for ``shifted_window_attention`` (variants included) at one
Swin-T stage-1 window geometry (small batch: the host work does not depend on the batch), forward and backward,
on CPU tensors (the Triton backends accept them under ``TRITON_INTERPRET=1``; the stubbed launches never run
the interpreter). These are CPU microseconds of host work, not GPU times; ``tests/benchmarks/test_host_cost.py``
holds them to a budget.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .harness import append_rows, at_least, run_metadata

OP = "shifted_window_attention"
# aten ops that only describe a tensor (no kernel on a GPU): not counted as launches
METADATA_OPS = {"view", "_unsafe_view", "as_strided", "slice", "select", "t", "transpose", "permute", "expand",
                "unsqueeze", "squeeze", "alias", "detach", "lift_fresh", "split", "unbind", "reshape", "narrow",
                "empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided", "sym_size", "sym_stride",
                "is_same_size", "_reshape_alias", "unflatten", "flatten", "view_as", "contiguous"}


@dataclass
class Launches:
    """What a call launched: Triton kernels (name, grid, number of keyword arguments) and the torch ops dispatched
    (by name), the metadata-only ones apart."""
    triton: list = field(default_factory=list)
    torch_ops: list = field(default_factory=list)

    @property
    def device_ops(self) -> list:
        return [name for name in self.torch_ops if name not in METADATA_OPS]


class _TorchOps(TorchDispatchMode):
    def __init__(self, sink: list):
        super().__init__()
        self.sink = sink

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.sink.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _kernel_classes() -> list:
    """The classes whose ``run`` a ``kernel[grid](...)`` launch calls: Triton's JIT function and, under the
    interpreter, its interpreted stand-in."""
    classes = []
    for module, name in (("triton.runtime.jit", "JITFunction"), ("triton.runtime.interpreter", "InterpretedFunction"),
                         ("triton.runtime.autotuner", "Autotuner")):
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return classes


@contextmanager
def recording(stub: bool = True, torch_ops: bool = True):
    """Record every Triton launch (and, with ``torch_ops``, every torch op dispatched) inside the block; with
    ``stub`` the launches do not run (the host work up to the launch is what remains)."""
    found = Launches()
    saved = []
    for cls in _kernel_classes():
        original = cls.run

        def run(self, *args, grid=None, warmup=False, _original=original, **kwargs):
            fn = getattr(self, "fn", None)
            found.triton.append((getattr(fn, "__name__", type(self).__name__), grid, len(args) + len(kwargs)))
            if stub:
                return None
            return _original(self, *args, grid=grid, warmup=warmup, **kwargs)
        saved.append((cls, original))
        cls.run = run
    mode = _TorchOps(found.torch_ops) if torch_ops else None
    try:
        if mode is not None:
            with mode:
                yield found
        else:
            yield found
    finally:
        for cls, original in saved:
            cls.run = original


@dataclass(frozen=True)
class HostCost:
    backend: str
    direction: str
    median_us: float
    p10_us: float
    triton_launches: int
    launch_kwargs: int      # keyword arguments passed to the Triton launches of one call, together
    device_ops: int         # other torch ops that would each launch a kernel on a GPU


def _inputs(batch=2, hw=14, heads=3, d=32, window=7, shift=3):
    qkv = torch.randn(batch, hw, hw, 3 * heads * d)
    table = torch.randn((2 * window - 1) ** 2, heads)
    qkv_bias = torch.randn(3 * heads * d)
    return {"qkv": qkv, "bias_table": table, "num_heads": heads, "window_size": (window, window),
            "shift_size": (shift, shift), "qkv_bias": qkv_bias}


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return statistics.median(times), times[max(0, round(0.1 * (len(times) - 1)))]


def measure(backend: str, repeats: int = 50, **geometry) -> list[HostCost]:
    """Host cost of one forward call of the public op and of one backward call of its backward custom op with
    ``backend`` (launches stubbed): median and p10 microseconds over ``repeats`` calls (after 3 unrecorded
    warm-ups), the Triton launches, their keyword arguments and the torch ops of one call."""
    import semask_kernels as sk
    from semask_kernels import backends
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    kw = _inputs(**geometry)
    args = importlib.import_module(f"semask_kernels.ops.{OP}.op").arguments(**kw)
    grad = torch.randn(*kw["qkv"].shape[:-1], kw["qkv"].shape[-1] // 3)
    bwd = torch.ops.semask_kernels.shifted_window_attention_bwd
    impl = backends.get_backend(OP, backend)
    # timed through the public op and the backward custom op (the path a model takes); counted on the backend's
    # own functions, as the dispatcher hides the ops inside a custom op from a dispatch mode
    calls = {"forward": (lambda: sk.shifted_window_attention(**kw, backend=backend), lambda: impl.forward(*args)),
             "backward": (lambda: bwd(grad, *args, backend), lambda: impl.backward(grad, *args))}
    costs = []
    for direction, (call, direct) in calls.items():
        with recording(torch_ops=False):
            for _ in range(3):
                call()
            median, p10 = _timed(call, repeats)
        with recording(torch_ops=True) as seen:
            direct()
        costs.append(HostCost(backend, direction, median, p10, len(seen.triton),
                              sum(n for _, _, n in seen.triton), len(seen.device_ops)))
    return costs


def triton_backends(op: str = OP) -> list[str]:
    """Every registered backend of ``op`` that is Triton (``"triton"`` and its variants)."""
    from semask_kernels import backends
    from semask_kernels.ops._spec import specs
    specs()
    return sorted(n for n in backends._REGISTRY[op] if n.split(".")[0] == "triton")


def run(args) -> list[dict]:
    from semask_kernels import _env
    if not _env.triton_interpret() and not torch.cuda.is_available():
        print("host-cost: set TRITON_INTERPRET=1 (the Triton backends take CPU tensors only under the "
              "interpreter; the stubbed launches never run it)")
        return []
    meta = run_metadata(torch.device("cpu"))
    rows = []
    print(f"{'backend':<20} {'direction':<9} {'median us':>10} {'p10 us':>8} {'launches':>8} {'kwargs':>6} "
          f"{'torch ops':>9}   (CPU host work per call, launches stubbed; not GPU time)")
    for name in triton_backends():
        for cost in measure(name, repeats=args.repeats):
            row = {**meta, "bench": "host-cost", "op": OP, "impl": f"op:{name}", "direction": cost.direction,
                   "median_us": cost.median_us, "p10_us": cost.p10_us, "triton_launches": cost.triton_launches,
                   "launch_kwargs": cost.launch_kwargs, "device_ops": cost.device_ops}
            rows.append(row)
            print(f"{name:<20} {cost.direction:<9} {cost.median_us:>10.1f} {cost.p10_us:>8.1f} "
                  f"{cost.triton_launches:>8} {cost.launch_kwargs:>6} {cost.device_ops:>9}", flush=True)
            if not args.no_save:
                append_rows("host_cost.jsonl", [row], args.jsonl)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=at_least(1), default=50)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--jsonl", default=None,
                        help="append result rows to this file (default benchmarks/results/host_cost.jsonl)")

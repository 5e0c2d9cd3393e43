"""``kernels``: the device-timed kernel table of ``shifted_window_attention``: every backend the registry lists for
the op (variants ``"<backend>.<variant>"`` included, the reference excepted), forward and forward+backward, at
the stage shapes of a Swin model, with achieved GB/s against the device-to-device copy bandwidth measured in the
same run; then the attention path from the normed map (qkv Linear, attention, proj) of timm, SDPA and the op,
device-timed the same way.

Device time only (``benchmarks/device_timer.py``): CUDA-graph replay, or CUDA events over many launches where a
call cannot be captured, each row naming its ``timer``; several input sets rotated so that they exceed the L2.
Minimum traffic of the op (what a kernel at the memory roofline would move): forward q, k, v read and the output
written once (4·C per token); forward+backward adds dO read and dq, dk, dv written (8·C per token). Needs a CUDA
GPU: on a CPU it says so and times nothing (the host cost per call is ``benchmarks/host_cost.py``).
"""
from __future__ import annotations

import argparse

import torch

import semask_kernels as sk
from semask_kernels import backends

from . import device_timer
from .harness import append_rows, at_least, run_metadata
from .ops import DTYPES, MODELS, QUICK, _stages, attention_cases, registered

OP = "shifted_window_attention"


def backend_names(op: str = OP) -> list[str]:
    """Every backend registered for ``op`` but the reference (``ops.registered``: variants after their base), so
    new variants are timed without a list here."""
    return [n for n in registered(op) if n != "reference"]


def _op_module():
    import importlib
    return importlib.import_module(f"semask_kernels.ops.{OP}.op")


def traffic(tokens: int, channels: int, element_size: int, mode: str) -> int:
    """Minimum bytes moved by the op (see the module docstring): 4·C per token forward, 8·C forward+backward.

        >>> traffic(100, 96, 2, "forward"), traffic(100, 96, 2, "forward+backward")
        (76800, 153600)
    """
    per_token = {"forward": 4, "forward+backward": 8}.get(mode)
    if per_token is None:
        raise ValueError(f"mode must be 'forward' or 'forward+backward', got {mode!r}")
    return tokens * channels * per_token * element_size


def stage_inputs(batch: int, hw: int, dim: int, heads: int, window: int, dtype, device) -> dict:
    """One call's keyword arguments of the public op at a stage (qkv of unit scale, shifted where the map
    exceeds the window), tensors requiring grad."""
    shift = window // 2 if hw > window else 0
    table = (2 * window - 1) ** 2
    return {"qkv": torch.randn(batch, hw, hw, 3 * dim, device=device, dtype=dtype).requires_grad_(),
            "bias_table": (0.5 * torch.randn(table, heads, device=device, dtype=dtype)).requires_grad_(),
            "qkv_bias": (0.5 * torch.randn(3 * dim, device=device, dtype=dtype)).requires_grad_(),
            "num_heads": heads, "window_size": (window, window), "shift_size": (shift, shift)}


def _call(name: str, kw: dict, mode: str, grad):
    tensors = [kw["qkv"], kw["bias_table"], kw["qkv_bias"]]
    if mode == "forward":
        def run():
            with torch.no_grad():
                sk.shifted_window_attention(**kw, backend=name)
    else:
        def run():
            out = sk.shifted_window_attention(**kw, backend=name)
            torch.autograd.grad(out, tensors, grad)
    return run


def _row(meta, shape, impl, mode, dtype_name, t, bytes_moved, copy_gbps, flops=None) -> dict:
    rate = device_timer.gbps(bytes_moved, t.ms)
    row = {**meta, "bench": "kernels", "op": OP, "shape": shape, "impl": impl, "mode": mode, "dtype": dtype_name,
           "median_ms": t.ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "timer": t.timer, "calls": t.calls,
           "input_sets": t.input_sets, "traffic_bytes": bytes_moved, "gbps": rate,
           "copy_gbps": copy_gbps, "of_copy": rate / copy_gbps}
    if flops is not None:
        row["tflops"] = flops / t.ms / 1e9
    if t.note:
        row["timer_note"] = t.note
    return row


def run(args) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        print("kernels: device time needs a CUDA GPU; nothing timed here (host cost per call: "
              "python -m benchmarks host-cost)")
        return []
    meta = run_metadata(device)
    l2 = device_timer.l2_bytes(device)
    copy_gbps, copy_t, copy_bytes = device_timer.copy_timing(device)
    print(f"device: {meta['device']} | L2 {l2 / 2 ** 20:.0f} MiB | device-to-device copy {copy_gbps:.0f} GB/s "
          f"(the roofline of this run)", flush=True)
    copy_row = {**_row(meta, f"copy {copy_bytes >> 20} MiB", "copy", "copy", "uint8", copy_t, 2 * copy_bytes,
                       copy_gbps), "op": "copy", "l2_bytes": l2}
    rows = [copy_row]
    if not args.no_save:
        append_rows("kernels.jsonl", [copy_row], args.jsonl)
    names = backend_names()
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        es = torch.tensor([], dtype=dtype).element_size()
        for model in (list(QUICK) if args.quick else args.models):
            for stage, batch, hw, dim, heads, window in _stages(model, quick=args.quick):
                shape = f"{model} stage{stage + 1} {batch}x{hw}x{hw} C{dim} nH{heads}"
                tokens = batch * hw * hw
                sets = device_timer.input_sets(tokens * 3 * dim * es * 3, l2)  # qkv, its grad, the output
                inputs = [stage_inputs(batch, hw, dim, heads, window, dtype, device) for _ in range(sets)]
                probe = _op_module().arguments(
                    inputs[0]["qkv"], inputs[0]["bias_table"], num_heads=heads, window_size=inputs[0]["window_size"],
                    shift_size=inputs[0]["shift_size"], qkv_bias=inputs[0]["qkv_bias"])
                for name in names:
                    reason = backends.why_not(OP, name, *probe)
                    if reason is not None:
                        print(f"  {shape} {name}: not timed: {reason}", flush=True)
                        continue
                    for mode in args.modes:
                        grads = [torch.randn(batch, hw, hw, dim, device=device, dtype=dtype) for _ in inputs]
                        calls = [_call(name, kw, mode, g) for kw, g in zip(inputs, grads)]
                        try:
                            t = device_timer.time_device(calls, device, rounds=args.rounds, samples=args.samples)
                        except Exception as e:  # reported, not fatal: the other backends still get timed
                            print(f"  {shape} {name} {mode}: failed: {type(e).__name__}: {e}", flush=True)
                            continue
                        row = _row(meta, shape, f"op:{name}", mode, dtype_name, t,
                                   traffic(tokens, dim, es, mode), copy_gbps)
                        rows.append(row)
                        _print(row)
                        if not args.no_save:
                            append_rows("kernels.jsonl", [row], args.jsonl)
                del inputs
            if args.from_map:
                rows += _from_map(args, model, dtype, dtype_name, device, meta, l2, copy_gbps)
    return rows


def _from_map(args, model, dtype, dtype_name, device, meta, l2, copy_gbps) -> list[dict]:
    """The attention path from the normed map to proj (``ops.attention_cases``: timm's eager path, SDPA, and the
    op with its Linears for every backend), device-timed; GB/s of the path's minimum traffic, its    inputs read and output written once, as ``ops`` counts it (x, the weights, the output)."""
    rows = []
    es = torch.tensor([], dtype=dtype).element_size()
    for case in attention_cases(model, dtype, device, quick=args.quick, baselines=("timm_eager", "sdpa")):
        sets = device_timer.input_sets(max(1, case.bytes), l2)
        inputs = [case.inputs() for _ in range(sets)]
        for name, fn in case.candidates.items():
            if name == "op:reference":  # the ground truth, recomputed backward: not a contender for speed
                continue
            for mode in args.modes:
                if mode == "forward":
                    calls = [(lambda kw=kw, f=fn: _no_grad(f, kw)) for kw in inputs]
                else:
                    calls = [(lambda kw=kw, f=fn: _backward(f, kw)) for kw in inputs]
                try:
                    t = device_timer.time_device(calls, device, rounds=args.rounds, samples=args.samples)
                except Exception as e:
                    print(f"  {case.shape} {name} {mode}: failed: {type(e).__name__}: {e}", flush=True)
                    continue
                moved = case.bytes * (3 if mode == "forward+backward" else 1)
                row = _row(meta, case.shape, f"from_map:{name}", mode, dtype_name, t, moved, copy_gbps,
                           case.flops * (3 if mode == "forward+backward" else 1))
                rows.append(row)
                _print(row)
                if not args.no_save:
                    append_rows("kernels.jsonl", [row], args.jsonl)
        del inputs
    return rows


def _no_grad(fn, kw):
    with torch.no_grad():
        return fn(**kw)


def _backward(fn, kw):
    leaves = [t for t in kw.values() if isinstance(t, torch.Tensor) and t.requires_grad]
    out = fn(**kw)
    torch.autograd.grad(out, leaves, torch.ones_like(out))


def _print(row: dict) -> None:
    print(f"{row['shape']:<44} {row['impl']:<26} {row['mode']:<16} {row['median_ms']:>8.3f} ms "
          f"{row['gbps']:>8.0f} GB/s {100 * row['of_copy']:>5.1f}% of copy  [{row['timer']}]", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["swin_t_224"], choices=sorted(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["bf16"], choices=sorted(DTYPES))
    parser.add_argument("--modes", nargs="+", default=["forward", "forward+backward"],
                        choices=["forward", "forward+backward"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--rounds", type=at_least(1), default=10, help="graph replays (or launch rounds) per sample")
    parser.add_argument("--samples", type=at_least(1), default=7)
    parser.add_argument("--from-map", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the attention path from the normed map: timm, SDPA, the op with its "
                             "Linears (default: yes)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test of the table)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--jsonl", default=None,
                        help="append result rows to this file (default benchmarks/results/kernels.jsonl)")

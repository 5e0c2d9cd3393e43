"""``ops``: every op, every backend that can run here, forward and forward+backward, at the stage shapes of
Swin-T/S/B/L 224 and SeMask-T/L at their crops, against the baselines that apply, with achieved TFLOP/s and GB/s.
Every op comes from its spec (``semask_kernels/ops/<op>/spec.py``): inputs at each stage's size, FLOP formula
(the one ``flop_counter`` uses), minimal traffic (inputs read and output written once).

Baselines: for the window attention, timm's default path (layout work on x, qkv Linear on the windows), SDPA
with a materialized bias + mask, FlexAttention with a ``score_mod`` (``benchmarks/attention_baselines.py``), all
from the normed map to the output of proj, as the op candidates; for the loss, ``F.interpolate`` +
``F.cross_entropy``; for the others, the reference. Every ratio is against the first row of its group, in the
same run. On a CPU (or with ``--quick``) shapes are tiny, and the Triton interpreter is not timed.
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

import semask_kernels as sk
from semask_kernels.ops._spec import Call, OpSpec, Size, outputs, spec, specs

from .attention_baselines import BASELINES
from .harness import append_rows, at_least, check_output, run_metadata, time_fn

# (name, batch, image size, embed dim, heads of stage 1, window) at their standard input sizes
MODELS = {
    "swin_t_224": (128, 224, 96, 3, 7), "swin_s_224": (128, 224, 96, 3, 7), "swin_b_224": (128, 224, 128, 4, 7),
    "swin_l_224": (128, 224, 192, 6, 7), "semask_t_512": (16, 512, 96, 3, 7), "semask_l_640": (8, 640, 192, 6, 12),
}
QUICK = {"tiny_64": (1, 64, 32, 1, 7)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Case:
    op: str
    shape: str
    inputs: Callable[[], dict]       # keyword arguments of fresh leaf tensors (requires_grad where they get gradients)
    candidates: dict                 # name -> fn(**inputs) -> Tensor (the first is the baseline of the group)
    flops: int                       # forward FLOPs (backward counted as 2×)
    bytes: int                       # minimal forward traffic: inputs read + output written
    backward_flops: int | None = None  # the spec's backward FLOPs, when it has a formula (else 2× forward)
    backward_bytes: int | None = None  # the spec's minimal backward traffic, when it says (else 2× forward)


def _stages(model: str, quick: bool):
    batch, size, dim, heads, window = (QUICK if quick else MODELS)[model]
    for i in range(4):
        yield i, batch, size // 4 // 2 ** i, dim * 2 ** i, heads * 2 ** i, window


def _leaf(*shape, dtype, device, grad=True, std=1.0):
    return (torch.randn(*shape, dtype=dtype, device=device) * std).requires_grad_(grad)


def registered(op: str) -> list[str]:
    """Every backend name registered for ``op``, in the order of ``backends.BACKENDS``, each variant
    ``"<backend>.<variant>"`` right after its base: what the tables time, variants included, without a list."""
    from semask_kernels import backends
    order = {b: i for i, b in enumerate(backends.BACKENDS)}
    return sorted(backends._REGISTRY[op], key=lambda n: (order.get(n.split(".")[0], len(order)), n))


def _backends(op: str, *args) -> list[str]:
    """Backends of ``op`` that run these arguments here, the Triton interpreter excepted (not a speed)."""
    from semask_kernels import _env, backends
    names = []
    for name in registered(op):
        interpreted = name.split(".")[0] == "triton" and _env.triton_interpret()
        if backends.why_not(op, name, *args) is None and not interpreted:
            names.append(name)
    return names


class _CudaCoreKernels(torch.autograd.Function):
    """shifted_window_attention's CUDA backend with its CUDA-core kernels forced (``kernel="cuda_core"``), so that
    fp16/bf16 runs time them beside the tensor-core kernels that ``backend="cuda"`` picks."""

    @staticmethod
    def forward(ctx, qkv, table, qkv_bias, config):
        from semask_kernels.ops.shifted_window_attention import cuda
        ctx.save_for_backward(qkv, table, qkv_bias)
        ctx.config = config
        return cuda.forward(qkv, table, qkv_bias, *config, kernel="cuda_core")

    @staticmethod
    def backward(ctx, grad):
        from semask_kernels.ops.shifted_window_attention import cuda
        return (*cuda.backward(grad.contiguous(), *ctx.saved_tensors, *ctx.config, kernel="cuda_core"), None)


def attention_cases(model: str, dtype, device, quick: bool, baselines=tuple(BASELINES)):
    """The attention path of each stage's blocks, from the normed map x to the output of proj, as timm runs it
    (layout work on x, qkv Linear on the windows) and as the op runs it (qkv Linear on the map, the op, proj)."""
    for stage, batch, hw, dim, heads, window in _stages(model, quick):
        d = dim // heads
        shift = (window // 2, window // 2) if hw > window else (0, 0)
        win = (window, window)
        scale = d ** -0.5

        def inputs(batch=batch, hw=hw, dim=dim, heads=heads, win=win):
            return {"x": _leaf(batch, hw, hw, dim, dtype=dtype, device=device),
                    "weight": _leaf(3 * dim, dim, dtype=dtype, device=device, std=dim ** -0.5),
                    "qkv_bias": _leaf(3 * dim, dtype=dtype, device=device),
                    "table": _leaf((2 * win[0] - 1) * (2 * win[1] - 1), heads, dtype=dtype, device=device),
                    "proj_w": _leaf(dim, dim, dtype=dtype, device=device, std=dim ** -0.5),
                    "proj_b": _leaf(dim, dtype=dtype, device=device)}

        candidates = {name: (lambda f, h=heads, w=win, s=shift, sc=scale: lambda **t: f(**t, heads=h, window=w,
                                                                                     shift=s, scale=sc))(fn)
                      for name, fn in BASELINES.items() if name in baselines}
        probe = inputs()
        qkv_probe = F.linear(probe["x"], probe["weight"], probe["qkv_bias"]).detach()
        config = (heads, list(win), list(shift), scale, "roll_then_pad", -100.0)
        for backend in _backends("shifted_window_attention", qkv_probe, probe["table"], probe["qkv_bias"], *config):
            candidates[f"op:{backend}"] = (lambda b, h=heads, w=win, s=shift: lambda x, weight, qkv_bias, table,
                                           proj_w, proj_b: F.linear(sk.shifted_window_attention(
                                               F.linear(x, weight, qkv_bias), table, num_heads=h, window_size=w,
                                               shift_size=s, qkv_bias=qkv_bias, backend=b), proj_w, proj_b))(backend)
            if backend == "cuda" and dtype != torch.float32:
                candidates["op:cuda[cuda_core]"] = (lambda c=config: lambda x, weight, qkv_bias, table, proj_w, proj_b:
                                                    F.linear(_CudaCoreKernels.apply(F.linear(x, weight, qkv_bias),
                                                                                    table, qkv_bias, c),
                                                             proj_w, proj_b))()
        tokens = batch * hw * hw
        op_call = Call({"qkv": qkv_probe, "bias_table": probe["table"], "num_heads": heads, "window_size": win,
                        "shift_size": shift})
        flops = spec("shifted_window_attention").forward_flops(op_call) + 2 * tokens * dim * 4 * dim  # + Linears
        size = torch.tensor([], dtype=dtype).element_size()
        yield Case("shifted_window_attention", f"{model} stage{stage + 1} {hw}x{hw} C{dim} shift{shift[0]}",
                   inputs, candidates, flops, size * (tokens * 2 * dim + 4 * dim * dim))


def _size(model: str, quick: bool, stage: int, num_classes: int = 150) -> Size:
    """The workload of ``model``'s stage ``stage`` (0-based) as a spec ``Size``."""
    _, batch, hw, dim, heads, window = list(_stages(model, quick))[stage]
    glob = stage >= 2 and dim // 2 ** stage in (96, 192)  # the official FPN rule for K > 19
    return Size(f"{model} stage{stage + 1}", batch, hw, hw, dim, heads, window, shift=window // 2,
                classes=num_classes, global_semantic=glob)


def _label(call) -> str:
    """The shapes of a call's tensors, e.g. ``1x14x14x19 1x14x14x19 1x14x14x32``."""
    return " ".join("x".join(map(str, t.shape)) for t in call.tensors())


def _semantic_sdpa(call) -> dict:
    if call.kwargs.get("window_size") is not None:
        return {}
    return {"sdpa": lambda s, k, v, **_: F.scaled_dot_product_attention(
        s.flatten(1, 2)[:, None], k.flatten(1, 2)[:, None], v.flatten(1, 2)[:, None], scale=1.0)}


def _loss_baseline(call) -> dict:
    return {"interpolate+cross_entropy": lambda logits, target, **_: F.cross_entropy(
        F.interpolate(logits, size=target.shape[-2:], mode="bilinear"), target, ignore_index=255)}


# Baselines of the ops that are timed from the op's own inputs (what others would run instead), by op name; the
# shifted-window attention has its own cases (from the normed map x to proj, ``attention_cases``).
OP_BASELINES = {"semantic_attention": _semantic_sdpa, "upsample_cross_entropy": _loss_baseline}
PER_MODEL = ("upsample_cross_entropy", "prior_map_decode")  # heads' ops: once per model, at the 1/4-scale map


def spec_cases(spec: OpSpec, model: str, dtype, device, quick: bool):
    """Cases of any op from its spec: ``spec.sample`` at each stage of ``model`` (the first only for the heads'
    ops), its baselines first, then the reference and every backend that runs here; FLOPs from the spec."""
    stages = [0] if spec.name in PER_MODEL else range(4)
    for stage in stages:
        size = _size(model, quick, stage)
        call = spec.sample(size, dtype, device)
        candidates = dict(OP_BASELINES.get(spec.name, lambda c: {})(call))
        names = _backends(spec.name, *spec.arguments(call))
        for backend in ["reference"] + [b for b in spec.preference[::-1] if b in names and b != "reference"]:
            candidates[f"op:{backend}"] = (lambda b: lambda **kw: spec.function(**kw, backend=b))(backend)
        with torch.no_grad():  # on the meta device: the output's size without running anything
            output = spec.run(call.to(device="meta"), "reference")
        yield Case(spec.name, f"{size.name} {_label(call)}", lambda c=call: dict(c.to().kwargs), candidates,
                   spec.forward_flops(call), spec.io_bytes(call, output))


# An op's own benchmark workloads (``SPEC.extra["benchmarks"]``) on a CPU / with --quick: batch 1, the map's sides
# divided by this (heads and channels kept)
QUICK_SHRINK = 4


def workload_cases(spec: OpSpec, dtype, device, quick: bool):
    """Cases of an op at the workloads its spec names (``spec.extra["benchmarks"]``, e.g. ms_deform_attn at
    Mask2Former's pixel decoder: 512² and 640² inputs, batch 16), instead of the Swin stages; with ``quick``
    each shrunk to batch 1 and sides / ``QUICK_SHRINK`` (heads and channels kept). The reference first, then
    every backend that runs here; FLOPs and forward/backward traffic from the spec."""
    for name, size in spec.extra["benchmarks"].items():
        if quick:
            size = replace(size, name=f"{name} (quick: batch 1, sides / {QUICK_SHRINK})", batch=1,
                           height=max(1, size.height // QUICK_SHRINK), width=max(1, size.width // QUICK_SHRINK))
        call = spec.sample(size, dtype, device)
        names = _backends(spec.name, *spec.arguments(call))
        candidates = {f"op:{b}": (lambda b: lambda **kw: spec.function(**kw, backend=b))(b)
                      for b in ["reference"] + [b for b in spec.preference[::-1] if b in names and b != "reference"]}
        with torch.no_grad():
            output = spec.run(call.to(device="meta"), "reference")
        backward_bytes = spec.extra.get("io_bytes_backward")
        yield Case(spec.name, f"{size.name} {_label(call)}", lambda c=call: dict(c.to().kwargs), candidates,
                   spec.forward_flops(call), spec.io_bytes(call, output),
                   backward_flops=spec.backward_flops_of(call),
                   backward_bytes=backward_bytes(call) if backward_bytes else None)


def grads_repeatable(case: Case, fn) -> bool:
    """Whether two forward+backward passes on the same inputs and output gradient give bitwise-equal gradients
    (a backward that accumulates with atomics in a varying order does not)."""
    inputs = case.inputs()
    leaves = [t for v in inputs.values() for t in (v if isinstance(v, (list, tuple)) else [v])
              if isinstance(t, torch.Tensor) and t.requires_grad]
    out = fn(**inputs)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    runs = []
    for _ in range(2):
        for t in leaves:
            t.grad = None
        fn(**inputs).backward(grad)
        runs.append([t.grad.clone() if t.grad is not None else None for t in leaves])
    return all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
               for a, b in zip(*runs))


def _measure(case: Case, name: str, fn, mode: str, device, warmup: int, repeats: int):
    inputs = case.inputs()
    leaves = [t for v in inputs.values() for t in (v if isinstance(v, (list, tuple)) else [v])
              if isinstance(t, torch.Tensor) and t.requires_grad]
    if mode == "forward":
        def run():
            with torch.no_grad():
                fn(**inputs)
    else:
        grads = [torch.randn_like(o) if o.dim() else torch.ones_like(o) for o in outputs(fn(**inputs))]

        def run():
            for t in leaves:
                t.grad = None
            torch.autograd.backward(outputs(fn(**inputs)), grads)
    return time_fn(run, device, warmup=warmup, repeats=repeats)


def run(args) -> list[dict]:
    if not args.no_save:
        check_output("ops.jsonl", args.jsonl)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quick = args.quick or device.type == "cpu"
    meta = run_metadata(device)
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']}")
    if device.type == "cpu":
        print("NOTE: CPU run with tiny shapes: CPU numbers, not GPU numbers; Triton's interpreter is not timed; "
              "FlexAttention is timed forward only (it has no CPU backward).")
    models = list(QUICK) if quick else args.models
    rows = []
    own = [op for op in args.ops if op in WORKLOAD_OPS]  # timed at their own workloads, once, not per model
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        if device.type == "cpu" and dtype != torch.float32:
            continue  # CPU half-precision matmuls say nothing useful
        for model in [None] + models:
            cases = []
            if model is None:
                for op in own:
                    cases += workload_cases(spec(op), dtype, device, quick)
            for op in args.ops if model is not None else ():
                if op in own:
                    continue
                if op == "shifted_window_attention":
                    cases += attention_cases(model, dtype, device, quick, args.baselines)
                else:
                    cases += spec_cases(spec(op), model, dtype, device, quick)
            for case in cases:
                for mode in args.modes:
                    base = None
                    for name, fn in case.candidates.items():
                        if name == "flex" and mode != "forward" and device.type == "cpu":
                            continue  # FlexAttention has no CPU backward (said once, below)
                        try:
                            t = _measure(case, name, fn, mode, device, args.warmup, args.repeats)
                        except Exception as e:  # a baseline that cannot run this shape is reported, not fatal
                            print(f"  {case.op} {case.shape} {name} {mode}: failed: {type(e).__name__}: {e}",
                                  flush=True)
                            continue
                        base = base or t.median_ms
                        backward = mode == "forward+backward"
                        flops = case.flops + (case.backward_flops if case.backward_flops is not None
                                              else 2 * case.flops) * backward
                        traffic = case.bytes + (case.backward_bytes if case.backward_bytes is not None
                                                else 2 * case.bytes) * backward
                        row = {**meta, "bench": "ops", "op": case.op, "shape": case.shape, "impl": name,
                               "mode": mode, "dtype": dtype_name, "median_ms": t.median_ms,
                               "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "peak_mem_mb": t.peak_mem_mb,
                               "tflops": flops / t.median_ms / 1e9, "gbps": traffic / t.median_ms / 1e6,
                               "speedup_vs_first": base / t.median_ms,
                               "grads_bitwise_repeatable": (grads_repeatable(case, fn)
                                                            if backward and case.op in own else None)}
                        rows.append(row)
                        _print([row], header=len(rows) == 1)
                        if not args.no_save:  # row by row: a run killed later keeps what it measured
                            path = append_rows("ops.jsonl", [row], args.jsonl)
    if rows and not args.no_save:
        from .report import shown
        print(f"results appended to {shown(path)}")
    return rows


def _print(rows, header: bool = True):
    if header:
        print(f"{'op':<24} {'shape':<44} {'impl':<26} {'mode':<16} {'dtype':<5} {'ms':>9} {'TFLOP/s':>8} "
              f"{'GB/s':>8} {'peak MB':>8} {'vs 1st':>7} {'grads bitwise':>13}")
    for r in rows:
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "n/a"
        print(f"{r['op']:<24} {r['shape']:<44} {r['impl']:<26} {r['mode']:<16} {r['dtype']:<5} "
              f"{r['median_ms']:>9.3f} {r['tflops']:>8.3f} {r['gbps']:>8.1f} {mem:>8} {r['speedup_vs_first']:>6.2f}x "
              f"{_repeatable(r.get('grads_bitwise_repeatable')):>13}", flush=True)


def _repeatable(value) -> str:
    return "" if value is None else "repeatable" if value else "DIFFER"


OPS = tuple(specs())  # every op folder's spec
WORKLOAD_OPS = tuple(op for op in OPS if specs()[op].extra.get("benchmarks"))  # ops with their own workloads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=sorted(DTYPES))
    parser.add_argument("--modes", nargs="+", default=["forward", "forward+backward"],
                        choices=["forward", "forward+backward"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--warmup", type=at_least(0), default=3)
    parser.add_argument("--repeats", type=at_least(1), default=10)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (always on a CPU)")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=sorted(BASELINES),
                        help="attention baselines to time (default all; e.g. leave out flex, compiled per shape)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--jsonl", default=None,
                        help="append result rows to this file (default benchmarks/results/ops.jsonl)")

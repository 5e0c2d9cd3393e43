"""``ops``: every op, every backend that can run here, forward and forward+backward, at the stage shapes of
Swin-T/S/B/L 224 and SeMask-T/L at their crops, against the baselines that apply, with achieved TFLOP/s and GB/s.

Baselines: for the window attention, timm's default path (layout work on x, qkv Linear on the windows), SDPA
with a materialized bias + mask, FlexAttention with a ``score_mod`` (``benchmarks/attention_baselines.py``), all
from the normed map to the output of proj, as the op candidates; for the loss, ``F.interpolate`` +
``F.cross_entropy``; for the others, the reference. Every ratio is against the first row of its group, in the
same run. On a CPU (or with ``--quick``) shapes are tiny, and the Triton interpreter is not timed.
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import semask_kernels as sk
from semask_kernels.ops._windows import padded_size

from .attention_baselines import BASELINES
from .harness import append_rows, at_least, run_metadata, time_fn

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
    inputs: Callable[[], dict]       # fresh leaf tensors (requires_grad where they get gradients)
    candidates: dict                 # name -> fn(**inputs) -> Tensor (the first is the baseline of the group)
    flops: int                       # forward FLOPs (backward counted as 2×)
    bytes: int                       # minimal forward traffic: inputs read + output written


def _stages(model: str, quick: bool):
    batch, size, dim, heads, window = (QUICK if quick else MODELS)[model]
    for i in range(4):
        yield i, batch, size // 4 // 2 ** i, dim * 2 ** i, heads * 2 ** i, window


def _leaf(*shape, dtype, device, grad=True, std=1.0):
    return (torch.randn(*shape, dtype=dtype, device=device) * std).requires_grad_(grad)


def _backends(op: str, *args) -> list[str]:
    """Backends of ``op`` that run these arguments here, the Triton interpreter excepted (not a speed)."""
    from semask_kernels import _env, backends
    names = []
    for name in backends.BACKENDS:
        if backends.why_not(op, name, *args) is None and not (name == "triton" and _env.triton_interpret()):
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
        windows = batch * (padded_size(hw, window) // window) ** 2
        n = window * window
        tokens = batch * hw * hw
        flops = 4 * windows * heads * n * n * d + 2 * tokens * dim * 4 * dim  # attention + qkv and proj Linears
        size = torch.tensor([], dtype=dtype).element_size()
        yield Case("shifted_window_attention", f"{model} stage{stage + 1} {hw}x{hw} C{dim} shift{shift[0]}",
                   inputs, candidates, flops, size * (tokens * 2 * dim + 4 * dim * dim))


def semantic_cases(model: str, dtype, device, quick: bool, num_classes: int = 150):
    for stage, batch, hw, dim, _, window in _stages(model, quick):
        glob = stage >= 2 and dim // 2 ** stage in (96, 192)  # the official FPN rule for K > 19
        win = None if glob else window

        def inputs(batch=batch, hw=hw, dim=dim):
            return {"s": _leaf(batch, hw, hw, num_classes, dtype=dtype, device=device),
                    "k": _leaf(batch, hw, hw, num_classes, dtype=dtype, device=device),
                    "v": _leaf(batch, hw, hw, dim, dtype=dtype, device=device)}

        candidates = {}
        probe = inputs()
        args = (probe["s"], probe["k"], probe["v"], [win, win] if win else [], None, None)
        for backend in ["reference"] + [b for b in _backends("semantic_attention", *args) if b != "reference"]:
            candidates[f"op:{backend}"] = (lambda b, w=win: lambda s, k, v:
                                           sk.semantic_attention(s, k, v, window_size=w, backend=b))(backend)
        if glob:
            candidates["sdpa"] = lambda s, k, v: F.scaled_dot_product_attention(
                s.flatten(1, 2)[:, None], k.flatten(1, 2)[:, None], v.flatten(1, 2)[:, None], scale=1.0)
        n = hw * hw if glob else window * window
        groups = batch if glob else batch * (padded_size(hw, window) // window) ** 2
        flops = 2 * groups * n * n * (num_classes + dim)
        size = torch.tensor([], dtype=dtype).element_size()
        yield Case("semantic_attention", f"{model} stage{stage + 1} {hw}x{hw} C{dim} {'global' if glob else 'win'}",
                   inputs, candidates, flops, size * batch * hw * hw * (2 * num_classes + 2 * dim))


def loss_cases(model: str, dtype, device, quick: bool, num_classes: int = 150):
    batch, size = (QUICK if quick else MODELS)[model][:2]
    h = size // 4

    def inputs():
        target = torch.randint(0, num_classes, (batch, size, size), device=device)
        target[:, : size // 8] = 255
        return {"logits": _leaf(batch, num_classes, h, h, dtype=dtype, device=device), "target": target}

    candidates = {"interpolate+cross_entropy": lambda logits, target: F.cross_entropy(
        F.interpolate(logits, size=target.shape[-2:], mode="bilinear"), target, ignore_index=255)}
    probe = inputs()
    for backend in _backends("upsample_cross_entropy", probe["logits"], probe["target"], 255, True, False):
        candidates[f"op:{backend}"] = (lambda b: lambda logits, target: sk.upsample_cross_entropy(
            logits, target, backend=b))(backend)
    elem = torch.tensor([], dtype=dtype).element_size()
    yield Case("upsample_cross_entropy", f"{model} K{num_classes} {h}->{size}", inputs, candidates,
               10 * batch * num_classes * size * size, elem * batch * num_classes * h * h + 8 * batch * size * size)
    maps_sizes = [h // 2 ** i for i in range(4)]

    def map_inputs():
        return {f"m{i}": _leaf(batch, num_classes, s, s, dtype=dtype, device=device) for i, s in enumerate(maps_sizes)}

    candidates = {}
    probe = map_inputs()
    for backend in ["reference"] + [b for b in _backends("prior_map_decode", list(probe.values()), False)
                                    if b != "reference"]:
        candidates[f"op:{backend}"] = (lambda b: lambda **m: sk.prior_map_decode(list(m.values()), backend=b))(backend)
    yield Case("prior_map_decode", f"{model} K{num_classes} {h}x{h}", map_inputs, candidates,
               8 * batch * num_classes * h * h * 3, elem * batch * num_classes * h * h * 2)


def _measure(case: Case, name: str, fn, mode: str, device, warmup: int, repeats: int):
    inputs = case.inputs()
    leaves = [t for t in inputs.values() if t.requires_grad]
    if mode == "forward":
        def run():
            with torch.no_grad():
                fn(**inputs)
    else:
        grad = fn(**inputs).detach()
        grad = torch.randn_like(grad) if grad.dim() else torch.ones_like(grad)

        def run():
            for t in leaves:
                t.grad = None
            fn(**inputs).backward(grad)
    return time_fn(run, device, warmup=warmup, repeats=repeats)


def run(args) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quick = args.quick or device.type == "cpu"
    meta = run_metadata(device)
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']}")
    if device.type == "cpu":
        print("NOTE: CPU run with tiny shapes: CPU numbers, not GPU numbers; Triton's interpreter is not timed; "
              "FlexAttention is timed forward only (it has no CPU backward).")
    models = list(QUICK) if quick else args.models
    rows = []
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        if device.type == "cpu" and dtype != torch.float32:
            continue  # CPU half-precision matmuls say nothing useful
        for model in models:
            cases = []
            if "shifted_window_attention" in args.ops:
                cases += attention_cases(model, dtype, device, quick, args.baselines)
            if "semantic_attention" in args.ops:
                cases += semantic_cases(model, dtype, device, quick)
            if {"upsample_cross_entropy", "prior_map_decode"} & set(args.ops):
                cases += [c for c in loss_cases(model, dtype, device, quick) if c.op in args.ops]
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
                        flops = case.flops * (3 if mode == "forward+backward" else 1)
                        traffic = case.bytes * (3 if mode == "forward+backward" else 1)
                        row = {**meta, "bench": "ops", "op": case.op, "shape": case.shape, "impl": name,
                               "mode": mode, "dtype": dtype_name, "median_ms": t.median_ms,
                               "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "peak_mem_mb": t.peak_mem_mb,
                               "tflops": flops / t.median_ms / 1e9, "gbps": traffic / t.median_ms / 1e6,
                               "speedup_vs_first": base / t.median_ms}
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
              f"{'GB/s':>8} {'peak MB':>8} {'vs 1st':>7}")
    for r in rows:
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "n/a"
        print(f"{r['op']:<24} {r['shape']:<44} {r['impl']:<26} {r['mode']:<16} {r['dtype']:<5} "
              f"{r['median_ms']:>9.3f} {r['tflops']:>8.3f} {r['gbps']:>8.1f} {mem:>8} {r['speedup_vs_first']:>6.2f}x",
              flush=True)


OPS = ("shifted_window_attention", "semantic_attention", "upsample_cross_entropy", "prior_map_decode")


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

"""``profile``: where the time of one Swin step goes, per component, from ``torch.profiler``: attention forward and
backward, GEMMs, LayerNorm, GELU, residual adds, layout copies, patch merging, other. One inference step and one
train step (forward, backward, SGD step) of stock timm Swin and of the same model patched with
``sk.patch_timm_swin`` (``--backends``), each profiled after warm-up; the rows (one per component, with its
milliseconds and share of the step) append to the results file, so the next kernel to work on is chosen from
measured time.

Every profiled op is classified by its name and the ranges around it (``classify``): the op's custom ops
(``semask_kernels::shifted_window_attention`` and ``_bwd``) and whatever runs inside them are the attention; ops
inside a timm ``PatchMerging`` module are patch merging; GEMMs (``linear``/``addmm``/``mm``) are GEMMs anywhere
else; ops inside a window-attention module that are not GEMMs are the attention (stock timm's bmm, softmax,
bias add); a backward op takes the component of its autograd node's name. The time counted is the device time
of the kernels each op launched itself (CUDA), or each op's self CPU time (a CPU run: the classifier and the
summary work, the numbers are CPU numbers).
"""
from __future__ import annotations

import argparse
import copy
import re
from collections import defaultdict
from typing import Sequence

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from .harness import append_rows, at_least, run_metadata

COMPONENTS = ("attention_forward", "attention_backward", "gemm", "layernorm", "gelu", "residual_add", "layout",
              "patch_merging", "optimizer", "other")
RANGE = "component:"  # record_function ranges opened around modules by ``annotate``
SWA_FWD, SWA_BWD = "semask_kernels::shifted_window_attention", "semask_kernels::shifted_window_attention_bwd"
GEMM = re.compile(r"^aten::(linear|addmm|mm|matmul|_addmm_activation)$|gemm|cublas|cutlass|xmma", re.I)
RULES = (  # (pattern on the op or kernel name, component), first match wins
    (re.compile(r"layer_norm|layernorm", re.I), "layernorm"),
    (re.compile(r"gelu", re.I), "gelu"),
    (re.compile(r"softmax|bmm|baddbmm|scaled_dot_product|flash|_efficient_attention|attention", re.I),
     "attention_forward"),
    (re.compile(r"^aten::(add|add_)$", re.I), "residual_add"),
    (re.compile(r"copy|clone|cat|roll|index|gather|scatter|pad|contiguous|_to_copy|permute|transpose|stack|"
                r"narrow|slice|select|view|reshape|expand|unfold|fill", re.I), "layout"),
    (re.compile(r"sgd|foreach|_fused_sgd|optimizer", re.I), "optimizer"),
)
BACKWARD_NODE = re.compile(r"evaluate_function: (\w+?)Backward")
BACKWARD_RULES = (
    (re.compile(r"^(Softmax|Bmm|Baddbmm|ScaledDotProduct\w*|\w*Attention\w*)$"), "attention_backward"),
    (re.compile(r"^(Addmm|Mm|Linear|Matmul)$"), "gemm"),
    (re.compile(r"^NativeLayerNorm|LayerNorm"), "layernorm"),
    (re.compile(r"^Gelu"), "gelu"),
    (re.compile(r"^Add$"), "residual_add"),
)


def classify(name: str, ancestors: Sequence[str] = ()) -> str:
    """The component of a profiled op ``name`` (an aten op or a kernel) given the names of the ranges and ops
    around it, innermost first.

        >>> classify("aten::addmm", ["aten::linear", "component:attention"])
        'gemm'
        >>> classify("aten::softmax", ["component:attention"])
        'attention_forward'
        >>> classify("aten::mm", ["autograd::engine::evaluate_function: MmBackward0"])
        'gemm'
        >>> classify("aten::mul", ["autograd::engine::evaluate_function: SoftmaxBackward0"])
        'attention_backward'
    """
    chain = [name, *ancestors]
    if SWA_BWD in chain:
        return "attention_backward"
    if SWA_FWD in chain:
        return "attention_forward"
    if f"{RANGE}patch_merging" in chain:
        return "patch_merging"
    for node in chain:
        m = BACKWARD_NODE.search(node)
        if m:
            for pattern, component in BACKWARD_RULES:
                if pattern.search(m.group(1)):
                    return component
            return "attention_backward" if f"{RANGE}attention" in chain else _by_name(name, backward=True)
    if GEMM.search(name) or (name in ("aten::mm", "aten::addmm", "aten::bmm") and "aten::linear" in chain):
        return "gemm"
    if f"{RANGE}optimizer" in chain:
        return "optimizer"
    if f"{RANGE}attention" in chain:
        return "attention_forward"
    return _by_name(name)


def _by_name(name: str, backward: bool = False) -> str:
    for pattern, component in RULES:
        if pattern.search(name):
            if backward and component == "attention_forward":
                return "attention_backward"
            return component
    return "other"


def annotate(model: torch.nn.Module) -> list:
    """Open a ``record_function`` range around every patch-merging and window-attention module's forward (hooks;
    returns the handles). Stock timm's ``WindowAttention`` and the patched blocks' attention both count."""
    handles = []
    for module in model.modules():
        kind = type(module).__name__
        component = "patch_merging" if kind == "PatchMerging" else "attention" if "Attention" in kind else None
        if component is None:
            continue

        def pre(mod, args, component=component):
            mod._profile_range = record_function(f"{RANGE}{component}")
            mod._profile_range.__enter__()

        def post(mod, args, output):
            mod._profile_range.__exit__(None, None, None)
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return handles


def summarize(prof, device_type: str) -> dict[str, float]:
    """Milliseconds per component of a finished profile: each CPU op's self time (on CUDA: the device time of the
    kernels it launched itself; on a CPU: its self CPU time) under the component ``classify`` gives it; the
    ranges themselves count nothing. On CUDA, kernel time no op claims (the kernel events' total minus what the
    ops claimed) goes to "other", so the components add up to the device's busy time."""
    from torch.autograd import DeviceType
    totals: dict[str, float] = defaultdict(float)
    kernels_us = 0.0
    for event in prof.events():
        if event.device_type != DeviceType.CPU:  # a kernel's own event: counted through its launching op
            kernels_us += event.device_time_total if device_type == "cuda" else 0.0
            continue
        if event.name.startswith(RANGE) or event.name.startswith("ProfilerStep"):
            continue
        us = event.self_device_time_total if device_type == "cuda" else event.self_cpu_time_total
        if not us:
            continue
        ancestors, parent = [], event.cpu_parent
        while parent is not None:
            ancestors.append(parent.name)
            parent = parent.cpu_parent
        totals[classify(event.name, ancestors)] += us / 1e3
    unclaimed = kernels_us / 1e3 - sum(totals.values())
    if device_type == "cuda" and unclaimed > 0:
        totals["other"] += unclaimed
    return {c: totals.get(c, 0.0) for c in COMPONENTS}


def profile_step(model: torch.nn.Module, x: torch.Tensor, mode: str, warmup: int = 2) -> dict[str, float]:
    """Milliseconds per component of one ``mode`` step ("inference" or "train": forward, backward of the mean,
    SGD step) of ``model`` on ``x``, after ``warmup`` unprofiled steps."""
    if mode not in ("inference", "train"):
        raise ValueError(f"mode must be 'inference' or 'train', got {mode!r}")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3) if mode == "train" else None

    def step():
        if optimizer is None:
            with torch.no_grad():
                model(x)
            return
        optimizer.zero_grad(set_to_none=True)
        model(x).float().mean().backward()
        with record_function(f"{RANGE}optimizer"):
            optimizer.step()
    model.train(mode == "train")
    for _ in range(warmup):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    handles = annotate(model)
    try:
        if x.is_cuda:
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            step()
            if x.is_cuda:
                torch.cuda.synchronize()
    finally:
        for h in handles:
            h.remove()
    return summarize(prof, x.device.type)


def rows(meta: dict, model_name: str, variant: str, backend: str, mode: str, dtype: str, batch: int,
         per_component: dict[str, float]) -> list[dict]:
    """One row per component, with its share of the step's profiled total."""
    total = sum(per_component.values()) or 1.0
    return [{**meta, "bench": "profile", "model": model_name, "variant": variant, "backend": backend, "mode": mode,
             "dtype": dtype, "batch": batch, "component": c, "ms": ms, "share": ms / total}
            for c, ms in per_component.items()]


def run(args) -> list[dict]:
    import timm

    import semask_kernels as sk
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    batch = args.batch or (128 if device.type == "cuda" else 1)
    img = args.img_size or (224 if device.type == "cuda" else 64)
    meta = run_metadata(device)
    if device.type == "cpu":
        print("NOTE: CPU profile: the components are CPU time, not GPU time")
    stock = timm.create_model(args.model, pretrained=False, img_size=img).to(device=device, dtype=dtype)
    models = {"stock": (stock, "timm")}
    for backend in args.backends:
        models[f"patched[{backend}]"] = (sk.patch_timm_swin(copy.deepcopy(stock), backend=backend), backend)
    x = torch.randn(batch, 3, img, img, device=device, dtype=dtype)
    out = []
    for mode in args.modes:
        for variant, (model, backend) in models.items():
            per = profile_step(model, x, mode, warmup=args.warmup)
            found = rows(meta, args.model, variant, backend, mode, args.dtype or str(dtype).split(".")[-1], batch,
                         per)
            out += found
            total = sum(per.values())
            print(f"{variant:<18} {mode:<9} total {total:8.2f} ms | " + "  ".join(
                f"{r['component']} {r['ms']:.2f} ({100 * r['share']:.0f}%)" for r in found if r["ms"] > 0),
                flush=True)
            if not args.no_save:
                append_rows("profile.jsonl", found, args.jsonl)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="swin_tiny_patch4_window7_224")
    parser.add_argument("--backends", nargs="*", default=["auto"],
                        help="one patched copy per backend (default: auto); none: stock only")
    parser.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch", type=at_least(1), default=None, help="default 128 on a GPU, 1 on a CPU")
    parser.add_argument("--img-size", type=at_least(1), default=None, help="default 224 on a GPU, 64 on a CPU")
    parser.add_argument("--warmup", type=at_least(0), default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--jsonl", default=None,
                        help="append result rows to this file (default benchmarks/results/profile.jsonl)")


"""``model-breakdown``: where a zoo model's training step spends its time, part by part: the backbone, the
decode head or the pixel decoder and the masked-attention transformer decoder, the losses with the Hungarian
matcher (and scipy's assignment inside it) and the point sampling, and backward + optimizer step. Parts outside
the fused ops are where the next kernel goes.

Forward parts are timed with module hooks and function wrappers (outermost call only, so nested parts are not
counted twice; a part contains the parts inside it: the criterion holds the matcher, which holds the assignment
and part of the point sampling). On a GPU each boundary synchronizes, which slows the step a little. Rows append
to ``benchmarks/results/model_breakdown.jsonl``; on a CPU they are CPU numbers (``--quick``: the compare-models
quick preset).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from .compare_models import QUICK, _model_name, build_pair, make_step, recipe, synthetic_batch
from .harness import append_rows, at_least, run_metadata

RESULTS_FILE = "model_breakdown.jsonl"
# part -> the submodule (dotted path) whose forward it is; absent submodules are skipped
MODULE_PARTS = {
    "backbone (Swin + semantic layers)": "backbone",
    "SGR": "sgr",
    "decode head (FPN / UperNet)": "decode_head",
    "pixel decoder (ms_deform_attn encoder)": "sem_seg_head.pixel_decoder",
    "transformer decoder (masked attention)": "sem_seg_head.predictor",
    "criterion (matching + mask/class losses)": "criterion",
    "Hungarian matcher (costs + assignment)": "criterion.matcher",
}
# part -> functions (by name) wrapped in every semask_models module that holds them
FUNCTION_PARTS = {
    "point sampling (point_sample, uncertain points)": ("point_sample", "sample_uncertain_points"),
    "semantic prior loss (prior decode + CE)": ("semantic_loss",),
}
SEGMENTOR_LOSSES = "losses (upsample + CE, prior decode + CE)"  # Segmentor.losses: the FPN / UperNet losses


class Clock:
    """Accumulated seconds per part within one step; the outermost call of a part only."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.depth: dict[str, int] = defaultdict(int)
        self.started: dict[str, float] = {}

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def enter(self, part: str) -> None:
        if self.depth[part] == 0:
            self.started[part] = self._now()
        self.depth[part] += 1

    def leave(self, part: str) -> None:
        self.depth[part] -= 1
        if self.depth[part] == 0:
            self.seconds[part] += self._now() - self.started.pop(part)

    @contextmanager
    def part(self, name: str):
        self.enter(name)
        try:
            yield
        finally:
            self.leave(name)


def _submodule(model: torch.nn.Module, path: str):
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


@contextmanager
def instrumented(model: torch.nn.Module, clock: Clock):
    """Hooks on the parts' modules and wrappers of the parts' functions (in every loaded ``semask_models``
    module that imported them, and scipy's ``linear_sum_assignment``), removed on exit."""
    handles, patched = [], []
    for part, path in MODULE_PARTS.items():
        module = _submodule(model, path)
        if module is None:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a, part=part: clock.enter(part)))
        handles.append(module.register_forward_hook(lambda m, a, o, part=part: clock.leave(part)))

    def wrap(owner, attr: str, part: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            with clock.part(part):
                return fn(*args, **kwargs)
        setattr(owner, attr, timed)
        patched.append((owner, attr, fn))

    originals = {}
    for part, names in FUNCTION_PARTS.items():
        for name, module in list(sys.modules.items()):
            if not name.startswith("semask_models") or module is None:
                continue
            for attr in names:
                fn = getattr(module, attr, None)
                if callable(fn) and originals.setdefault(attr, fn) is fn:
                    wrap(module, attr, part)
    try:
        import scipy.optimize
        wrap(scipy.optimize, "linear_sum_assignment", "linear_sum_assignment (scipy, on the CPU)")
    except ImportError:
        pass
    per_instance = hasattr(model, "decode_head") and callable(getattr(model, "losses", None))
    if per_instance:  # an instance attribute over the method, deleted on exit
        wrap(model, "losses", SEGMENTOR_LOSSES)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for owner, attr, fn in reversed(patched):
            if owner is model:
                delattr(model, attr)
            else:
                setattr(owner, attr, fn)


def breakdown(model: torch.nn.Module, img, target, device, dtype, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per part, the milliseconds of each of ``steps`` training steps (after ``warmup``), with ``step`` (the
    whole step), ``forward`` (model call with every loss) and ``backward + optimizer step``."""
    step = make_step(model, "train", img, target, device, dtype)
    for _ in range(warmup):
        step()
    per_part: dict[str, list[float]] = defaultdict(list)
    clock = Clock(device)
    handles = [model.register_forward_pre_hook(lambda m, a: clock.enter("forward (with every loss)")),
               model.register_forward_hook(lambda m, a, o: clock.leave("forward (with every loss)"))]
    try:
        with instrumented(model, clock):
            for _ in range(steps):
                clock.seconds.clear()
                with clock.part("step"):
                    step()
                seconds = dict(clock.seconds)
                seconds["backward + optimizer step"] = seconds["step"] - seconds["forward (with every loss)"]
                for part, s in seconds.items():
                    per_part[part].append(s * 1e3)
    finally:
        for h in handles:
            h.remove()
    return per_part


def run(args) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    meta = run_metadata(device)
    rows, path = [], None
    if device.type == "cpu":
        print("NOTE: CPU run: CPU numbers, not GPU numbers (no fused kernel runs on a CPU; the backend is the torch "
              "path)")
    for name in args.models:
        rec = recipe(name, args.dataset)
        crop = QUICK["crop"] if args.quick else rec.crop
        batch = QUICK["batch"] if args.quick else rec.batch
        overrides = {"num_points": QUICK["num_points"]} if args.quick and "former" in name else {}
        reduced = ([f"crop {crop[0]}x{crop[1]} (recipe {rec.crop[0]}x{rec.crop[1]})"] if crop != rec.crop else []) \
            + ([f"batch {batch} (recipe {rec.batch})"] if batch != rec.batch else []) \
            + [f"num_points {v} (recipe 12544)" for v in overrides.values()]
        model = build_pair(name, rec.num_classes, device, overrides)[args.backend]
        img, target = synthetic_batch(batch, crop, rec.num_classes, device)
        dtype = torch.bfloat16 if args.dtype == "bf16" else None
        parts = breakdown(model, img, target, device, dtype, args.steps, args.warmup)
        step_ms = statistics.median(parts["step"])
        print(f"{name} {crop[0]}x{crop[1]} batch {batch} {args.dtype} backend={args.backend}: train step "
              f"{step_ms:.1f} ms (median of {args.steps})")
        for part, ms in sorted(parts.items(), key=lambda kv: -statistics.median(kv[1])):
            median = statistics.median(ms)
            row = {**meta, "bench": "model-breakdown", "model": name, "mode": "train", "dtype": args.dtype,
                   "batch": batch, "crop": f"{crop[0]}x{crop[1]}", "backend": args.backend, "part": part,
                   "median_ms": median, "share_of_step": median / step_ms, "steps": args.steps,
                   "reduced": ", ".join(reduced) or None}
            rows.append(row)
            print(f"  {part:<52} {median:>9.1f} ms {100 * median / step_ms:>5.1f}%", flush=True)
            if not args.no_save:
                path = append_rows(RESULTS_FILE, [row], args.jsonl)
        del model
    if path is not None:
        from .report import shown
        print(f"results appended to {shown(path)}")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", type=_model_name,
                        default=["semask_swin_t_fpn", "semask_swin_t_mask2former"])
    parser.add_argument("--dataset", default="ade20k", choices=["ade20k", "cityscapes"])
    parser.add_argument("--backend", default="auto", choices=["auto", "torch"])
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16"], help="default bf16 on a GPU, fp32 CPU")
    parser.add_argument("--steps", type=at_least(1), default=3)
    parser.add_argument("--warmup", type=at_least(0), default=1)
    parser.add_argument("--quick", action="store_true", help="the compare-models quick preset (default on a CPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--jsonl", default=None)
    parser.add_argument("--no-save", action="store_true")


def resolve_defaults(args) -> None:
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    args.quick = args.quick or not gpu
    args.dtype = args.dtype or ("bf16" if gpu else "fp32")

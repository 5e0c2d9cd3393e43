"""``compare-models``: the zoo's SeMask models with their fused ops (``backend="auto"``) against the same models on
plain PyTorch (``backend="torch"``: the computations of the official code), in one run.

For each model, at its recipe's crop and per-GPU batch: a training step (forward, every loss, backward, AdamW
step) and inference, in bf16 autocast and fp32; median and p10-p90 time, images/s, peak memory, GFLOPs (from
``torch.utils.flop_counter``), the speedup and memory ratio against the torch path, and (with ``--mem-limit-gb``
on a GPU) the largest training batch that fits in that memory for each. The two are timed round-robin on a CPU,
warmed up until their times settle and run until the speedup's p10-p90 spread is below ``--max-spread`` (else
the speedup is "inconclusive"). On a CPU no fused kernel runs (auto picks the torch path too) and peak memory
is not measured: the numbers show the suite works, not GPU speed. ``--quick`` (the default on a CPU) reduces the
crop, batch and Mask2Former's sampled points, and says so in every row. Rows append to
``benchmarks/results/compare_models.jsonl``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .compare_swin import add_noise_arguments, noise_fields, stopping
from .harness import append_rows, at_least, run_metadata, time_contenders

RESULTS_FILE = "compare_models.jsonl"
DEFAULT_MODELS = ("semask_swin_t_fpn", "semask_swin_b_fpn", "semask_swin_l_fpn", "swin_t_fpn",
                  "semask_swin_t_upernet", "semask_swin_t_mask2former", "semask_swin_l_mask2former",
                  "semask_swin_l_maskformer", "semask_swin_t_fpn_sgr")
QUICK_MODELS = ("semask_swin_t_fpn", "semask_swin_t_mask2former")
CONTENDERS = ("torch", "auto")  # the baseline first
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
# the quick preset: a small crop and batch, and fewer of Mask2Former's sampled points (its losses' cost does not
# shrink with the crop); every quick row says so in ``reduced``
QUICK = {"crop": (64, 64), "batch": 2, "num_points": 1024}


@dataclass(frozen=True)
class Recipe:
    crop: tuple[int, int]
    batch: int          # per GPU
    num_classes: int


def recipe(name: str, dataset: str) -> Recipe:
    """The official training crop and per-GPU batch of ``name`` (``models/configs``, the SeMask READMEs):
    ADE20K Semantic-FPN / UperNet 512x512, 8 per GPU (L: 640x640, 4 per GPU); Mask2Former / MaskFormer 640x640,
    2 per GPU (16 on 8 GPUs); Cityscapes Mask2Former 512x1024, 2 per GPU; Cityscapes FPN 768x768, 4 per GPU."""
    mask = "former" in name
    large = "_l_" in name
    if dataset == "cityscapes":
        return Recipe((512, 1024), 2, 19) if mask else Recipe((768, 768), 2 if large else 4, 19)
    if mask:
        return Recipe((640, 640), 2, 150)
    return Recipe((640, 640), 4, 150) if large else Recipe((512, 512), 8, 150)


def synthetic_batch(batch: int, crop: tuple[int, int], num_classes: int, device, seed: int = 0):
    """Normalized images and label maps of blocks (8x8 per image, up to 12 classes each, a few ignored blocks):
    the number of segments per image of a real scene, so the Hungarian matcher sees a realistic problem."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(batch, 3, *crop, generator=g)
    classes = torch.stack([torch.randperm(num_classes, generator=g)[:12] for _ in range(batch)])
    blocks = torch.gather(classes, 1, torch.randint(0, 12, (batch, 64), generator=g)).view(batch, 8, 8)
    blocks[torch.rand(batch, 8, 8, generator=g) < 0.05] = 255
    target = blocks.repeat_interleave(-(-crop[0] // 8), 1).repeat_interleave(-(-crop[1] // 8), 2)
    return img.to(device), target[:, : crop[0], : crop[1]].contiguous().to(device)


def build_pair(name: str, num_classes: int, device, overrides: dict) -> dict[str, torch.nn.Module]:
    """The model with ``backend="torch"`` and ``backend="auto"``, same weights (no drop path: equal work)."""
    import semask_models as sm

    torch.manual_seed(0)
    plain = sm.build_model(name, num_classes=num_classes, backend="torch", drop_path_rate=0.0, **overrides)
    fused = sm.build_model(name, num_classes=num_classes, backend="auto", drop_path_rate=0.0, **overrides)
    fused.load_state_dict(plain.state_dict())
    return {"torch": plain.to(device), "auto": fused.to(device)}


def _autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def make_step(model, mode: str, img, target, device, dtype):
    """One timed call: inference (eval, inference_mode) or a training step (forward with every loss, backward,
    AdamW step with the official parameter groups)."""
    if mode == "inference":
        model.eval()

        def infer():
            with torch.inference_mode(), _autocast(device, dtype):
                model(img)
        return infer
    from semask_models.optim import param_groups

    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=6e-5)

    def train():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            losses = model(img, target)
        losses["loss"].backward()
        optimizer.step()
    return train


def count_gflops(step) -> float:
    """GFLOPs of one call of ``step`` (forward, and backward for a training step), from the flop counter."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def largest_batch(name: str, num_classes: int, backend: str, crop, device, dtype, limit_gb: float,
                  overrides: dict, start: int, cap: int = 256) -> int:
    """The largest training batch (doubling from ``start``, then halving the gap) whose step's peak memory stays
    within ``limit_gb``; 0 if even batch 1 does not. GPU only: measured by running a step at each size."""
    import semask_models as sm

    torch.manual_seed(0)
    model = sm.build_model(name, num_classes=num_classes, backend=backend, drop_path_rate=0.0,
                           **overrides).to(device)
    limit = limit_gb * 2**30

    def fits(batch: int) -> bool:
        img, target = synthetic_batch(batch, crop, num_classes, device)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            make_step(model, "train", img, target, device, dtype)()
            torch.cuda.synchronize(device)
            ok = torch.cuda.max_memory_allocated(device) <= limit
        except torch.cuda.OutOfMemoryError:
            ok = False
        model.zero_grad(set_to_none=True)
        del img, target
        torch.cuda.empty_cache()
        return ok

    return largest_fitting(fits, start, cap)  # the model is freed on return


def largest_fitting(fits, start: int, cap: int) -> int:
    """The largest n <= ``cap`` with ``fits(n)`` (assumed monotone): doubling from ``start``, then bisecting
    between the last size that fit and the first that did not; 0 if none fits."""
    lo, hi = 0, None  # lo fits (0: nothing yet), hi does not
    batch = max(1, start)
    while hi is None:
        if batch > cap:
            if lo == cap:
                return lo
            batch = cap  # the cap itself, then bisect below it
        if fits(batch):
            lo = batch
            if batch == cap:
                return lo
            batch *= 2
        else:
            hi = batch
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def run(args) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    meta = run_metadata(device)
    rows, path = [], None
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']}")
    if device.type == "cpu":
        print("NOTE: CPU run. No fused kernel runs on a CPU: backend='auto' picks the plain-PyTorch path, so the "
              "two contenders run the same computations. These are CPU numbers, not GPU numbers; peak memory is not "
              "measured on a CPU (null).")
    if args.quick:
        print(f"NOTE: --quick: crop {QUICK['crop'][0]}x{QUICK['crop'][1]}, batch {QUICK['batch']}, Mask2Former/"
              f"MaskFormer num_points {QUICK['num_points']} instead of the recipe's (each row's 'reduced' says so)")
    for name in args.models:
        rec = recipe(name, args.dataset)
        crop = tuple(args.crop) if args.crop else (QUICK["crop"] if args.quick else rec.crop)
        overrides, model_reduced = {}, []
        if args.quick and "former" in name:
            overrides["num_points"] = QUICK["num_points"]
            model_reduced.append(f"num_points {QUICK['num_points']} (recipe 12544)")
        if crop != rec.crop:
            model_reduced.append(f"crop {crop[0]}x{crop[1]} (recipe {rec.crop[0]}x{rec.crop[1]})")
        models = build_pair(name, rec.num_classes, device, overrides)
        for batch in args.batch or [QUICK["batch"] if args.quick else rec.batch]:
            reduced = model_reduced + ([f"batch {batch} (recipe {rec.batch} per GPU)"] if batch != rec.batch else [])
            img, target = synthetic_batch(batch, crop, rec.num_classes, device)
            for dtype_name in args.dtypes:
                dtype = DTYPES[dtype_name]
                for mode in args.modes:
                    fns = {c: make_step(models[c], mode, img, target, device, dtype) for c in CONTENDERS}
                    gflops = {}
                    for c, fn in fns.items():
                        try:
                            gflops[c] = count_gflops(fn) if args.flops else None
                        except Exception as e:  # noqa: BLE001 - reported by the timing below too
                            print(f"  {name} {mode} {c}: flop count failed: {type(e).__name__}: {e}", flush=True)
                    contest = time_contenders(fns, device, warmup=args.warmup, repeats=args.repeats,
                                              interleave=args.interleave, until=stopping(args, "torch"))
                    for c, e in contest.failures.items():
                        print(f"  {name} {crop} batch {batch} {mode} {dtype_name} {c}: failed: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
                    base = contest.timings.get("torch")
                    for c, t in contest.timings.items():
                        judged = contest.verdict(c, "torch", args.max_spread)
                        mem_ratio = (t.peak_mem_mb / base.peak_mem_mb if base and t.peak_mem_mb is not None
                                     and base.peak_mem_mb else None)
                        row = {**meta, "bench": "compare-models", "model": name, "dataset": args.dataset,
                               "mode": mode, "dtype": dtype_name, "batch": batch, "crop": f"{crop[0]}x{crop[1]}",
                               "backend": c, "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms,
                               "repeats": t.repeats, "interleaved": contest.interleaved,
                               "img_per_s": batch / t.median_ms * 1e3, "peak_mem_mb": t.peak_mem_mb,
                               "peak_mem_note": ("torch.cuda.max_memory_allocated" if t.peak_mem_mb is not None
                                                 else "not measured on a CPU"),
                               "gflops": gflops.get(c),
                               "speedup_vs_torch": judged.median if judged else None,
                               "speedup_vs_torch_p10": judged.p10 if judged else None,
                               "speedup_vs_torch_p90": judged.p90 if judged else None,
                               "mem_ratio_vs_torch": mem_ratio, "reduced": "; ".join(reduced) or None,
                               **noise_fields(contest, c, judged)}
                        row.update(_capacity(args, name, rec, c, crop, device, dtype, overrides, batch, mode))
                        rows.append(row)
                        _print([row], header=len(rows) == 1)
                        if not args.no_save:
                            path = append_rows(RESULTS_FILE, [row], args.jsonl)
            del img, target
        del models
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if path is not None:
        from . import report
        print(f"results appended to {report.shown(path)}")
        latest = report.latest_runs(path, report.COMMON_FIELDS + report.SUITE_FIELDS["compare_models"])
        for written in report.report_compare_models(latest, path.parent):
            print(f"wrote {report.shown(written)}")
    return rows


def _capacity(args, name, rec, backend, crop, device, dtype, overrides, batch, mode) -> dict:
    """``max_batch``: the largest training batch within ``--mem-limit-gb`` (train rows, GPU only), or why not."""
    if mode != "train" or args.mem_limit_gb is None:
        return {"max_batch": None, "max_batch_note": "not asked (--mem-limit-gb)" if mode == "train" else None}
    if device.type != "cuda":
        return {"max_batch": None, "max_batch_note": "skipped on a CPU: no device memory to fit a batch in"}
    fit = largest_batch(name, rec.num_classes, backend, crop, device, dtype, args.mem_limit_gb, overrides, batch)
    torch.cuda.empty_cache()
    return {"max_batch": fit, "max_batch_note": f"largest train batch with peak <= {args.mem_limit_gb:g} GiB"}


def _ratio(r: dict) -> str:
    if r["speedup_vs_torch"] is None:
        return "-"
    interval = f"{r['speedup_vs_torch_p10']:.2f}-{r['speedup_vs_torch_p90']:.2f}"
    if r.get("speedup_conclusive") is False:
        return f"inconclusive ({interval})"
    return f"{r['speedup_vs_torch']:.2f}x ({interval})"


def _print(rows: list[dict], header: bool = True) -> None:
    title = (f"{'model':<28} {'crop':>9} {'batch':>5} {'mode':<9} {'dtype':<5} {'backend':<7} {'ms':>9} "
             f"{'p10-p90':>17} {'img/s':>7} {'peak MB':>8} {'GFLOPs':>8} {'vs torch (p10-p90)':>26} {'mem':>5}")
    if header:
        print(title)
        print("-" * len(title))
    for r in rows:
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "n/a"
        flops = f"{r['gflops']:.1f}" if r["gflops"] is not None else "-"
        ratio = f"{r['mem_ratio_vs_torch']:.2f}" if r["mem_ratio_vs_torch"] is not None else "-"
        print(f"{r['model']:<28} {r['crop']:>9} {r['batch']:>5} {r['mode']:<9} {r['dtype']:<5} {r['backend']:<7} "
              f"{r['median_ms']:>9.1f} {r['p10_ms']:>8.1f}-{r['p90_ms']:<8.1f} {r['img_per_s']:>7.2f} {mem:>8} "
              f"{flops:>8} {_ratio(r):>26} {ratio:>5}", flush=True)


def _model_name(text: str) -> str:
    import semask_models as sm

    if text not in sm.model_names(sgr=True):
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; zoo names: semask_models.model_names(sgr=True)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", type=_model_name, default=None,
                        help=f"zoo names (default: {' '.join(DEFAULT_MODELS)}; with --quick: "
                             f"{' '.join(QUICK_MODELS)})")
    parser.add_argument("--dataset", default="ade20k", choices=["ade20k", "cityscapes"],
                        help="whose recipe gives the crop, batch and classes (default ade20k)")
    parser.add_argument("--modes", nargs="+", default=["train", "inference"], choices=["train", "inference"])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                        help="bf16 autocast and/or fp32 (default: both on a GPU, fp32 on a CPU)")
    parser.add_argument("--crop", type=at_least(1), nargs=2, default=None, metavar=("H", "W"),
                        help="override the recipe's crop (the rows say so)")
    parser.add_argument("--batch", type=at_least(1), nargs="+", default=None,
                        help="override the recipe's per-GPU batch (the rows say so)")
    parser.add_argument("--mem-limit-gb", type=float, default=None,
                        help="GPU: also find the largest training batch within this much memory for each backend")
    parser.add_argument("--flops", action=argparse.BooleanOptionalAction, default=True,
                        help="count GFLOPs with the flop counter (one extra call each; default yes)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the small preset, the default on a CPU: {' '.join(QUICK_MODELS)}, crop "
                             f"{QUICK['crop'][0]}, batch {QUICK['batch']}, num_points {QUICK['num_points']}")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=None,
                        help="round-robin timing (default: on a CPU)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--warmup", type=at_least(0), default=None)
    parser.add_argument("--repeats", type=at_least(1), default=None, help="rounds at least")
    parser.add_argument("--jsonl", default=None,
                        help=f"append rows to this file (default benchmarks/results/{RESULTS_FILE})")
    parser.add_argument("--no-save", action="store_true")
    add_noise_arguments(parser, time_cap=30.0)


def resolve_defaults(args) -> None:
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    args.quick = args.quick or not gpu
    args.models = args.models or list(QUICK_MODELS if args.quick else DEFAULT_MODELS)
    args.dtypes = args.dtypes or (["bf16", "fp32"] if gpu else ["fp32"])
    args.interleave = (not gpu) if args.interleave is None else args.interleave
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 10)
    if args.quick and args.max_rounds == 30:
        args.max_rounds = 10

"""``compare-swin``: stock timm Swin against the same model patched with ``sk.patch_timm_swin``, in one run.

Both models hold the same weights; the patched one runs the attention of every block as one fused op.
Inference and a training step (forward + backward + SGD step), eager, with ratios to stock.
On a CPU the patched model runs the reference backend: the numbers show the suite works, not GPU speed.
"""
from __future__ import annotations

import argparse
import copy

import torch

import semask_kernels as sk

from .harness import append_rows, run_metadata, time_fn

MODELS = {"T": "swin_tiny_patch4_window7_224", "S": "swin_small_patch4_window7_224",
          "B": "swin_base_patch4_window7_224", "L": "swin_large_patch4_window7_224"}


def _train_step(model, x, optimizer):
    def step():
        optimizer.zero_grad(set_to_none=True)
        model(x).float().sum().backward()
        optimizer.step()
    return step


def _infer(model, x):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def run(args) -> list[dict]:
    import timm

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    meta = run_metadata(device)
    rows = []
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | timm {meta['timm']}")
    if device.type == "cpu":
        print("NOTE: CPU run. The patched model uses the reference backend here; these are CPU numbers, "
              "not GPU numbers, and say nothing about the fused kernels' speed.")
    for variant in args.variants:
        stock = timm.create_model(MODELS[variant], pretrained=False, img_size=args.img_size,
                                  strict_img_size=False).to(device=device, dtype=dtype)
        patched = sk.patch_timm_swin(copy.deepcopy(stock), backend=args.backend)
        backend = sk.backends.choose_backend(  # what the patched blocks run, for the record
            "shifted_window_attention", args.backend,
            torch.zeros(1, 7, 7, 288, device=device, dtype=dtype), torch.zeros(169, 3, device=device, dtype=dtype),
            None, 3, [7, 7], [0, 0], 0.1, "roll_then_pad", -100.0)
        x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device, dtype=dtype)
        for mode in args.modes:
            results = {}
            for label, model in (("stock", stock), ("patched", patched)):
                if mode == "inference":
                    model.eval()
                    fn = _infer(model, x)
                else:
                    model.train()
                    fn = _train_step(model, x, torch.optim.SGD(model.parameters(), lr=1e-6))
                results[label] = time_fn(fn, device, warmup=args.warmup, repeats=args.repeats)
            base = results["stock"].median_ms
            for label, t in results.items():
                rows.append({**meta, "bench": "compare-swin", "model": MODELS[variant], "variant": label,
                             "backend": backend if label == "patched" else "timm", "mode": mode,
                             "dtype": args.dtype, "batch": args.batch, "img_size": args.img_size,
                             "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms,
                             "img_per_s": args.batch / t.median_ms * 1e3, "peak_mem_mb": t.peak_mem_mb,
                             "speedup_vs_stock": base / t.median_ms})
    _print(rows)
    if not args.no_save:
        path = append_rows("compare_swin.jsonl", rows)
        print(f"results appended to {path}")
    return rows


def _print(rows: list[dict]) -> None:
    header = f"{'model':<32} {'mode':<10} {'variant':<8} {'backend':<10} {'ms (median)':>11} {'p10-p90':>15} " \
             f"{'img/s':>8} {'peak MB':>8} {'vs stock':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "n/a"
        print(f"{r['model']:<32} {r['mode']:<10} {r['variant']:<8} {r['backend']:<10} {r['median_ms']:>11.2f} "
              f"{r['p10_ms']:>7.2f}-{r['p90_ms']:<7.2f} {r['img_per_s']:>8.1f} {mem:>8} "
              f"{r['speedup_vs_stock']:>7.2f}x")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", nargs="+", default=None, choices=sorted(MODELS),
                        help="Swin variants (default: T S B L on a GPU, T with --quick or on a CPU)")
    parser.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128 GPU, 2 CPU/--quick)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default bf16 on a GPU, fp32 on a CPU")
    parser.add_argument("--backend", default="auto", help="backend of the patched model's ops")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: runs on a CPU in a couple of minutes")
    parser.add_argument("--no-save", action="store_true", help="do not append to benchmarks/results/")


def resolve_defaults(args) -> None:
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    small = args.quick or not gpu
    args.variants = args.variants or (["T"] if small else ["T", "S", "B", "L"])
    args.batch = args.batch or (2 if small else 128)
    args.dtype = args.dtype or ("bf16" if gpu else "fp32")
    args.warmup = args.warmup if args.warmup is not None else (1 if small else 5)
    args.repeats = args.repeats if args.repeats is not None else (3 if small else 20)

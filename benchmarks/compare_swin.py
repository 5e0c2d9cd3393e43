"""``compare-swin``: stock timm Swin against the same model patched with ``sk.patch_timm_swin``, in one run.
With ``--library hf``: stock Hugging Face transformers Swin against the same model patched with
``sk.patch_hf_swin``, in one run.

Stock timm Swin, the same model patched (the attention of every block as one fused op), and our own Swin
backbone with the same weights; eager and, with ``--compile``, ``torch.compile``d; inference and a training
step (forward + backward + SGD step); ratios to stock eager and to stock compiled, all in the same run.
On a CPU (a small preset: batch 1, few repeats) no fused kernel runs: the numbers show the suite works, not GPU
speed. Rows append to ``benchmarks/results/compare_swin.jsonl``; a table and a plot of the run are written beside it.
"""
from __future__ import annotations

import argparse
import copy
import logging

import torch

import semask_kernels as sk

from . import hf_swin
from .harness import Stopping, append_rows, at_least, check_output, run_metadata, time_contenders

RESULTS_FILE = {"timm": "compare_swin.jsonl", "hf": "compare_swin_hf.jsonl"}
MODELS = {"T": "swin_tiny_patch4_window7_224", "S": "swin_small_patch4_window7_224",
          "B": "swin_base_patch4_window7_224", "L": "swin_large_patch4_window7_224"}


def _scalar(out) -> torch.Tensor:
    """A loss from logits (timm), a transformers output's logits, or the backbone's (features, priors) lists."""
    if hasattr(out, "logits"):
        return out.logits.float().sum()
    if isinstance(out, torch.Tensor):
        return out.float().sum()
    return sum(_scalar(o) for o in out if isinstance(o, (torch.Tensor, list, tuple)) and len(o))


def _train_step(model, x, optimizer):
    def step():
        optimizer.zero_grad(set_to_none=True)
        _scalar(model(x)).backward()
        optimizer.step()
    return step


def _infer(model, x):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def _step(model, x, mode: str, amp: bool = False):
    """What one timed call of ``model`` does in ``mode``: an inference forward, or a train step with its own SGD;
    with ``amp`` under ``torch.autocast`` in bfloat16 (float32 weights and input, as mixed-precision users run)."""
    if mode == "inference":
        model.eval()
        fn = _infer(model, x)
    else:
        model.train()
        fn = _train_step(model, x, torch.optim.SGD(model.parameters(), lr=1e-6))
    if not amp:
        return fn

    def autocast():
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            fn()
    return autocast


def stock_sdpa(stock):
    """A copy of stock timm Swin with timm's own fused attention on (``fused_attn``: SDPA with the bias and mask as
    one additive mask), which timm leaves off by default for Swin (``use_fused_attn(experimental=True)``)."""
    model = copy.deepcopy(stock)
    switched = 0
    for module in model.modules():
        if hasattr(module, "fused_attn") and hasattr(module, "relative_position_bias_table"):
            module.fused_attn = True
            switched += 1
    if not switched:
        raise RuntimeError("stock_sdpa: no timm WindowAttention with a fused_attn switch in this model")
    return model


def _patched_label(backend: str, args) -> str:
    return "patched" if len(args.backends) == 1 else f"patched[{backend}]"


def _models(stock, args, device, dtype):
    """The contenders of one run, stock first: stock timm, a patched copy per backend of ``--backends``, our Swin
    backbone with the same weights (pad_then_roll, per-stage output norms, no classifier; not with ``--no-ours``),
    each also ``torch.compile``d with ``--compile`` (only the compiled ones with ``--compile-only``)."""
    models = {"stock": stock}
    if args.stock_sdpa and args.library == "timm":
        models["stock+sdpa"] = stock_sdpa(stock)
    for backend in args.backends:
        if args.library == "hf":
            models[_patched_label(backend, args)] = hf_swin.patch(copy.deepcopy(stock), backend)
        else:
            models[_patched_label(backend, args)] = sk.patch_timm_swin(copy.deepcopy(stock), backend=backend)
    if args.ours and args.library == "timm":
        from semask_models.backbones.swin import SwinBackbone
        from semask_models.convert import load_swin_backbone

        ours = SwinBackbone(embed_dim=stock.embed_dim, depths=[len(layer.blocks) for layer in stock.layers],
                            num_heads=[layer.blocks[0].attn.num_heads for layer in stock.layers],
                            window_size=stock.layers[0].blocks[0].attn.window_size[0], drop_path_rate=0.0,
                            backend=args.backends[0])
        # the expected misfit (our per-stage output norms; timm's final norm and classifier) is not news: no log
        loader_log = logging.getLogger("semask_models")
        level = loader_log.level
        loader_log.setLevel(logging.ERROR)
        try:
            load_swin_backbone(ours, stock.state_dict())
        finally:
            loader_log.setLevel(level)
        models["ours"] = ours.to(device=device, dtype=dtype)
    if args.compile:
        mode = None if args.compile_mode == "default" else args.compile_mode
        compiled = {f"{name}+compile": torch.compile(model, mode=mode) for name, model in models.items()}
        # stock+compile right after stock: every row's ratios are known when it is written
        eager = {} if args.compile_only else models
        models = {**dict(list(eager.items())[:1]), **dict(list(compiled.items())[:1]),
                  **dict(list(eager.items())[1:]), **dict(list(compiled.items())[1:])}
    return models


def _backend_of(label: str, args, device, dtype) -> str:
    """What a contender's attention runs: "timm" for stock, else the backend its ops pick for a Swin shape."""
    if label.startswith("stock+sdpa"):
        return "timm-sdpa"
    if label.startswith("stock"):
        return "transformers" if args.library == "hf" else "timm"
    requested = args.backends[0]
    for backend in args.backends:
        if label.startswith(_patched_label(backend, args)):
            requested = backend
    return sk.backends.choose_backend(
        "shifted_window_attention", requested, torch.zeros(1, 7, 7, 288, device=device, dtype=dtype),
        torch.zeros(169, 3, device=device, dtype=dtype), None, 3, [7, 7], [0, 0], 0.1, "roll_then_pad", -100.0)


def run(args) -> list[dict]:
    import timm

    if not args.no_save:
        check_output(RESULTS_FILE[args.library], args.jsonl)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = args.dtype == "amp-bf16"  # float32 weights and input, the step under autocast bfloat16
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
             "amp-bf16": torch.float32}[args.dtype]
    meta = run_metadata(device)
    rows = []
    print(f"device: {meta['device']} | torch {meta['torch']} | triton {meta['triton']} | timm {meta['timm']}")
    if args.library == "hf":
        import transformers

        meta = {**meta, "transformers": transformers.__version__}
        print(f"library: Hugging Face transformers {transformers.__version__} (stock vs sk.patch_hf_swin)")
    if device.type == "cpu":
        rounds = (f"at least {args.repeats} rounds, more until the speedups settle (spread < {args.max_spread:g}x) "
                  f"or {args.time_cap:g} s" if args.adaptive else f"{args.repeats} repeats")
        print(f"NOTE: CPU run (batch {', '.join(map(str, args.batch))}, {rounds}). No fused kernel "
              f"runs on a CPU: the patched model uses the plain-PyTorch path. These are CPU numbers, not GPU "
              f"numbers, and say nothing about the fused kernels' speed.")
    for variant in args.variants:
        for img_size in args.img_size:
            if args.library == "hf":
                stock, model_name = hf_swin.create(variant, img_size), hf_swin.NAMES[variant]
            else:
                # as timm builds it by default (strict_img_size=True): each shifted block keeps its mask in a
                # buffer; strict_img_size=False would make every one of them rebuild it each forward
                stock = timm.create_model(MODELS[variant], pretrained=False, img_size=img_size)
                model_name = MODELS[variant]
            stock = stock.to(device=device, dtype=dtype)
            models = _models(stock, args, device, dtype)
            for batch in args.batch:
                x = torch.randn(batch, 3, img_size, img_size, device=device, dtype=dtype)
                for mode in args.modes:
                    fns = {label: _step(model, x, mode, amp) for label, model in models.items()}
                    contest = time_contenders(fns, device, warmup=args.warmup, repeats=args.repeats,
                                              interleave=args.interleave, until=stopping(args, "stock"))
                    for label, e in contest.failures.items():
                        print(f"  {model_name} {img_size} batch {batch} {mode} {label}: failed: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
                    for label, t in contest.timings.items():
                        vs_stock = contest.speedup(label, "stock") or (None, None, None)
                        judged = contest.verdict(label, "stock", args.max_spread)
                        vs_compiled = contest.speedup(label, "stock+compile") or (None, None, None)
                        row = {**meta, "bench": "compare-swin", "model": model_name, "variant": label,
                               "backend": _backend_of(label, args, device, dtype), "mode": mode,
                               "dtype": args.dtype, "batch": batch, "img_size": img_size,
                               "compile_mode": args.compile_mode if label.endswith("+compile") else None,
                               "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms,
                               "repeats": t.repeats, "interleaved": contest.interleaved,
                               "img_per_s": batch / t.median_ms * 1e3, "peak_mem_mb": t.peak_mem_mb,
                               "speedup_vs_stock": vs_stock[0],
                               # interleaved: of the per-round ratios; back to back: the widest both spreads allow
                               "speedup_vs_stock_p10": judged.p10 if judged else None,
                               "speedup_vs_stock_p90": judged.p90 if judged else None,
                               "speedup_vs_stock_compiled": vs_compiled[0],
                               **noise_fields(contest, label, judged)}
                        if args.min_speedup is not None and label.startswith("patched") and vs_stock[0]:
                            row["min_speedup"] = args.min_speedup
                            row["meets_min_speedup"] = vs_stock[0] >= args.min_speedup
                        rows.append(row)
                        _print([row], header=len(rows) == 1)
                        if row.get("meets_min_speedup") is False:
                            print(f"  BELOW FLOOR: {label} runs at {vs_stock[0]:.3f}x of stock, under the "
                                  f"--min-speedup {args.min_speedup}x", flush=True)
                        if not args.no_save:
                            path = append_rows(RESULTS_FILE[args.library], [row], args.jsonl)
            if device.type == "cuda":
                del models, stock
                torch.cuda.empty_cache()
    if rows and not args.no_save:
        from . import report

        print(f"results appended to {report.shown(path)}")
        if args.library == "hf":  # the table and plot report stock timm runs; HF rows stay in their own file
            return rows
        latest = report.latest_runs(path, report.COMMON_FIELDS + report.SUITE_FIELDS["compare_swin"])
        for written in report.report_compare_swin(latest, path.parent):
            print(f"wrote {report.shown(written)}")
    return rows



def stopping(args, baseline: str) -> Stopping | None:
    """The adaptive timing of ``args`` (``--adaptive``, the default), or None: fixed warm-up and repeats."""
    if not args.adaptive:
        return None
    return Stopping(baseline=baseline, max_spread=args.max_spread, time_cap_s=args.time_cap,
                    max_rounds=max(args.max_rounds, args.repeats), max_warmup=max(args.max_warmup, args.warmup))


def noise_fields(contest, label: str, judged) -> dict:
    """How a row's timing ended (warm-up calls, rounds, why they stopped) and whether its speedup is stated."""
    return {"warmup_calls": contest.warmup_calls.get(label), "rounds": contest.rounds,
            "stopped": contest.stopped, "speedup_spread": judged.spread if judged else None,
            "speedup_conclusive": judged.conclusive if judged else None}


def add_noise_arguments(parser: argparse.ArgumentParser, time_cap: float) -> None:
    """The adaptive-timing options shared by compare-swin and compare-models."""
    parser.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                        help="warm up until the times settle (3 calls within 15%%), then run rounds (at least "
                             "--repeats) until the p10-p90 spread of every speedup is below --max-spread or a cap "
                             "is hit (default: yes; --no-adaptive: exactly --warmup and --repeats)")
    parser.add_argument("--max-spread", type=float, default=1.3,
                        help="a speedup whose p90 / p10 stays at or above this is printed 'inconclusive' "
                             "(default 1.3)")
    parser.add_argument("--time-cap", type=float, default=time_cap,
                        help=f"seconds of rounds per group of contenders (default {time_cap:g})")
    parser.add_argument("--max-rounds", type=at_least(1), default=30, help="rounds per group at most (default 30)")
    parser.add_argument("--max-warmup", type=at_least(0), default=10,
                        help="warm-up calls per contender at most (default 10)")


def _ratio(r: dict) -> str:
    if not r["speedup_vs_stock"]:
        return "-"
    if r.get("speedup_conclusive") is False:
        return f"inconclusive ({r['speedup_vs_stock_p10']:.2f}-{r['speedup_vs_stock_p90']:.2f})" \
            if r.get("speedup_vs_stock_p10") is not None else "inconclusive"
    if r.get("speedup_vs_stock_p10") is None:
        return f"{r['speedup_vs_stock']:.2f}x"
    return f"{r['speedup_vs_stock']:.2f}x ({r['speedup_vs_stock_p10']:.2f}-{r['speedup_vs_stock_p90']:.2f})"


def _print(rows: list[dict], header: bool = True) -> None:
    title = f"{'model':<30} {'size':>5} {'batch':>5} {'mode':<10} {'variant':<24} {'backend':<10} {'ms':>9} " \
            f"{'p10-p90':>15} {'img/s':>8} {'peak MB':>8} {'vs stock (p10-p90)':>20} {'vs compiled':>11}"
    if header:
        print(title)
        print("-" * len(title))
    for r in rows:
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "n/a"
        vs_compiled = f"{r['speedup_vs_stock_compiled']:.2f}x" if r["speedup_vs_stock_compiled"] else "-"
        print(f"{r['model']:<30} {r['img_size']:>5} {r['batch']:>5} {r['mode']:<10} {r['variant']:<24} "
              f"{r['backend']:<10} {r['median_ms']:>9.2f} {r['p10_ms']:>7.2f}-{r['p90_ms']:<7.2f} "
              f"{r['img_per_s']:>8.1f} {mem:>8} {_ratio(r):>20} {vs_compiled:>11}", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", nargs="+", default=None, choices=sorted(MODELS),
                        help="Swin variants (default: T S B L on a GPU, T with --quick or on a CPU)")
    parser.add_argument("--library", default="timm", choices=["timm", "hf"],
                        help="the stock model: timm's Swin (patch_timm_swin) or Hugging Face transformers' "
                             "SwinForImageClassification (patch_hf_swin); default timm")
    parser.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    parser.add_argument("--batch", type=at_least(1), nargs="+", default=None,
                        help="batch sizes (default 128 GPU, 1 CPU/--quick); several give throughput vs batch")
    parser.add_argument("--img-size", type=at_least(1), nargs="+", default=None,
                        help="input sizes (default 224 and the 512 segmentation crop on a GPU, 224 on a CPU)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile'd models (default: on a GPU without --quick)")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16", "amp-bf16"],
                        help="default bf16 on a GPU, fp32 on a CPU; amp-bf16: float32 models under autocast bf16")
    parser.add_argument("--compile-mode", default="default",
                        choices=["default", "max-autotune-no-cudagraphs", "reduce-overhead"],
                        help="torch.compile mode of the compiled contenders (default: torch's default)")
    parser.add_argument("--backend", default="auto", help="backend of the patched model's ops")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="one patched copy per backend, labelled patched[<backend>] (default: --backend)")
    parser.add_argument("--ours", action=argparse.BooleanOptionalAction, default=True,
                        help="also time our own Swin backbone with the same weights (default: yes)")
    parser.add_argument("--stock-sdpa", action=argparse.BooleanOptionalAction, default=True,
                        help="also time stock timm with its fused_attn (SDPA) switched on, a second baseline "
                             "(default: yes; timm only)")
    parser.add_argument("--compile-only", action="store_true",
                        help="with --compile, time only the compiled models (ratios against stock+compile)")
    parser.add_argument("--jsonl", default=None,
                        help="append result rows to this file (default benchmarks/results/compare_swin.jsonl)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--warmup", type=at_least(0), default=None)
    parser.add_argument("--repeats", type=at_least(1), default=None)
    parser.add_argument("--quick", action="store_true", help="the small preset (Swin-T 224, batch 1, at least 1 "
                        "warm-up and 3 rounds, eager), the default on a CPU: about 1-3 minutes on 2 shared cores")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=None,
                        help="time the contenders round-robin, one call each per round, and report the median "
                             "and p10-p90 of the per-round speedups (cancels load changes on a shared machine; "
                             "default: on a CPU)")
    parser.add_argument("--min-speedup", type=float, default=None,
                        help="the floor of each patched model's median speedup over stock: rows record it and "
                             "whether it was met, and a miss is printed (0.97 holds patch_hf_swin to stock "
                             "transformers on the CPU: --library hf --batch 2)")
    parser.add_argument("--no-save", action="store_true", help="do not append to benchmarks/results/")
    add_noise_arguments(parser, time_cap=60.0)


def resolve_defaults(args) -> None:
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    small = args.quick or not gpu
    args.backends = args.backends or [args.backend]
    args.variants = args.variants or (["T"] if small else ["T", "S", "B", "L"])
    args.batch = args.batch or ([1] if small else [128])
    args.img_size = args.img_size or ([224] if small else [224, 512])
    args.interleave = (not gpu) if args.interleave is None else args.interleave
    args.compile = args.compile_only or ((not small) if args.compile is None else args.compile)
    args.dtype = args.dtype or ("bf16" if gpu else "fp32")
    args.warmup = args.warmup if args.warmup is not None else (1 if small else 5)
    args.repeats = args.repeats if args.repeats is not None else (3 if small else 20)

"""``flops``: parameters and FLOPs of every zoo model and of stock timm Swin, counted with
``torch.utils.flop_counter`` on the meta device (no memory, no compute). Custom ops contribute through their
registered formulas, so the count does not depend on the backend. Printed as MACs (the papers' "FLOPs") and as
FLOPs (2 per multiply-add), with the SeMask semantic layers' share.
"""
from __future__ import annotations

import argparse
import re

import torch
from torch.utils.flop_counter import FlopCounterMode

import semask_models as sm

from .harness import append_rows, at_least, check_output, run_metadata

def _register_deform_conv2d_flops() -> None:
    """torchvision's ``deform_conv2d`` (FaPN's DCNv2) has no formula in torch's flop counter, so it would count 0:
    count it as the convolution it is, 2·B·C_out·H_out·W_out·(C_in/groups)·kh·kw (the bilinear sampling and the
    modulation are left out, as the convolution's own im2col is)."""
    try:
        import torchvision  # noqa: F401  (registers torch.ops.torchvision)
        from torch.utils.flop_counter import register_flop_formula
        op = torch.ops.torchvision.deform_conv2d
    except (ImportError, AttributeError, RuntimeError):
        return

    @register_flop_formula(op, get_raw=True)
    def _deform_conv2d_flop(input, weight, *args, out_val=None, **kwargs):
        c_out, c_in_per_group, kh, kw = weight.shape
        return 2 * out_val.numel() * c_in_per_group * kh * kw


_register_deform_conv2d_flops()

TIMM_SWIN = {"swin_tiny_patch4_window7_224": 224, "swin_small_patch4_window7_224": 224,
             "swin_base_patch4_window7_224": 224, "swin_large_patch4_window7_224": 224}


def crop_size(name: str) -> int:
    """The official ADE20K training crop: 512 (T/S/B), 640 (L); the same for the MaskFormer / Mask2Former models;
    SegFormer's: 512 (B0-B4), 640 (B5)."""
    return 640 if "_l_" in name or "mit_b5_" in name else 512


def count(model: torch.nn.Module, size: int) -> tuple[int, int, int]:
    """(params, total FLOPs, FLOPs inside semantic layers) of one inference forward at size×size, batch 1."""
    params = sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    per_module = counter.get_flop_counts()
    semantic = sum(sum(ops.values()) for name, ops in per_module.items()  # Swin: layers.i.semantic_layer, MiT:
                   if re.search(r"semantic_layer\d*$", name) and name.count("semantic_layer") == 1)  # semantic_layerI
    return params, counter.get_total_flops(), semantic


def run(args) -> list[dict]:
    import timm

    if not args.no_save:
        check_output("flops.jsonl")

    meta = run_metadata(torch.device("cpu"))
    rows = []
    names = args.models or (list(TIMM_SWIN) + sm.model_names(sgr=args.sgr))
    for name in names:
        size = args.img_size or (TIMM_SWIN.get(name) or crop_size(name))
        with torch.device("meta"):
            # backend="reference": the registered custom ops (fake kernels + FLOP formulas) on meta tensors; the
            # torch paths of some ops read index values (ms_deform_attn's spatial shapes), which meta tensors lack
            model = (timm.create_model(name, pretrained=False) if name in TIMM_SWIN
                     else sm.build_model(name, num_classes=args.num_classes, backend="reference"))
        params, flops, semantic = count(model, size)
        rows.append({**meta, "bench": "flops", "model": name, "img_size": size,
                     "num_classes": None if name in TIMM_SWIN else args.num_classes, "params": params,
                     "gmacs": flops / 2e9, "gflops": flops / 1e9, "semantic_gmacs": semantic / 2e9})
    by_name = {r["model"]: r for r in rows}
    for r in rows:  # SGR's overhead against the same model without it, when both were counted
        base = by_name.get(r["model"][: -len("_sgr")]) if r["model"].endswith("_sgr") else None
        r["sgr_params_overhead"] = r["params"] - base["params"] if base else None
        r["sgr_gmacs_overhead"] = r["gmacs"] - base["gmacs"] if base else None
        plain = by_name.get(r["model"][len("semask_"):]) if r["model"].startswith("semask_") else None
        r["semask_gmacs_overhead"] = r["gmacs"] - plain["gmacs"] if plain else None  # vs the same model without
    print(f"{'model':<36} {'input':>6} {'params (M)':>11} {'GMACs':>9} {'GFLOPs':>9} {'semantic GMACs':>15} "
          f"{'SeMask +GMACs':>14} {'SGR +M params':>14} {'SGR +GMACs':>11}")
    for r in rows:
        semask = r["semask_gmacs_overhead"]
        extra = f"{semask:>14.2f}" if semask is not None else f"{'':>14}"
        extra += (f" {r['sgr_params_overhead'] / 1e6:>14.2f} {r['sgr_gmacs_overhead']:>11.2f}"
                  if r["sgr_params_overhead"] is not None else "")
        print(f"{r['model']:<36} {r['img_size']:>6} {r['params'] / 1e6:>11.2f} {r['gmacs']:>9.2f} "
              f"{r['gflops']:>9.2f} {r['semantic_gmacs']:>15.2f} {extra}")
    print("MACs = multiply-accumulates (what the Swin and SeMask papers call FLOPs); FLOPs = 2 × MACs. "
          "Counted for batch 1, inference (the SeMask prior decoder runs only in training).")
    if not args.no_save:
        print(f"results appended to {append_rows('flops.jsonl', rows)}")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=None, help="zoo or timm Swin names (default: all)")
    parser.add_argument("--img-size", type=at_least(1), default=None, help="default: 224 timm, 512 T/S/B, 640 L")
    parser.add_argument("--num-classes", type=at_least(1), default=150)
    parser.add_argument("--sgr", action="store_true", help="also count every model with SGR and its overhead")
    parser.add_argument("--no-save", action="store_true")

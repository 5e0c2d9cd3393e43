"""The one tolerance policy of the test suite (ARCHITECTURE.md, Decisions), and verbose mismatch reports."""
from __future__ import annotations

import torch

# Absolute/relative bounds per dtype, for unit-scale data compared with a float32 (or float64) reference.
TOLERANCES = {
    torch.float64: (1e-10, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}


def describe_mismatch(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> str:
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    err = (a - e).abs()
    finite = torch.isfinite(err)
    bad = ~finite | (err > atol + rtol * e.abs())
    lines = [f"shape {tuple(a.shape)}, atol {atol:g}, rtol {rtol:g}: {int(bad.sum())} of {a.numel()} elements off",
             f"NaN actual/expected: {int(a.isnan().sum())}/{int(e.isnan().sum())}, "
             f"inf actual/expected: {int(a.isinf().sum())}/{int(e.isinf().sum())}"]
    if finite.any():
        worst = torch.where(finite, err, torch.zeros_like(err)).argmax()
        where = tuple(int(i) for i in torch.unravel_index(worst, a.shape)) if a.dim() else ()
        lines.append(f"max abs error {float(err[finite].max()):.3e} at {where}: actual {float(a.flatten()[worst]):.6g}"
                     f", expected {float(e.flatten()[worst]):.6g}")
    return "\n".join(lines)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, name: str = "",
                 scale: float = 1.0) -> None:
    """``actual`` matches ``expected`` within the bounds of ``dtype`` (default: ``actual``'s dtype), the bounds
    multiplied by ``scale`` for quantities of larger magnitude (e.g. summed gradients)."""
    dtype = dtype or actual.dtype
    atol, rtol = TOLERANCES[dtype]
    atol, rtol = atol * scale, rtol * scale
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.allclose(a, e, atol=atol, rtol=rtol):
        raise AssertionError(f"{name} mismatch\n" + describe_mismatch(a, e, atol, rtol))


def assert_error_within(fused: torch.Tensor, low_ref: torch.Tensor, exact: torch.Tensor, factor: float,
                        name: str = "") -> None:
    """The self-calibrating rule: the fused op's max error against the exact result is at most ``factor`` times
    the error of the reference run in the same low precision (plus a floor for exact-zero reference error)."""
    exact = exact.detach().double().cpu()
    fused_err = (fused.detach().double().cpu() - exact).abs().max().item()
    ref_err = (low_ref.detach().double().cpu() - exact).abs().max().item()
    floor = TOLERANCES[fused.dtype][0] * 0.1
    assert fused_err <= factor * ref_err + floor, (
        f"{name}: fused error {fused_err:.3e} > {factor} × reference error {ref_err:.3e} (+{floor:.1e})")


def poison_cuda_cache(*like: torch.Tensor) -> None:
    """Allocate and free NaN tensors shaped like ``like``: the CUDA caching allocator keeps their blocks, so the
    next allocations of those sizes (a kernel's ``at::empty`` outputs) start as NaN instead of an earlier call's
    results, and an element the kernel never writes shows up in the comparison."""
    for t in like:
        if t is not None and t.is_cuda and t.is_floating_point():
            torch.full_like(t, float("nan"))

"""Shared helpers of the fused-loss backend tests (Triton and CUDA): inputs, a run through the public op, unit
scale (the comparison against the reference is tests/ops/conformance.py's)."""
from __future__ import annotations

from typing import Optional

import torch

import semask_kernels as sk


def make(b, k, h, w, out, ignore_frac=0.2, device="cpu", seed: Optional[int] = None):
    """Logits (B, K, h, w) of spread 2 and a target (B, *out) with ~``ignore_frac`` pixels at 255."""
    if seed is not None:
        torch.manual_seed(seed)
    logits = torch.randn(b, k, h, w, device=device) * 2
    target = torch.randint(0, k, (b, *out), device=device)
    target[torch.rand(target.shape, device=device) < ignore_frac] = 255
    return logits, target


def run(backend, logits, target, dtype=None, **kw):
    """(loss, d logits) of the public op on ``backend``."""
    x = logits.detach().to(dtype or logits.dtype).requires_grad_()
    loss = sk.upsample_cross_entropy(x, target, backend=backend, **kw)
    (grad,) = torch.autograd.grad(loss * 1.5, x)  # an upstream gradient other than 1
    return loss, grad


def unit(results, exact):
    """(loss, d logits / max |exact d logits|): the gradient carries 1/(pixel count), so it is compared on unit
    scale (otherwise every absolute bound would be met trivially)."""
    mag = float(exact[1].abs().max())
    return [results[0], results[1] / mag if mag > 0 else results[1]]


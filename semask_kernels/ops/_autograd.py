"""Backward of a reference implementation by recomputation: the ground-truth gradient is autograd of the
reference forward. Used by the "reference" backend of every op (inside its backward custom op)."""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

_AUTOGRAD_KEYS = (torch._C.DispatchKey.AutogradFunctionality, torch._C.DispatchKey.AutogradOther,
                  torch._C.DispatchKey.AutogradNestedTensor)


@contextlib.contextmanager
def _autograd_enabled():
    """Record autograd inside a custom op's kernel, where the dispatcher has excluded the autograd keys
    (autocast stays excluded, so the reference runs in the dtype it was given)."""
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for key in _AUTOGRAD_KEYS:
        exclude = exclude.remove(key)
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude), \
            torch.enable_grad():
        yield


def recompute_grads(fn: Callable[..., Tensor], inputs: Sequence[Optional[Tensor]], grad_out: Tensor,
                    *args) -> list[Optional[Tensor]]:
    """Gradients of ``fn(*inputs, *args)`` w.r.t. every floating tensor of ``inputs`` (None stays None).

    An input the output does not depend on gets zeros, so every backend returns the same structure.
    """
    with _autograd_enabled():
        leaves = [t.detach().requires_grad_(t.is_floating_point()) if t is not None else None for t in inputs]
        out = fn(*leaves, *args)
        wanted = [t for t in leaves if t is not None and t.requires_grad]
        grads = torch.autograd.grad(out, wanted, grad_out, allow_unused=True)
    grads = iter(grads)
    result = []
    seen = {grad_out.untyped_storage().data_ptr()}
    for leaf in leaves:
        if leaf is None or not leaf.requires_grad:
            result.append(None)
            continue
        g = next(grads)
        g = torch.zeros_like(leaf) if g is None else g
        if g.untyped_storage().data_ptr() in seen:  # a custom op's outputs may not alias its inputs or each other
            g = g.clone()
        seen.add(g.untyped_storage().data_ptr())
        result.append(g)
    return result


def empty_result(shape, *inputs: Optional[Tensor]) -> Tensor:
    """The output of an op on inputs with an empty dimension: zeros of ``shape`` (itself empty), connected to
    every input that needs a gradient so that backward gives each of them zeros (a sum over no elements)."""
    ref = next(t for t in inputs if t is not None)
    out = ref.new_zeros(shape)
    for t in inputs:
        if t is not None and t.requires_grad:
            out = out + t.sum() * 0
    return out

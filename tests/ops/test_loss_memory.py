"""Memory of the fused upsample_cross_entropy against what a user would otherwise write:
``F.cross_entropy(F.interpolate(logits, size=label_size, mode="bilinear"), target, ignore_index=255)``.

How it is measured on the CPU, honestly:

- *Saved for backward*: ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor autograd keeps, including
  what the op's ``setup_context`` stores with ``ctx.save_for_backward`` (logits and target). Tensors are
  counted once per storage (the reference's log-softmax output is saved by two nodes but held once). At the
  SeMask-T 512² size (K = 150, batch 2, logits 128², labels 512²) this is measured on the **meta** device:
  the fused Triton kernels are far too slow to run at that size under the CPU interpreter, and which tensors
  autograd saves depends only on the op's autograd wiring, not on the backend or the device (on meta the op's
  fake kernel runs). ``test_real_run_saves_the_same_set`` checks that on a small real run through the Triton
  backend: exactly logits and target are saved, as on meta.
- *Transient allocations*: the backend's forward and backward run under a ``TorchDispatchMode`` that records
  the largest tensor any aten op produces (every buffer the launchers allocate goes through aten), at a small
  ×4 size; the fused path must never hold anything close to a (B, K, H, W) tensor.

Peak device memory (the ≥ 10× target of the issue) can only be measured on a GPU: ``test_gpu_peak_memory``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import semask_kernels as sk
from semask_kernels.ops.upsample_cross_entropy import triton as uce_triton


def saved_bytes(fn):
    """(output, bytes autograd saves for backward while running ``fn``, counted once per storage)."""
    storages = {}

    def pack(t):
        st = t.untyped_storage()
        storages[st._cdata] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def reference_loss(logits, target):
    full = F.interpolate(logits, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
    return F.cross_entropy(full, target, ignore_index=255)


def fused_op(logits, target):
    # The custom op itself (the public function would ask the Triton backend to accept meta tensors).
    return torch.ops.semask_kernels.upsample_cross_entropy(logits, target, 255, True, False, "triton")


def test_saved_for_backward_semask_t_512():
    b, k, h, w, big = 2, 150, 128, 128, 512
    logits = torch.empty(b, k, h, w, device="meta", requires_grad=True)
    target = torch.empty(b, big, big, dtype=torch.long, device="meta")
    out, fused = saved_bytes(lambda: fused_op(logits, target))
    fused += out.numel() * out.element_size()
    out, ref = saved_bytes(lambda: reference_loss(logits, target))
    ref += out.numel() * out.element_size()
    assert fused == b * k * h * w * 4 + b * big * big * 8 + 4  # logits, target and the scalar loss
    assert ref >= b * k * big * big * 4  # the full-resolution log-probabilities
    assert fused * 10 <= ref, f"fused saves {fused / 2**20:.1f} MiB, reference {ref / 2**20:.1f} MiB"


def test_real_run_saves_the_same_set():
    logits = torch.randn(1, 19, 8, 8, requires_grad=True)
    target = torch.randint(0, 19, (1, 32, 32))
    loss, fused = saved_bytes(lambda: sk.upsample_cross_entropy(logits, target, backend="triton"))
    assert fused == logits.numel() * 4 + target.numel() * 8
    loss.backward()
    assert logits.grad is not None


class _LargestTensor(TorchDispatchMode):
    """Records the largest storage any aten op returns while active."""

    def __init__(self):
        super().__init__()
        self.largest, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > self.largest:
                self.largest, self.op = t.untyped_storage().nbytes(), str(func)
        return out


def test_fused_path_never_allocates_full_resolution():
    b, k, h, w, big = 1, 19, 8, 8, 32  # ×4, as the SeMask-T decode head against its labels
    logits = torch.randn(b, k, h, w)
    target = torch.randint(0, k, (b, big, big))
    full = b * k * big * big * 4
    with _LargestTensor() as fused:
        uce_triton.forward(logits, target, 255, True, False)
        uce_triton.backward(torch.tensor(1.0), logits, target, 255, True, False)
    assert fused.largest * 8 <= full, f"fused path allocated {fused.largest} B ({fused.op}); full-res {full} B"
    with _LargestTensor() as ref:
        x = logits.clone().requires_grad_()
        reference_loss(x, target).backward()
    assert ref.largest >= full


@pytest.mark.gpu
def test_gpu_peak_memory():
    """SeMask-T 512², batch 16, bf16 (the issue's setting): the fused loss's peak extra memory over forward +
    backward is at least 10× below the reference's."""
    b, k, h, w, big = 16, 150, 128, 128, 512
    logits = torch.randn(b, k, h, w, device="cuda", dtype=torch.bfloat16)
    target = torch.randint(0, k, (b, big, big), device="cuda")
    target[torch.rand(target.shape, device="cuda") < 0.1] = 255

    def peak(fn):
        x = logits.clone().requires_grad_()
        fn(x).backward()  # warm-up (compilation, caches)
        x.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(x).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    fused = peak(lambda x: sk.upsample_cross_entropy(x, target, backend="triton"))
    ref = peak(lambda x: reference_loss(x, target))
    assert fused * 10 <= ref, f"fused peak {fused / 2**20:.1f} MiB, reference {ref / 2**20:.1f} MiB"

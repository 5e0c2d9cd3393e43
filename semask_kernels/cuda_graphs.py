"""``cuda_graph_inference``: a model's inference forward captured once into a ``torch.cuda.CUDAGraph`` and
replayed, so a step is one graph launch instead of hundreds of kernel launches with host gaps between them.

The capture needs a forward without host syncs (no ``.item()``, ``.cpu()``, ``nonzero`` or data-dependent shapes):
the patched Swin forward has none (``tests/test_cuda_graphs.py`` checks it on the CPU with a dispatch mode that
records every syncing op). ``torch.compile(model, mode="reduce-overhead")`` does the same capture automatically;
this helper is the explicit form, for eager models, TorchScript modules and serving code that manages its own
buffers. On a GPU::

    import timm, torch, semask_kernels as sk
    model = sk.patch_timm_swin(timm.create_model("swin_tiny_patch4_window7_224")).cuda().eval().half()
    run = sk.cuda_graph_inference(model, torch.randn(64, 3, 224, 224, device="cuda", dtype=torch.half))
    logits = run(images)  # images: (64, 3, 224, 224) float16 on the same GPU; one graph replay
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map


class GraphedInference:
    """The replayable capture: ``run(x)`` copies x into the captured input buffer, replays the graph and returns
    the output (cloned by default; ``clone_output=False`` returns the graph's own buffers, overwritten by the next
    replay). ``x`` must have the example's shape, dtype and device."""

    def __init__(self, graph: "torch.cuda.CUDAGraph", static_input: Tensor, static_output: Any, clone_output: bool):
        self.graph, self.static_input, self.static_output = graph, static_input, static_output
        self.clone_output = clone_output

    def __call__(self, x: Tensor) -> Any:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        ref = self.static_input
        if x.shape != ref.shape or x.dtype != ref.dtype or x.device != ref.device:
            raise ValueError(f"x must match the captured example: shape {tuple(ref.shape)}, {ref.dtype} on "
                             f"{ref.device}; got shape {tuple(x.shape)}, {x.dtype} on {x.device} (capture "
                             f"another graph for another shape)")
        self.static_input.copy_(x)
        self.graph.replay()
        if not self.clone_output:
            return self.static_output
        return tree_map(lambda t: t.clone() if isinstance(t, Tensor) else t, self.static_output)


def _check(model: Callable, example: Tensor, warmup: int) -> None:
    if not callable(model):
        raise TypeError(f"model must be a callable (an nn.Module), got {type(model).__name__}")
    if not isinstance(example, Tensor):
        raise TypeError(f"example must be a torch.Tensor, got {type(example).__name__}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be an int >= 1 (forwards run before the capture), got {warmup!r}")
    if isinstance(model, nn.Module) and model.training:
        raise ValueError("model must be in eval mode (model.eval()): a training forward draws dropout and drop "
                         "path masks and updates statistics, which a replayed graph would freeze")
    if example.device.type != "cuda":
        raise ValueError(f"example must be a CUDA tensor (CUDA graphs capture GPU work), got one on "
                         f"{example.device}")
    if isinstance(model, nn.Module):
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.device != example.device:
                raise ValueError(f"model's {name} is on {t.device}, but example is on {example.device}: move the "
                                 f"model to the example's device first")
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_graph_inference needs a CUDA GPU (torch.cuda.is_available() is False)")


def cuda_graph_inference(model: Callable, example: Tensor, *, warmup: int = 3,
                         clone_output: bool = True) -> GraphedInference:
    """Capture ``model(example)`` (under ``torch.no_grad()``) into a CUDA graph and return its replayer.

    Args:
        model: an ``nn.Module`` in eval mode (or a callable) whose parameters are on ``example``'s GPU.
        example: the input (B, ...) on a CUDA device; every later call must have its shape, dtype and device.
        warmup: forwards run on a side stream before the capture (Triton autotuning, cuBLAS workspaces and lazy
            initialisation happen there, never inside the graph).
        clone_output: return a copy of the output on each call (default) or the graph's output buffers.

    Returns:
        ``GraphedInference``: ``run(x)`` -> the model's output for x, by one graph replay.
    """
    _check(model, example, warmup)
    static_input = example.detach().clone()
    side = torch.cuda.Stream(device=example.device)
    side.wait_stream(torch.cuda.current_stream(example.device))
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(warmup):
            model(static_input)
    torch.cuda.current_stream(example.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_output = model(static_input)
    return GraphedInference(graph, static_input, static_output, clone_output)

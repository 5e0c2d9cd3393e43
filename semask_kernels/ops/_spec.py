"""The op contract: one ``OpSpec`` per op folder, found by its folder name, read by everything that lists ops.

Every op folder ``semask_kernels/ops/<op>/`` holds a ``spec.py`` with ``SPEC = OpSpec(...)``. ``specs()`` finds
them by scanning the op folders, so ``info``, the backend tests, the conformance suite (``tests/ops/
test_conformance.py``), the benchmarks and the microbenchmarks iterate over the specs and never list ops by hand.

An ``OpSpec`` says, for one op:

- ``name``: the op's name, its folder's name, its public function's name and its custom op's name
  (``torch.ops.semask_kernels.<name>``).
- ``preference``: the order in which ``auto`` tries the backends (``op.py`` passes it to ``register_op``).
- ``dtypes``: per backend, the dtypes it runs (the conformance suite tests each backend in each of them).
- ``sample(size, dtype, device)``: a ``Call`` of the public function at a named workload ``Size`` (``SIZES``):
  ``info`` and the CPU microbenchmarks use "tiny", the GPU microbenchmarks "swin_t_stage1", the benchmark suite
  builds one ``Size`` per model stage.
- ``flops(*args)``: forward FLOPs from the backend arguments with every tensor replaced by its shape, exactly
  what ``torch.utils.flop_counter.register_flop_formula`` passes; ``op.py`` registers this very function, so
  ``flop_counter`` and the benchmarks cannot drift apart. ``backward_flops`` likewise (default 2x forward).
- ``cases``: awkward test ``Case``s (padding needed, window larger than the map, batch 1, odd channels...); each
  builds a ``Call`` and names which arguments take gradients.

The public function and the backend arguments come from the op's ``op.py`` by convention: the function is named
like the folder, and ``arguments(**kwargs)`` validates the public keyword arguments (``backend`` excluded) and
returns the tuple every backend's ``forward``/``supports`` receives (the custom op gets it plus the backend).

How to add an op ``my_op`` (the whole list):

1. A folder ``semask_kernels/ops/my_op/`` with the file contract: ``reference.py`` (the truth), ``torch_path.py``
   (the fast plain-PyTorch path), ``triton.py`` / ``cuda.py`` as built, ``op.py`` (custom op, fake kernel,
   autograd, ``arguments()``, the public function ``my_op``) and ``__init__.py`` (``from .op import my_op``).
   Code shared with other ops lives in ``semask_kernels/kernels/`` or ``ops/_*.py``, never in another op folder
   (``tests/ops/test_layout.py`` forbids ``ops/<a>/`` importing ``ops/<b>/``).
2. ``semask_kernels/ops/my_op/spec.py`` with ``SPEC = OpSpec(name="my_op", ...)``; ``op.py`` imports it for its
   preference and FLOP formulas (``register_flops(SPEC, ...)``).
3. One line in ``semask_kernels/ops/__init__.py``: ``from .my_op import my_op`` (``semask_kernels`` re-exports
   ``ops.__all__``, which lists every op folder).

The conformance suite then tests every (backend x case x dtype): forward and every gradient against the float32
reference, dtype and shape of the results, non-contiguous inputs, ``opcheck``, bitwise determinism; ``info``,
``sk.available_backends()``, the benchmarks and microbenchmarks pick the op up.

    >>> from semask_kernels.ops._spec import specs
    >>> "window_attention" in specs()
    True
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

FP32 = (torch.float32,)
LOW = (torch.float16, torch.bfloat16)
ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Size:
    """A named workload, the one vocabulary of sizes every op's ``sample`` reads (each op takes what applies).

    ``height``/``width`` are the op's feature map (tokens per side; for the decoder and the loss, the 1/4-scale
    map), ``channels`` the embedding dim C, ``heads`` nH (d = C / nH), ``window`` the window side, ``shift`` the
    shift (0: none), ``classes`` K. ``global_semantic``: the semantic attention runs over all tokens.
    """
    name: str
    batch: int
    height: int
    width: int
    channels: int
    heads: int
    window: int = 7
    shift: int = 0
    classes: int = 19
    global_semantic: bool = False


SIZES: dict[str, Size] = {
    # CPU-sized: info's auto choices, the CPU microbenchmarks, smoke tests
    "tiny": Size("tiny", batch=1, height=14, width=14, channels=32, heads=1, window=7, shift=3, classes=19),
    # Swin-T stage 1 at batch 8, ADE20K classes: the GPU microbenchmarks
    "swin_t_stage1": Size("swin_t_stage1", batch=8, height=56, width=56, channels=96, heads=3, window=7, shift=3,
                          classes=150),
}


def _map(value: Any, fn: Callable[[Tensor], Any]) -> Any:
    """``fn`` applied to a tensor, or to every tensor of a list/tuple; anything else as is."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)(fn(v) if isinstance(v, Tensor) else v for v in value)
    return value


def shapes(args: Sequence[Any]) -> tuple:
    """``args`` with every tensor replaced by its shape (a list of tensors by a list of shapes): what
    ``register_flop_formula`` hands a FLOP formula."""
    return tuple(_map(a, lambda t: tuple(t.shape)) for a in args)


@dataclass(frozen=True)
class Call:
    """One call of an op's public function: every argument by keyword (tensors included, ``backend`` excluded).

    ``grads`` names the arguments that take gradients (a list argument: each of its tensors). Tensors are built
    as given (float32 on the CPU by the cases); ``to`` gives a copy in another floating dtype and device.
    """
    kwargs: Mapping[str, Any]
    grads: tuple[str, ...] = ()

    def to(self, dtype: Optional[torch.dtype] = None, device: Optional[torch.device | str] = None) -> "Call":
        """Floating tensors cast to ``dtype`` (integer ones, e.g. labels, keep theirs), all moved to ``device``;
        fresh leaves, the ``grads`` ones requiring grad."""
        def move(name: str, t: Tensor) -> Tensor:
            t = t.detach().to(device=device or t.device)  # a new leaf; strides kept when nothing changes
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            return t.detach().requires_grad_(name in self.grads and t.is_floating_point())
        return replace(self, kwargs={k: _map(v, lambda t, k=k: move(k, t)) for k, v in self.kwargs.items()})

    def leaves(self) -> list[tuple[str, Tensor]]:
        """``(name, tensor)`` of every tensor that takes a gradient, in ``grads`` order (``maps[1]`` in a list)."""
        out = []
        for name in self.grads:
            value = self.kwargs[name]
            if isinstance(value, Tensor):
                out.append((name, value))
            elif value is not None:
                out.extend((f"{name}[{i}]", t) for i, t in enumerate(value))
        return out

    def tensors(self) -> list[Tensor]:
        """Every tensor argument, list members included."""
        out = []
        for value in self.kwargs.values():
            if isinstance(value, Tensor):
                out.append(value)
            elif isinstance(value, (list, tuple)):
                out.extend(v for v in value if isinstance(v, Tensor))
        return out

    def with_(self, **kwargs) -> "Call":
        """A copy with some keyword arguments replaced or added."""
        return replace(self, kwargs={**self.kwargs, **kwargs})


@dataclass(frozen=True)
class Case:
    """An awkward test case: ``make()`` builds float32 CPU inputs (the suite seeds the RNG before each call).

    ``dtypes``: the dtypes the case runs in besides float32 (for the backends that support them) — keep the
    low-precision ones to a few cases, the interpreter is slow. ``backends``: None for every backend of the op,
    else those it applies to. ``note``: why the case is awkward, one line.
    """
    name: str
    make: Callable[[], Call]
    dtypes: tuple[torch.dtype, ...] = FP32
    backends: Optional[tuple[str, ...]] = None
    note: str = ""


def outputs(out) -> tuple[Tensor, ...]:
    """An op's result as a tuple of tensors: most ops return one tensor, some (``add_layer_norm``) a tuple."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _twice(flops: Callable[..., int]) -> Callable[..., int]:
    return lambda *args: 2 * flops(*args)


@dataclass(frozen=True)
class OpSpec:
    """Everything generic code needs to know about one op (see the module docstring)."""
    name: str
    preference: tuple[str, ...]
    dtypes: Mapping[str, tuple[torch.dtype, ...]]
    sample: Callable[[Size, torch.dtype, torch.device | str], Call]
    flops: Callable[..., int]
    cases: tuple[Case, ...]
    backward_flops: Optional[Callable[..., int]] = None
    # compare outputs and gradients divided by the reference's largest magnitude (the loss: its gradient carries
    # 1/pixels, so an absolute bound would pass trivially)
    unit_scale: bool = False
    # results whose bounds grow with their magnitude (sums over many tokens, e.g. "d bias_table"); None: all
    magnitude_scaled: Optional[tuple[str, ...]] = None
    # what the op's public function is called for in a sentence, for the docs and info
    summary: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # op-specific data other code may read, by name

    @property
    def op_module(self):
        return importlib.import_module(f"{__package__}.{self.name}.op")

    @property
    def function(self) -> Callable:
        """The public function ``semask_kernels.<name>``."""
        return getattr(self.op_module, self.name)

    @property
    def custom_op(self):
        """``torch.ops.semask_kernels.<name>`` (arguments: ``arguments(...)`` then the backend name)."""
        self.op_module  # registers it
        return getattr(torch.ops.semask_kernels, self.name)

    def arguments(self, call: Call) -> tuple:
        """The validated backend arguments of ``call`` (what ``forward``/``supports`` of a backend receive)."""
        return tuple(self.op_module.arguments(**call.kwargs))

    def run(self, call: Call, backend: str = "auto"):
        """The public function on ``call``."""
        return self.function(**call.kwargs, backend=backend)

    def forward_flops(self, call: Call) -> int:
        """FLOPs of the forward of ``call``: the formula ``flop_counter`` uses."""
        return int(self.flops(*shapes(self.arguments(call))))

    def backward_flops_of(self, call: Call) -> int:
        formula = self.backward_flops or _twice(self.flops)
        return int(formula(*shapes(self.arguments(call))))

    def io_bytes(self, call: Call, output) -> int:
        """Minimal forward traffic: every input tensor read once, the output (each output) written once."""
        return sum(t.numel() * t.element_size() for t in (*call.tensors(), *outputs(output)))

    def backends_for(self, dtype: torch.dtype) -> list[str]:
        """The backends of this op that run ``dtype``, in ``preference`` order."""
        return [b for b in self.preference if dtype in self.dtypes.get(b, ())]


def register_flops(spec: OpSpec, forward_op, backward_op, backward_to_forward: Callable[..., tuple]) -> None:
    """Register ``spec.flops`` (and its backward) with ``torch.utils.flop_counter`` for the op's two custom ops.

    ``backward_to_forward(*bwd_args_as_shapes)`` maps the backward op's arguments (shapes) to the forward's.
    """
    from torch.utils.flop_counter import register_flop_formula
    backward = spec.backward_flops or _twice(spec.flops)
    register_flop_formula(forward_op)(lambda *args, **kwargs: spec.flops(*args))
    register_flop_formula(backward_op)(lambda *args, **kwargs: backward(*backward_to_forward(*args)))


def specs() -> dict[str, OpSpec]:
    """Every op's spec, by name, found as ``semask_kernels/ops/<op>/spec.py`` (``SPEC``), sorted by name."""
    ops_path = importlib.import_module(__package__).__path__
    found = {}
    for module in sorted(pkgutil.iter_modules(ops_path), key=lambda m: m.name):
        if not module.ispkg or module.name.startswith("_"):
            continue
        spec = importlib.import_module(f"{__package__}.{module.name}.spec").SPEC
        if spec.name != module.name:
            raise ValueError(f"ops/{module.name}/spec.py: SPEC.name must be the folder's name {module.name!r}, "
                             f"got {spec.name!r}")
        found[spec.name] = spec
    return found


def spec(name: str) -> OpSpec:
    """The spec of op ``name``; a KeyError that lists the known ops otherwise."""
    table = specs()
    if name not in table:
        raise KeyError(f"no op {name!r}; known ops: {sorted(table)}")
    return table[name]

"""Backend registry and selection.

Every op has a list of backends in preference order. A backend is a forward and a backward function plus two
checks that return a *reason* (a string) when the backend cannot run, or ``None`` when it can:

- ``available()``: can it run at all in this process (extension built, GPU present, Triton importable)?
- ``supports(*args)``: can it run *these* arguments (device, dtype, sizes)? It receives the op's arguments and
  gives every reason that applies (``reasons(...)`` joins them), not just the first.

A fused backend is registered ``verified=False`` until its GPU tests (marked ``gpu``) have passed on GPU
hardware; ``auto`` skips it (unless ``SEMASK_ALLOW_UNVERIFIED=1``), asking for it by name still runs it.

The ``torch`` backend of each op is the fast plain-PyTorch path: a differentiable function (``plain``) that the
public op calls directly, outside the custom op, so autograd and ``torch.compile`` see ordinary torch ops. Its
``forward``/``backward`` exist only for calls through the custom op itself. The ``reference`` stays behind the
custom op (its gradient by recomputation): it is the ground truth that ``opcheck`` and the fused backends are
tested against, and it is never what ``auto`` runs.

``choose_backend(op, requested, *args)`` resolves ``"auto"`` (or ``SEMASK_BACKEND``) to the first backend
that can run, logging at debug level why each earlier one was skipped (and raising with all of them if none
can); a backend that was asked for by name and cannot run raises a ``RuntimeError`` that says why. Nothing here queries a device at import time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import _choice, _env

logger = logging.getLogger("semask_kernels")

BACKENDS = ("reference", "torch", "triton", "cuda")
# A *variant* is a further backend of an op named "<backend>.<variant>" (e.g. "triton.onepass"): new kernels
# land beside the verified ones as a variant (registered verified=False), selectable by name, listed, tested by
# the conformance suite and timed like any backend; ``base(name)`` is the backend it is a variant of.
Reason = Optional[str]
UNVERIFIED_NOTE = ("not yet verified on GPU hardware (its gpu-marked tests have not passed on a GPU): used only "
                   "when asked for by name or with SEMASK_ALLOW_UNVERIFIED=1")
INTERPRETER_NOTE = ("Triton runs under its CPU interpreter (TRITON_INTERPRET=1), which is for testing: "
                    "used only when asked for by name")


@dataclass(frozen=True)
class Backend:
    name: str
    forward: Callable
    backward: Callable
    available: Callable[[], Reason]
    supports: Callable[..., Reason]
    verified: bool = True
    plain: Optional[Callable] = None  # differentiable function run outside the custom op (the torch path)


def reasons(*found) -> Reason:
    """Every reason that is given (falsy entries are "no reason"), joined with "; ", or None: a ``supports()`` lists
    everything that stops its backend, not only the first thing.

        >>> reasons(None, "q is on cpu", False, "dtype float64 not supported")
        'q is on cpu; dtype float64 not supported'
    """
    given = [r for r in found if r]
    return "; ".join(given) if given else None


def _always() -> Reason:
    return None


def _anything(*args, **kwargs) -> Reason:
    return None


_REGISTRY: dict[str, dict[str, Backend]] = {}
_PREFERENCE: dict[str, tuple[str, ...]] = {}
_SHAPE_CLASS: dict[str, Callable[..., str]] = {}
PAIR = "/"  # "triton/cuda": the forward on triton, the backward on cuda (what auto passes to a custom op)


def base(name: str) -> str:
    """The backend a variant belongs to: ``base("triton.onepass") == "triton"``; a backend is its own base."""
    return name.split(".", 1)[0]


def _valid_name(name: str) -> bool:
    return name in BACKENDS or (base(name) in BACKENDS and _env.VARIANT_NAME.fullmatch(name) is not None)


def register_op(op: str, preference: tuple[str, ...], shape_class: Optional[Callable[..., str]] = None) -> None:
    """Declare an op and the order in which ``auto`` tries its backends. ``shape_class(*args)``: the key of the
    op's rows in the committed choice table (``_choice.py``); without it ``auto`` only uses the preference."""
    unknown = [b for b in preference if not _valid_name(b)]
    if unknown:
        raise ValueError(f"register_op({op!r}): unknown backends {unknown}; known: {BACKENDS}")
    _REGISTRY.setdefault(op, {})
    _PREFERENCE[op] = tuple(preference)
    if shape_class is not None:
        _SHAPE_CLASS[op] = shape_class


def register_backend(op: str, name: str, *, forward: Callable, backward: Callable,
                     available: Callable[[], Reason] = _always,
                     supports: Callable[..., Reason] = _anything, verified: bool = True,
                     plain: Optional[Callable] = None) -> None:
    """Register ``name`` as a backend of ``op`` (the op must have been declared with ``register_op``).
    ``verified=False``: its GPU tests have not passed on GPU hardware yet, so ``auto`` does not pick it.
    ``plain``: a differentiable function of the op's arguments that the public op calls directly."""
    if op not in _REGISTRY:
        raise KeyError(f"register_backend: op {op!r} is not declared; call register_op first")
    if not _valid_name(name):
        raise ValueError(f"register_backend: backend must be one of {BACKENDS} or a variant "
                         f"'<backend>.<variant>' of one, got {name!r}")
    _REGISTRY[op][name] = Backend(name, forward, backward, available, supports, verified, plain)


def register_module(op: str, name: str, module, *, verified: bool) -> None:
    """Register a backend module that follows the contract: ``forward``, ``backward``, ``available``,
    ``supports`` (every ``triton.py`` / ``cuda.py`` / ``torch_path.py`` of an op folder), and ``plain`` for the
    torch path."""
    register_backend(op, name, forward=module.forward, backward=module.backward, available=module.available,
                     supports=module.supports, verified=verified, plain=getattr(module, "plain", None))


def get_backend(op: str, name: str) -> Backend:
    try:
        return _REGISTRY[op][name]
    except KeyError:
        raise RuntimeError(f"{op}: backend {name!r} is not implemented for this op "
                           f"(implemented: {sorted(_REGISTRY.get(op, {}))})") from None


def names(op: str) -> list[str]:
    """Every backend name registered for ``op``: the backends in BACKENDS order, then its variants in the order
    they were registered."""
    registered = _REGISTRY.get(op, {})
    return [b for b in BACKENDS if b in registered] + [b for b in registered if b not in BACKENDS]


def _normalize(backend: str, op: str) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, one of {_env.BACKEND_NAMES}; got {type(backend).__name__}")
    name = backend.lower()
    if not _env.is_backend_name(name):
        variants = [b for b in names(op) if b not in BACKENDS]
        raise ValueError(f"backend must be one of {_env.BACKEND_NAMES}"
                         + (f" or a variant of {op} ({', '.join(variants)})" if variants else "")
                         + f", got {backend!r}")
    if name == "auto":
        name = _env.default_backend()
    return name


def why_not(op: str, name: str, *args) -> Reason:
    """The reason ``name`` cannot run ``op`` (on ``args`` if given), or None if it can."""
    if name not in _REGISTRY.get(op, {}):
        return f"no {name} implementation of {op}"
    impl = _REGISTRY[op][name]
    reason = impl.available()
    if reason is None and args:
        reason = impl.supports(*args)
    return reason


def _auto_reason(op: str, name: str, *args) -> Reason:
    """Why ``auto`` does not run ``name`` on ``args`` (cannot run, interpreted Triton, unverified), or None."""
    reason = why_not(op, name, *args)
    if reason is None and base(name) == "triton" and _env.triton_interpret():
        reason = INTERPRETER_NOTE
    if reason is None and not _REGISTRY[op][name].verified and not _env.allow_unverified():
        reason = UNVERIFIED_NOTE
    return reason


def _from_table(op: str, direction: str, *args) -> Optional[str]:
    """The committed choice table's backend for this call's (op, direction, shape class), if it names one that
    ``auto`` may run here (verified, able to run these arguments); else None and the preference order decides."""
    shape_class = _SHAPE_CLASS.get(op)
    if shape_class is None or not args:
        return None
    key = (op, direction, shape_class(*args))
    name = _choice.table().get(key)
    if name is None:
        return None
    reason = (f"no {name} implementation of {op}" if name not in _REGISTRY[op] else
              "not verified on GPU hardware (auto uses only verified backends from the choice table)"
              if not _REGISTRY[op][name].verified else _auto_reason(op, name, *args))
    if reason is None:
        return name
    if not torch.compiler.is_compiling():
        logger.debug("%s: choice table row %s names %r, which auto cannot run: %s; using the preference order",
                     op, key, name, reason)
    return None


def choose_backend(op: str, requested: str, *args, direction: str = "forward") -> str:
    """Resolve ``requested`` ("auto" or a backend name) to the backend that runs ``op``'s ``direction``
    ("forward" or "backward") on ``args``: a name as asked; ``auto`` from the committed choice table's row for the
    call's shape class, else the first backend of the preference order that can run."""
    name = _normalize(requested, op)
    if name != "auto":
        reason = why_not(op, name, *args)
        if reason is not None:
            raise RuntimeError(f"{op}: backend {name!r} was requested but cannot run: {reason}")
        return name
    chosen = _from_table(op, direction, *args)
    if chosen is not None:
        return chosen
    skipped = []
    for candidate in _PREFERENCE[op]:
        reason = _auto_reason(op, candidate, *args)
        if reason is None:
            return candidate
        skipped.append(f"{candidate}: {reason}")
        if not torch.compiler.is_compiling():  # dynamo cannot trace logging calls
            logger.debug("%s: skipping backend %r: %s", op, candidate, reason)
    # the reference supports everything, so this is a registration without one
    raise RuntimeError(f"{op}: no backend can run these arguments; " + " | ".join(skipped))


def choose_backends(op: str, requested: str, *args) -> tuple[str, str]:
    """(forward backend, backward backend) of ``op`` on ``args``: the same backend when one is asked for by name;
    with ``auto`` each direction is chosen on its own (``choose_backend``), so they may differ."""
    forward = choose_backend(op, requested, *args)
    if _normalize(requested, op) != "auto":
        return forward, forward
    return forward, choose_backend(op, requested, *args, direction="backward")


def pair(forward: str, backward: str) -> str:
    """The backend argument a custom op receives: one name, or "forward/backward" when they differ."""
    return forward if forward == backward else f"{forward}{PAIR}{backward}"


def resolve(op: str, backend: str, *args, direction: str = "forward") -> str:
    """The backend a custom op's kernel runs in ``direction``. The public functions pass what
    ``choose_backends`` chose (a name, or a "forward/backward" pair; returned as is, no second check); a
    TorchScript or FX graph calls the registered op directly with the module's own setting, often "auto", which
    is resolved here on the op's arguments."""
    if PAIR in backend:
        forward, backward = backend.split(PAIR, 1)
        return forward if direction == "forward" else backward
    if backend in _REGISTRY.get(op, {}):
        return backend
    return choose_backend(op, backend, *args, direction=direction)


def available_backends() -> dict[str, dict[str, tuple[bool, str]]]:
    """``{op: {backend: (ok, reason)}}`` for every op and every backend name (and every variant the op
    registers), in this process.

    This answers "could it run at all here", not for a particular input: a backend that is available may still
    decline a given tensor (for example a CPU tensor for the CUDA backend).
    """
    table = {}
    for op in sorted(_REGISTRY):
        table[op] = {}
        for name in list(BACKENDS) + [b for b in names(op) if b not in BACKENDS]:
            reason = why_not(op, name)
            note = "available"
            if reason is None and base(name) == "triton" and _env.triton_interpret():
                note = "available only under the interpreter (TRITON_INTERPRET=1): CPU tensors, by name"
            elif reason is None and not _REGISTRY[op][name].verified:
                note = "available, but " + UNVERIFIED_NOTE
            table[op][name] = (reason is None, reason or note)
    return table


def ops() -> list[str]:
    return sorted(_REGISTRY)

"""Reading a pickle of numpy arrays (detectron2's ``.pkl`` weights) without running code and without memory the file
did not fill.

:class:`NumpyOnlyUnpickler` resolves only the globals a pickled numpy array needs, and resolves them to stand-ins
of this module, never to numpy's own constructors:

- declaring an array allocates nothing. ``numpy.ndarray`` is :class:`DeclaredArray`: ``np.ndarray(shape, dtype)``
  (REDUCE, INST, OBJ), ``ndarray.__new__`` (NEWOBJ / NEWOBJ_EX) and ``_reconstruct(ndarray, shape, dtype)`` give an
  empty declaration; only ``__setstate__`` (BUILD) with the array's bytes, read from the file and exactly as many as its
  shape and dtype need, makes it an array. A declaration left unfilled or filled with partial state is refused
  when the weights are read (:meth:`DeclaredArray.filled`), so no array holds uninitialized memory;
- ``_frombuffer`` and ``scalar`` (protocol-5 arrays, numpy scalars) copy bytes of the file, sizes checked;
- dtypes are :class:`DeclaredDtype` (numeric kinds only, plain byte-order state);
- any declared size is bounded by the file's: before unpickling, every counted opcode (bytes, strings, frames)
  is checked against the bytes that remain (:func:`check_counts`), and an array declaring more bytes than the
  whole file is refused at its declaration.

Any other global (``os.system``, ``builtins.eval``, a class of some package) raises :class:`UnsafePickleError`
before it could be called.
"""
from __future__ import annotations

import codecs
import io
import math
import pickle
import pickletools
from collections import OrderedDict

import numpy as np

KINDS = "biufc"  # numeric dtype kinds a weight file may declare (no objects, strings, records, datetimes)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that needs a global other than numpy array reconstruction; nothing from it was executed."""


def _refuse(name: str, what: str) -> ValueError:
    return ValueError(f"{name} is not a readable detectron2 .pkl (a pickle of numpy arrays): {what}")


class DeclaredDtype:
    """``numpy.dtype`` as the reader resolves it: a numeric dtype spelled by a string, with a byte-order state."""

    def __init__(self, spec=None, align=False, copy=False):
        self.name = type(self).file
        if not isinstance(spec, str):
            raise _refuse(self.name, f"a dtype is spelled {type(spec).__name__} {spec!r:.80}, expected a string "
                                     "such as 'f4'")
        try:
            self.dtype = np.dtype(spec)
        except TypeError as e:
            raise _refuse(self.name, f"unknown dtype {spec!r:.80}") from e
        if self.dtype.kind not in KINDS or self.dtype.fields is not None or self.dtype.subdtype is not None:
            raise _refuse(self.name, f"dtype {spec!r:.80} is not a plain numeric dtype (kinds {KINDS!r})")

    def __setstate__(self, state):
        # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("<", ">", "|", "=")
                and state[2] is None and state[3] is None and state[4] is None and state[7] == 0):
            raise _refuse(self.name, f"dtype state {state!r:.120} is not a plain numeric dtype's")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype_of(value, name: str) -> np.dtype:
    if isinstance(value, DeclaredDtype):
        return value.dtype
    raise _refuse(name, f"expected a dtype, got {type(value).__name__}")


def _nbytes(shape, dtype: np.dtype, name: str) -> int:
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise _refuse(name, f"an array shape must be a tuple of non-negative ints, got {shape!r:.80}")
    return math.prod(shape) * dtype.itemsize


def _raw_bytes(data, name: str) -> bytes:
    if isinstance(data, str):  # Python 2 pickles: the array bytes as latin-1 text
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray)):
        raise _refuse(name, f"array data must be bytes from the file, got {type(data).__name__} (object arrays and "
                            "external buffers are not weights)")
    return bytes(data)


class DeclaredArray:
    """``numpy.ndarray`` as the reader resolves it: a declaration (``np.ndarray(shape, dtype)``,
    ``ndarray.__new__``, ``_reconstruct``) that allocates nothing until ``__setstate__`` fills it with bytes of
    the file. :meth:`filled` returns the array or refuses an unfilled declaration."""

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.array = None
        if args:  # np.ndarray(shape, dtype=float, buffer=None, ...): bound the size it declares by the file's
            shape = tuple(args[0]) if isinstance(args[0], (tuple, list)) else (args[0],)
            dtype = _dtype_of(args[1], cls.file) if len(args) > 1 else np.dtype(float)
            cls.check_size(_nbytes(shape, dtype, cls.file))
        if len(args) > 2 or kwargs:
            raise _refuse(cls.file, "an ndarray built on a buffer or with strides; numpy writes arrays as "
                                    "their bytes in the array's state")
        return self

    def __init__(self, *args, **kwargs):
        pass

    @classmethod
    def check_size(cls, nbytes: int) -> None:
        if nbytes > cls.size:
            raise _refuse(cls.file, f"an array declares {nbytes} bytes, more than the whole file ({cls.size} bytes)")

    def __setstate__(self, state):
        name = type(self).file
        if self.array is not None:
            raise _refuse(name, "an array's state is set twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _refuse(name, f"an array's state must be (version, shape, dtype, is_fortran, data), got "
                                f"{type(state).__name__} {state!r:.80}")
        shape, dtype, fortran, data = state[-4:]
        dtype = _dtype_of(dtype, name)
        nbytes, raw = _nbytes(shape, dtype, name), _raw_bytes(data, name)
        if len(raw) != nbytes:
            raise _refuse(name, f"an array of shape {shape} and dtype {dtype} needs {nbytes} bytes, its state "
                                f"holds {len(raw)}")
        self.array = _from_bytes(raw, dtype, shape, "F" if fortran else "C")

    def filled(self, what: str) -> np.ndarray:
        if self.array is None:
            raise _refuse(type(self).file, f"{what} is declared but never filled with data (its bytes are not in "
                                           "the file; loading it would give uninitialized memory)")
        return self.array


def _from_bytes(raw: bytes, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    return np.frombuffer(raw, dtype=dtype, count=math.prod(shape)).reshape(shape, order=order).copy()


def _globals(name: str, size: int) -> dict:
    """(module, name) -> the stand-in the reader gives that global, for a file called ``name`` of ``size`` bytes."""
    array = type("ndarray", (DeclaredArray,), {"file": name, "size": size})
    dtype = type("dtype", (DeclaredDtype,), {"file": name})

    def reconstruct(cls, shape=(0,), typecode=b"b"):
        if cls is not array:
            raise _refuse(name, f"_reconstruct of {cls!r:.80}, expected numpy.ndarray")
        return array()

    def frombuffer(buf, dtype_, shape, order):
        dt = _dtype_of(dtype_, name)
        raw = _raw_bytes(buf, name)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
        if len(raw) != _nbytes(shape, dt, name) or order not in ("C", "F"):
            raise _refuse(name, f"a buffer of {len(raw)} bytes does not hold an array of shape {shape} and dtype "
                                f"{dt} in order {order!r:.10}")
        return _from_bytes(raw, dt, shape, order)

    def scalar(dtype_, data=None):
        dt = _dtype_of(dtype_, name)
        raw = _raw_bytes(data, name)
        if len(raw) != dt.itemsize:
            raise _refuse(name, f"a {dt} scalar needs {dt.itemsize} bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype=dt)[0].copy()

    def encode(text, encoding="latin1"):
        if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
            raise _refuse(name, f"_codecs.encode of {type(text).__name__} as {encoding!r:.20}, expected latin-1 text")
        return text.encode("latin-1")

    def empty_bytes():  # protocols 2 and below write b"" (an empty array's data) as bytes()
        return b""

    out = {("numpy", "ndarray"): array, ("numpy", "dtype"): dtype, ("collections", "OrderedDict"): OrderedDict,
           ("_codecs", "encode"): encode, ("__builtin__", "bytes"): empty_bytes, ("builtins", "bytes"): empty_bytes}
    for core in ("numpy.core", "numpy._core"):
        out[(core + ".multiarray", "_reconstruct")] = reconstruct
        out[(core + ".multiarray", "scalar")] = scalar
        out[(core + ".numeric", "_frombuffer")] = frombuffer
    return out


ALLOWED_GLOBALS = frozenset(_globals("", 0))


def check_counts(data: bytes, name: str) -> None:
    """Refuse a pickle whose counted opcodes (bytes, strings, frames) declare more bytes than remain in it, before
    the unpickler allocates them. Raises ``ValueError`` (a malformed stream too)."""
    try:
        frames = [(arg, pos) for op, arg, pos in pickletools.genops(io.BytesIO(data)) if op.name == "FRAME"]
    except ValueError as e:  # pickletools reads each counted argument and says when fewer bytes remain
        raise _refuse(name, f"{e} (truncated, or sizes larger than the file)") from e
    for arg, pos in frames:
        if arg > len(data) - pos:
            raise _refuse(name, f"a frame at byte {pos} declares {arg} bytes, {len(data) - pos} remain")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`, to the stand-ins of this module; any other global
    raises :class:`UnsafePickleError` when the pickle asks for it, before it could be called. Text of Python 2
    pickles is decoded as latin-1 (detectron2's convention). ``size``: the file's size, which bounds every array."""

    def __init__(self, file, *, name: str = "pickle", size: int | None = None):
        super().__init__(file, encoding="latin1")
        self.name = name
        self._resolved = _globals(name, size if size is not None else 1 << 62)

    def find_class(self, module: str, name: str):
        found = self._resolved.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"refusing to load {self.name}: it asks for the global {module}.{name}, and a detectron2 weight "
                f"file may only hold numpy arrays in plain containers (allowed: "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}); loading it could run code")
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing to load {self.name}: it holds a persistent reference ({pid!r:.80}), "
                                "which a detectron2 .pkl of numpy arrays never does")


def loads(data: bytes, name: str = "pickle"):
    """The object of a numpy-only pickle ``data``; arrays are :class:`DeclaredArray` until :meth:`filled`."""
    check_counts(data, name)
    return NumpyOnlyUnpickler(io.BytesIO(data), name=name, size=len(data)).load()

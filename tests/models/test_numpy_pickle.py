"""The detectron2 .pkl reader fills every array from bytes of the file: every pickle opcode path that can create a
numpy array without data (REDUCE of np.ndarray, NEWOBJ / NEWOBJ_EX, INST / OBJ, np.empty / ndarray.__new__ globals,
``_reconstruct`` with no state, BUILD with partial or foreign state) is refused, and so is any size declared beyond
the file's. Files numpy and Python 2 write (protocols 2, 4, 5, Fortran order, big-endian, scalars) still load."""
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch

from semask_models.checkpoints.detectron2 import UnsafePickleError, read_pkl
from semask_models.checkpoints.numpy_pickle import ALLOWED_GLOBALS

# ------------------------------------------------------------------------------------- a tiny pickle assembler
MARK, TUPLE, REDUCE, BUILD, STOP, NONE, TRUE, FALSE = b"(", b"t", b"R", b"b", b".", b"N", b"\x88", b"\x89"
NEWOBJ, NEWOBJ_EX, EMPTY_DICT, EMPTY_TUPLE, SETITEM = b"\x81", b"\x92", b"}", b")", b"s"


def g(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(n):
    return b"J" + struct.pack("<i", n)


def big(n):  # LONG1: any int
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def raw(data):
    return b"B" + struct.pack("<I", len(data)) + data


def tup(*items):
    return MARK + b"".join(items) + TUPLE


def dtype(spec="f4", order="<", flags=0):
    return (g("numpy", "dtype") + tup(s(spec), FALSE, TRUE) + REDUCE
            + tup(i(3), s(order), NONE, NONE, NONE, i(-1), i(-1), i(flags)) + BUILD)


def shape(*dims):
    return tup(*(big(d) for d in dims))


def reconstruct(core="numpy.core"):
    return g(core + ".multiarray", "_reconstruct") + tup(g("numpy", "ndarray"), tup(i(0)), b"C\x01b") + REDUCE


def state(dims, data, spec="f4", fortran=False, version=True):
    items = (shape(*dims), dtype(spec), TRUE if fortran else FALSE, raw(data))
    return tup(i(1), *items) if version else tup(*items)


def weights_file(tmp_path, array_ops, proto=2):
    """A .pkl of {"model": {"w": <array_ops>}}."""
    body = (EMPTY_DICT + s("model") + EMPTY_DICT + s("w") + array_ops + SETITEM + SETITEM + STOP)
    path = tmp_path / "w.pkl"
    path.write_bytes(b"\x80" + bytes([proto]) + body)
    return path


F32 = np.arange(6, dtype=np.float32).tobytes()


# ------------------------------------------------------------------------------------------- files that load

def test_the_assembler_writes_a_loadable_array(tmp_path):
    """The hostile cases below differ from this one only in the part under test."""
    sd = read_pkl(weights_file(tmp_path, reconstruct() + state((2, 3), F32) + BUILD))
    assert torch.equal(sd["w"], torch.arange(6, dtype=torch.float32).view(2, 3))
    sd = read_pkl(weights_file(tmp_path, reconstruct("numpy._core") + state((3, 2), F32, fortran=True,
                                                                            version=False) + BUILD))
    assert torch.equal(sd["w"], torch.arange(6, dtype=torch.float32).view(2, 3).t())


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_numpy_written_files_load(tmp_path, proto):
    arrays = {"f": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
              "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
              "big_endian": np.arange(5, dtype=">i4"), "bool": np.array([True, False]),
              "u8": np.arange(4, dtype=np.uint8), "empty": np.zeros((0, 3), np.float32),
              "scalar": np.float32(2.5), "i64_scalar": np.int64(-7)}
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"model": OrderedDict(arrays), "__author__": "x"}, protocol=proto))
    sd = read_pkl(path)
    for key, value in arrays.items():
        expected = np.asarray(value)
        assert torch.equal(sd[key], torch.from_numpy(expected.astype(expected.dtype.newbyteorder("=")))), key


def test_python2_text_array_data_loads(tmp_path):
    """Python 2 pickles keep the array bytes as text, decoded as latin-1."""
    text = F32.decode("latin-1")
    ops = reconstruct() + tup(i(1), shape(6), dtype(), FALSE, s(text)) + BUILD
    assert torch.equal(read_pkl(weights_file(tmp_path, ops))["w"], torch.arange(6, dtype=torch.float32))


# --------------------------------------------------------------------------------- arrays without their data

UNFILLED = {
    "reduce_ndarray": g("numpy", "ndarray") + tup(shape(2, 3), dtype()) + REDUCE,
    "newobj_ndarray": g("numpy", "ndarray") + tup(shape(2, 3), dtype()) + NEWOBJ,
    "newobj_ex_ndarray": g("numpy", "ndarray") + tup(shape(2, 3), dtype()) + EMPTY_DICT + NEWOBJ_EX,
    "inst_ndarray": MARK + shape(2, 3) + dtype() + b"inumpy\nndarray\n",  # protocol 0/1 INST
    "obj_ndarray": MARK + g("numpy", "ndarray") + shape(2, 3) + dtype() + b"o",  # protocol 1 OBJ
    "reconstruct_without_state": reconstruct(),
    "reconstruct_numpy2_without_state": reconstruct("numpy._core"),
}


@pytest.mark.parametrize("case", sorted(UNFILLED))
def test_declared_but_unfilled_arrays_are_refused(tmp_path, case):
    path = weights_file(tmp_path, UNFILLED[case], proto=4 if "newobj_ex" in case else 2)
    with pytest.raises(ValueError, match="weight 'w' is declared but never filled"):
        read_pkl(path)


@pytest.mark.parametrize("name", ["empty", "zeros", "ndarray.__new__", "frombuffer", "fromfile", "load"])
def test_other_array_constructors_are_unsafe_globals(tmp_path, name):
    with pytest.raises(UnsafePickleError, match=rf"numpy\.{name}"):
        read_pkl(weights_file(tmp_path, g("numpy", name) + tup(shape(2), dtype()) + REDUCE))
    assert ("numpy", name) not in ALLOWED_GLOBALS


BAD_STATE = {
    "short_data": (state((2, 3), F32[:-4]), "needs 24 bytes, its state holds 20"),
    "long_data": (state((2, 3), F32 + b"\0" * 4), "needs 24 bytes, its state holds 28"),
    "no_data": (tup(i(1), shape(2, 3), dtype(), FALSE), "expected a dtype, got tuple"),  # read as 4-item state
    "three_items": (tup(shape(2, 3), dtype(), FALSE), "state must be"),
    "dict_state": (EMPTY_DICT, "state must be"),
    "object_data": (tup(i(1), shape(2), dtype(), FALSE, MARK + NONE + NONE + b"l"), "must be bytes from the file"),
    "negative_shape": (state((2, 3), F32).replace(shape(2, 3), tup(i(-2), i(-3))), "non-negative ints"),
    "object_dtype": (tup(i(1), shape(1), dtype("O", "|"), FALSE, raw(b"\0" * 8)), "not a plain numeric dtype"),
    "dtype_flags": (tup(i(1), shape(1), dtype(flags=63), FALSE, raw(b"\0" * 4)), "is not a plain numeric dtype"),
    "dtype_not_a_dtype": (tup(i(1), shape(1), s("f4"), FALSE, raw(b"\0" * 4)), "expected a dtype, got str"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATE))
def test_build_with_partial_or_foreign_state_is_refused(tmp_path, case):
    ops, message = BAD_STATE[case]
    with pytest.raises(ValueError, match=message):
        read_pkl(weights_file(tmp_path, reconstruct() + ops + BUILD))


def test_state_set_twice_and_reconstruct_of_another_class_are_refused(tmp_path):
    ops = reconstruct() + state((6,), F32) + BUILD + state((6,), F32) + BUILD
    with pytest.raises(ValueError, match="set twice"):
        read_pkl(weights_file(tmp_path, ops))
    ops = g("numpy.core.multiarray", "_reconstruct") + tup(g("collections", "OrderedDict"), tup(i(0)), b"C\x01b")
    with pytest.raises(ValueError, match="expected numpy.ndarray"):
        read_pkl(weights_file(tmp_path, ops + REDUCE))


def test_frombuffer_and_scalar_sizes_are_checked(tmp_path):
    fb = g("numpy._core.numeric", "_frombuffer")
    ok = fb + tup(raw(F32), dtype(), shape(2, 3), s("C")) + REDUCE
    assert read_pkl(weights_file(tmp_path, ok))["w"].shape == (2, 3)
    with pytest.raises(ValueError, match="does not hold an array of shape"):
        read_pkl(weights_file(tmp_path, fb + tup(raw(F32), dtype(), shape(4, 3), s("C")) + REDUCE))
    scalar = g("numpy.core.multiarray", "scalar")
    with pytest.raises(ValueError, match="scalar needs 8 bytes, got 4"):
        read_pkl(weights_file(tmp_path, scalar + tup(dtype("f8"), raw(b"\0" * 4)) + REDUCE))


# ------------------------------------------------------------------------------- sizes beyond the file's size

def test_a_tiny_file_cannot_declare_gigabytes(tmp_path):
    """The 157-byte repro: np.ndarray((2**30,), f8) declares 8 GiB; refused at the declaration (nothing allocated)."""
    for ops in (g("numpy", "ndarray") + tup(shape(1 << 30), dtype("f8")) + REDUCE,
                g("numpy", "ndarray") + tup(shape(1 << 30), dtype("f8")) + NEWOBJ):
        path = weights_file(tmp_path, ops)
        assert path.stat().st_size < 200
        with pytest.raises(ValueError, match=r"declares 8589934592 bytes, more than the whole file"):
            read_pkl(path)
    with pytest.raises(ValueError, match="needs 8589934592 bytes, its state holds 24"):
        read_pkl(weights_file(tmp_path, reconstruct() + state((1 << 30,), F32, spec="f8") + BUILD))


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x96", b"\x8d"])  # BINBYTES8, BYTEARRAY8, BINUNICODE8
def test_counted_opcodes_beyond_the_file_are_refused_before_allocation(tmp_path, opcode):
    path = weights_file(tmp_path, opcode + struct.pack("<Q", 1 << 40) + b"abc", proto=5)
    with pytest.raises(ValueError, match="truncated, or sizes larger than the file"):
        read_pkl(path)


def test_a_frame_beyond_the_file_is_refused(tmp_path):
    path = tmp_path / "w.pkl"
    path.write_bytes(b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + EMPTY_DICT + STOP)
    with pytest.raises(ValueError, match="declares 1099511627776 bytes"):
        read_pkl(path)


# ------------------------------------------------------------------------------------------ clear messages

def test_messages_name_what_is_wrong(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"model": None}))
    with pytest.raises(ValueError, match="its 'model' entry is a NoneType, expected a dict"):
        read_pkl(path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        read_pkl(tmp_path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pkl")
    with pytest.raises(ValueError, match="is a PyTorch zip checkpoint.*name it .pth"):
        read_pkl(tmp_path / "zip.pkl")

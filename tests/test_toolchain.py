"""The CUDA build's host compiler must link libstdc++ dynamically: on an H200 machine whose default ``g++`` was a
wrapper linking it statically, every C++ error raised through the extension crashed the process (20 gpu tests;
benchmarks/results/gpu/2026-11-29-h200-99220a5-rerun/build.log). The build probes the compiler and switches."""
import os
import shutil
import stat

import pytest

from semask_kernels import _toolchain

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ on PATH")


def _wrapper(folder, name="g++"):
    """A g++ that links libstdc++ statically, as that machine's /opt/gcc/bin/g++ did."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\nexec {shutil.which('g++')} -static-libstdc++ \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_the_probe_tells_static_from_dynamic_libstdcxx(tmp_path):
    static = _wrapper(tmp_path / "bin")
    if _toolchain.links_libstdcxx_statically(static) is None:
        pytest.skip("this g++ cannot link libstdc++ statically (no libstdc++.a)")
    assert _toolchain.links_libstdcxx_statically(static) is True
    assert _toolchain.links_libstdcxx_statically(shutil.which("g++")) is False
    assert _toolchain.links_libstdcxx_statically(str(tmp_path / "no-such-compiler")) is None


def test_a_static_default_compiler_is_replaced_by_a_dynamic_one(tmp_path):
    static = _wrapper(tmp_path / "bin")
    if _toolchain.links_libstdcxx_statically(static) is not True:
        pytest.skip("this g++ cannot link libstdc++ statically (no libstdc++.a)")
    environ = {"CXX": static, "CC": str(tmp_path / "bin" / "gcc"),
               "PATH": os.pathsep.join([str(tmp_path / "bin"), os.path.dirname(shutil.which("g++"))])}
    update, message = _toolchain.choose_host_compiler(environ)
    assert _toolchain.links_libstdcxx_statically(update["CXX"]) is False
    assert os.path.basename(update["CC"]).startswith("gcc") and "links libstdc++ statically" in message
    assert _toolchain.choose_host_compiler({"CXX": shutil.which("g++"), "PATH": ""}) == ({}, None)


def test_no_dynamic_compiler_is_a_clear_error(tmp_path, monkeypatch):
    static = _wrapper(tmp_path / "bin")
    if _toolchain.links_libstdcxx_statically(static) is not True:
        pytest.skip("this g++ cannot link libstdc++ statically (no libstdc++.a)")
    environ = {"CXX": static, "PATH": str(tmp_path / "bin")}
    # every other compiler found (the machine's own /usr/bin ones too) behaves like the wrapper
    monkeypatch.setattr(_toolchain, "links_libstdcxx_statically", lambda cxx: True)
    with pytest.raises(RuntimeError, match="links libstdc\\+\\+ statically.*Set CXX and CC"):
        _toolchain.choose_host_compiler(environ)

"""The host C++ compiler of the CUDA extension build (used by setup.py, loaded by file path: no torch import).

The extension must share torch's C++ runtime: a C++ error raised by torch (a failed ``TORCH_CHECK``) unwinds
through the extension's frames, and an extension linked with its *own* static copy of libstdc++ crashes the
process there instead of raising a Python ``RuntimeError``. Some toolchains link libstdc++ statically by
default (a wrapper ``g++`` adding ``-static-libstdc++``, as on one GPU machine this was tested on), so the build
probes the compiler and picks one that links libstdc++ dynamically.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile

PROBE = "int semask_probe(int x) { if (x) throw x; return 0; }\n"


def links_libstdcxx_statically(cxx: str) -> bool | None:
    """Whether ``cxx`` puts libstdc++ into a shared library instead of linking ``libstdc++.so`` (None: the
    probe could not build, so nothing is known)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = os.path.join(tmp, "probe.cpp"), os.path.join(tmp, "probe.so")
        with open(src, "w") as f:
            f.write(PROBE)
        try:
            done = subprocess.run([*shlex.split(cxx), "-shared", "-fPIC", src, "-o", lib], capture_output=True,
                                  timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0 or not os.path.exists(lib):
            return None
        with open(lib, "rb") as f:
            data = f.read()
    # a dynamically linked C++ library names libstdc++.so.N among its needed libraries (its .dynstr)
    return b"libstdc++.so" not in data


def _c_compiler_beside(cxx: str) -> str | None:
    """The C driver of the same toolchain as ``cxx`` (g++ -> gcc, c++ -> cc, clang++ -> clang)."""
    folder, name = os.path.split(cxx)
    for cpp, c in (("g++", "gcc"), ("c++", "cc"), ("clang++", "clang")):
        if name.endswith(cpp) or cpp + "-" in name:
            candidate = os.path.join(folder, name.replace(cpp, c))
            if shutil.which(candidate):
                return candidate
    return None


def choose_host_compiler(environ=os.environ) -> tuple[dict, str | None]:
    """(environment updates, message) that make the build use a C++ compiler linking libstdc++ dynamically.

    Keeps ``$CXX`` (default ``c++``) when it does, or when nothing can be told; otherwise takes the first
    ``g++`` / ``c++`` on PATH or in /usr/bin that does, with its C driver as ``CC`` (nvcc's host compiler).
    Raises RuntimeError when every compiler found links libstdc++ statically.
    """
    current = environ.get("CXX", "c++")
    if links_libstdcxx_statically(current) is not True:
        return {}, None
    seen = {os.path.realpath(shutil.which(current) or current)}
    candidates = []
    for name in ("g++", "c++"):
        for folder in environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                candidates.append(path)
    for cxx in candidates:
        if links_libstdcxx_statically(cxx) is False:
            update = {"CXX": cxx}
            cc = _c_compiler_beside(cxx)
            if cc:
                update["CC"] = cc
            return update, (f"CXX={current} links libstdc++ statically (C++ errors from torch would crash the "
                            f"process in the extension); building with CXX={cxx}" + (f" CC={cc}" if cc else ""))
    raise RuntimeError(f"CXX={current} links libstdc++ statically, so a C++ error raised by torch would crash the "
                       f"process inside the extension, and no other g++/c++ found links it dynamically "
                       f"(tried: {', '.join(candidates) or 'none'}). Set CXX and CC to a compiler that does.")

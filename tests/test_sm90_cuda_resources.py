"""The CUDA kernels of the built extension, read without a GPU: every kernel has sm_90 machine code, and its
registers, stack frame, local and static shared memory stay within what an H100/H200 runs (the resource table
that ``cuobjdump --dump-resource-usage`` prints).

Spills are bounded through the stack frame, which holds them: ``nvcc -Xptxas -v`` (nvcc 13.0, sm_90) reports
small spills, at most 40 B per thread, in some CUDA-core row kernels and in the bf16/fp16 tensor-core backward
(d = 32, 64, 128); the allowance below is that, with room, and a kernel spilling more fails here.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from semask_kernels import _ext

STATIC_SHARED_LIMIT = 48 * 1024  # static __shared__ per block; larger tiles are dynamic shared memory
MAX_REGISTERS = 255
# Stack frame per thread (bytes): the small spills above and per-thread arrays live there. Largest measured: 32 B.
MAX_STACK = 64
FAMILIES = ("prior_map_decode", "upsample_cross_entropy", "swa2tc14forward_kernel", "swa2tc15backward_kernel",
            "row_kernel", "col_kernel")


def _cuobjdump() -> str | None:
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        import triton  # its NVIDIA backend ships cuobjdump
    except ImportError:
        return None
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else None


def _resource_table() -> dict[str, dict[str, int]]:
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (neither on PATH nor in Triton's package)")
    library = Path(_ext._MODULE.__file__)
    text = subprocess.run([tool, "--dump-resource-usage", str(library)], capture_output=True, text=True,
                          check=True, timeout=300).stdout
    table, arch = {}, None
    for line in text.splitlines():
        if m := re.match(r"\s*arch = (sm_\d+a?)", line):
            arch = m[1]
        elif m := re.match(r"\s*Function (\S+):", line):
            name = m[1]
        elif line.strip().startswith("REG:"):
            fields = dict(re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line))
            table[f"{arch} {name}"] = {k: int(v) for k, v in fields.items()}
    return table


pytestmark = pytest.mark.skipif(not _ext.HAS_CUDA_EXT, reason=f"CUDA extension not built: {_ext.EXT_ERROR}")


def test_every_kernel_has_sm90_code_within_the_limits():
    table = _resource_table()
    archs = {key.split()[0] for key in table}
    assert "sm_90" in archs, f"no sm_90 machine code in the extension (archs: {sorted(archs)})"
    sm90 = {key.split()[1]: usage for key, usage in table.items() if key.startswith("sm_90 ")}
    for family in FAMILIES:
        assert any(family in name for name in sm90), f"no sm_90 kernel of {family} in the extension"
    for name, usage in sm90.items():
        assert usage["REG"] <= MAX_REGISTERS, (name, usage)
        assert usage["STACK"] <= MAX_STACK, f"{name}: stack frame {usage['STACK']} B (spills?)"
        assert usage["LOCAL"] == 0, f"{name}: {usage['LOCAL']} B of local memory"
        assert usage["SHARED"] <= STATIC_SHARED_LIMIT, (name, usage)

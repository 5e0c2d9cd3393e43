"""Marks of the CUDA-extension tests: ``needs_ext`` (the extension is built) and ``gpu_test`` (also a GPU)."""
import pytest
import torch

from semask_kernels import _ext

needs_ext = pytest.mark.skipif(not _ext.HAS_CUDA_EXT, reason=f"CUDA extension not built: {_ext.EXT_ERROR}")


def gpu_test(fn):
    """Marked ``gpu``; skipped cleanly without the extension or a GPU."""
    fn = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")(fn)
    return pytest.mark.gpu(needs_ext(fn))

import collections
import os
import shutil

# Without a GPU, Triton kernels run on the CPU under Triton's interpreter; the variable must be set before
# triton is first imported (torch may import it), so it is decided here from the driver tool, not from torch.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter):
    """One line of skips by reason (the GPU-only tests skip here by the hundred), and a source tree hiding the
    installed build, if it does."""
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        counts = collections.Counter(_skip_reason(r) for r in skipped)
        parts = "; ".join(f"{n} {reason}" for reason, n in counts.most_common())
        terminalreporter.write_line(f"skipped {len(skipped)} by reason: {parts}")
    from semask_kernels.info import shadowing
    shadow = shadowing()
    if shadow:
        terminalreporter.write_line(f"WARNING: {shadow}", yellow=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

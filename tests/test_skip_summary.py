"""`make test` ends with one line of skips by reason (issue 16: 344 GPU-only skips were printed as bare 's')."""
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_run_ends_with_skips_counted_by_reason(tmp_path):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "@pytest.mark.gpu\n"
        "@pytest.mark.parametrize('i', range(3))\n"
        "def test_on_gpu(i):\n    pass\n"
        "def test_skips_itself():\n    pytest.skip('needs the moon')\n"
        "def test_runs():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = done.stdout.splitlines()
    summary = [line for line in lines if line.startswith("skipped ")]
    import torch
    if torch.cuda.is_available():
        assert summary == ["skipped 1 by reason: 1 needs the moon"], done.stdout
    else:
        assert summary == ["skipped 4 by reason: 3 needs a CUDA GPU (none on this machine); 1 needs the moon"], \
            done.stdout
    assert lines.index(summary[0]) >= len(lines) - 3, "the summary belongs at the end of the run"

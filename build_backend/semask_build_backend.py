"""The build backend named by pyproject.toml: setuptools' own, after checking that it is there.

``pip install --no-build-isolation .`` builds with the environment's own setuptools (needed here: the CUDA
extension must be built against the installed torch). Without setuptools, pip's error is a traceback ending in
``No module named 'setuptools'`` (Python 3.12 venvs ship none); without ``wheel`` under an older setuptools it is
``invalid command 'bdist_wheel'`` (Python 3.11 venvs); this says what to run instead.
"""
try:
    from setuptools import build_meta as _setuptools_build_meta
except ImportError:
    raise SystemExit(
        "[semask-kernels] error: setuptools is not installed in this environment, and "
        "`pip install --no-build-isolation` builds with the environment's own tools. Run "
        "`python -m pip install 'setuptools>=64' wheel`, then install again (torch first, for the CUDA "
        "extension: `python -m pip install torch`).") from None

try:
    import setuptools.command.bdist_wheel  # noqa: F401 - setuptools >= 70.1 ships it
except ImportError:
    try:
        import wheel.bdist_wheel  # noqa: F401 - older setuptools build wheels with the wheel package
    except ImportError:
        raise SystemExit(
            "[semask-kernels] error: building needs the `wheel` package (or setuptools >= 70.1) in this "
            "environment, and `pip install --no-build-isolation` builds with the environment's own tools (without "
            "it setuptools says \"invalid command 'bdist_wheel'\"). Run `python -m pip install 'setuptools>=64' "
            "wheel`, then install again.") from None

from setuptools.build_meta import *  # noqa: E402,F401,F403 - the PEP 517 hooks, unchanged
from setuptools.build_meta import __all__  # noqa: E402,F401

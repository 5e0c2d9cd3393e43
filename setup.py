"""Build and install semask-kernels (packages ``semask_kernels`` and ``semask_models``).

    pip install --no-build-isolation .          # CUDA extension when a GPU is visible to torch, for its archs
    SEMASK_CUDA_ARCHS=sm_90 pip install -v --no-build-isolation .   # for sm_90 (no GPU needed), steps shown
    SEMASK_BUILD_CUDA=1 SEMASK_CUDA_ARCHS=sm_90 pip install --no-build-isolation -e .   # must build, sm_90 only
    SEMASK_BUILD_CUDA=0 pip install --no-build-isolation .  # pure Python (reference, torch and Triton backends)

The decision (semask_kernels/_build_plan.py) is printed as one ``[semask-kernels]`` line; a pure-Python install
carries the local version label ``+purepython``, which pip prints.

``--no-build-isolation`` builds against the torch already installed (the extension's ABI must match it).
Every SEMASK_* variable is parsed by ``semask_kernels/_env.py``, loaded here by file path (the package itself
needs torch and must not be imported by the build).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"


def _load(filename: str):
    """A torch-free module of the package, by file path (the package itself needs torch)."""
    spec = importlib.util.spec_from_file_location(f"_semask_{filename[:-3].lstrip('_')}",
                                                  os.path.join(ROOT, "semask_kernels", filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _say(message: str) -> None:
    # stderr: pip shows it with -v, and always when the build fails.
    print(f"[semask-kernels] {message}", file=sys.stderr, flush=True)


def _toolkit_root_from_nvcc(nvcc: str) -> str | None:
    """The toolkit folder of ``nvcc``, asked from nvcc itself (it may be a wrapper script in another folder)."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^#\$ _HERE_=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.dirname(m.group(1).strip()) if m else None


def _ensure_cuda_home() -> None:
    """Point CUDA_HOME at a real toolkit before torch guesses it as ``dirname(dirname(which nvcc))``.

    That guess is wrong when ``nvcc`` on PATH is a wrapper (e.g. /usr/local/bin/nvcc -> CUDA_HOME=/usr/local,
    with no CUDA headers there); an explicit CUDA_HOME / CUDA_PATH is always respected.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates.append(_toolkit_root_from_nvcc(nvcc))
    candidates.append("/usr/local/cuda")
    for root in candidates:
        if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")) \
                and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            os.environ["CUDA_HOME"] = root
            return


def _ensure_ninja_on_path() -> None:
    # The venv's ninja is not on PATH when pip runs from an unactivated venv; torch would fall back to slow builds.
    if shutil.which("ninja"):
        return
    dirs = [os.path.dirname(sys.executable)]
    try:
        import ninja  # the PyPI package ships the binary
        dirs.insert(0, ninja.BIN_DIR)
    except Exception:
        pass
    os.environ["PATH"] = os.pathsep.join(dirs + [os.environ.get("PATH", "")])


def _torch():
    try:
        import torch
    except Exception:  # noqa: BLE001 - any import failure means "no torch"
        return None
    return torch


def _cuda_build_blocker(torch) -> str | None:
    """Why the CUDA extension cannot be built here, or None if it can."""
    if torch is None:
        return ("torch is not importable in the build environment (install torch first, then install this "
                "package with --no-build-isolation: pip's isolated build environment has no torch)")
    if not torch.version.cuda:
        return f"torch {torch.__version__} is not a CUDA build (torch.version.cuda is None)"
    _ensure_cuda_home()
    from torch.utils import cpp_extension
    if cpp_extension.CUDA_HOME is None:
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    nvcc = os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
    if not os.path.exists(nvcc):
        return f"CUDA_HOME={cpp_extension.CUDA_HOME} has no bin/nvcc"
    return None


def _visible_gpus(torch) -> list[tuple[str, str]]:
    """(name, "X.Y") of every GPU torch sees; none without a CUDA torch or a driver."""
    if torch is None or not torch.version.cuda:
        return []
    try:
        return [(torch.cuda.get_device_name(i), "{}.{}".format(*torch.cuda.get_device_capability(i)))
                for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU
        return []


def _extensions(env):
    """(ext_modules, cmdclass) for the CUDA extension, or ([], {}) for a pure-Python install."""
    plan_mod = _load("_build_plan.py")
    mode = env.build_cuda()
    torch = _torch() if mode != "0" else None
    try:
        plan = plan_mod.decide(mode, named=env.named_cuda_archs(), gpus=_visible_gpus(torch),
                               blocker=lambda: _cuda_build_blocker(torch), default_archs=env.cuda_archs(),
                               torch_missing=mode != "0" and torch is None)
    except plan_mod.BuildError as exc:
        raise SystemExit(f"[semask-kernels] error: {exc}") from None
    if not plan.build:
        _say(plan.message)
        return [], {}

    try:  # the extension must link torch's C++ runtime dynamically, or C++ errors crash the process
        update, message = _load("_toolchain.py").choose_host_compiler()
    except RuntimeError as exc:
        if mode == "1":
            raise SystemExit(f"[semask-kernels] error: SEMASK_BUILD_CUDA=1 but the CUDA extension cannot be "
                             f"built: {exc}") from None
        _say(f"not building the CUDA extension: {exc} (pure-Python install)")
        return [], {}
    os.environ.update(update)
    if message:
        _say(message)

    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension

    archs = list(plan.archs)
    # torch reads its arch list from this variable; +PTX on the newest plain arch keeps newer GPUs working (JIT).
    arch_list = list(archs)
    if not arch_list[-1][-1].isalpha():
        arch_list[-1] += "+PTX"
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(arch_list)
    _ensure_ninja_on_path()
    sources = ["csrc/bindings.cpp", "csrc/python_module.cpp"]
    sources += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*.cu"),
                                                                  recursive=True))
    _say(plan.message)
    _say(f"  semask_kernels._C: archs {';'.join(arch_list)}, nvcc from {CUDA_HOME}, torch {torch.__version__} "
         f"(CUDA {torch.version.cuda}), {len(sources)} sources, MAX_JOBS={os.environ.get('MAX_JOBS', 'auto')}")
    # For build_info() in python_module.cpp (a C++ file): commas survive the shell without quotes. Not given to
    # nvcc, which would split the value at the commas.
    arch_define = f"-DSEMASK_CUDA_ARCHS={','.join(archs)}"
    ext = CUDAExtension(
        name="semask_kernels._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        # No --use_fast_math: the kernels must match the reference closely.
        extra_compile_args={"cxx": ["-O3", arch_define], "nvcc": ["-O3"]},
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


def _packages():
    # semask_models lives in ./models (package_dir below); never install a top-level package named "models".
    kernels = find_packages(include=["semask_kernels", "semask_kernels.*"])
    models = ["semask_models"] + [f"semask_models.{p}" for p in find_packages(where="models")]
    return kernels + models


def _readme() -> str:
    path = os.path.join(ROOT, "README.md")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


ENV = _load("_env.py")
EXT_MODULES, CMDCLASS = _extensions(ENV)
# A pure-Python install says so in pip's normal output ("Successfully installed semask-kernels-0.1.0+purepython").
LOCAL_LABEL = "" if EXT_MODULES else "+purepython"

TIMM = "timm>=1.0.15"
setup(
    name="semask-kernels",
    version=VERSION + LOCAL_LABEL,
    description="Fused Triton/CUDA kernels for Swin and SeMask segmentation models, with the models themselves",
    long_description=_readme(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir={"semask_models": "models"},
    package_data={"semask_models": ["configs/*.yaml", "configs/*.yml", "configs/*.json"],
                  "semask_kernels": ["kernels/*.json"]},  # the Triton variants' tile tables
    # timm: drop path and the Swin interop; connected-components-3d: SGR's instance supervision
    install_requires=["torch>=2.5", "numpy", TIMM, "safetensors", "connected-components-3d"],
    extras_require={
        "test": ["pytest", "hypothesis", "expecttest", "scikit-image", "transformers>=5.24",
                 "peft>=0.21"],  # skimage: cc3d fallback
        "bench": ["tqdm", "matplotlib", "pytest-benchmark"],
        # semask-train / semask-eval: progress bars, YAML configs, TensorBoard events, torchvision.transforms.v2
        # augmentation and PIL image reading (torchvision: install the one matching your torch first), scipy's
        # Hungarian assignment for the mask-classification (Mask2Former / MaskFormer) losses.
        "train": ["tqdm", "pyyaml", "tensorboard", "torchvision", "pillow", "matplotlib", "scipy"],
    },
    entry_points={"console_scripts": ["semask-train=semask_models.cli:train_main",
                                      "semask-eval=semask_models.cli:eval_main",
                                      "semask-analyze=semask_models.cli:analyze_main"]},
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    zip_safe=False,
)

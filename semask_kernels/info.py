"""``python -m semask_kernels.info``: versions, build info, and which backend runs each op here."""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import torch

from . import _env, _ext, backends


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> str:
    if not torch.cuda.is_available():
        return "none (torch.cuda.is_available() is False)"
    idx = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(idx)
    return f"{torch.cuda.get_device_name(idx)} (sm_{major}{minor})"


def _extension() -> str:
    info = _ext.build_info()
    if info is None:
        return f"not available: {_ext.EXT_ERROR}"
    archs = ", ".join("sm_" + a.replace(".", "") for a in info["cuda_archs"])
    text = f"built for {archs} (CUDA {info['cuda_version']}, torch {info['torch_version']})"
    if not torch.cuda.is_available():
        text += "; no GPU here to run it"
    for op, rule in info.get("kernels", {}).items():
        text += f"\n  {op} C++ kernels, auto picks: {rule}"
    for op, limits in info.get("limits", {}).items():
        text += f"\n  {op} CUDA limits: " + ", ".join(f"{k}={v}" for k, v in limits.items())
    return text


def _triton() -> str:
    version = _version("triton")
    if version == "not installed":
        return "not installed"
    if torch.cuda.is_available() and not _env.triton_interpret():
        return f"{version}: available on the GPU"
    state = "on" if _env.triton_interpret() else "off; set TRITON_INTERPRET=1 to use it"
    return (f"{version}: available only under the interpreter (CPU tensors, backend='triton' by name, for tests; "
            f"TRITON_INTERPRET is {state})")


def shadowing(package_dir: str | Path | None = None, has_ext: bool | None = None) -> str | None:
    """Why the imported ``semask_kernels`` is not the installed build, or None.

    After a normal (non-editable) install, Python run from the repository root imports the source tree, which has
    no compiled extension, instead of the installed package that has one. Returns a message naming both folders
    and what to do when the imported package is a source tree without the extension and an installed
    distribution of semask-kernels elsewhere has ``semask_kernels/_C``. Arguments default to this process's.
    """
    here = Path(package_dir or Path(__file__).parent).resolve()
    if (_ext.HAS_CUDA_EXT if has_ext is None else has_ext) or not (here.parent / "setup.py").is_file():
        return None
    for dist in importlib.metadata.distributions(name="semask-kernels"):
        for file in dist.files or []:
            if file.parts[:1] == ("semask_kernels",) and file.name.startswith("_C.") \
                    and file.suffix in (".so", ".pyd"):
                built = Path(dist.locate_file(file)).resolve()
                if built.parent != here and built.is_file():
                    return (f"the imported semask_kernels is the source tree {here}, which has no compiled "
                            f"extension, and it hides the installed build in {built.parent} (with the CUDA "
                            f"extension). Run from another folder, or install in place: "
                            f"`pip install --no-build-isolation -e .`")
    return None


def report() -> str:
    shadow = shadowing()
    lines = [
        f"semask-kernels {_version('semask-kernels')}",
        f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"timm {_version('timm')}",
        f"GPU: {_gpu()}",
        f"CUDA extension: {_extension()}",
        f"Triton: {_triton()}",
        f"SEMASK_BACKEND: {_env.default_backend()}",
        *([f"WARNING: {shadow}"] if shadow else []),
        "",
        "Backends per op (ok / why not):",
    ]
    table = backends.available_backends()
    for op, per_backend in table.items():
        lines.append(f"  {op}")
        for name, (ok, reason) in per_backend.items():
            lines.append(f"    {name:<10} {'yes' if ok else 'no ':<4} {reason}")
    lines.append("")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines.append(f"backend='auto' on {device} float32 tensors picks:")
    for op, pick in auto_choices(device).items():
        lines.append(f"  {op:<26} {pick}")
    return "\n".join(lines)


def auto_choices(device: str) -> dict[str, str]:
    """The backend ``auto`` picks for each op on its "tiny" float32 sample (``OpSpec.sample``) on ``device``."""
    from .ops._spec import SIZES, specs
    choices = {}
    for name, spec in specs().items():
        call = spec.sample(SIZES["tiny"], torch.float32, device)
        choices[name] = backends.choose_backend(name, "auto", *spec.arguments(call))
    return choices


def main() -> None:
    print(report())


if __name__ == "__main__":
    main()

"""The install builds the CUDA extension only when it can run here or the user asked for it (issue 16: a
GPU-less machine with nvcc spent 14.5 silent minutes compiling for three architectures), and says why."""
import pytest

from semask_kernels import _build_plan, _env

DEFAULT = ["8.0", "8.9", "9.0"]
NO_BLOCKER = lambda: None  # noqa: E731


def _never_called():
    raise AssertionError("the build-tools check must not run when no build is wanted")


def test_auto_without_gpu_or_named_archs_installs_pure_python_and_says_why():
    plan = _build_plan.decide("auto", named=None, gpus=[], blocker=_never_called, default_archs=DEFAULT)
    assert not plan.build and plan.archs == ()
    assert "no GPU is visible to torch" in plan.message and "SEMASK_BUILD_CUDA=1" in plan.message


def test_auto_builds_for_the_visible_gpus_only():
    gpus = [("NVIDIA H200", "9.0"), ("NVIDIA H200", "9.0")]
    plan = _build_plan.decide("auto", named=None, gpus=gpus, blocker=NO_BLOCKER, default_archs=DEFAULT)
    assert plan.build and plan.archs == ("9.0",)
    assert "NVIDIA H200 (sm_90)" in plan.message and "sm_90" in plan.message


def test_auto_builds_named_archs_without_a_gpu():
    plan = _build_plan.decide("auto", named=(["8.0", "9.0"], "TORCH_CUDA_ARCH_LIST"), gpus=[],
                              blocker=NO_BLOCKER, default_archs=DEFAULT)
    assert plan.build and plan.archs == ("8.0", "9.0")
    assert "TORCH_CUDA_ARCH_LIST" in plan.message and "sm_80;sm_90" in plan.message


def test_auto_with_a_blocker_falls_back_and_names_it():
    plan = _build_plan.decide("auto", named=None, gpus=[("A100", "8.0")], blocker=lambda: "nvcc was not found",
                              default_archs=DEFAULT)
    assert not plan.build and "nvcc was not found" in plan.message


def test_forced_build_uses_the_default_archs_and_fails_loudly_when_blocked():
    plan = _build_plan.decide("1", named=None, gpus=[], blocker=NO_BLOCKER, default_archs=DEFAULT)
    assert plan.build and plan.archs == tuple(DEFAULT)
    with pytest.raises(_build_plan.BuildError, match="SEMASK_BUILD_CUDA=1 .* torch is not a CUDA build"):
        _build_plan.decide("1", named=None, gpus=[], blocker=lambda: "torch is not a CUDA build",
                           default_archs=DEFAULT)


def test_never_builds_with_zero():
    plan = _build_plan.decide("0", named=(["9.0"], "SEMASK_CUDA_ARCHS"), gpus=[("H200", "9.0")],
                              blocker=_never_called, default_archs=DEFAULT)
    assert not plan.build and "SEMASK_BUILD_CUDA=0" in plan.message


def test_named_archs_come_from_semask_first_then_torch(monkeypatch):
    monkeypatch.delenv("SEMASK_CUDA_ARCHS", raising=False)
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    assert _env.named_cuda_archs() is None
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0 8.6;9.0+PTX")
    assert _env.named_cuda_archs() == (["8.0", "8.6", "9.0"], "TORCH_CUDA_ARCH_LIST")
    monkeypatch.setenv("SEMASK_CUDA_ARCHS", "sm_90a")
    assert _env.named_cuda_archs() == (["9.0a"], "SEMASK_CUDA_ARCHS")
    monkeypatch.setenv("SEMASK_CUDA_ARCHS", "Hopper")
    with pytest.raises(ValueError, match="SEMASK_CUDA_ARCHS: cannot read 'Hopper'"):
        _env.named_cuda_archs()


def test_a_build_without_torch_says_to_install_torch_first():
    plan = _build_plan.decide("auto", named=None, gpus=[], blocker=_never_called, default_archs=DEFAULT,
                              torch_missing=True)
    assert not plan.build and "torch is not importable" in plan.message and "--no-build-isolation" in plan.message

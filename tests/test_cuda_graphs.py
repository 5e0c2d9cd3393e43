"""CUDA-graph readiness of the patched Swin: no host syncs in its forward (checked on the CPU with a dispatch
mode that records every op that would sync a GPU stream), and ``sk.cuda_graph_inference``'s argument checks;
the capture itself on a GPU."""

import pytest
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import semask_kernels as sk

aten = torch.ops.aten
# ops that copy a device value to the host or whose output shape depends on values: each syncs a CUDA stream
SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
           aten.is_nonzero.default, aten.equal.default, aten.unique_dim.default, aten._unique2.default,
           aten.repeat_interleave.Tensor, aten.item.default}


class HostSyncs(TorchDispatchMode):
    """Records every syncing op, and every copy to the CPU, dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCING:
            self.found.append(str(func))
        if func in (aten._to_copy.default, aten.to.device) and str(kwargs.get("device", "")) == "cpu":
            self.found.append(f"{func} to cpu")
        return func(*args, **kwargs)


def _model(**kw):
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, window_size=4,
                             depths=(2, 2), num_heads=(2, 4), embed_dim=16, num_classes=3, **kw)


def test_the_mode_sees_a_host_sync():
    with HostSyncs() as mode:
        torch.ones(3).sum().item()
        torch.arange(4).nonzero()
    assert mode.found == ["aten._local_scalar_dense.default", "aten.nonzero.default"]


@pytest.mark.parametrize("training", [False, True])
def test_patched_swin_forward_has_no_host_sync(training):
    model = sk.patch_timm_swin(_model(drop_path_rate=0.2)).train(training)
    x = torch.randn(2, 3, 32, 32)
    with HostSyncs() as mode, torch.set_grad_enabled(training):
        model(x)
    assert mode.found == []


def test_package_backbone_forward_has_no_host_sync():
    from semask_models.backbones.swin import SwinBackbone
    torch.manual_seed(0)
    model = SwinBackbone(embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4).eval()
    with HostSyncs() as mode, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert mode.found == []


BAD = [
    (dict(model=3), TypeError, "model must be a callable"),
    (dict(example=[1.0]), TypeError, "example must be a torch.Tensor"),
    (dict(warmup=0), ValueError, "warmup must be an int >= 1"),
    (dict(example=torch.randn(1, 3, 32, 32)), ValueError, "example must be a CUDA tensor"),
]


@pytest.mark.parametrize("change,error,match", BAD)
def test_capture_helper_checks_its_arguments(change, error, match):
    kwargs = dict(model=_model().eval(), example=torch.empty(1, 3, 32, 32, device="meta"), warmup=2) | change
    with pytest.raises(error, match=match):
        sk.cuda_graph_inference(kwargs.pop("model"), kwargs.pop("example"), **kwargs)


def test_capture_helper_refuses_a_training_model():
    with pytest.raises(ValueError, match="model must be in eval mode"):
        sk.cuda_graph_inference(_model().train(), torch.randn(1, 3, 32, 32), warmup=1)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_capture_replays_the_eager_forward(dtype):
    model = sk.patch_timm_swin(_model()).cuda().eval().to(dtype)
    x = torch.randn(4, 3, 32, 32, device="cuda", dtype=dtype)
    run = sk.cuda_graph_inference(model, x)
    with torch.no_grad():
        for _ in range(2):
            y = torch.randn_like(x)
            torch.testing.assert_close(run(y), model(y))
    with pytest.raises(ValueError, match="must match the captured example"):
        run(torch.randn(2, 3, 32, 32, device="cuda", dtype=dtype))

"""The flops command: Swin-T 224 at timm's 4.5 GMACs, the Swin paper's UperNet count, backend-independence."""
import timm
import torch

import semask_models as sm
from benchmarks import flops


def test_swin_tiny_224_is_4_5_gmacs():
    with torch.device("meta"):
        model = timm.create_model("swin_tiny_patch4_window7_224")
    params, total, semantic = flops.count(model, 224)
    assert abs(total / 2e9 - 4.5) < 0.05 and semantic == 0
    assert abs(params / 1e6 - 28.29) < 0.01


def test_swin_t_upernet_matches_the_swin_paper():
    """The Swin paper lists UperNet Swin-T at 945 GFLOPs (= GMACs) for 512×2048 input; at 512×512 the
    backbone and head scale with the pixel count, ~236 GMACs."""
    with torch.device("meta"):
        model = sm.build_model("swin_t_upernet", num_classes=150)
    _, total, _ = flops.count(model, 512)
    assert 945 / 4 * 0.97 < total / 2e9 < 945 / 4 * 1.03


def test_count_does_not_depend_on_the_backend():
    """Each op counts through its registered formula, so every backend that runs here gives the same count
    (Triton under the interpreter on a CPU)."""
    import semask_kernels as sk
    from torch.utils.flop_counter import FlopCounterMode

    qkv, table = torch.randn(1, 9, 10, 3 * 2 * 16), torch.randn(169, 2)
    counts = {}
    for backend in ("reference", "triton"):
        if sk.backends.why_not("shifted_window_attention", backend, qkv, table, None, 2, [7, 7], [3, 3], 0.25,
                               "roll_then_pad", -100.0) is not None:
            continue
        with FlopCounterMode(display=False) as counter:
            sk.shifted_window_attention(qkv, table, num_heads=2, window_size=7, shift_size=3, backend=backend)
        counts[backend] = counter.get_total_flops()
    assert counts["reference"] == 4 * 4 * 2 * 49 * 49 * 16  # 4 windows of the padded 14×14 map
    assert len(set(counts.values())) == 1, counts


def test_sgr_overhead_is_reported(capsys):
    from types import SimpleNamespace

    rows = flops.run(SimpleNamespace(models=["swin_t_fpn", "swin_t_fpn_sgr"], img_size=256, num_classes=150,
                                     sgr=False, no_save=True))
    sgr = rows[1]
    assert sgr["sgr_params_overhead"] > 1e6 and 0 < sgr["sgr_gmacs_overhead"] < 1
    assert "SGR +GMACs" in capsys.readouterr().out

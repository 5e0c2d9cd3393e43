"""The flops command on the MiT family: SegFormer's published counts (Table 1 / README, ADE20K crops, where its
"GFLOPs" are multiply-adds) and SeMask-MiT's overhead, which is its semantic layers alone."""
import argparse

import pytest
import torch

import semask_models as sm
from benchmarks import flops

SEGFORMER_GMACS = {"b0": (512, 8.4), "b1": (512, 15.9), "b2": (512, 62.4), "b3": (512, 79.0), "b4": (512, 95.7),
                   "b5": (640, 183.3)}


@pytest.mark.parametrize("variant", list(SEGFORMER_GMACS))
def test_mit_segformer_matches_segformer(variant):
    size, gmacs = SEGFORMER_GMACS[variant]
    with torch.device("meta"):
        model = sm.build_model(f"mit_{variant}_segformer", num_classes=150, backend="reference")
    _, total, semantic = flops.count(model, size)
    assert abs(total / 2e9 - gmacs) < 0.01 * gmacs and semantic == 0


def test_semask_overhead_is_the_semantic_layers(capsys):
    args = argparse.Namespace(models=["mit_b0_segformer", "semask_mit_b0_segformer"], img_size=None,
                              num_classes=150, sgr=False, no_save=True)
    rows = {r["model"]: r for r in flops.run(args)}
    semask = rows["semask_mit_b0_segformer"]
    assert semask["img_size"] == 512 and flops.crop_size("mit_b5_segformer") == 640
    assert semask["semask_gmacs_overhead"] == pytest.approx(semask["semantic_gmacs"], rel=1e-6)
    assert 0 < semask["semask_gmacs_overhead"] < 0.15 * rows["mit_b0_segformer"]["gmacs"]  # "a slight increase"
    assert rows["mit_b0_segformer"]["semask_gmacs_overhead"] is None
    assert "SeMask +GMACs" in capsys.readouterr().out

"""``build_model`` overrides are checked: each error names the field, the value and what is allowed (issue 15,
item 4)."""
import pytest
import torch
from semask_models.zoo import ModelConfig, build_from_config, build_model, config_for

TINY = dict(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2, head_channels=8)


@pytest.mark.parametrize("overrides, words", [
    (dict(num_classes="150"), ["num_classes = '150'", "an integer >= 1"]),
    (dict(num_classes=0), ["num_classes = 0", ">= 1"]),
    (dict(drop_path_rate=1.5), ["drop_path_rate = 1.5", "< 1"]),
    (dict(drop_path_rate=float("nan")), ["drop_path_rate = nan", "finite"]),
    (dict(global_stages=(7,)), ["global_stages = (7,)", "[0, 4)"]),
    (dict(global_stages=(1, 1)), ["global_stages = (1, 1)", "distinct"]),
    (dict(sem_window_size=0), ["sem_window_size = 0", ">= 1"]),
    (dict(backend="bogus"), ["backend = 'bogus'", "'reference'"]),
    (dict(head="segformer"), ["head = 'segformer'", "'upernet'"]),
    (dict(ohem_min_kept=-3), ["ohem_min_kept = -3", ">= 1"]),
    (dict(ignore_index=2 ** 64), [f"ignore_index = {2 ** 64}", "<= 9223372036854775807"]),
    (dict(embed_dim=10, num_heads=(3, 3, 3, 3)), ["num_heads = (3, 3, 3, 3)", "10 channels"]),
    (dict(sgr_connectivity=6), ["sgr_connectivity = 6", "4 or 8"]),
])
def test_bad_override_is_refused_by_name(overrides, words):
    with pytest.raises(ValueError) as e:
        with torch.device("meta"):
            build_model("semask_swin_t_fpn", **{**TINY, **overrides})
    for w in words:
        assert w in str(e.value), str(e.value)


def test_a_hand_made_model_config_is_checked_too():
    cfg = config_for("swin_t_fpn", num_classes=3, **TINY)
    bad = ModelConfig(**{**cfg.__dict__, "mlp_ratio": -1.0})
    with pytest.raises(ValueError, match=r"mlp_ratio = -1.0 is not allowed"):
        build_from_config(bad)


def test_good_overrides_still_build():
    model = build_model("semask_swin_t_fpn", num_classes=3, **TINY, backend="Reference", global_stages=[2, 3]).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)

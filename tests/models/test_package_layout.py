"""The rooms of ``semask_models``: few loose modules at the root, the old import paths of moved modules give the
moved module itself, and every zoo name belongs to exactly one family."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import semask_models
from semask_models import _moved
from semask_models.zoo import families, registry

ROOT = Path(semask_models.__file__).resolve().parent


def test_at_most_eight_loose_modules_at_the_root():
    loose = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(loose) <= 8, loose
    assert not set(_moved.MOVED) & {p.stem for p in ROOT.glob("*.py")}, "a moved module is back at the root"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_import_path_gives_the_moved_module(old):
    new = importlib.import_module(f"semask_models.{_moved.MOVED[old]}")
    assert importlib.import_module(f"semask_models.{old}") is new
    assert getattr(semask_models, old) is new


def test_old_paths_work_in_a_fresh_interpreter():
    code = ("import semask_models.train as t, semask_models.engine.train as e; assert t is e\n"
            "from semask_models.checkpoint import read_weights\n"
            "from semask_models.detectron2_checkpoint import load_detectron2_checkpoint\n"
            "from semask_models import convert; assert convert.__name__ == 'semask_models.checkpoints.convert'\n"
            "import semask_models.mask_zoo as m; assert m.__name__ == 'semask_models.zoo.swin_mask'\n"
            "import semask_models as sm; assert sm.optim is sm.engine.optim and sm.losses.ohem_loss")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_old_name_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("semask_models.no_such_module")
    with pytest.raises(AttributeError, match="no_such_module"):
        semask_models.no_such_module


def test_every_name_belongs_to_one_family_and_every_head_too():
    heads = [h for family in families.FAMILIES for h in family.HEADS]
    assert len(heads) == len(set(heads))
    names = [n for family in families.FAMILIES for n in family.names()]
    assert len(names) == len(set(names)) and names == registry.model_names()
    for name in names:
        family = families.family_of_name(name)
        assert family.fields(name)["head"] in family.HEADS
        assert families.family_of_head(registry.config_for(name).head) is family


def test_build_calls_the_family_of_the_name_once(monkeypatch):
    calls = []
    for family in families.FAMILIES:
        monkeypatch.setattr(family, "build", lambda cfg, family=family: calls.append((family.__name__, cfg.head)))
    registry.build_model("semask_swin_t_upernet", num_classes=5)
    registry.build_model("swin_t_mask2former_sgr", num_classes=5)
    assert calls == [("semask_models.zoo.swin", "upernet"), ("semask_models.zoo.swin_mask", "mask2former")]
    with pytest.raises(ValueError, match="head must be one of"):
        families.family_of_head("segformer")


# The rooms of semask_models from the top down: a module may import only from its own room or a lower one.
ROOMS = ["cli", "engine", "zoo", "checkpoints", "data", "segmentors", "heads", "backbones", "sgr", "validation"]


def test_rooms_import_downwards_only():
    from tests.test_import_cycles import PACKAGES, graph

    def room(module):
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and not parts[1].startswith("_") else None  # the package's own __init__

    upward = []
    for module, imported in graph("semask_models", PACKAGES["semask_models"]).items():
        for target in imported:
            a, b = room(module), room(target)
            if a and b and a != b and ROOMS.index(b) < ROOMS.index(a):
                upward.append(f"{module} imports {target} ({a} is below {b})")
    assert not upward, "\n".join(sorted(upward))
    missing = {room(m) for m in graph("semask_models", PACKAGES["semask_models"])} - set(ROOMS) - {None}
    assert not missing, f"rooms without a place in ROOMS: {sorted(missing)}"

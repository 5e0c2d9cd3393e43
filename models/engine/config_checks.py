"""Checks of a resolved run config (:func:`semask_models.engine.config.load_config` runs them): every value's type and
range, the values that must agree with each other, and ``model_overrides`` through the model-config checks, so a
bad value is refused when the config is loaded, with an error that names the key, the value and what is allowed,
instead of a crash (or silently wrong numbers) hours later."""
from __future__ import annotations

import re

from ..validation import (
    INT64,
    apply,
    boolean,
    integer,
    one_of,
    pair_of_positive_ints,
    real,
    sequence,
    text,
)

DATA_TYPES = ("ade20k", "cityscapes", "cocostuff10k", "folder", "synthetic")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_RATIOS = sequence(real(gt=0), "numbers > 0")


def _device(value):
    return None if isinstance(value, str) and _DEVICE.match(value) else "'auto', 'cpu', 'cuda' or 'cuda:N'"


def _classes(value):
    ok = value is None or (isinstance(value, str) and value) or (
        isinstance(value, list) and value and all(isinstance(c, str) for c in value))
    return None if ok else "null, a text file of class names, or a list of class names"


TOP = {"name": text(), "model": text(), "pretrained": text(none=True), "seed": integer(lo=0, hi=2 ** 32 - 1),
       "device": _device, "work_dir": text(none=True)}

DATA = {
    "type": one_of(DATA_TYPES), "root": text(none=True), "train_split": text(none=True),
    "val_split": text(none=True), "num_classes": integer(lo=1, none=True), "classes": _classes,
    "ignore_index": integer(*INT64), "reduce_zero_label": boolean(none=True), "img_suffix": text(none=True),
    "seg_suffix": text(none=True), "num_workers": integer(lo=0), "pin_memory": boolean(),
}

AUGMENT = {
    "scale": pair_of_positive_ints(), "ratios": _RATIOS,
    "ratio_range": sequence(real(gt=0), "numbers > 0 ([lo, hi])", length=2, none=True),
    "crop": pair_of_positive_ints(), "cat_max_ratio": real(gt=0, hi=1), "flip": real(lo=0, hi=1),
    "photometric": boolean(), "mean": sequence(real(), "numbers (one per RGB channel)", length=3),
    "std": sequence(real(gt=0), "numbers > 0 (one per RGB channel)", length=3),
}

TEST = {
    "scale": pair_of_positive_ints(), "mode": one_of(("whole", "slide")), "crop": pair_of_positive_ints(),
    "stride": pair_of_positive_ints(), "aug": boolean(),
    "aug_ratios": sequence(real(gt=0), "numbers > 0", min_length=1), "aug_flip": boolean(),
    "save_predictions": text(none=True),
}

TRAIN = {
    "max_iters": integer(lo=1), "batch_size": integer(lo=1), "accum_steps": integer(lo=1), "lr": real(gt=0),
    "weight_decay": real(lo=0), "betas": sequence(real(lo=0, lt=1), "numbers in [0, 1)", length=2),
    "no_decay_keys": sequence(text(), "non-empty strings"), "power": real(lo=0), "min_lr": real(lo=0),
    "warmup_iters": integer(lo=0), "warmup_ratio": real(lo=0, hi=1), "clip_grad": real(gt=0, none=True),
    "amp": one_of(("bf16", "none")), "eval_interval": integer(lo=1), "checkpoint_interval": integer(lo=1),
    "log_interval": integer(lo=1), "keep_checkpoints": integer(lo=0), "sync_bn": boolean(),
    "find_unused_parameters": boolean(), "dist_backend": one_of(("auto", "nccl", "gloo")), "progress": boolean(),
    "cudnn_benchmark": boolean(), "cpu_threads": integer(lo=1, none=True), "backbone_lr_mult": real(gt=0),
}


def check(cfg: dict, error: type = ValueError) -> None:
    """Raise ``error`` for the first value of ``cfg`` out of range or in conflict with another."""
    apply(cfg, TOP, "", error)
    for section, rules in (("data", DATA), ("augment", AUGMENT), ("test", TEST), ("train", TRAIN)):
        apply(cfg[section], rules, section + ".", error)
    aug, test, train = cfg["augment"], cfg["test"], cfg["train"]
    rr = aug["ratio_range"]
    if rr is not None and rr[0] > rr[1]:
        raise error(f"augment.ratio_range = {rr!r} is not allowed: expected [lo, hi] with lo <= hi")
    if not aug["ratios"] and rr is None:
        raise error("augment.ratios = [] is not allowed while augment.ratio_range is null: expected at least one "
                    "ratio > 0, or a ratio_range")
    for axis, (crop, stride) in enumerate(zip(test["crop"], test["stride"])):
        if stride > crop:  # pixels between two windows would get no logits at all
            raise error(f"test.stride = {test['stride']!r} is not allowed with test.crop = {test['crop']!r}: "
                        f"expected stride <= crop on each axis (axis {axis}: {stride} > {crop})")
    if train["batch_size"] % train["accum_steps"]:
        raise error(f"train.batch_size = {train['batch_size']} is not allowed with train.accum_steps = "
                    f"{train['accum_steps']}: expected a multiple of accum_steps")
    _check_model(cfg, error)


def _check_model(cfg: dict, error: type) -> None:
    from ..zoo.checks import check_model_config
    from ..zoo import model_names, unchecked_config
    if cfg["model"] not in model_names(sgr=True):
        raise error(f"model = {cfg['model']!r} is not allowed: expected a zoo name, one of {model_names()} "
                    "(each also with '_sgr')")
    overrides = dict(cfg["model_overrides"])
    overrides.setdefault("num_classes", cfg["data"]["num_classes"] or 150)
    overrides.setdefault("ignore_index", cfg["data"]["ignore_index"])
    try:
        model = unchecked_config(cfg["model"], **overrides)
    except ValueError as e:  # an unknown field
        raise error(f"model_overrides: {e}") from None
    check_model_config(model, "model_overrides.", error)

"""Run configurations: YAML files (or shipped names) merged over :data:`DEFAULTS`, with ``--set key=value``.

A config may name a ``base:`` (a shipped config name or a path relative to the file) whose values it overrides,
key by key. Every key must exist in :data:`DEFAULTS` (typos are errors, not silently ignored settings); values
are coerced to the type of the default where that is unambiguous (PyYAML reads ``1e-4`` as a string).

Example:
    >>> from semask_models.engine.config import load_config
    >>> cfg = load_config("synthetic-tiny", ["train.max_iters=10"])
    >>> cfg["train"]["max_iters"]
    10
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Optional, Union

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]

# Free-form mappings: their inner keys are not checked against the defaults.
FREE_KEYS = {"model_overrides", "data.synthetic"}

DEFAULTS: dict[str, Any] = {
    "name": None,                   # filled with the config's name
    "model": "semask_swin_t_fpn",   # a zoo name (semask_models.model_names())
    "model_overrides": {},          # ModelConfig fields, e.g. {drop_path_rate: 0.1}
    "pretrained": None,             # Swin / SeMask checkpoint, read by checkpoints.convert.load_checkpoint
    "seed": 0,
    "device": "auto",               # auto | cpu | cuda | cuda:N
    "work_dir": None,               # default: work_dirs/<name>
    "data": {
        "type": "ade20k",           # ade20k | cityscapes | cocostuff10k | folder | synthetic
        "root": None,
        "train_split": None,        # None: the dataset's default (e.g. ADE20K "training")
        "val_split": None,
        "num_classes": None,        # None: the dataset's own K
        "classes": None,            # folder datasets: list of names, or a text file with one name a line
        "ignore_index": 255,
        "reduce_zero_label": None,  # None: the dataset's default (ADE20K True)
        "img_suffix": None,
        "seg_suffix": None,
        "synthetic": {},            # options of SyntheticSegmentation
        "num_workers": 4,
        "pin_memory": True,
    },
    "augment": {
        "scale": [2048, 512],       # (long, short) edge bounds of the keep-ratio resize, as mmseg img_scale
        "ratios": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75],  # a list: one drawn at random per sample
        "ratio_range": None,        # [lo, hi]: a ratio drawn uniformly (replaces ratios)
        "crop": [512, 512],         # (h, w)
        "cat_max_ratio": 1.0,
        "flip": 0.5,
        "photometric": True,
        "mean": MEAN,
        "std": STD,
    },
    "test": {
        "scale": [2048, 512],
        "mode": "whole",            # whole | slide
        "crop": [512, 512],         # slide window (h, w)
        "stride": [341, 341],
        "aug": False,               # multi-scale + flip (semask-eval --aug-test)
        "aug_ratios": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
        "aug_flip": True,
        "save_predictions": None,   # folder for palette PNGs of the predictions
    },
    "train": {
        "max_iters": 80000,
        "batch_size": 16,           # global: split over the ranks (and over accum_steps micro-batches)
        "accum_steps": 1,
        "lr": 1.0e-4,
        "weight_decay": 1.0e-4,
        "betas": [0.9, 0.999],
        "no_decay_keys": ["norm", "relative_position_bias_table", "absolute_pos_embed"],
        "backbone_lr_mult": 1.0,    # lr factor of the backbone's parameters (detectron2 BACKBONE_MULTIPLIER)
        "power": 1.0,
        "min_lr": 0.0,
        "warmup_iters": 1500,
        "warmup_ratio": 1.0e-6,
        "clip_grad": None,          # max L2 norm of all gradients, or None
        "amp": "bf16",              # bf16 | none; autocast is used on CUDA only
        "eval_interval": 8000,
        "checkpoint_interval": 8000,
        "log_interval": 50,
        "keep_checkpoints": 2,      # how many iteration checkpoints stay on disk (0: all)
        "sync_bn": True,            # SyncBatchNorm in the heads when distributed on CUDA
        "find_unused_parameters": False,
        "dist_backend": "auto",     # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
        "progress": True,
        "cudnn_benchmark": True,
        "cpu_threads": None,        # torch.set_num_threads on the CPU (None: torch's default)
    },
}


class ConfigError(ValueError):
    pass


def shipped_configs() -> list[str]:
    """Names of the configs shipped in ``semask_models/configs`` (bases starting with ``_`` excluded)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def resolve_path(name_or_path: Union[str, Path], relative_to: Optional[Path] = None) -> Path:
    p = Path(name_or_path)
    candidates = [p]
    if relative_to is not None and not p.is_absolute():
        candidates.append(relative_to / p)
    if p.suffix not in (".yaml", ".yml"):
        candidates.append(CONFIG_DIR / f"{p.name}.yaml")
    candidates.append(CONFIG_DIR / p.name)
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a shipped config; shipped: "
                      f"{', '.join(shipped_configs())}")


def _read_yaml(path: Path) -> dict:
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (a binary file?): {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _read_with_bases(path: Path, seen: tuple = ()) -> dict:
    if path in seen:
        raise ConfigError(f"config base cycle: {' -> '.join(str(p) for p in seen + (path,))}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    parent = _read_with_bases(resolve_path(base, path.parent), seen + (path,))
    return deep_merge(parent, data)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _coerce(value, default, key: str):
    """Coerce ``value`` to the type of ``default`` (float/int/bool/list) where unambiguous."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
    if isinstance(default, (int, float)) and isinstance(value, str):
        try:
            value = float(value) if isinstance(default, float) or any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}") from None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer() and not isinstance(default, bool):
        return int(value)
    if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
        raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
    if isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
    return value


def validate(cfg: dict, defaults: dict = DEFAULTS, prefix: str = "") -> dict:
    """Defaults filled in, unknown keys refused, values coerced; returns a new dict."""
    out = {}
    for key, value in cfg.items():
        full = f"{prefix}{key}"
        if key not in defaults:
            raise ConfigError(f"unknown config key {full!r}; known at this level: {sorted(defaults)}")
        default = defaults[key]
        if full in FREE_KEYS:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} expects a mapping, got {value!r}")
            out[key] = copy.deepcopy(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} expects a mapping, got {value!r}")
            out[key] = validate(value, default, full + ".")
        else:
            out[key] = _coerce(value, default, full)
    for key, default in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(default)
    return out


def parse_set(items: Iterable[str]) -> dict:
    """``["train.lr=1e-3", "model_overrides.embed_dim=32"]`` → a nested dict (values parsed as YAML)."""
    import yaml
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from e
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set both as a value and as a mapping")
        node[parts[-1]] = value
    return out


def load_config(name_or_path: Union[str, Path, dict], overrides: Iterable[str] = ()) -> dict:
    """The resolved config: a shipped name, a YAML path, or a dict; then ``overrides`` (``key.sub=value``)."""
    if isinstance(name_or_path, dict):
        data, name = copy.deepcopy(name_or_path), name_or_path.get("name") or "config"
    else:
        path = resolve_path(name_or_path)
        data, name = _read_with_bases(path), path.stem
    data = deep_merge(data, parse_set(overrides))
    cfg = validate(data)
    cfg["name"] = cfg["name"] or name
    check(cfg)
    return cfg


def check(cfg: dict) -> None:
    """Every value in range and consistent (:mod:`semask_models.engine.config_checks`); raises :class:`ConfigError`."""
    from .config_checks import check as check_values
    check_values(cfg, ConfigError)


def dump(cfg: dict, path: Union[str, Path]) -> None:
    import yaml
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")

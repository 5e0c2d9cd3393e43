"""``semask-analyze``: how semantic a trained SGR model's tokens are, on the validation split.

Writes ``token_semantics.json`` (S_c, D_c, S_I, D_I; definitions in ``semask_models.sgr.analysis``) and
``token_semantics.png`` (the per-token class entropy, tokens sorted by mass) to the work dir.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch

from ..sgr.analysis import TokenSemantics
from ..sgr.components import connected_components

logger = logging.getLogger("semask_models")


@torch.no_grad()
def token_semantics(model, dataset, cfg: dict, device: torch.device, connectivity: int) -> TokenSemantics:
    """Accumulate the token statistics of ``model`` (a Segmentor with SGR) over ``dataset``."""
    from ..data.transforms import normalize, resize_for_test
    if getattr(model, "sgr", None) is None:
        raise ValueError(f"model {cfg['model']!r} has no SGR module: analyze a '..._sgr' model (or sgr: true)")
    model.eval().to(device)
    norm = normalize(cfg["augment"]["mean"], cfg["augment"]["std"])
    stats = TokenSemantics(dataset.num_classes, dataset.ignore_index)
    for i in range(len(dataset)):
        item = dataset[i]
        image = norm(resize_for_test(item["image"], cfg["test"]["scale"]).float())[None].to(device)
        features, _ = model.backbone(image)
        _, assignment = model.sgr(features[-1])
        label = item["label"].long()
        ids, _ = connected_components(label.numpy(), ignore_index=dataset.ignore_index, connectivity=connectivity)
        stats.update(assignment.float().cpu(), label[None], torch.from_numpy(ids)[None])
    return stats


def plot(stats: TokenSemantics, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mass = stats.class_hist.sum(1)
    order = mass.argsort(descending=True)
    entropy = stats.token_class_entropies()[order]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(range(len(entropy)), entropy.numpy(), width=1.0, color="tab:blue")
    ax.set_xlabel("token (sorted by assignment mass)")
    ax.set_ylabel("class entropy (bits)")
    result = stats.result()
    ax.set_title("SGR token semantics: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_analyze(cfg: dict, checkpoint: str, work_dir: Optional[str] = None, allow_partial: bool = False) -> dict:
    """``semask-analyze``: the token semantics of ``checkpoint`` (an SGR model of ``cfg``); the model kind and the
    output folder are checked before the checkpoint and the data are read."""
    from .builder import build_segmentor
    from .config import ConfigError
    from ..data.datasets import build_dataset
    from .evaluate import load_for_eval
    from .workdir import check_dir
    work = check_dir(Path(work_dir or cfg["work_dir"] or Path("work_dirs") / cfg["name"]))
    device = torch.device("cuda" if cfg["device"] == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg["device"] == "auto" else cfg["device"]))
    with torch.device("meta"):  # only its kind: no memory, no init
        kind = build_segmentor({**cfg, "pretrained": None}, cfg["data"]["num_classes"] or 2)
    if kind.sgr is None:
        raise ConfigError(f"model {cfg['model']!r} has no SGR module, so it has no tokens to analyze: use a "
                          "'..._sgr' model (or model_overrides.sgr: true) and its checkpoint")
    dataset = build_dataset(cfg["data"], "val", seed=cfg["seed"])
    model = build_segmentor({**cfg, "pretrained": None}, dataset.num_classes)
    loaded = load_for_eval(model, checkpoint, allow_partial=allow_partial)
    stats = token_semantics(model, dataset, cfg, device, model.sgr_connectivity)
    result = {"config": cfg["name"], **loaded, **stats.result(), "num_images": len(dataset)}
    work.mkdir(parents=True, exist_ok=True)
    (work / "token_semantics.json").write_text(json.dumps(result, indent=2))
    plot(stats, work / "token_semantics.png")
    logger.info("token semantics written to %s", work)
    return result

"""Inference and mIoU evaluation (``semask-eval``), with the official test rules.

- Single scale, ``mode: whole``: keep-ratio resize so that the image fits the test scale (e.g. (2048, 512)),
  predict, resize the logits bilinearly back to the original size, argmax.
- ``mode: slide``: the same resize, then crop × stride windows whose logits are averaged where they overlap
  (mmseg ``slide_inference``), for images too large for one pass.
- ``aug``: every ratio of ``aug_ratios`` (default 0.5 … 1.75) with and without a horizontal flip; the softmax
  probabilities at the original size are averaged (mmseg ``aug_test``).
Evaluation is sharded over the ranks (each image on one rank) and the confusion matrices are summed with
``all_reduce``.
"""
from __future__ import annotations

import json
import logging
import pickle
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.transforms import resize_for_test
from .distributed import DistInfo, all_reduce_sum
from .metrics import confusion_matrix, format_table, summarize

logger = logging.getLogger("semask_models")


def _normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, device=image.device, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, device=image.device, dtype=torch.float32).view(-1, 1, 1)
    return (image.float() - m) / s


def _forward(model: nn.Module, x: Tensor, amp: bool) -> Tensor:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
        return model(x).float()


def slide_logits(model: nn.Module, x: Tensor, num_classes: int, crop: Sequence[int], stride: Sequence[int],
                 amp: bool = False) -> Tensor:
    """mmseg ``slide_inference`` on a normalized (1, 3, H, W) image: windows of ``crop`` every ``stride``, the
    last window aligned to the border, logits averaged over overlaps."""
    _, _, H, W = x.shape
    (ch, cw), (sh, sw) = crop, stride
    if not (0 < sh <= ch and 0 < sw <= cw):  # a gap between windows would leave pixels without logits
        raise ValueError(f"stride {tuple(stride)} must be positive and at most crop {tuple(crop)} on each axis")
    rows = max(H - ch + sh - 1, 0) // sh + 1
    cols = max(W - cw + sw - 1, 0) // sw + 1
    out = x.new_zeros(1, num_classes, H, W)
    count = x.new_zeros(1, 1, H, W)
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, H), min(c * sw + cw, W)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            out[:, :, y1:y2, x1:x2] += _forward(model, x[:, :, y1:y2, x1:x2], amp)
            count[:, :, y1:y2, x1:x2] += 1
    return out / count


@torch.no_grad()
def predict_scores(model: nn.Module, image: Tensor, test_cfg: dict, mean, std, num_classes: int,
                   align_corners: bool = False, amp: bool = False) -> Tensor:
    """Class scores (K, H, W) at the size of ``image`` (uint8 (3, H, W), on the model's device): logits for one
    scale, averaged softmax probabilities for ``test_cfg["aug"]``. The prediction is their argmax."""
    H, W = image.shape[-2:]
    ratios = test_cfg["aug_ratios"] if test_cfg["aug"] else [1.0]
    flips = [False, True] if test_cfg["aug"] and test_cfg["aug_flip"] else [False]
    total = None
    for ratio in ratios:
        x = _normalize(resize_for_test(image, test_cfg["scale"], ratio), mean, std).unsqueeze(0)
        for flip in flips:
            xi = x.flip(-1) if flip else x
            if test_cfg["mode"] == "slide":
                logits = slide_logits(model, xi, num_classes, test_cfg["crop"], test_cfg["stride"], amp)
            else:
                logits = _forward(model, xi, amp)
            if flip:
                logits = logits.flip(-1)
            logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=align_corners)
            # mask-classification models give class scores already (averaged as detectron2's TTA does)
            scores = logits.softmax(1) if test_cfg["aug"] and not getattr(model, "returns_scores", False) else logits
            total = scores if total is None else total + scores
    return total[0] / (len(ratios) * len(flips)) if test_cfg["aug"] else total[0]


IGNORE_16 = 65535  # the ignore value of 16-bit prediction PNGs


def save_prediction(path: Path, pred: Tensor, palette, ignore: Optional[Tensor] = None,
                    num_classes: Optional[int] = None) -> None:
    """A PNG of class indices: a palette PNG when the ``num_classes`` ids fit in 0..254 (``ignore`` pixels get
    index 255, drawn black); a 16-bit grayscale PNG for more classes (ignore pixels 65535), since 8 bits would
    wrap ids above 255 and put class 255 on the ignore value. ``num_classes`` defaults to ``pred.max() + 1``."""
    import numpy as np
    from PIL import Image
    k = int(num_classes) if num_classes is not None else int(pred.max()) + 1 if pred.numel() else 1
    if k > IGNORE_16:
        raise ValueError(f"num_classes {k} does not fit a 16-bit PNG (at most {IGNORE_16} classes)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if k > 255:
        arr = pred.to(torch.int32).cpu().numpy().astype(np.uint16)
        if ignore is not None:
            arr[ignore.cpu().numpy()] = IGNORE_16
        Image.fromarray(arr).save(path)
        return
    arr = pred.to(torch.uint8).cpu().numpy()
    if ignore is not None:
        arr = np.where(ignore.cpu().numpy(), 255, arr).astype(np.uint8)
    flat = [0] * 768
    for i, color in enumerate(palette[:255]):
        flat[3 * i: 3 * i + 3] = list(color)
    im = Image.fromarray(arr, mode="P")
    im.putpalette(flat)
    im.save(path)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, cfg: dict, info: DistInfo, *, progress: bool = True,
             save_dir: Optional[Path] = None) -> dict:
    """mIoU of ``model`` on ``dataset`` (items: uint8 image, label at the original size) over all ranks."""
    from ..checkpoints.training import unwrap_model
    from ..data.loader import build_eval_loader
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    K = dataset.num_classes
    device = info.device
    amp = cfg["train"]["amp"] == "bf16"
    align = getattr(net, "align_corners", False)
    loader = build_eval_loader(dataset, rank=info.rank, world_size=info.world_size,
                               num_workers=min(cfg["data"]["num_workers"], 2),
                               pin_memory=cfg["data"]["pin_memory"] and device.type == "cuda")
    cm = torch.zeros(K, K, dtype=torch.int64, device=device)
    bar = _progress(len(loader), "eval", progress and info.is_main)
    start = time.time()
    for item in loader:
        image = item["image"].to(device, non_blocking=True)
        label = item["label"].to(device, non_blocking=True)
        scores = predict_scores(net, image, cfg["test"], cfg["augment"]["mean"], cfg["augment"]["std"], K, align, amp)
        pred = scores.argmax(0)
        cm += confusion_matrix(pred, label, K, dataset.ignore_index)
        if save_dir is not None:
            save_prediction(Path(save_dir) / f"{item['name']}.png", pred, dataset.palette,
                            ignore=label == dataset.ignore_index, num_classes=K)
        bar.update(1)
    bar.close()
    all_reduce_sum(cm, info)
    net.train(was_training)
    metrics = summarize(cm.cpu(), dataset.classes)
    metrics["num_images"] = len(dataset)
    metrics["eval_seconds"] = round(time.time() - start, 2)
    metrics["aug_test"] = bool(cfg["test"]["aug"])
    metrics["mode"] = cfg["test"]["mode"]
    return metrics


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


def load_for_eval(model: nn.Module, checkpoint: str, allow_partial: bool = False) -> dict:
    """A weights file of this package (strict), a work dir (its latest checkpoint), or any file that
    :func:`semask_models.checkpoints.convert.load_checkpoint` reads (official SeMask-FPN, ...). A checkpoint that leaves
    model keys at their initial values or has weights the model does not use (another depth, no decode head) is
    refused unless ``allow_partial``; then the keys that stayed random are logged. Returns what was loaded."""
    from ..checkpoints.training import CheckpointError, latest_checkpoint, load_weights, read_weights
    path = Path(checkpoint)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path} is a folder without checkpoints (expected {path}/checkpoints/latest.json)")
        path = found[0]
    if path.suffix == ".safetensors":
        _, meta = read_weights(path)
        if meta.get("format") == "semask_models.segmentor":
            meta = load_weights(model, path)
            return {"checkpoint": str(path), "iter": int(meta["iter"]) if "iter" in meta else None}
    from ..checkpoints.convert import load_checkpoint
    try:
        report = load_checkpoint(model, path, allow_partial=True)  # refused below, with the CLI's option
    except CheckpointError:
        raise
    except (OSError, ValueError, pickle.UnpicklingError) as e:  # a missing, foreign, unsafe or malformed file
        raise CheckpointError(str(e)) from e
    if not report.complete:
        what = "; ".join(
            f"{len(keys)} {text} ({', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''})"
            for keys, text in ((report.missing, "model key(s) are not in the file and keep their random initial "
                                "values"), (report.unused, "weight(s) of the file have no place in the model"))
            if keys)
        if not allow_partial:
            raise CheckpointError(f"{path} fits the model only in part: {what}. Is it from another config? "
                                  "Evaluate anyway with --allow-partial (allow_partial=True)")
        logger.warning("partial load of %s (--allow-partial): %s\n%s", path, what, report)
    return {"checkpoint": str(path), "iter": None, "format": report.source_format,
            "partial": not report.complete}


def eval_name(test_cfg: dict) -> str:
    """The stem of an evaluation's files in the work dir: ``eval_<mode>[_aug]`` (``metrics.json`` is the
    training run's)."""
    return f"eval_{test_cfg['mode']}{'_aug' if test_cfg['aug'] else ''}"


def run_eval(cfg: dict, checkpoint: str, work_dir: Optional[str] = None, save_dir: Optional[str] = None,
             allow_partial: bool = False) -> dict:
    """``semask-eval``: build the model of ``cfg``, load ``checkpoint``, evaluate on the validation split and write
    ``eval_<mode>[_aug].json`` and ``.yaml`` (metrics, config) to the work dir (rank 0: ``work_dir``, else the run
    folder when ``checkpoint`` is one, else the config's), never the training run's
    ``metrics.json`` or log. Output folders are checked before the evaluation. Returns the metrics."""
    from .builder import build_segmentor
    from ..checkpoints.training import atomic_write
    from .config import dump
    from ..data.datasets import build_dataset
    from .distributed import cleanup, init_distributed
    from .runlog import setup_console_logging
    from .workdir import check_dir
    run_dir = checkpoint if Path(checkpoint).is_dir() else None  # a run folder: its results go next to its run
    work = check_dir(Path(work_dir or run_dir or cfg["work_dir"] or Path("work_dirs") / cfg["name"]))
    save = save_dir or cfg["test"]["save_predictions"]
    if save:
        check_dir(Path(save), "--save-pred")
    info = init_distributed(cfg["device"], cfg["train"]["dist_backend"])
    setup_console_logging(info.rank)
    if info.device.type == "cpu" and cfg["train"]["cpu_threads"]:
        torch.set_num_threads(cfg["train"]["cpu_threads"])
    try:
        if info.is_main:
            work.mkdir(parents=True, exist_ok=True)  # fail now, not after the evaluation
        dataset = build_dataset(cfg["data"], "val", seed=cfg["seed"])
        model = build_segmentor({**cfg, "pretrained": None}, dataset.num_classes)
        loaded = load_for_eval(model, checkpoint, allow_partial=allow_partial)
        model.to(info.device)
        metrics = evaluate(model, dataset, cfg, info, progress=cfg["train"]["progress"],
                           save_dir=Path(save) if save else None)
        metrics = {"config": cfg["name"], **loaded, **metrics}
        if info.is_main:
            stem = eval_name(cfg["test"])
            dump(cfg, work / f"{stem}.yaml")
            text = json.dumps(metrics, indent=2)
            path = atomic_write(work / f"{stem}.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
            logger.info("evaluation of %s\n%s\nmetrics written to %s", loaded["checkpoint"], format_table(metrics),
                        path)
        return metrics
    finally:
        cleanup(info)

"""Command line: ``semask-train`` / ``semask-eval`` (also ``python -m semask_models.cli train|eval ...``).

    semask-train CONFIG [--work-dir DIR] [--set key=value ...] [--resume | --overwrite]
    semask-eval  CONFIG --checkpoint PATH [--aug-test] [--work-dir DIR] [--set key=value ...] [--save-pred DIR]
                 [--allow-partial]
    semask-analyze CONFIG --checkpoint PATH [--work-dir DIR]      # SGR token semantics (S_c, D_c, S_I, D_I)
    torchrun --nproc_per_node 8 -m semask_models.cli train semask_swin_t_fpn_ade20k

CONFIG is a YAML file or the name of a shipped config (``python -m semask_models.cli configs`` lists them).
A bad config, checkpoint, work dir or data folder is reported as one ``error:`` line (exit status 2).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML file or shipped config name (see the 'configs' command)")
    p.add_argument("--work-dir", help="output folder (default: the config's work_dir, else work_dirs/<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_iters=1000 (repeatable)")


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semask-train", description="Train a SeMask/Swin segmentation model.")
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of the work dir")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in the work dir (checkpoints, log, metrics, events) and start anew")
    return p


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semask-eval", description="Evaluate a checkpoint (mIoU) on the val split.")
    _common(p)
    p.add_argument("--checkpoint", required=True,
                   help="a .safetensors of semask-train, a work dir (its latest checkpoint), or an official "
                        "SeMask-FPN / Swin checkpoint")
    p.add_argument("--aug-test", action="store_true", help="multi-scale (0.5-1.75) + flip test")
    p.add_argument("--slide", action="store_true", help="sliding-window inference (test.crop / test.stride)")
    p.add_argument("--save-pred", metavar="DIR",
                   help="write the predictions as PNGs to DIR (palette PNGs; 16-bit for more than 255 classes)")
    _allow_partial(p)
    return p


def _allow_partial(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="accept a checkpoint that fits the model only in part (keys left random are listed)")


def _load(args):
    from .engine.config import load_config
    return load_config(args.config, args.overrides)


def _user_errors() -> tuple:
    """Errors of the user's input, reported as one line instead of a traceback."""
    from .checkpoints.training import CheckpointError
    from .engine.config import ConfigError
    from .data.io import DataError
    from .engine.workdir import RunDirError
    return ConfigError, CheckpointError, DataError, RunDirError


def _reporting(command):
    def run(argv: Optional[Sequence[str]] = None) -> int:
        try:
            return command(argv)
        except _user_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    run.__name__, run.__doc__ = command.__name__, command.__doc__
    return run


@_reporting
def train_main(argv: Optional[Sequence[str]] = None) -> int:
    args = train_parser().parse_args(argv)
    cfg = _load(args)
    from .engine.train import run_train
    result = run_train(cfg, work_dir=args.work_dir, resume=args.resume, overwrite=args.overwrite)
    metrics = result.get("metrics")
    if metrics and metrics.get("mIoU") is not None:
        print(f"final mIoU {metrics['mIoU']:.4f}  mAcc {metrics['mAcc']:.4f}  aAcc {metrics['aAcc']:.4f}")
    return 0


@_reporting
def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    args = eval_parser().parse_args(argv)
    if args.aug_test:
        args.overrides.append("test.aug=true")
    if args.slide:
        args.overrides.append("test.mode=slide")
    cfg = _load(args)
    from .engine.evaluate import run_eval
    metrics = run_eval(cfg, args.checkpoint, work_dir=args.work_dir, save_dir=args.save_pred,
                       allow_partial=args.allow_partial)
    if metrics.get("mIoU") is not None:
        print(f"mIoU {metrics['mIoU']:.4f}  mAcc {metrics['mAcc']:.4f}  aAcc {metrics['aAcc']:.4f}")
    return 0


@_reporting
def analyze_main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="semask-analyze",
                                description="Token semantics of an SGR model on the validation split.")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="as for semask-eval")
    _allow_partial(p)
    args = p.parse_args(argv)
    cfg = _load(args)
    from .engine.analyze import run_analyze
    result = run_analyze(cfg, args.checkpoint, work_dir=args.work_dir, allow_partial=args.allow_partial)
    print("  ".join(f"{k} {result[k]:.3f}" for k in ("S_c", "D_c", "S_I", "D_I")))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "eval": eval_main, "analyze": analyze_main}
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[0] == "configs":
        from .engine.config import shipped_configs
        print("\n".join(shipped_configs()))
        return 0
    if argv[0] not in commands:
        print(f"unknown command {argv[0]!r}: use train, eval, analyze or configs", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

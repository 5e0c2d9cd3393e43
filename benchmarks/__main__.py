"""``python -m benchmarks <command>``: the benchmark suite. Results append to ``benchmarks/results/*.jsonl``
(with device, versions, git sha and date); every command says where it wrote."""
from __future__ import annotations

import argparse
import re

from . import (compare_models, compare_swin, flops, host_cost, kernels, model_breakdown, model_table, ops,
               profile_swin, report, sweep_swa)


def summary(doc: str) -> str:
    """The first sentence of a command's docstring, without its leading ``name``: (the command list's help)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    paragraph = re.sub(r"^``[^`]+``:\s*", "", paragraph).replace("``", "")
    end = re.search(r"\.(\s|$)", paragraph)
    return paragraph[: end.start() + 1] if end else paragraph


# command -> its module: each has add_arguments(parser) and run(args), and resolve_defaults(args) where its
# defaults depend on the device
COMMANDS = {"compare-swin": compare_swin, "compare-models": compare_models, "model-breakdown": model_breakdown,
            "model-table": model_table, "flops": flops, "ops": ops, "kernels": kernels, "host-cost": host_cost,
            "profile": profile_swin, "report": report, "sweep-swa": sweep_swa}


def build_parser() -> argparse.ArgumentParser:
    """The command line of every benchmark command (``.ci/gpu_check_all.py``'s presets are checked against it)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(commands.add_parser(name, help=summary(module.__doc__),
                                                 description=module.__doc__.replace("``", "")))
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    from semask_kernels.info import shadowing
    shadow = shadowing()
    if shadow:  # the CUDA backend would be silently missing from every table
        print(f"WARNING: {shadow}", flush=True)
    module = COMMANDS[args.command]
    if hasattr(module, "resolve_defaults"):
        module.resolve_defaults(args)
    module.run(args)


if __name__ == "__main__":
    main()

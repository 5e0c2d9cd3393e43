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


def build_parser() -> argparse.ArgumentParser:
    """The command line of every benchmark command (``.ci/gpu_check_all.py``'s presets are checked against it)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare-swin", help=summary(compare_swin.__doc__),
                                  description=compare_swin.__doc__.replace("``", ""))
    compare_swin.add_arguments(compare)
    models = commands.add_parser("compare-models", help=summary(compare_models.__doc__),
                                 description=compare_models.__doc__.replace("``", ""))
    compare_models.add_arguments(models)
    parts = commands.add_parser("model-breakdown", help=summary(model_breakdown.__doc__),
                                description=model_breakdown.__doc__.replace("``", ""))
    model_breakdown.add_arguments(parts)
    table = commands.add_parser("model-table", help=summary(model_table.__doc__),
                                description=model_table.__doc__.replace("``", ""))
    model_table.add_arguments(table)
    count = commands.add_parser("flops", help=summary(flops.__doc__),
                                description=flops.__doc__.replace("``", ""))
    flops.add_arguments(count)
    op_bench = commands.add_parser("ops", help=summary(ops.__doc__), description=ops.__doc__.replace("``", ""))
    ops.add_arguments(op_bench)
    kernel_table = commands.add_parser("kernels", help=summary(kernels.__doc__),
                                       description=kernels.__doc__.replace("``", ""))
    kernels.add_arguments(kernel_table)
    host = commands.add_parser("host-cost", help=summary(host_cost.__doc__),
                               description=host_cost.__doc__.replace("``", ""))
    host_cost.add_arguments(host)
    prof = commands.add_parser("profile", help=summary(profile_swin.__doc__),
                               description=profile_swin.__doc__.replace("``", ""))
    profile_swin.add_arguments(prof)
    rep = commands.add_parser("report", help=summary(report.__doc__),
                              description=report.__doc__.replace("``", ""))
    report.add_arguments(rep)
    sweep = commands.add_parser("sweep-swa", help=summary(sweep_swa.__doc__),
                                description=sweep_swa.__doc__.replace("``", ""))
    sweep_swa.add_arguments(sweep)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    from semask_kernels.info import shadowing
    shadow = shadowing()
    if shadow:  # the CUDA backend would be silently missing from every table
        print(f"WARNING: {shadow}", flush=True)
    if args.command == "compare-swin":
        compare_swin.resolve_defaults(args)
        compare_swin.run(args)
    elif args.command == "compare-models":
        compare_models.resolve_defaults(args)
        compare_models.run(args)
    elif args.command == "model-breakdown":
        model_breakdown.resolve_defaults(args)
        model_breakdown.run(args)
    elif args.command == "model-table":
        model_table.run(args)
    elif args.command == "flops":
        flops.run(args)
    elif args.command == "ops":
        ops.run(args)
    elif args.command == "host-cost":
        host_cost.run(args)
    elif args.command == "profile":
        profile_swin.run(args)
    elif args.command == "kernels":
        kernels.run(args)
    elif args.command == "report":
        report.run(args)
    elif args.command == "sweep-swa":
        sweep_swa.run(args)


if __name__ == "__main__":
    main()

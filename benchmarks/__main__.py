"""``python -m benchmarks <command>``: the benchmark suite."""
from __future__ import annotations

import argparse

from . import compare_swin, flops, ops, report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare-swin", help=compare_swin.__doc__.splitlines()[0],
                                  description=compare_swin.__doc__)
    compare_swin.add_arguments(compare)
    count = commands.add_parser("flops", help=flops.__doc__.splitlines()[0], description=flops.__doc__)
    flops.add_arguments(count)
    op_bench = commands.add_parser("ops", help=ops.__doc__.splitlines()[0], description=ops.__doc__)
    ops.add_arguments(op_bench)
    rep = commands.add_parser("report", help=report.__doc__.splitlines()[0], description=report.__doc__)
    report.add_arguments(rep)
    args = parser.parse_args(argv)
    if args.command == "compare-swin":
        compare_swin.resolve_defaults(args)
        compare_swin.run(args)
    elif args.command == "flops":
        flops.run(args)
    elif args.command == "ops":
        ops.run(args)
    elif args.command == "report":
        report.run(args)


if __name__ == "__main__":
    main()

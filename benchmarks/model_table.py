"""``model-table``: the README's model-level benchmark tables, generated from committed results, never typed by
hand: the compare-models rows of the latest committed GPU run (``benchmarks/results/gpu/*/bench.jsonl``) where
one exists, else the committed CPU run (``benchmarks/results/compare_models_cpu.jsonl``, labelled CPU), and the
training-step breakdown (``benchmarks/results/model_breakdown_cpu.jsonl``, or a GPU run's). ``--readme`` rewrites
the block between the README's ``model-table`` markers.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import harness
from .report import read_rows

ROOT = harness.RESULTS.parent.parent
CPU_MODELS = harness.RESULTS / "compare_models_cpu.jsonl"
CPU_BREAKDOWN = harness.RESULTS / "model_breakdown_cpu.jsonl"
START, END = "<!-- model-table:start (python -m benchmarks model-table --readme) -->", "<!-- model-table:end -->"


def _latest(rows: list[dict]) -> list[dict]:
    """The rows of the latest run (its date) among ``rows``."""
    if not rows:
        return []
    last = max(str(r["date"]) for r in rows)
    return [r for r in rows if str(r["date"]) == last]


def gpu_rows(bench: str, results: Path = harness.RESULTS) -> list[dict]:
    """``bench`` rows of the committed GPU runs (``results/gpu/*/bench.jsonl``), the latest run only."""
    rows = []
    for path in sorted((results / "gpu").glob("*/bench.jsonl")):
        rows += [r for r in read_rows(path) if r.get("bench") == bench and r.get("device_type") == "cuda"]
    return _latest(rows)


def source_rows(bench: str, cpu_file: Path, results: Path = harness.RESULTS) -> list[dict]:
    """A committed GPU run's rows of ``bench`` where one exists, else the committed CPU file's latest run."""
    return gpu_rows(bench, results) or (_latest(read_rows(cpu_file)) if cpu_file.exists() else [])


def _header(rows: list[dict], source: str) -> str:
    r = rows[0]
    label = ("**CPU run: CPU numbers, not GPU numbers** (no fused kernel runs on a CPU: `auto` runs the torch path "
             "too, so the two rows of a pair time the same computations)") if r["device_type"] == "cpu" else \
        "GPU run"
    return f"{label}. Device {r['device']}, torch {r['torch']}, git {r['git_sha']}, {r['date']}; from `{source}`."


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _speedup(r: dict) -> str:
    if r["backend"] == "torch":
        return "1 (baseline)"
    interval = f"{r['speedup_vs_torch_p10']:.2f}–{r['speedup_vs_torch_p90']:.2f}"
    return f"{r['speedup_vs_torch']:.2f}x ({interval})" if r.get("speedup_conclusive") else \
        f"inconclusive ({interval})"


def models_table(rows: list[dict], source: str) -> str:
    lines = [_header(rows, source), "",
             "| model | mode | dtype | batch | crop | backend | ms (p10–p90) | img/s | peak MB | GFLOPs | "
             "vs torch (p10–p90) | mem vs torch | reduced |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['batch']} | {r['crop']} | {r['backend']} | "
                     f"{r['median_ms']:.0f} ({r['p10_ms']:.0f}–{r['p90_ms']:.0f}) | {r['img_per_s']:.2f} | "
                     f"{_num(r['peak_mem_mb'], '.0f')} | {_num(r['gflops'], '.1f')} | {_speedup(r)} | "
                     f"{_num(r['mem_ratio_vs_torch'], '.2f')} | {r.get('reduced') or ''} |")
    return "\n".join(lines)


def breakdown_table(rows: list[dict], source: str) -> str:
    lines = [_header(rows, source), "",
             "| model | part of the training step | ms | share of the step |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['part']} | {r['median_ms']:.0f} | {100 * r['share_of_step']:.0f}% |")
    return "\n".join(lines)


def render(results: Path = harness.RESULTS) -> str:
    """The README block: the model table and the breakdown table (or a line saying which results are missing)."""
    parts = []
    for bench, cpu_file, table in (("compare-models", results / CPU_MODELS.name, models_table),
                                   ("model-breakdown", results / CPU_BREAKDOWN.name, breakdown_table)):
        rows = source_rows(bench, cpu_file, results)
        gpu = rows and rows[0]["device_type"] == "cuda"
        source = "benchmarks/results/gpu/*/bench.jsonl" if gpu else f"benchmarks/results/{cpu_file.name}"
        parts.append(table(rows, source) if rows else f"No {bench} results committed yet ({source}).")
    return "\n\n".join(parts)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the markers; True if the README changed. Missing markers are an error."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"error: {readme} has no model-table markers ({START} ... {END})")
    head, rest = text.split(START, 1)
    new = f"{head}{START}\n{block}\n{END}{rest.split(END, 1)[1]}"
    if new != text:
        readme.write_text(new)
    return new != text


def run(args) -> str:
    block = render(Path(args.results) if args.results else harness.RESULTS)
    if args.readme:
        changed = update_readme(ROOT / "README.md", block)
        print(f"README.md {'updated' if changed else 'already up to date'}")
    else:
        print(block)
    return block


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--readme", action="store_true", help="rewrite the README's model-table block")
    parser.add_argument("--results", default=None, help="results folder (default: benchmarks/results)")

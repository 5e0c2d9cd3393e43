"""``report``: markdown tables and matplotlib plots from the stored results (``benchmarks/results/*.jsonl``):
the latest run of each device for every suite, written next to the results."""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from . import harness


class ResultsError(ValueError):
    """A results file that cannot be reported: not JSON lines, or rows without the fields of their suite."""


# Fields every row needs (the run's identity and the header), and those each suite's tables and plots index.
COMMON_FIELDS = ("device", "date", "device_type", "torch", "triton", "cuda", "git_sha")
SUITE_FIELDS = {
    "compare_swin": ("model", "img_size", "batch", "mode", "variant", "img_per_s", "speedup_vs_stock"),
    "ops": ("op", "impl", "shape", "mode", "dtype", "speedup_vs_first"),
    "flops": ("model",),
}


def read_rows(path: Path, fields: tuple = ("device", "date")) -> list[dict]:
    """The rows of a JSON-lines results file; a line that is not a JSON object with ``fields`` is an error naming
    the file and the line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ResultsError(f"{path}:{number}: not valid JSON ({e}); the line starts {line[:60]!r}. Remove or "
                               "repair the line (a run killed while writing leaves half a line)") from None
        if not isinstance(row, dict):
            raise ResultsError(f"{path}:{number}: expected a JSON object (one result row), got "
                               f"{type(row).__name__}")
        missing = [f for f in fields if f not in row]
        if missing:
            raise ResultsError(f"{path}:{number}: the row has no {', '.join(missing)} (fields of this suite: "
                               f"{', '.join(fields)}); is it another suite's file?")
        rows.append(row)
    return rows


def latest_runs(path: Path, fields: tuple = ("device", "date")) -> list[dict]:
    """The rows of the latest run (same device and run date) of each device in ``path``."""
    if not path.exists():
        return []
    rows = read_rows(path, fields)
    latest = {}
    for r in rows:
        latest[r["device"]] = max(latest.get(r["device"], ""), str(r["date"]))
    return [r for r in rows if str(r["date"]) == latest[r["device"]]]


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for r in rows:
        cells = []
        for _, key in columns:
            v = r.get(key)
            cells.append("–" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def _header(rows: list[dict]) -> str:
    r = rows[0]
    note = " CPU run: CPU numbers, not GPU numbers." if r["device_type"] == "cpu" else ""
    return (f"Device **{r['device']}**, torch {r['torch']}, triton {r['triton']}, CUDA {r['cuda']}, "
            f"git {r['git_sha']}, {r['date']}.{note}")


def _by_device(rows: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for r in rows:
        groups[r["device"]].append(r)
    return groups


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def report_compare_swin(rows: list[dict], out: Path) -> list[Path]:
    written = []
    md = ["# compare-swin: stock timm Swin vs patched vs ours", ""]
    for device, rs in _by_device(rows).items():
        md += [_header(rs), "", _table(rs, [("model", "model"), ("size", "img_size"), ("batch", "batch"),
                                            ("mode", "mode"), ("variant", "variant"), ("backend", "backend"),
                                            ("ms", "median_ms"), ("img/s", "img_per_s"), ("peak MB", "peak_mem_mb"),
                                            ("vs stock", "speedup_vs_stock"),
                                            ("vs stock compiled", "speedup_vs_stock_compiled")]), ""]
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, title in ((axes[0], "speedup_vs_stock", "speedup vs stock eager"),
                               (axes[1], "img_per_s", "throughput vs batch (img/s)")):
            groups = defaultdict(list)
            for r in rs:
                groups[(r["model"].split("_")[1], r["img_size"], r["mode"], r["variant"])].append(r)
            if key == "img_per_s":
                for (m, size, mode, variant), g in groups.items():
                    g = sorted(g, key=lambda r: r["batch"])
                    ax.plot([r["batch"] for r in g], [r[key] for r in g], marker="o",
                            label=f"{m} {size} {mode} {variant}")
                ax.set_xlabel("batch")
            else:
                labels = [" ".join(map(str, k)) for k in groups]
                ax.barh(labels, [sum(r[key] for r in g) / len(g) for g in groups.values()])
                ax.axvline(1.0, color="k", lw=0.8)
            ax.set_title(title)
        axes[1].legend(fontsize=6)
        fig.suptitle(device, fontsize=9)
        written.append(_save(fig, out / f"compare_swin_{_slug(device)}.png"))
    path = out / "compare_swin.md"
    path.write_text("\n".join(md))
    return [path, *written]


def report_ops(rows: list[dict], out: Path) -> list[Path]:
    written = []
    md = ["# ops: every op and backend against its baselines", ""]
    for device, rs in _by_device(rows).items():
        md += [_header(rs), "", _table(rs, [("op", "op"), ("shape", "shape"), ("impl", "impl"), ("mode", "mode"),
                                            ("dtype", "dtype"), ("ms", "median_ms"), ("TFLOP/s", "tflops"),
                                            ("GB/s", "gbps"), ("peak MB", "peak_mem_mb"),
                                            ("vs first", "speedup_vs_first")]), ""]
        plt = _plt()
        ops = sorted({r["op"] for r in rs})
        fig, axes = plt.subplots(len(ops), 1, figsize=(11, 3 * len(ops)), squeeze=False)
        for ax, op in zip(axes[:, 0], ops):
            sel = [r for r in rs if r["op"] == op and r["impl"].startswith("op:")]
            ax.barh([f"{r['shape']} {r['mode']} {r['dtype']} {r['impl']}" for r in sel],
                    [r["speedup_vs_first"] for r in sel])
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_title(f"{op}: speedup vs the first baseline", fontsize=9)
            ax.tick_params(axis="y", labelsize=5)
        written.append(_save(fig, out / f"ops_{_slug(device)}.png"))
    path = out / "ops.md"
    path.write_text("\n".join(md))
    return [path, *written]


def report_flops(rows: list[dict], out: Path) -> list[Path]:
    md = ["# flops: parameters, MACs and FLOPs (batch 1, inference)", "",
          "MACs are what the Swin and SeMask papers call FLOPs; FLOPs = 2 × MACs.", "",
          _table(rows, [("model", "model"), ("input", "img_size"), ("params", "params"), ("GMACs", "gmacs"),
                        ("GFLOPs", "gflops"), ("semantic GMACs", "semantic_gmacs")])]
    path = out / "flops.md"
    path.write_text("\n".join(md))
    return [path]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def run(args) -> list[Path]:
    src = Path(args.results) if args.results else harness.RESULTS
    written = []
    for name, fn in (("compare_swin", report_compare_swin), ("ops", report_ops), ("flops", report_flops)):
        try:
            rows = latest_runs(src / f"{name}.jsonl", COMMON_FIELDS + SUITE_FIELDS[name])
        except ResultsError as e:  # the command's one-line error, not a traceback
            raise SystemExit(f"error: {e}") from None
        if rows:
            written += fn(rows, src)
        else:
            print(f"no {name} results in {src}")
    for path in written:
        print(f"wrote {path}")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, help="results folder (default: benchmarks/results)")

"""``report``: markdown tables and matplotlib plots from the stored results (``benchmarks/results/*.jsonl``):
the latest run of each device for every suite, written next to the results."""
from __future__ import annotations

import argparse
import json
import os
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
    "compare_models": ("model", "mode", "dtype", "batch", "crop", "backend", "median_ms", "speedup_vs_torch"),
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


def _save(fig, path: Path, top: float = 1.0) -> Path:
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# Below these medians a time is mostly timer and call overhead (perf_counter + Python dispatch on a CPU, launch
# latency on a GPU): ratios of such times are not measurements of the ops.
RESOLUTION_MS = {"cpu": 0.05, "cuda": 0.005}
NOISY_SPREAD = 2.0  # p90 / p10 above this: the run was too noisy for its ratio to mean much


def ratio_caveat(row: dict, base: dict) -> str | None:
    """Why the ratio of ``row`` to its baseline ``base`` (same run) is not to be trusted, or None."""
    if row.get("speedup_conclusive") is False:
        return f"inconclusive: speedup p10-p90 spread {row.get('speedup_spread') or 0:.2f}x stayed wide"
    resolution = RESOLUTION_MS.get(row.get("device_type"), 0.0)
    if min(row["median_ms"], base["median_ms"]) < resolution:
        return f"below timer resolution (< {resolution} ms)"
    for r in (row, base):
        if r.get("p10_ms") and r.get("p90_ms") and r["p90_ms"] > NOISY_SPREAD * r["p10_ms"]:
            return f"noisy (p10-p90 spread > {NOISY_SPREAD:g}x)"
    return None


def _with_caveats(rows: list[dict], group_keys: tuple) -> list[dict]:
    """Rows with a ``caveat`` field: each ratio against the first row of its group (how the suites compute
    them), checked with :func:`ratio_caveat`."""
    first = {}
    out = []
    for r in rows:
        base = first.setdefault(tuple(r.get(k) for k in group_keys), r)
        out.append({**r, "caveat": None if base is r else ratio_caveat(r, base)})
    return out


def _log_if_wide(ax, values, axis: str = "x") -> None:
    """A log axis when the values span more than a decade (one outlier must not flatten the rest)."""
    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def report_compare_swin(rows: list[dict], out: Path) -> list[Path]:
    written = []
    md = ["# compare-swin: stock timm Swin vs patched vs ours", ""]
    for device, rs in _by_device(rows).items():
        rs = _with_caveats(rs, ("model", "img_size", "batch", "mode"))
        md += [_header(rs), "", _table(rs, [("model", "model"), ("size", "img_size"), ("batch", "batch"),
                                            ("mode", "mode"), ("variant", "variant"), ("backend", "backend"),
                                            ("ms", "median_ms"), ("img/s", "img_per_s"), ("peak MB", "peak_mem_mb"),
                                            ("vs stock", "speedup_vs_stock"),
                                            ("vs stock compiled", "speedup_vs_stock_compiled"),
                                            ("caveat", "caveat")]), ""]
        written.append(_plot_compare_swin(device, rs, out / f"compare_swin_{_slug(device)}.png"))
    path = out / "compare_swin.md"
    path.write_text("\n".join(md))
    return [path, *written]


def _plot_compare_swin(device: str, rs: list[dict], path: Path) -> Path:
    plt = _plt()
    groups = defaultdict(list)
    for r in rs:
        groups[(r["model"].split("_")[1], r["img_size"], r["mode"], r["variant"])].append(r)
    labels = [f"Swin-{m[0].upper()} {size} {mode}: {variant}" for m, size, mode, variant in groups]
    height = max(3.0, 0.32 * len(groups) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height))
    y = list(range(len(groups)))
    speedups = [sum(r["speedup_vs_stock"] or 0 for r in g) / len(g) for g in groups.values()]
    colors = ["0.6" if k[3].startswith("stock") else "tab:blue" for k in groups]
    # error bars: the p10-p90 of the speedup (of the first batch of each group); hatched when inconclusive
    low = [max(0.0, v - (g[0].get("speedup_vs_stock_p10") or v)) for v, g in zip(speedups, groups.values())]
    high = [max(0.0, (g[0].get("speedup_vs_stock_p90") or v) - v) for v, g in zip(speedups, groups.values())]
    unsure = [any(r.get("speedup_conclusive") is False for r in g) for g in groups.values()]
    bars = left.barh(y, speedups, color=colors, xerr=[low, high], error_kw={"ecolor": "k", "capsize": 3,
                                                                             "lw": 0.8})
    for bar, inconclusive in zip(bars, unsure):
        if inconclusive:
            bar.set_hatch("///")
            bar.set_alpha(0.4)
    left.axvline(1.0, color="k", lw=0.8)
    left.set_yticks(y, labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("speedup vs stock timm eager (same run; > 1 is faster; bars: p10-p90)", fontsize=9)
    left.set_title("speedup vs stock eager (gray: stock; hatched: inconclusive)", fontsize=10)
    for i, (v, inconclusive) in enumerate(zip(speedups, unsure)):
        left.text(v + high[i], i, " inconclusive" if inconclusive else f" {v:.2f}x", va="center", fontsize=7)
    left.margins(x=0.12)
    if max(len({r["batch"] for r in g}) for g in groups.values()) > 1:
        for label, g in zip(labels, groups.values()):
            g = sorted(g, key=lambda r: r["batch"])
            right.plot([r["batch"] for r in g], [r["img_per_s"] for r in g], marker="o", label=label)
        right.set_xscale("log", base=2)
        _log_if_wide(right, [r["img_per_s"] for r in rs], axis="y")
        right.set_xlabel("batch", fontsize=9)
        right.set_ylabel("images / s", fontsize=9)
        right.set_title("throughput vs batch", fontsize=10)
        right.legend(fontsize=7)
    else:  # one batch per contender: a bar each (a line of one point draws nothing readable)
        throughput = [g[0]["img_per_s"] for g in groups.values()]
        right.barh(y, throughput, color=colors)
        right.set_yticks(y, [""] * len(y))
        right.invert_yaxis()
        _log_if_wide(right, throughput)
        for i, v in enumerate(throughput):
            right.text(v, i, f" {v:.3g}", va="center", fontsize=7)
        right.margins(x=0.12)
        batch = next(iter(groups.values()))[0]["batch"]
        right.set_xlabel("images / s", fontsize=9)
        right.set_title(f"throughput at batch {batch}", fontsize=10)
    note = " (CPU run: CPU numbers, not GPU numbers)" if rs[0]["device_type"] == "cpu" else ""
    fig.suptitle(f"{device}{note}", fontsize=10)
    return _save(fig, path)


def report_compare_models(rows: list[dict], out: Path) -> list[Path]:
    """compare-models: a table, and a plot of each fused/plain speedup with its p10-p90 as error bars (hatched
    where inconclusive) and, where measured, the peak-memory ratio."""
    written = []
    md = ["# compare-models: fused (auto) vs plain (torch)", ""]
    for device, rs in _by_device(rows).items():
        rs = _with_caveats(rs, ("model", "mode", "dtype", "batch", "crop"))
        md += [_header(rs), "", _table(rs, [("model", "model"), ("mode", "mode"), ("dtype", "dtype"),
                                            ("batch", "batch"), ("crop", "crop"), ("backend", "backend"),
                                            ("ms", "median_ms"), ("img/s", "img_per_s"), ("peak MB", "peak_mem_mb"),
                                            ("GFLOPs", "gflops"), ("vs torch", "speedup_vs_torch"),
                                            ("mem vs torch", "mem_ratio_vs_torch"), ("reduced", "reduced"),
                                            ("caveat", "caveat")]), ""]
        written.append(_plot_compare_models(device, rs, out / f"compare_models_{_slug(device)}.png"))
    path = out / "compare_models.md"
    path.write_text("\n".join(md))
    return [path, *written]


def _plot_compare_models(device: str, rs: list[dict], path: Path) -> Path:
    plt = _plt()
    fused = [r for r in rs if r["backend"] != "torch" and r.get("speedup_vs_torch")]
    labels = [f"{r['model']} {r['mode']} {r['dtype']} b{r['batch']} {r['crop']}" for r in fused]
    y = list(range(len(fused)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(3.0, 0.35 * len(fused) + 1.5)))
    speedups = [r["speedup_vs_torch"] for r in fused]
    low = [max(0.0, r["speedup_vs_torch"] - (r.get("speedup_vs_torch_p10") or r["speedup_vs_torch"])) for r in fused]
    high = [max(0.0, (r.get("speedup_vs_torch_p90") or r["speedup_vs_torch"]) - r["speedup_vs_torch"]) for r in fused]
    bars = left.barh(y, speedups, color="tab:blue", xerr=[low, high],
                     error_kw={"ecolor": "k", "capsize": 3, "lw": 0.8})
    for i, (bar, r) in enumerate(zip(bars, fused)):
        unsure = r.get("speedup_conclusive") is False
        if unsure:
            bar.set_hatch("///")
            bar.set_alpha(0.4)
        left.text(speedups[i] + high[i], i, " inconclusive" if unsure else f" {speedups[i]:.2f}x", va="center",
                  fontsize=7)
    left.axvline(1.0, color="k", lw=0.8)
    left.set_yticks(y, labels, fontsize=8)
    left.invert_yaxis()
    left.margins(x=0.15)
    left.set_xlabel("speedup of auto over torch (same run; bars: p10-p90)", fontsize=9)
    left.set_title("fused vs plain (hatched: inconclusive)", fontsize=10)
    mem = [r.get("mem_ratio_vs_torch") for r in fused]
    if any(m is not None for m in mem):
        right.barh(y, [m or 0 for m in mem], color="tab:green")
        right.axvline(1.0, color="k", lw=0.8)
        right.set_yticks(y, [""] * len(y))
        right.invert_yaxis()
        right.set_xlabel("peak memory, auto / torch (< 1 saves memory)", fontsize=9)
    else:
        right.axis("off")
        right.text(0.5, 0.5, "peak memory not measured on this device", ha="center", va="center", fontsize=9)
    note = " (CPU run: CPU numbers, not GPU numbers)" if rs[0]["device_type"] == "cpu" else ""
    fig.suptitle(f"{device}{note}", fontsize=10)
    return _save(fig, path)


def report_ops(rows: list[dict], out: Path) -> list[Path]:
    written = []
    md = ["# ops: every op and backend against its baselines", "",
          "`vs first`: the first row of each (op, shape, mode, dtype) group is its baseline; `caveat` marks ratios "
          "of times below the timer's resolution or of noisy runs.", ""]
    for device, rs in _by_device(rows).items():
        rs = _with_caveats(rs, ("op", "shape", "mode", "dtype"))
        md += [_header(rs), "", _table(rs, [("op", "op"), ("shape", "shape"), ("impl", "impl"), ("mode", "mode"),
                                            ("dtype", "dtype"), ("ms", "median_ms"), ("TFLOP/s", "tflops"),
                                            ("GB/s", "gbps"), ("peak MB", "peak_mem_mb"),
                                            ("vs first", "speedup_vs_first"), ("caveat", "caveat")]), ""]
        written.append(_plot_ops(device, rs, out / f"ops_{_slug(device)}.png"))
    path = out / "ops.md"
    path.write_text("\n".join(md))
    return [path, *written]


def _plot_ops(device: str, rs: list[dict], path: Path) -> Path:
    """One row of panels per op, one panel per (mode, dtype): the median time of every implementation (baselines
    hollow gray-scale markers, our backends filled) per shape, on a log axis; faded points carry a caveat."""
    plt = _plt()
    ops = list(dict.fromkeys(r["op"] for r in rs))
    columns = list(dict.fromkeys((r["mode"], r["dtype"]) for r in rs))
    shapes = {op: list(dict.fromkeys(r["shape"] for r in rs if r["op"] == op)) for op in ops}
    heights = [0.3 * len(shapes[op]) + 1.4 for op in ops]
    header_in = 0.9  # suptitle and the one legend above the panels
    total = sum(heights) + header_in
    fig, axes = plt.subplots(len(ops), len(columns), figsize=(3.2 + 4.2 * len(columns), total),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    handles = {}
    baseline_markers = iter("sD^v<>p*")
    ours_colors = iter(plt.get_cmap("tab10").colors)
    styles = {}
    for impl in dict.fromkeys(r["impl"] for r in rs):
        if impl.startswith("op:"):
            styles[impl] = {"marker": "o", "color": next(ours_colors, "tab:blue")}
        else:
            styles[impl] = {"marker": next(baseline_markers, "s"), "color": "0.35", "facecolors": "none"}
    for row, op in enumerate(ops):
        for col, (mode, dtype) in enumerate(columns):
            ax = axes[row, col]
            sel = [r for r in rs if r["op"] == op and r["mode"] == mode and r["dtype"] == dtype]
            impls = list(dict.fromkeys(r["impl"] for r in sel))
            for j, impl in enumerate(impls):
                pts = [r for r in sel if r["impl"] == impl]
                offset = (j - (len(impls) - 1) / 2) * 0.08
                style = dict(styles[impl])
                face = style.pop("facecolors", style["color"])
                for faded in (False, True):
                    part = [r for r in pts if bool(r["caveat"]) == faded]
                    if part:
                        dots = ax.scatter([r["median_ms"] for r in part],
                                          [shapes[op].index(r["shape"]) + offset for r in part], s=28,
                                          edgecolors=style["color"], facecolors=face, marker=style["marker"],
                                          alpha=0.3 if faded else 1.0)
                        if not faded:
                            handles.setdefault(impl, dots)
            ax.set_yticks(range(len(shapes[op])), shapes[op] if col == 0 else [""] * len(shapes[op]), fontsize=8)
            ax.set_ylim(len(shapes[op]) - 0.5, -0.5)
            if sel:
                ax.set_xscale("log")
            ax.grid(axis="x", which="both", alpha=0.3)
            ax.set_title(f"{op}: {mode}, {dtype}", fontsize=9)
            ax.set_xlabel("median ms (log; left is faster)", fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
    note = " (CPU run: CPU numbers, not GPU numbers)" if rs[0]["device_type"] == "cpu" else ""
    fig.suptitle(f"{device}{note}. Hollow gray: baselines; filled: semask_kernels backends; faded: ratio not "
                 "trustworthy (below timer resolution or noisy)", fontsize=10, y=1 - 0.15 / total)
    fig.legend(list(handles.values()), list(handles), loc="center", ncol=min(len(handles), 8), fontsize=8,
               bbox_to_anchor=(0.5, 1 - 0.5 / total))
    return _save(fig, path, top=1 - header_in / total)


def report_flops(rows: list[dict], out: Path) -> list[Path]:
    md = ["# flops: parameters, MACs and FLOPs (batch 1, inference)", "",
          "MACs are what the Swin and SeMask papers call FLOPs; FLOPs = 2 × MACs.", "",
          _table(rows, [("model", "model"), ("input", "img_size"), ("params", "params"), ("GMACs", "gmacs"),
                        ("GFLOPs", "gflops"), ("semantic GMACs", "semantic_gmacs")])]
    path = out / "flops.md"
    path.write_text("\n".join(md))
    return [path]


def shown(path) -> str:
    """A path as the user can type it: relative to the current folder when inside it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def run(args) -> list[Path]:
    src = Path(args.results) if args.results else harness.RESULTS
    written = []
    for name, fn in (("compare_swin", report_compare_swin), ("compare_models", report_compare_models),
                     ("ops", report_ops), ("flops", report_flops)):
        try:
            rows = latest_runs(src / f"{name}.jsonl", COMMON_FIELDS + SUITE_FIELDS[name])
        except ResultsError as e:  # the command's one-line error, not a traceback
            raise SystemExit(f"error: {e}") from None
        if rows:
            written += fn(rows, src)
        else:
            print(f"no {name} results in {src}")
    for path in written:
        print(f"wrote {shown(path)}")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, help="results folder (default: benchmarks/results)")

"""The evidence manifest of a GPU run made before ``gpu_summary.json`` recorded source hashes, derived after the fact.

    python .ci/evidence_manifest.py benchmarks/results/gpu/<run>/

reads the git commit the run recorded (``gpu_summary.json``'s ``git_sha``) and, for every fused backend the run
tested that is registered today, hashes the files that define it (today's declaration, ``SOURCES`` of its module,
``semask_kernels/evidence.py``) AS THEY WERE AT THAT COMMIT (``git show SHA:path``, ``git ls-tree`` for folders).
A file that did not exist then is recorded as null. The result goes to ``<run>/evidence_manifest.json``, a file
of its own: the run's files stay as the GPU machine wrote them. Needs git and the commit; the tests that read the
manifest do not.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semask_kernels import backends, evidence  # noqa: E402
from semask_kernels.ops._spec import specs  # noqa: E402


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True)


def at_commit(sha: str):
    """(reader, lister) of the repository at ``sha``."""
    if _git("cat-file", "-e", f"{sha}^{{commit}}").returncode:
        raise SystemExit(f"commit {sha} is not in this repository: cannot derive its manifest")

    def reader(path: str):
        done = _git("show", f"{sha}:{path}")
        return done.stdout if done.returncode == 0 else None

    def lister(folder: str):
        done = _git("ls-tree", "-r", "--name-only", sha, "--", folder)
        return done.stdout.decode().split()

    return reader, lister


def manifest(run: Path) -> dict:
    summary = json.loads((run / "gpu_summary.json").read_text())
    sha = summary["git_sha"]
    reader, lister = at_commit(sha)
    specs()  # every op folder imported: every backend registered
    table: dict = {}
    for op, per_backend in sorted(summary.get("tests_by_op", {}).items()):
        for name in sorted(per_backend):
            if name == "-" or not evidence.is_fused(name) or name not in backends._REGISTRY.get(op, {}):
                continue
            paths = evidence.expand(evidence.declared(op, name), lister)
            table.setdefault(op, {})[name] = evidence.fingerprint(paths, reader)
    return {
        "derived_after_the_fact": True,
        "derived_on": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from_commit": sha,
        "note": ("Not written by the GPU run: derived afterwards with .ci/evidence_manifest.py from the commit the "
                 "run recorded. Per fused backend the run tested: SHA-256 of the files that define it (today's "
                 "declaration, SOURCES in its module), as they were at that commit; null: the file did not exist "
                 "then."),
        "sources": table,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding gpu_summary.json")
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "gpu_summary.json").is_file():
            parser.error(f"runs: {run} has no gpu_summary.json")
        summary = json.loads((run / "gpu_summary.json").read_text())
        if "sources" in summary:
            print(f"{run}: the run recorded its own source hashes; no manifest needed")
            continue
        out = run / evidence.MANIFEST
        out.write_text(json.dumps(manifest(run), indent=2) + "\n")
        print(f"{run}: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

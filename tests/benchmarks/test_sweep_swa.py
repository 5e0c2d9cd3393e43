"""``python -m benchmarks sweep-swa``: the dry run on the CPU (interpreter) proves the sweep, its correctness check
against the verified forward and the tile table's format; the GPU run times it."""
import json

import torch

from benchmarks import sweep_swa
from semask_kernels.kernels import window_attention_onepass as onepass


def test_dry_run_checks_every_setting_and_writes_rows_the_kernel_reads(monkeypatch, tmp_path):
    monkeypatch.setattr(sweep_swa, "STAGES", sweep_swa.STAGES[:1])
    before = dict(onepass.TILE_TABLE)
    rows, winners = sweep_swa.sweep(1, torch.float32, "cpu", dry_run=True)
    assert len(rows) == 2 and all(r["ok"] and r["max_abs_diff_vs_triton"] <= 1e-4 for r in rows)
    assert {(r["num_warps"], r["num_stages"], r["pairs_per_program"]) for r in rows} == {(2, 1, 1), (2, 1, 4)}
    assert onepass.TILE_TABLE == before  # the sweep restores the table it overrides
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"rows": sweep_swa.table_rows(winners, {"device": "cpu", "git_sha": "x"})}))
    table = onepass.read_table(path)
    assert table == {(49, 32, 3): onepass.Tiles(2, 1, 1)}
    monkeypatch.setattr(onepass, "TILE_TABLE", table)
    assert onepass.tiles(49, 32, 3, 10_000) == onepass.Tiles(2, 1, 1)
    assert onepass.tiles(49, 32, 6, 10_000) == onepass.Tiles(4, 2, 9)  # no row: the rule


def test_the_committed_tile_table_parses():
    assert isinstance(onepass.read_table(), dict)

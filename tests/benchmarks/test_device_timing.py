"""The device-timed kernel table's arithmetic and backend list (the timing itself needs a GPU: a gpu test), and
the host cost per op call on the CPU, held to a budget."""
import pytest
import torch

from benchmarks import device_timer, host_cost, kernels
from semask_kernels import backends


def test_input_sets_exceed_the_l2_and_stay_bounded():
    l2 = 50 * 2 ** 20  # an H100's
    for per_call in (2 ** 10, 3 * 2 ** 20, 10 * 2 ** 20, 49 * 2 ** 20, 2 ** 30):
        n = device_timer.input_sets(per_call, l2)
        assert 2 <= n <= 64
        assert n * per_call >= 2 * l2 or n == 64
    assert device_timer.input_sets(60 * 2 ** 20, 60 * 2 ** 20) == 2
    with pytest.raises(ValueError, match="bytes_per_call must be > 0"):
        device_timer.input_sets(0, l2)


def test_traffic_and_gbps_follow_the_minimum_traffic_definition():
    tokens, c = 128 * 56 * 56, 96
    assert kernels.traffic(tokens, c, 2, "forward") == tokens * c * 4 * 2  # q, k, v in, out once
    assert kernels.traffic(tokens, c, 2, "forward+backward") == 2 * kernels.traffic(tokens, c, 2, "forward")
    assert device_timer.gbps(4_300_000_000, 1000.0) == pytest.approx(4.3)
    with pytest.raises(ValueError, match="mode must be"):
        kernels.traffic(1, 1, 2, "backward")
    with pytest.raises(ValueError, match="ms must be > 0"):
        device_timer.gbps(1, 0.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU does")
def test_device_timing_refuses_a_cpu_device_and_the_table_says_why(capsys):
    with pytest.raises(ValueError, match="device must be a CUDA device"):
        device_timer.time_device([lambda: None], "cpu")
    with pytest.raises(ValueError, match="device must be a CUDA device"):
        device_timer.l2_bytes("cpu")
    from benchmarks import __main__ as cli
    cli.main(["kernels", "--no-save"])
    assert "device time needs a CUDA GPU" in capsys.readouterr().out


def test_the_table_times_every_registered_backend_variants_included(monkeypatch):
    """Any backend the registry lists for the op is timed (the reference excepted), a variant right after its
    base, with no list of names in the benchmark."""
    names = kernels.backend_names()
    assert "reference" not in names and {"torch", "triton", "cuda"} <= set(names)
    registry = {op: dict(per) for op, per in backends._REGISTRY.items()}
    base = registry[kernels.OP]["triton"]
    registry[kernels.OP]["triton.toy"] = base
    monkeypatch.setattr(backends, "_REGISTRY", registry)
    names = kernels.backend_names()
    between = names[names.index("triton") + 1:names.index("triton.toy")]  # the variants registered before it
    assert all(backends.base(n) == "triton" for n in between) and names.index("cuda") > names.index("triton.toy")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="device timing needs a CUDA GPU")
def test_device_timer_times_a_copy_by_graph_replay_and_falls_back_to_events():
    device = torch.device("cuda")
    x = torch.randn(2 ** 22, device=device)
    y = torch.empty_like(x)
    t = device_timer.time_device([lambda: y.copy_(x)], device, rounds=5, samples=3)
    assert t.timer == "cuda_graph" and t.ms > 0 and t.p10_ms <= t.ms <= t.p90_ms

    def host_sync():
        y.copy_(x)
        y.sum().item()  # not capturable
    t = device_timer.time_device([host_sync], device, rounds=2, samples=2)
    assert t.timer == "events" and "not captured" in t.note
    assert device_timer.copy_bandwidth(device, nbytes=2 ** 26, samples=3) > 50  # GB/s: any GPU's HBM


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="device timing needs a CUDA GPU")
def test_the_kernel_table_times_every_backend_that_runs_with_its_timer_and_roofline(tmp_path):
    from benchmarks import __main__ as cli
    jsonl = tmp_path / "kernels.jsonl"
    cli.main(["kernels", "--quick", "--rounds", "2", "--samples", "2", "--jsonl", str(jsonl)])
    import json
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    ops = [r for r in rows if r["impl"].startswith("op:")]
    assert {r["impl"] for r in ops} >= {"op:torch", "op:triton"}
    assert {r["mode"] for r in ops} == {"forward", "forward+backward"}
    for r in rows:
        assert r["timer"] in ("cuda_graph", "events") and r["median_ms"] > 0 and r["copy_gbps"] > 0
        assert r["of_copy"] == pytest.approx(r["gbps"] / r["copy_gbps"])
        assert r["input_sets"] >= 2 or r["impl"] == "copy"
    assert rows[0]["impl"] == "copy" and rows[0]["of_copy"] == pytest.approx(1.0)  # the same run's roofline
    assert any(r["impl"] == "from_map:timm_eager" for r in rows)


@pytest.fixture
def interpreted(monkeypatch):
    from semask_kernels import _triton_utils as tu
    if tu.triton_available() is not None:
        pytest.skip(f"Triton cannot run here: {tu.triton_available()}")


def test_the_launch_recorder_stubs_and_counts_triton_launches(interpreted):
    import semask_kernels as sk
    kw = host_cost._inputs()
    with host_cost.recording() as seen:
        out = sk.shifted_window_attention(**kw, backend="triton")
    assert out.shape == (*kw["qkv"].shape[:-1], kw["qkv"].shape[-1] // 3)
    assert [name for name, _, _ in seen.triton] == ["_fwd_kernel"] and seen.triton[0][2] > 10
    from triton.runtime import interpreter
    assert "recording" not in interpreter.InterpretedFunction.run.__qualname__  # restored after the block


@pytest.mark.parametrize("backend", host_cost.triton_backends())
def test_host_cost_per_call_stays_within_budget(interpreted, backend):
    """Host work per call, launches stubbed, on the CPU (microseconds of CPU time, a shared machine: the time
    budget is loose, the counts are exact). Today's triton: 1 forward launch (~70 keyword arguments), 2 backward
    launches (~160) and 7 small torch reductions."""
    forward, backward = host_cost.measure(backend, repeats=20)
    assert forward.direction == "forward" and backward.direction == "backward"
    assert forward.triton_launches == 1 and forward.device_ops <= 1, forward
    assert 1 <= backward.triton_launches <= 2 and backward.device_ops <= 8, backward
    assert forward.launch_kwargs <= 80 and backward.launch_kwargs <= 170
    assert forward.p10_us < 1_000 and backward.p10_us < 3_000, (forward, backward)  # CPU µs; ~55 / ~200 alone

"""``harness.time_contenders``: interleaved rounds cancel load changes; failures are dropped and reported."""
import pytest
import torch

from benchmarks import harness


class Clock:
    """A fake ``perf_counter``: each contender call advances it by its cost times the current load."""

    def __init__(self):
        self.now = 0.0
        self.load = 1.0
        self.calls = []

    def __call__(self):
        return self.now

    def contender(self, name, cost_s, loads_after=None):
        def run():
            self.calls.append(name)
            self.now += cost_s * self.load
            if loads_after is not None:  # the machine's load changes after this contender's calls
                self.load = loads_after[len([c for c in self.calls if c == name]) % len(loads_after)]
        return run


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(harness.time, "perf_counter", c)
    return c


def test_interleaved_rounds_alternate_and_pair_the_ratios(clock):
    fns = {"stock": clock.contender("stock", 0.010, loads_after=[1.0, 5.0, 1.0, 3.0]),
           "fast": clock.contender("fast", 0.005)}
    contest = harness.time_contenders(fns, torch.device("cpu"), warmup=1, repeats=4, interleave=True)
    assert clock.calls[:2] == ["stock", "fast"]  # warm-up
    assert clock.calls[2:] == ["stock", "fast", "fast", "stock", "stock", "fast", "fast", "stock"]
    assert contest.interleaved and not contest.failures
    assert contest.timings["fast"].repeats == 4
    assert contest.speedup("stock", "stock") == (1.0, 1.0, 1.0)
    ratios = sorted(b / t for b, t in zip(contest.times["stock"], contest.times["fast"]))
    median, p10, p90 = contest.speedup("fast", "stock")
    assert median == pytest.approx((ratios[1] + ratios[2]) / 2)  # the median of the 4 per-round ratios
    assert (p10, p90) == (pytest.approx(ratios[0]), pytest.approx(ratios[3]))


def test_interleaving_cancels_a_load_that_moves_with_the_rounds(clock):
    """Within a round both contenders see one load: every per-round ratio is the true 2x."""

    def stock():
        clock.calls.append("stock")
        clock.now += 0.010 * clock.load

    def fast():
        clock.calls.append("fast")
        clock.now += 0.005 * clock.load

    def next_round():
        rounds = len(clock.calls) // 2
        clock.load = [1.0, 4.0, 2.0, 7.0, 1.5, 3.0][rounds % 6]

    fns = {"stock": lambda: (stock(), next_round() if len(clock.calls) % 2 == 0 else None),
           "fast": lambda: (fast(), next_round() if len(clock.calls) % 2 == 0 else None)}
    contest = harness.time_contenders(fns, torch.device("cpu"), warmup=0, repeats=6, interleave=True)
    median, p10, p90 = contest.speedup("fast", "stock")
    assert (median, p10, p90) == pytest.approx((2.0, 2.0, 2.0))
    # back to back, the two contenders see different loads, and the ratio is off
    clock.calls.clear()
    back_to_back = harness.time_contenders(fns, torch.device("cpu"), warmup=0, repeats=6, interleave=False)
    assert back_to_back.speedup("fast", "stock")[0] != pytest.approx(2.0, rel=0.05)


def test_back_to_back_without_interleave(clock):
    fns = {"a": clock.contender("a", 0.002), "b": clock.contender("b", 0.001)}
    contest = harness.time_contenders(fns, torch.device("cpu"), warmup=1, repeats=3, interleave=False)
    assert clock.calls == ["a"] * 4 + ["b"] * 4
    assert contest.speedup("b", "a") == (pytest.approx(2.0), None, None)


def test_a_failing_contender_is_dropped_and_reported(clock):
    state = {"n": 0}

    def flaky():
        state["n"] += 1
        if state["n"] == 3:
            raise RuntimeError("out of memory")
        clock.now += 0.001

    fns = {"stock": clock.contender("stock", 0.002), "flaky": flaky}
    contest = harness.time_contenders(fns, torch.device("cpu"), warmup=1, repeats=4, interleave=True)
    assert set(contest.timings) == {"stock"} and contest.timings["stock"].repeats == 4
    assert isinstance(contest.failures["flaky"], RuntimeError)
    assert contest.speedup("flaky", "stock") is None

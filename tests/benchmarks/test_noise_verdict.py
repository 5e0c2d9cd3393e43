"""Noise is never shown as a speedup: adaptive warm-up until times settle, rounds until the spread of the ratio
is narrow or a cap is hit, and "inconclusive" for a ratio whose spread stays wide. Synthetic timings (a fake
clock): deterministic."""
import itertools

import pytest
import torch

from benchmarks import harness

CPU = torch.device("cpu")


class Clock:
    """A fake ``perf_counter``; each contender call advances it by the next of its costs (seconds)."""

    def __init__(self):
        self.now = 0.0
        self.calls = []

    def __call__(self):
        return self.now

    def contender(self, name, costs):
        costs = iter(costs)

        def run():
            self.calls.append(name)
            self.now += next(costs)
        return run


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(harness.time, "perf_counter", c)
    return c


def test_verdict_states_a_ratio_only_when_its_spread_is_narrow():
    tight = harness.verdict(2.0, 1.9, 2.1)
    assert tight.conclusive and str(tight) == "2.00x (1.90-2.10)"
    wide = harness.verdict(3.62, 0.46, 2.31)  # a loaded 2-core machine's "train: patched 3.62x"
    assert not wide.conclusive and str(wide) == "inconclusive (0.46-2.31)" and wide.spread == pytest.approx(5.02,
                                                                                                           abs=0.01)
    assert not harness.verdict(1.0, 1.0, 1.3).conclusive  # the limit itself is not below it
    assert harness.verdict(1.0, 1.0, 1.3, max_spread=1.5).conclusive


def test_settled_needs_the_last_calls_to_agree():
    assert not harness.settled([9.0, 5.0, 1.0])
    assert not harness.settled([1.0, 1.0])  # too few
    assert harness.settled([9.0, 5.0, 1.0, 1.1, 1.05])
    assert not harness.settled([1.0, 1.0, 1.3], tol=0.15)


def test_warm_up_runs_until_the_times_settle(clock):
    # a first call that compiles, then a cooling cache, then steady
    fns = {"base": clock.contender("base", [5.0, 2.0, 1.0, 1.0, 1.0] + [1.0] * 100),
           "fast": clock.contender("fast", [0.5] * 100)}
    until = harness.Stopping(baseline="base", max_rounds=20, time_cap_s=1e9, warmup_cap_s=1e9)
    contest = harness.time_contenders(fns, CPU, warmup=1, repeats=3, until=until)
    assert contest.warmup_calls == {"base": 5, "fast": 3}
    assert contest.rounds == 3 and contest.stopped.startswith("spread below")
    v = contest.verdict("fast", "base")
    assert v.conclusive and v.median == pytest.approx(2.0)
    # without a Stopping: the fixed warm-up and repeats, as before
    clock.calls.clear()
    fixed = harness.time_contenders({"a": clock.contender("a", [1.0] * 10)}, CPU, warmup=1, repeats=3)
    assert fixed.warmup_calls == {"a": 1} and fixed.rounds == 3 and fixed.stopped == "fixed repeats"


def test_a_wide_spread_runs_more_rounds_then_is_inconclusive(clock):
    # the load changes between the two calls of every round: per-round ratios swing 0.5x..4x, never settle
    fast_costs = itertools.cycle([2.0, 0.25, 1.0, 0.5])
    fns = {"base": clock.contender("base", itertools.repeat(1.0)), "fast": clock.contender("fast", fast_costs)}
    until = harness.Stopping(baseline="base", max_rounds=12, time_cap_s=1e9, settle_calls=1)
    contest = harness.time_contenders(fns, CPU, warmup=0, repeats=3, until=until)
    assert contest.rounds == 12 and contest.stopped.startswith("max rounds")
    v = contest.verdict("fast", "base")
    assert not v.conclusive and str(v).startswith("inconclusive")


def test_the_time_cap_ends_the_rounds(clock):
    fns = {"base": clock.contender("base", itertools.repeat(10.0)),
           "fast": clock.contender("fast", itertools.cycle([20.0, 1.0]))}
    until = harness.Stopping(baseline="base", max_rounds=1000, time_cap_s=100.0, settle_calls=1)
    contest = harness.time_contenders(fns, CPU, warmup=0, repeats=2, until=until)
    assert contest.stopped.startswith("time cap") and contest.rounds == 6  # 11 + 30 + 11 + 30 + 11 + 30 s
    assert not contest.verdict("fast", "base").conclusive


def test_noise_that_dies_down_is_outlasted(clock):
    # three noisy rounds, then steady 2x: more rounds push the outliers past p10/p90
    fast = itertools.chain([2.0, 0.2, 3.0], itertools.repeat(0.5))
    fns = {"base": clock.contender("base", itertools.repeat(1.0)), "fast": clock.contender("fast", fast)}
    until = harness.Stopping(baseline="base", max_rounds=100, time_cap_s=1e9, settle_calls=1)
    contest = harness.time_contenders(fns, CPU, warmup=0, repeats=3, until=until)
    assert 3 < contest.rounds < 100 and contest.stopped.startswith("spread below")
    v = contest.verdict("fast", "base")
    assert v.conclusive and v.median == pytest.approx(2.0)


def test_back_to_back_spread_comes_from_both_timings(clock):
    fns = {"base": clock.contender("base", itertools.repeat(1.0)),
           "fast": clock.contender("fast", itertools.cycle([0.5, 2.0]))}
    contest = harness.time_contenders(fns, CPU, warmup=0, repeats=10, interleave=False)
    v = contest.verdict("fast", "base")
    assert (v.p10, v.p90) == (pytest.approx(0.5), pytest.approx(2.0)) and not v.conclusive


def test_too_few_rounds_are_never_conclusive(clock):
    assert not harness.verdict(2.0, 2.0, 2.0, samples=2).conclusive
    fns = {"base": clock.contender("base", itertools.repeat(1.0)),
           "fast": clock.contender("fast", itertools.repeat(0.5))}
    contest = harness.time_contenders(fns, CPU, warmup=0, repeats=1)
    assert not contest.verdict("fast", "base").conclusive  # one round: no spread to judge
    assert contest.verdict("base", "base").conclusive  # the baseline against itself is 1 by definition
    # adaptive: a steady 2x still needs MIN_SAMPLES rounds before it stops
    until = harness.Stopping(baseline="base", settle_calls=1)
    contest = harness.time_contenders(fns, CPU, warmup=0, repeats=1, until=until)
    assert contest.rounds == harness.MIN_SAMPLES and contest.verdict("fast", "base").conclusive

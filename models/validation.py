"""Value rules shared by the run-config checks (:mod:`semask_models.engine.config_checks`) and the model-config checks
(:mod:`semask_models.zoo.checks`).

A rule is a function of the value that returns ``None`` when the value is allowed, else a description of what
is allowed; :func:`apply` turns a failed rule into one error naming the key, the value and what is allowed.

Example:
    >>> apply({"lr": -1.0}, {"lr": real(gt=0)}, prefix="train.")
    Traceback (most recent call last):
    ...
    ValueError: train.lr = -1.0 is not allowed: expected a finite number > 0
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Optional

Rule = Callable[[Any], Optional[str]]
INT64 = (-2 ** 63, 2 ** 63 - 1)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _bounds(lo=None, hi=None, gt=None, lt=None) -> str:
    parts = [f">= {lo}" if lo is not None else "", f"> {gt}" if gt is not None else "",
             f"<= {hi}" if hi is not None else "", f"< {lt}" if lt is not None else ""]
    return " and ".join(p for p in parts if p)


def _within(value, lo=None, hi=None, gt=None, lt=None) -> bool:
    return ((lo is None or value >= lo) and (hi is None or value <= hi) and (gt is None or value > gt)
            and (lt is None or value < lt))


def _or_none(rule: Rule, allowed: str, none: bool) -> Rule:
    def check(value):
        if value is None and none:
            return None
        return None if rule(value) else allowed + (" or null" if none else "")
    return check


def integer(lo=None, hi=None, *, none: bool = False) -> Rule:
    allowed = "an integer" + (" " + _bounds(lo, hi) if _bounds(lo, hi) else "")
    return _or_none(lambda v: is_int(v) and _within(v, lo, hi), allowed, none)


def real(lo=None, hi=None, *, gt=None, lt=None, none: bool = False) -> Rule:
    bounds = _bounds(lo, hi, gt, lt)
    allowed = "a finite number" + (" " + bounds if bounds else "")
    return _or_none(lambda v: is_real(v) and _within(v, lo, hi, gt, lt), allowed, none)


def boolean(*, none: bool = False) -> Rule:
    return _or_none(lambda v: isinstance(v, bool), "true or false", none)


def one_of(options: Iterable, *, none: bool = False) -> Rule:
    options = tuple(options)
    return _or_none(lambda v: isinstance(v, str) and v in options, f"one of {list(options)}", none)


def text(*, none: bool = False) -> Rule:
    return _or_none(lambda v: isinstance(v, str) and v != "", "a non-empty string", none)


def sequence(item: Rule, item_text: str, *, length: Optional[int] = None, min_length: int = 0,
             none: bool = False) -> Rule:
    """A list (or tuple) of ``length`` (or at least ``min_length``) items that each pass ``item``."""
    size = f"{length} " if length is not None else (f"at least {min_length} " if min_length else "")
    allowed = f"a list of {size}{item_text}"

    def ok(v):
        return (isinstance(v, (list, tuple)) and (length is None or len(v) == length) and len(v) >= min_length
                and all(item(x) is None for x in v))
    return _or_none(ok, allowed, none)


def pair_of_positive_ints(*, none: bool = False) -> Rule:
    return sequence(integer(lo=1), "integers >= 1", length=2, none=none)


def apply(values: Mapping[str, Any], rules: Mapping[str, Rule], prefix: str = "",
          error: type = ValueError) -> None:
    """Check every key of ``values`` that has a rule; the first failure raises ``error``."""
    for key, rule in rules.items():
        if key not in values:
            continue
        allowed = rule(values[key])
        if allowed is not None:
            raise error(f"{prefix}{key} = {values[key]!r} is not allowed: expected {allowed}")

"""The fast plain-PyTorch path of the prior-map decoder: the reference's bilinear resizes, called directly so
that autograd runs through them (the reference backend, behind the custom op, recomputes them in its backward)."""
from __future__ import annotations

from .reference import prior_map_decode


def available():
    return None


def supports(*args):
    return None


def plain(maps, align_corners):
    return prior_map_decode(list(maps), align_corners)


forward = plain  # through the custom op: the same function, no grad needed (the dispatcher excludes autograd)


def backward(grad, sizes, align_corners):
    from .reference import backward as linear_backward
    return linear_backward(grad, sizes, align_corners)

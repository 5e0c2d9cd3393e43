"""The fast plain-PyTorch path of the upsampled cross-entropy: the reference's resize + cross-entropy (fp32
accumulation), called directly so that autograd runs through them instead of recomputing them. While
``torch.compile`` traces, the op goes through its custom op instead, whose kernel checks the labels (a check
that needs their values cannot be traced)."""
from __future__ import annotations

import torch

from ... import _checks
from .reference import backward, upsample_cross_entropy  # noqa: F401 - backward: through the custom op


def available():
    return None


def supports(*args):
    return None


def plain(logits, target, ignore_index, avg_non_ignore, align_corners):
    if not torch.compiler.is_compiling():  # needs the values (a device sync); compiled, cross_entropy checks
        _checks.labels(target, logits.shape[1], ignore_index)
    return upsample_cross_entropy(logits, target, ignore_index, avg_non_ignore, align_corners)


forward = upsample_cross_entropy  # through the custom op, which checks the labels itself

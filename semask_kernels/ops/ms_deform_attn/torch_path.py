"""The plain-PyTorch path of multi-scale deformable attention: the reference's ``F.grid_sample`` formulation
called directly, so that autograd runs through grid_sample's own backward (the reference backend, behind the
custom op, recomputes the forward in its backward). On CUDA that backward accumulates with atomics, as every
repository's fallback does: the Triton backend is the deterministic one."""
from __future__ import annotations

from . import reference
from .levels import level_shapes


def available():
    return None


def supports(*args):
    return None


def plain(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, align_corners,
          padding_mode):
    shapes = level_shapes(spatial_shapes, level_start_index, value.shape[1])
    return reference.ms_deform_attn(value, shapes, sampling_locations, attention_weights, align_corners,
                                    padding_mode)


forward = reference.forward  # through the custom op (the dispatcher excludes autograd there)
backward = reference.backward

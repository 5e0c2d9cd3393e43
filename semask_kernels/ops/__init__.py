"""One folder per op (reference.py, torch_path.py, triton.py, cuda.py, op.py, spec.py; see ``_spec``).

Importing this package registers every op. Adding an op adds one import line here; ``__all__`` (re-exported by
``semask_kernels``) lists every op folder's public function. What each op computes: docs/ops.md (one section
per op folder).
"""
import pkgutil as _pkgutil

from .ms_deform_attn import ms_deform_attn
from .prior_map_decode import prior_map_decode
from .semantic_attention import semantic_attention
from .shifted_window_attention import shifted_window_attention
from .upsample_cross_entropy import upsample_cross_entropy
from .window_attention import window_attention

__all__ = sorted(m.name for m in _pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_"))

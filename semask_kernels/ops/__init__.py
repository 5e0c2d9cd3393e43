"""One folder per op (reference.py, triton.py, cuda.py, op.py). Importing this package registers every op."""
from .ms_deform_attn import ms_deform_attn
from .prior_map_decode import prior_map_decode
from .semantic_attention import semantic_attention
from .shifted_window_attention import shifted_window_attention
from .upsample_cross_entropy import upsample_cross_entropy
from .window_attention import window_attention

__all__ = ["prior_map_decode", "semantic_attention", "shifted_window_attention", "upsample_cross_entropy",
           "window_attention", "ms_deform_attn"]

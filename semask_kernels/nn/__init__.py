"""nn.Module wrappers of the ops, state-dict compatible with timm (window attention) and the official SeMask code."""
from .ms_deform_attn import MSDeformAttn
from .semantic_attention import SemanticAttention
from .shifted_window_attention import ShiftedWindowAttention
from .window_attention import WindowAttention

__all__ = ["MSDeformAttn", "SemanticAttention", "ShiftedWindowAttention", "WindowAttention"]

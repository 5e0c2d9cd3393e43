"""The classes Hugging Face Swin layers take when ``patch_hf_swin`` patches them (importing this imports
transformers).

Each is a subclass of the transformers layer whose ``forward`` runs the layer's attention as one
``shifted_window_attention`` op (pad, then roll: the official order, ``pad_order="pad_then_roll"``) fed by
``qkv_linear`` (q, k, v stay three Linears, no concatenation copy), reading the parameters of the layer's own
attention module, so the state dict, parameter objects and optimizers are untouched. Everything else (norms,
MLP, dropouts, drop path, window clamping) is the stock code's, step for step. When attention weights are asked
for (``output_attentions``), the stock forward runs: the fused op never forms them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.fx
from torch import Tensor, nn
from transformers.models.maskformer.modeling_maskformer_swin import MaskFormerSwinLayer
from transformers.models.swin.modeling_swin import SwinLayer

from ..nn.qkv_linear import qkv_linear
from ..nn.shifted_window_attention import _attend, runs_torch_path
from ..ops.shifted_window_attention import torch_path

# torch.fx: leaf nodes (argument checks and the autograd Function cannot take Proxies)
torch.fx.wrap("qkv_linear")
torch.fx.wrap("_attend")


def _collecting_attentions() -> bool:
    """Whether transformers' output capture is collecting attention weights in this forward (SwinModel's
    ``output_attentions``), which only the stock forward returns."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:  # a transformers without output capture passes output_attentions to the layer instead
        return False
    collected = _active_collector.get()
    return bool(collected) and "attentions" in collected


def _cat_bias(*linears: nn.Linear) -> Optional[Tensor]:
    """The padded tokens' q, k, v (3C values, the only concatenation, of biases, not of activations)."""
    if linears[0].bias is None:
        return None
    return torch.cat([lin.bias for lin in linears])


def fused_attention(x: Tensor, q: nn.Linear, k: nn.Linear, v: nn.Linear, table: Tensor, num_heads: int,
                    window: int, shift: int, scale: float, backend: str) -> Tensor:
    """Normed map (B, H, W, C) -> attention output before the output projection (B, H, W, C)."""
    if runs_torch_path(x, q.out_features, table, num_heads, (window, window), (shift, shift), scale,
                       "pad_then_roll", -100.0, backend):  # the plain path from x: gathers C channels, not 3C
        return torch_path.from_input(
            x, lambda rows: qkv_linear(rows, q.weight, q.bias, k.weight, k.bias, v.weight, v.bias), table,
            num_heads, (window, window), (shift, shift), scale, "pad_then_roll", -100.0)
    qkv = qkv_linear(x, q.weight, q.bias, k.weight, k.bias, v.weight, v.bias)
    bias = _cat_bias(q, k, v)
    return _attend(qkv, table.to(qkv.dtype), None if bias is None else bias.to(qkv.dtype), num_heads,
                   [window, window], [shift, shift], scale, "pad_then_roll", -100.0, backend)


class FusedSwinLayer(SwinLayer):
    """transformers ``SwinLayer`` (``SwinModel``, ``SwinBackbone`` and the models that load it as their backbone:
    UperNet, Mask2Former) on the fused op. ``semask_backend`` is the op's backend."""

    semask_backend: str = "auto"

    def forward(self, hidden_states: Tensor, input_dimensions: tuple[int, int], always_partition: bool = False,
                **kwargs):
        if _collecting_attentions():
            return super().forward(hidden_states, input_dimensions, always_partition=always_partition, **kwargs)
        if not always_partition:
            self.set_shift_and_window_size(input_dimensions)
        height, width = input_dimensions
        batch_size, _, channels = hidden_states.size()
        shortcut = hidden_states
        x = self.layernorm_before(hidden_states).view(batch_size, height, width, channels)
        attn = self.attention
        out = fused_attention(x, attn.q_proj, attn.k_proj, attn.v_proj,
                              attn.relative_position_bias.relative_position_bias_table, attn.num_attention_heads,
                              int(self.window_size), int(self.shift_size), attn.scaling, self.semask_backend)
        out = self.dropout(attn.o_proj(out)).view(batch_size, height * width, channels)
        hidden_states = shortcut + self.drop_path(out)
        residual = hidden_states
        hidden_states = self.mlp(self.layernorm_after(hidden_states))
        return self.dropout(hidden_states) + residual, None


class FusedMaskFormerSwinLayer(MaskFormerSwinLayer):
    """transformers ``MaskFormerSwinLayer`` (MaskFormer's Swin backbone) on the fused op."""

    semask_backend: str = "auto"

    def forward(self, hidden_states, input_dimensions, output_attentions=False):
        if output_attentions:
            return super().forward(hidden_states, input_dimensions, output_attentions)
        height, width = input_dimensions
        batch_size, _, channels = hidden_states.size()
        shortcut = hidden_states
        x = self.layernorm_before(hidden_states).view(batch_size, height, width, channels)
        attn = self.attention.self
        out = fused_attention(x, attn.query, attn.key, attn.value, attn.relative_position_bias_table,
                              attn.num_attention_heads, int(self.window_size), int(self.shift_size),
                              attn.attention_head_size ** -0.5, self.semask_backend)
        out = self.attention.output(out, x).view(batch_size, height * width, channels)
        hidden_states = shortcut + self.drop_path(out)
        layer_output = self.intermediate(self.layernorm_after(hidden_states))
        return (hidden_states + self.output(layer_output),)

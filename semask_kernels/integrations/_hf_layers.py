"""The classes Hugging Face Swin layers take when ``patch_hf_swin`` patches them (importing this imports
transformers).

Each is a subclass of the transformers layer whose ``forward`` runs the layer's attention as one
``shifted_window_attention`` op (pad, then roll: the official order, ``pad_order="pad_then_roll"``) fed by
``qkv_linear`` (q, k, v stay three Linears, no concatenation copy), reading the parameters of the layer's own
attention module, so the state dict, parameter objects and optimizers are untouched. Everything else (norms,
MLP, dropouts, drop path, window clamping) is the stock code's, step for step. When attention weights are asked
for (``output_attentions``), the stock forward runs: the fused op never forms them.

The fused forward reads the q, k, v weights and the position-bias table directly instead of calling the modules
that hold them. Whenever that would skip something the stock forward runs (a peft LoRA adapter or any other
wrapper in place of ``q_proj``, a ``nn.Linear`` subclass or parametrization, a forward or backward hook on one of
those modules, a global module hook), the layer runs the stock forward instead and says why once at warning
level: :func:`bypassed` is checked on every forward, so an adapter added after the patch is honoured too.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn.modules import module as _module
from transformers.models.maskformer.modeling_maskformer_swin import (MaskFormerSwinAttention, MaskFormerSwinLayer,
                                                                     MaskFormerSwinSelfAttention)
from transformers.models.swin.modeling_swin import SwinAttention, SwinLayer, SwinRelativePositionBias

from ..nn.qkv_linear import qkv_linear
from ..nn.shifted_window_attention import _attend, runs_torch_path
from ..ops.shifted_window_attention import torch_path

logger = logging.getLogger("semask_kernels")

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


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def _skipped_modules(layer: nn.Module):
    """(name, module, the class the fused forward assumes) of every module whose forward the fused path does not
    call (it reads their parameters instead)."""
    if isinstance(layer, SwinLayer):
        attn = layer.attention
        return (("attention", attn, SwinAttention), ("attention.q_proj", attn.q_proj, nn.Linear),
                ("attention.k_proj", attn.k_proj, nn.Linear), ("attention.v_proj", attn.v_proj, nn.Linear),
                ("attention.relative_position_bias", attn.relative_position_bias, SwinRelativePositionBias))
    attn = layer.attention.self
    return (("attention", layer.attention, MaskFormerSwinAttention),
            ("attention.self", attn, MaskFormerSwinSelfAttention), ("attention.self.query", attn.query, nn.Linear),
            ("attention.self.key", attn.key, nn.Linear), ("attention.self.value", attn.value, nn.Linear))


def bypassed(layer: nn.Module) -> Optional[str]:
    """What the fused forward of ``layer`` (a transformers ``SwinLayer`` or ``MaskFormerSwinLayer``) would skip
    that its stock forward runs, or None: a module replaced or wrapped (a peft LoRA layer), a subclass, a
    parametrized weight, a hook on one of the modules whose forward the fused path does not call, a global hook."""
    for hooks in _GLOBAL_HOOKS:
        if getattr(_module, hooks, None):
            return f"a global module hook is registered ({hooks.lstrip('_')}), which the fused path would not call"
    for name, mod, expected in _skipped_modules(layer):
        if type(mod) is not expected:
            return (f"{name} is {type(mod).__module__}.{type(mod).__qualname__}, not {expected.__name__} (an adapter, "
                    f"a wrapper, a subclass or a parametrization), whose forward the fused path would skip")
        for hooks in _HOOKS:
            if getattr(mod, hooks, None):
                return f"{name} has {hooks.strip('_').replace('_', ' ')}, which the fused path would not call"
    return None


def _runs_stock(layer: nn.Module) -> bool:
    """Whether ``layer`` must run its stock forward (see :func:`bypassed`); says why once per layer and reason."""
    reason = bypassed(layer)
    if reason is None:
        return False
    if layer.__dict__.get("_semask_stock_reason") != reason:
        layer.__dict__["_semask_stock_reason"] = reason
        logger.warning("patch_hf_swin: %s runs its stock forward: %s", type(layer).__name__, reason)
    return True


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
        if _collecting_attentions() or _runs_stock(self):
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
        if output_attentions or _runs_stock(self):
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

"""Mix Transformer / SegFormer checkpoints: the official layout (NVlabs SegFormer, mmseg keys) and Hugging Face's
hub layout (``model.safetensors`` as ``save_pretrained`` writes it), read into and written from this package's
MiT models, whose keys are the official ones.

Layouts handled by :func:`load_mit_checkpoint` (reached through
:func:`semask_models.checkpoints.convert.load_checkpoint`):

- ``official_mit``: an ImageNet backbone ``mit_b*.pth`` (``patch_embed1.*``, ``block1.0.*``, ``norm1.*`` and the
  classifier ``head.*``, which has no place in a segmentor and is reported unexpected);
- ``official_segformer``: a full ``segformer.b*.*.pth`` (``backbone.*`` + ``decode_head.*``); its
  ``decode_head.conv_seg.*`` (mmseg ``BaseDecodeHead``'s classifier, never called by ``SegFormerHead``) is
  reported as ignored, not as an unused weight;
- ``hf_segformer``: ``segformer.encoder.*`` (+ ``decode_head.*``; ``classifier.*`` of the ImageNet models is
  reported unexpected), also without the ``segformer.`` prefix (a bare ``SegformerModel``). Hugging Face splits
  the official ``attn.kv`` into ``key`` (its first C rows) and ``value`` (the next C); they are concatenated back.

Reading stays safe (:func:`semask_models.checkpoints.convert.read_state_dict`: safetensors or ``weights_only``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Union

import torch
from torch import Tensor, nn

from .state_dict import fit_to, log_report

StateDict = dict[str, Tensor]
UNUSED_OFFICIAL = ("decode_head.conv_seg.",)  # held by official SegFormer checkpoints, never used by the model

# Hugging Face hub key → official key, applied after the segformer.encoder. / encoder. prefix is stripped.
_HF_ENCODER = [
    (r"^patch_embeddings\.(\d+)\.proj\.", lambda m: f"patch_embed{int(m[1]) + 1}.proj."),
    (r"^patch_embeddings\.(\d+)\.layer_norm\.", lambda m: f"patch_embed{int(m[1]) + 1}.norm."),
    (r"^layer_norm\.(\d+)\.", lambda m: f"norm{int(m[1]) + 1}."),
    (r"^block\.(\d+)\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}."),
]
_HF_BLOCK = {  # inside a block
    "layer_norm_1.": "norm1.", "layer_norm_2.": "norm2.", "attention.self.query.": "attn.q.",
    "attention.self.sr.": "attn.sr.", "attention.self.layer_norm.": "attn.norm.",
    "attention.output.dense.": "attn.proj.", "mlp.dense1.": "mlp.fc1.", "mlp.dense2.": "mlp.fc2.",
    "mlp.dwconv.dwconv.": "mlp.dwconv.dwconv.",
}
_HF_HEAD = [
    (r"^decode_head\.linear_c\.(\d+)\.proj\.", lambda m: f"decode_head.linear_c{int(m[1]) + 1}.proj."),
    (r"^decode_head\.linear_fuse\.weight$", lambda m: "decode_head.linear_fuse.conv.weight"),
    (r"^decode_head\.batch_norm\.", lambda m: "decode_head.linear_fuse.bn."),
    (r"^decode_head\.classifier\.", lambda m: "decode_head.linear_pred."),
]


def detect_mit_format(sd: StateDict) -> str | None:
    """"hf_segformer", "official_segformer", "official_mit", or None for a checkpoint of another family."""
    keys = list(sd)
    if any(k.startswith(("segformer.encoder.", "encoder.block.", "encoder.patch_embeddings.")) for k in keys):
        return "hf_segformer"
    if any(k.startswith("backbone.patch_embed1.") for k in keys):
        return "official_segformer"
    if any(k.startswith("patch_embed1.") for k in keys):
        return "official_mit"
    return None


def _sub(rules, key: str):
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            return repl(m) + key[m.end():]
    return None


def hf_to_official(sd: StateDict) -> tuple[StateDict, list[str]]:
    """Hugging Face hub keys → official (mmseg) keys with ``backbone.`` / ``decode_head.`` prefixes; returns
    (converted, keys with no official counterpart)."""
    out, dropped, kv = {}, [], {}
    for key, value in sd.items():
        inner = key[len("segformer."):] if key.startswith("segformer.") else key
        if inner.startswith("encoder."):
            inner = inner[len("encoder."):]
            new = _sub(_HF_ENCODER, inner)
            if new is None:
                dropped.append(key)
                continue
            if new.startswith("block"):
                stage_block, _, rest = new.partition(".")
                index, _, rest = rest.partition(".")
                prefix = f"{stage_block}.{index}."
                m = re.match(r"attention\.self\.(key|value)\.(weight|bias)$", rest)
                if m:
                    kv.setdefault(f"backbone.{prefix}attn.kv.{m[2]}", {})[m[1]] = value
                    continue
                mapped = next((v + rest[len(k):] for k, v in _HF_BLOCK.items() if rest.startswith(k)), None)
                if mapped is None:
                    dropped.append(key)
                    continue
                new = prefix + mapped
            out["backbone." + new] = value
        else:
            new = _sub(_HF_HEAD, key)
            if new is None:
                dropped.append(key)
                continue
            out[new] = value
    for key, parts in kv.items():
        if set(parts) != {"key", "value"}:
            raise ValueError(f"Hugging Face checkpoint: {key} needs both attention.self.key and .value, got only "
                             f"{sorted(parts)}")
        out[key] = torch.cat([parts["key"], parts["value"]], dim=0)
    return out, dropped


def official_to_hf(sd: StateDict) -> StateDict:
    """Official keys (``backbone.*`` / ``decode_head.*``, as this package's MiT segmentors hold them) → Hugging
    Face's hub layout (``segformer.encoder.*`` / ``decode_head.*``), loadable by
    ``SegformerForSemanticSegmentation.from_pretrained``. Keys of parts Hugging Face has no counterpart for
    (SeMask semantic layers, a Semantic-FPN head) are refused, naming them."""
    block_back = {v: k for k, v in _HF_BLOCK.items()}
    out, foreign = {}, []
    for key, value in sd.items():
        m = re.match(r"^backbone\.(patch_embed|norm|block)(\d+)\.(.*)$", key)
        h = re.match(r"^decode_head\.(linear_c(\d+)\.proj\.|linear_fuse\.conv\.|linear_fuse\.bn\.|linear_pred\.)"
                     r"(.*)$", key)
        if m:
            kind, stage, rest = m[1], int(m[2]) - 1, m[3]
            if kind == "patch_embed":
                rest = rest.replace("norm.", "layer_norm.", 1) if rest.startswith("norm.") else rest
                out[f"segformer.encoder.patch_embeddings.{stage}.{rest}"] = value
            elif kind == "norm":
                out[f"segformer.encoder.layer_norm.{stage}.{rest}"] = value
            else:
                index, _, rest = rest.partition(".")
                base = f"segformer.encoder.block.{stage}.{index}."
                if rest.startswith("attn.kv."):
                    half = value.shape[0] // 2
                    kind_ = rest[len("attn.kv."):]
                    out[f"{base}attention.self.key.{kind_}"] = value[:half]
                    out[f"{base}attention.self.value.{kind_}"] = value[half:]
                    continue
                mapped = next((v + rest[len(k):] for k, v in block_back.items() if rest.startswith(k)), None)
                if mapped is None:
                    foreign.append(key)
                    continue
                out[base + mapped] = value
        elif h:
            part, rest = h[1], h[3]
            if h[2]:
                out[f"decode_head.linear_c.{int(h[2]) - 1}.proj.{rest}"] = value
            elif part == "linear_fuse.conv.":
                out[f"decode_head.linear_fuse.{rest}"] = value
            elif part == "linear_fuse.bn.":
                out[f"decode_head.batch_norm.{rest}"] = value
            else:
                out[f"decode_head.classifier.{rest}"] = value
        else:
            foreign.append(key)
    if foreign:
        raise ValueError(f"official_to_hf: {len(foreign)} key(s) have no Hugging Face Segformer counterpart (a "
                         f"SeMask semantic layer or a non-SegFormer head?): {foreign[:5]}")
    return out


def to_official(sd: StateDict, fmt: str) -> tuple[StateDict, list[str], list[str]]:
    """(state dict in this package's segmentor keys, unexpected keys with weights, ignored known-unused keys)."""
    if fmt == "hf_segformer":
        out, dropped = hf_to_official(sd)
        return out, dropped, []
    if fmt == "official_mit":
        out, dropped = {}, []
        for key, value in sd.items():
            if key.startswith("head."):
                dropped.append(key)  # the ImageNet classifier
            else:
                out["backbone." + key] = value
        return out, dropped, []
    ignored = [k for k in sd if k.startswith(UNUSED_OFFICIAL)]
    return {k: v for k, v in sd.items() if k not in ignored}, [], ignored


def load_mit_checkpoint(model: nn.Module, sd: StateDict, fmt: str):
    """Load a MiT / SegFormer state dict of layout ``fmt`` (:func:`detect_mit_format`) into a MiT segmentor; the
    :class:`semask_models.checkpoints.state_dict.LoadReport` is of the whole segmentor, as for Swin."""
    from ..backbones.mit import MiTBackbone
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, MiTBackbone):
        raise ValueError(f"a {fmt} checkpoint (Mix Transformer / SegFormer weights) needs a MiT model "
                         f"([semask_]mit_b*_*), got a model with backbone {type(backbone).__name__}")
    converted, dropped, ignored = to_official(sd, fmt)
    report = fit_to(model, converted, fmt)
    report.unexpected += dropped
    report.ignored += ignored
    log_report(report)
    return report


def save_hf_checkpoint(model: nn.Module, path: Union[str, Path]) -> None:
    """Write a MiT-SegFormer segmentor's weights as Hugging Face's ``model.safetensors`` (hub layout)."""
    from safetensors.torch import save_file
    sd = official_to_hf({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    save_file(sd, str(path), metadata={"format": "pt"})

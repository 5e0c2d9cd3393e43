"""Kernel families and resampling weights shared by several ops (no op folder imports another op folder):

- ``window_attention``: the window-attention Triton kernels and their launches (window_attention and
  shifted_window_attention), with their device helpers in ``window_attention_tiles``; the ``triton.onepass``
  variant's kernels beside them in ``window_attention_onepass`` and ``window_attention_lse``;
- ``bilinear_bands``: banded 1-D weights of (composite) bilinear resampling (prior_map_decode and
  upsample_cross_entropy, Triton and CUDA).
"""

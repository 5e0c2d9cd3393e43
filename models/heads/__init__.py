"""Decode heads. Per-pixel: Semantic-FPN (``fpn``) and UperNet (``upernet``). Mask classification:
MaskFormer (``maskformer``), Mask2Former (``mask2former``), its FaPN / MSFaPN pixel decoders (``fapn``), and what
they share: matcher, set criterion, semantic inference (``mask_classification``)."""

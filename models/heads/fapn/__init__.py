"""FaPN pixel decoders of SeMask-Mask2Former FaPN / MSFaPN (SeMask-FAPN tree): feature alignment with a modulated
deformable convolution (``torchvision.ops.deform_conv2d``) in the top-down path."""
from .feature_align import FeatureAlign, ModulatedDeformConv
from .head import Mask2FormerFaPNHead
from .pixel_decoder import MSDeformAttnPixelFANDecoder, PixelFANDecoder

__all__ = ["FeatureAlign", "ModulatedDeformConv", "Mask2FormerFaPNHead", "MSDeformAttnPixelFANDecoder",
           "PixelFANDecoder"]

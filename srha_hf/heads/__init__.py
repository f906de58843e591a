"""Decode heads of SRHA, one file each, registered by name (:mod:`.base`): DeepLabV3+ (docs/method.md §1.3)
and Mask2Former (docs/method.md §4, built from transformers' modules)."""

from .base import DecodeHead, as_model_output, available_decode_heads, decode_head_class, register_decode_head
from .deeplabv3plus import ASPP, AuxiliaryHead, DeepLabV3PlusDecode, conv_bn_relu, final_block
from .mask2former import Mask2FormerDecode, Mask2FormerHead, mask2former_set_loss, mask2former_targets, semantic_inference

__all__ = [
    "ASPP", "AuxiliaryHead", "DecodeHead", "DeepLabV3PlusDecode", "Mask2FormerDecode", "Mask2FormerHead", "as_model_output",
    "available_decode_heads", "conv_bn_relu", "decode_head_class", "final_block", "mask2former_set_loss", "mask2former_targets",
    "register_decode_head", "semantic_inference",
]  # fmt: skip

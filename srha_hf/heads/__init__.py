"""Decode heads of SRHA: DeepLabV3+ (docs/method.md §1.3) and Mask2Former (docs/method.md §4, built from transformers' modules)."""

from .deeplabv3plus import ASPP, AuxiliaryHead, conv_bn_relu, final_block
from .mask2former import Mask2FormerHead, mask2former_set_loss, mask2former_targets, semantic_inference

__all__ = [
    "ASPP",
    "AuxiliaryHead",
    "Mask2FormerHead",
    "conv_bn_relu",
    "final_block",
    "mask2former_set_loss",
    "mask2former_targets",
    "semantic_inference",
]

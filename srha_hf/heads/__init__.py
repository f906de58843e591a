"""Decode heads of SRHA: DeepLabV3+ (SPEC §1.3)."""

from .deeplabv3plus import ASPP, AuxiliaryHead, conv_bn_relu, final_block

__all__ = ["ASPP", "AuxiliaryHead", "conv_bn_relu", "final_block"]

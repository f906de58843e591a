"""Deterministic inputs of the Mask2Former set loss, shared by tests/test_m2f.py and its 2-process worker."""

import torch

from srha_hf import SRHAConfig

TINY = dict(
    decode_head="mask2former", m2f_num_queries=12, m2f_hidden_dim=64, m2f_conv_dim=64, m2f_mask_dim=64,
    m2f_num_heads=4, m2f_dim_feedforward=64, m2f_decoder_layers=3, m2f_encoder_layers=1,
    m2f_encoder_feedforward_dim=64, m2f_train_num_points=64,
)  # fmt: skip


def set_loss_inputs(n: int = 2, size: int = 64):
    """(config, class logits per set, mask logits per set, labels) with road | car and absent classes."""
    config = SRHAConfig(**TINY)
    gen = torch.Generator().manual_seed(2)
    q = config.m2f_num_queries
    classes = [torch.randn(n, q, 20, generator=gen) for _ in range(4)]
    masks = [torch.randn(n, q, 16, 16, generator=gen) for _ in range(4)]
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, :, size // 2 :] = 13
    labels[0, : size // 4] = 255
    return config, classes, masks, labels

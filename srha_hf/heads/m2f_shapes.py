"""Shape-generic forwards of the Mask2Former pixel decoder (docs/method.md §4.2), so that one exported graph
serves every input size (docs/inference.md "Deploy").

``transformers``' ``Mask2FormerPixelDecoder.forward`` turns the feature maps' sizes into constant tensors
(``torch.as_tensor(spatial_shapes_list)`` for the level start indices, ``torch.tensor([[w, h], ...])``
for the deformable attention's offset normaliser). Eager PyTorch does not mind, but an exporter that traces
the model records those sizes as constants: the ONNX graph then only works at the traced input size
(``torch.export`` refuses the dynamic height and width outright). The two forwards here compute the same
values with the sizes kept symbolic:

* :class:`ShapeGenericDeformableAttention`: divides each level's sampling offsets by that level's
  ``(width, height)`` as scalars instead of by a tensor built from them (the same float32 division);
* :func:`pixel_decoder_forward`: flattens the levels, adds the level embeddings, runs the encoder and
  splits its output back with the sizes as (symbolic) integers; no padding mask exists here, so the valid
  ratios are exactly 1 (as upstream computes them from an all-False mask), that mask is not applied, and
  the level start indices, which nothing downstream reads, are not built.

Both are used for training and inference alike (what is exported is what was trained);
``tests/test_m2f_onnx.py`` checks them bit-exactly against the upstream forwards, values and gradients.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
    Mask2FormerPixelDecoderOutput,
    multi_scale_deformable_attention,
)

__all__ = ["ShapeGenericDeformableAttention", "pixel_decoder_forward"]


class ShapeGenericDeformableAttention(Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
    """``transformers``' multi-scale deformable attention (2-d reference points, as the pixel decoder
    uses it) with the offset normalisation written per level on the sizes themselves. Same parameters,
    same values; the upstream module's instances are re-classed in place (state-dict keys unchanged)."""

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                position_embeddings=None, reference_points=None, spatial_shapes_list=None, level_start_index=None,
                output_attentions=False):  # fmt: skip
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        batch, queries, _ = hidden_states.shape
        sequence = encoder_hidden_states.shape[1]
        value = self.value_proj(encoder_hidden_states)
        if attention_mask is not None:
            value = value.masked_fill(attention_mask[..., None], 0.0)
        value = value.view(batch, sequence, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(hidden_states).view(batch, queries, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(hidden_states).view(batch, queries, self.n_heads, self.n_levels * self.n_points)
        weights = nn.functional.softmax(weights, -1).view(batch, queries, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] != 2:
            raise ValueError(f"the pixel decoder's reference points are 2-d, got {reference_points.shape[-1]}")
        normalized = torch.stack(
            [torch.stack((offsets[:, :, :, level, :, 0] / width, offsets[:, :, :, level, :, 1] / height), -1)
             for level, (height, width) in enumerate(spatial_shapes_list)],  # fmt: skip
            dim=3,
        )
        locations = reference_points[:, :, None, :, None, :] + normalized
        output = multi_scale_deformable_attention(value, spatial_shapes_list, locations, weights)
        return self.output_proj(output), weights


def use_shape_generic_attention(decoder: nn.Module) -> None:
    """Re-class every deformable attention of ``decoder``'s encoder as :class:`ShapeGenericDeformableAttention`."""
    for module in decoder.modules():
        if type(module) is Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention:
            module.__class__ = ShapeGenericDeformableAttention


def _reference_points(shapes, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The encoder's reference points for valid ratios of 1: pixel centres ``(i + 0.5) / size`` per level,
    ``(B, Σ h·w, levels, 2)`` in (x, y) order (upstream's ``linspace(0.5, n - 0.5, n)`` is exactly
    ``arange(n) + 0.5``: every value is representable)."""
    points = []
    for height, width in shapes:
        ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) / height
        xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    points = torch.cat(points, 0)[None, :, None, :]
    return points.expand(batch, -1, len(shapes), -1)


def pixel_decoder_forward(decoder, features: Sequence[torch.Tensor]) -> Mask2FormerPixelDecoderOutput:
    """``Mask2FormerPixelDecoder.forward(features)`` with symbolic sizes (module docstring)."""
    levels = list(features[::-1][: decoder.num_feature_levels])
    embeds = [projection(x) for projection, x in zip(decoder.input_projections, levels)]
    batch = embeds[0].shape[0]
    shapes = [(embed.shape[2], embed.shape[3]) for embed in embeds]
    flat = torch.cat([embed.flatten(2).transpose(1, 2) for embed in embeds], 1)
    position = torch.cat(
        [decoder.position_embedding(x.shape, x.device, x.dtype).flatten(2).transpose(1, 2) + decoder.level_embed[i].view(1, 1, -1)
         for i, x in enumerate(levels)],  # fmt: skip
        1,
    )
    hidden = flat
    reference = _reference_points(shapes, batch, flat.dtype, flat.device)
    for layer in decoder.encoder.layers:  # no padding mask: upstream's is all False, a masked_fill that changes nothing
        hidden = layer(hidden, None, position_embeddings=position, reference_points=reference, spatial_shapes_list=shapes)[0]
    pieces = torch.split(hidden, [height * width for height, width in shapes], dim=1)
    outputs = [piece.transpose(1, 2).view(batch, -1, height, width) for piece, (height, width) in zip(pieces, shapes)]
    for index, feature in enumerate(features[: decoder.num_fpn_levels][::-1]):
        lateral = decoder.lateral_convolutions[index](feature)
        upsampled = nn.functional.interpolate(outputs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        outputs.append(decoder.output_convolutions[index](lateral + upsampled))
    return Mask2FormerPixelDecoderOutput(
        mask_features=decoder.mask_projection(outputs[-1]),
        multi_scale_features=tuple(outputs[: decoder.num_feature_levels]),
        attentions=None,
    )

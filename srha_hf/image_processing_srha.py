"""SRHAImageProcessor: ImageNet normalisation, optional resize, and semantic post-processing."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import PILImageResampling

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD


class SRHAImageProcessor(TorchvisionBackend):
    r"""Prepares images for :class:`~srha_hf.SRHAForSemanticSegmentation`.

    RGB images are scaled to [0, 1] and normalised with the ImageNet mean and std (docs/method.md §5.3 step 7,
    §6). No resize by default: SRHA evaluates at each dataset's native resolution (docs/method.md §8.1). Pass
    ``do_resize=True, size={"height": H, "width": W}`` (bicubic, as the reference's image resizes) to
    resize, and give ``target_sizes`` to :meth:`post_process_semantic_segmentation` to map the
    predictions back to the original sizes.
    """

    resample = PILImageResampling.BICUBIC
    image_mean = list(IMAGENET_MEAN)
    image_std = list(IMAGENET_STD)
    size = None
    default_to_square = False
    do_resize = False
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    model_input_names = ["pixel_values"]

    def post_process_semantic_segmentation(
        self, outputs, target_sizes: Optional[Sequence[Tuple[int, int]]] = None
    ) -> List[torch.Tensor]:
        """Turn model outputs into one ``(H, W)`` int64 train-ID map per image (argmax over classes).

        ``target_sizes`` (one ``(height, width)`` per image) resizes the logits bilinearly before the
        argmax; without it the maps keep the logits' size, which is the model's input size.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        if target_sizes is not None and len(target_sizes) != logits.shape[0]:
            raise ValueError(f"got {len(target_sizes)} target_sizes for a batch of {logits.shape[0]} predictions")
        maps = []
        for i in range(logits.shape[0]):
            item = logits[i : i + 1]
            if target_sizes is not None:
                size = tuple(int(s) for s in target_sizes[i])
                if tuple(item.shape[-2:]) != size:
                    item = F.interpolate(item.float(), size=size, mode="bilinear", align_corners=False)
            maps.append(item[0].argmax(dim=0))
        return maps

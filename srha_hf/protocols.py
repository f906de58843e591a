"""Evaluation protocols (docs/method.md §8.6): how an image's logits are computed before the argmax.

* ``whole`` (the default and the reference's): one forward of the whole image at its evaluation size.
* ``slide``: crops of ``crop_size`` every ``stride`` pixels (the last crop of a row or column flush with
  the image's edge); each pixel's logits are the average over the crops that cover it.
* multi-scale, optionally with horizontal flip (``scales`` and/or ``flip``): the image resized bilinearly
  to each scale (and mirrored), one forward each, the logits resized to the image size and averaged.
  A scale of 1.0 uses the image as it is.

:func:`protocol_logits` runs one of them; :meth:`EvalProtocol.describe` is what every results JSON and
model card records. ``scales=[1.0]`` without flip is ``whole``, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

PROTOCOLS = ("whole", "slide", "multiscale")
DEFAULT_SLIDE_CROP = (768, 768)  # the recipes' training crop
DEFAULT_SLIDE_STRIDE = (512, 512)  # two thirds of it: every pixel in one to four crops


def _pair(value, what: str) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    values = [int(value)] * 2 if isinstance(value, (int, float)) else [int(v) for v in value]
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{what} must be one or two positive integers (height, width), got {value!r}")
    return values[0], values[1]


@dataclass(frozen=True)
class EvalProtocol:
    """One evaluation protocol; build it with :func:`make_protocol`."""

    name: str = "whole"
    scales: Tuple[float, ...] = (1.0,)
    flip: bool = False
    crop_size: Optional[Tuple[int, int]] = None
    stride: Optional[Tuple[int, int]] = None

    def describe(self) -> dict:
        """What a results JSON records: the protocol, scales, flip, crop and stride."""
        return {"name": self.name, "scales": list(self.scales), "flip": self.flip,
                "crop_size": list(self.crop_size) if self.crop_size else None, "stride": list(self.stride) if self.stride else None}  # fmt: skip

    @classmethod
    def from_description(cls, described) -> "EvalProtocol":
        """The protocol a results JSON recorded (the inverse of :meth:`describe`)."""
        crop, stride = described.get("crop_size"), described.get("stride")
        return cls(described.get("name", "whole"), tuple(described.get("scales") or (1.0,)), bool(described.get("flip")),
                   tuple(crop) if crop else None, tuple(stride) if stride else None)  # fmt: skip

    def label(self) -> str:
        """A short human-readable name: ``whole``, ``slide 768x768 / 512x512``, ``scales 0.5-1.75 + flip``."""
        if self.name == "slide":
            return f"slide {self.crop_size[0]}x{self.crop_size[1]} / stride {self.stride[0]}x{self.stride[1]}"
        if self.name == "multiscale":
            scales = ", ".join(f"{s:g}" for s in self.scales)
            return f"multi-scale ({scales})" + (" + flip" if self.flip else "")
        return "whole image, single scale"


def make_protocol(protocol: Optional[str] = None, *, scales: Optional[Sequence[float]] = None, flip: bool = False,
                  crop_size=None, stride=None) -> EvalProtocol:  # fmt: skip
    """The protocol of ``scripts/evaluate.py``'s flags. ``scales`` or ``flip`` alone select multi-scale;
    ``protocol="slide"`` takes ``crop_size`` / ``stride`` (one int or (h, w); defaults 768 / 512).
    ``scales=[1.0]`` without flip is ``whole``. Contradictions are errors naming the flags."""
    name = protocol or ("multiscale" if (scales is not None or flip) else "whole")
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if name != "slide" and (crop_size is not None or stride is not None):
        raise ValueError(f"crop size and stride belong to the slide protocol, not to {name!r}")
    if name == "slide":
        if scales is not None or flip:
            raise ValueError("the slide protocol runs at scale 1 without flip: leave out scales and flip")
        crop = _pair(crop_size, "crop size") or DEFAULT_SLIDE_CROP
        step = _pair(stride, "stride") or DEFAULT_SLIDE_STRIDE
        if step[0] > crop[0] or step[1] > crop[1]:
            raise ValueError(f"stride {step} is larger than the crop {crop}: some pixels would get no prediction")
        return EvalProtocol("slide", (1.0,), False, crop, step)
    values = tuple(float(s) for s in (scales if scales is not None else (1.0,)))
    if not values or min(values) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales!r}")
    if name == "whole" and values != (1.0,):
        raise ValueError(f"the whole protocol is single-scale: scales {list(values)} need the multiscale protocol")
    if values == (1.0,) and not flip:
        return EvalProtocol("whole")
    return EvalProtocol("multiscale", values, bool(flip))


WHOLE = EvalProtocol()


def _resize(logits: torch.Tensor, size) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)


def _windows(length: int, crop: int, stride: int):
    """Start offsets of the crops along one side: every ``stride``, the last one flush with the end."""
    if length <= crop:
        return [0]
    count = -(-(length - crop) // stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def slide_logits(forward: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, crop_size, stride) -> torch.Tensor:
    """Logits of ``pixels`` (B, 3, H, W) averaged over sliding crops (a crop larger than the image is
    the image). ``forward`` maps a crop to logits at the crop's size."""
    _, _, height, width = pixels.shape
    total, count = None, torch.zeros((1, 1, height, width), dtype=torch.float32, device=pixels.device)
    for top in _windows(height, crop_size[0], stride[0]):
        for left in _windows(width, crop_size[1], stride[1]):
            bottom, right = min(top + crop_size[0], height), min(left + crop_size[1], width)
            logits = _resize(forward(pixels[:, :, top:bottom, left:right]), (bottom - top, right - left)).float()
            if total is None:
                total = torch.zeros((pixels.shape[0], logits.shape[1], height, width), dtype=torch.float32, device=pixels.device)
            total[:, :, top:bottom, left:right] += logits
            count[:, :, top:bottom, left:right] += 1
    return total / count


def protocol_logits(forward: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, size, protocol: EvalProtocol = WHOLE):
    """Logits (B, C, *size) of normalised ``pixels`` under ``protocol``; ``forward`` maps pixels to
    logits. ``whole``: one forward, resized to ``size`` when it differs (bilinear, as the reference)."""
    size = tuple(size)
    if protocol.name == "whole":
        return _resize(forward(pixels), size)
    if protocol.name == "slide":
        return _resize(slide_logits(forward, pixels, protocol.crop_size, protocol.stride), size)
    height, width = pixels.shape[-2:]
    total, n = None, 0
    for scale in protocol.scales:
        if scale == 1.0:
            scaled = pixels
        else:
            scaled = F.interpolate(pixels, size=(max(1, round(height * scale)), max(1, round(width * scale))), mode="bilinear", align_corners=False)
        views = [(scaled, False)] + ([(scaled.flip(-1), True)] if protocol.flip else [])
        for view, mirrored in views:
            logits = forward(view)
            logits = _resize(logits.flip(-1) if mirrored else logits, size).float()
            total = logits if total is None else total + logits
            n += 1
    return total / n

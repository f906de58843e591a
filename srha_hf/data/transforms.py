"""Training augmentation (docs/method.md §5.3, §7.4) and per-dataset evaluation resizing (docs/method.md §6).

All random draws come from a `numpy.random.Generator` passed in by the caller (one per sample, see
`seeding.py`), never from global state. Image and label always go through the same geometry.

Switches for the reference's surprising behaviour (docs/method.md §9), each defaulting to the faithful one:

* D1 `jitter_strength`: ColorJitter is fixed at (0.4, 0.4, 0.4, 0.1) with p = `jitter_p` = 0.5.
* D2 `blur_p` = 1.0 (blur every sample) and `blur_rounding` = "truncate" (vs "round").
* D3 `mapillary_crop` = "faithful" (label pad 0, mis-centred portrait crop) vs "corrected".
* D4 `shift_centroid_by_padding` = False: the class-uniform centroid ignores the crop padding.
* D7 the post-crop resize is a no-op and is not performed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from .labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_pil_rgb(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    return Image.fromarray(np.asarray(image, dtype=np.uint8))


def _as_label_array(label) -> np.ndarray:
    return np.asarray(label, dtype=np.uint8)


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of every output pixel of PIL's NEAREST resize of a length-`src` axis to `dst`.

    PIL walks the output with a running sum of the scale `src/dst` starting at half a step; the
    accumulation (not `(i + 0.5) * scale`) is reproduced so labels match PIL bit for bit."""
    step = np.full(dst, src / dst)
    step[0] *= 0.5
    return np.minimum(np.add.accumulate(step).astype(np.int64), src - 1)


# --------------------------------------------------------------------------------------------------
# RandomSizeAndCrop (docs/method.md §5.3 step 2, §7.4)
# --------------------------------------------------------------------------------------------------


def _pad_amount(size: int, crop: int) -> int:
    return (crop - size) // 2 + 1 if size < crop else 0


def _window(scaled: int, pad: int, start: int, crop: int) -> tuple[int, int, int]:
    """Crop window [start, start+crop) in padded coordinates -> (src0, src1, dst0) in the scaled image."""
    w0 = start - pad
    src0, src1 = max(0, w0), min(scaled, w0 + crop)
    return src0, max(src0, src1), src0 - w0


@dataclass
class RandomScaleCrop:
    """Random rescale by s ~ U(scale_range), symmetric padding (image 0, label `ignore_index`) where
    the result is smaller than the crop, then a `crop_size`² crop (uniform, or around a centroid).

    By default (`exact_resize=True`, faithful) the whole image is resized and then cropped, like the
    reference, bit for bit. `exact_resize=False` resamples only the part of the rescaled image that
    ends up in the crop (PIL's `box` argument): several times faster for large scales, and on natural
    images equal to the faithful result except for rare +-1..2 rounding differences (PIL's box
    coordinates are floats, and it may pick another pass order). The label (nearest) is always exact."""

    crop_size: int = 768
    scale_range: tuple[float, float] = (0.5, 2.0)
    ignore_index: int = IGNORE_INDEX
    shift_centroid_by_padding: bool = False  # docs/method.md §9 D4: the reference does not shift it
    exact_resize: bool = True

    def draw(self, width: int, height: int, rng: np.random.Generator, centroid=None) -> dict:
        """The random parameters: scale, scaled size, padding and crop origin (in padded coordinates)."""
        crop = self.crop_size
        scale = float(rng.uniform(*self.scale_range))
        sw, sh = int(width * scale), int(height * scale)
        px, py = _pad_amount(sw, crop), _pad_amount(sh, crop)
        pw, ph = sw + 2 * px, sh + 2 * py
        if centroid is None:
            x1 = int(rng.integers(0, pw - crop + 1))
            y1 = int(rng.integers(0, ph - crop + 1))
        else:
            cx, cy = int(centroid[0] * scale), int(centroid[1] * scale)
            if self.shift_centroid_by_padding:
                cx, cy = cx + px, cy + py
            x1 = min(max(int(rng.integers(cx - crop, cx + 1)), 0), pw - crop)
            y1 = min(max(int(rng.integers(cy - crop, cy + 1)), 0), ph - crop)
        return {"scale": scale, "size": (sw, sh), "pad": (px, py), "origin": (x1, y1)}

    def apply(self, image: Image.Image, label: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
        crop = self.crop_size
        image = _as_pil_rgb(image)
        label = _as_label_array(label)
        width, height = image.size
        if label.shape != (height, width):
            raise ValueError(f"image is {width}x{height} but label is {label.shape[1]}x{label.shape[0]}")
        sw, sh = params["size"]
        x0, x1, dx = _window(sw, params["pad"][0], params["origin"][0], crop)
        y0, y1, dy = _window(sh, params["pad"][1], params["origin"][1], crop)
        out_image = np.zeros((crop, crop, 3), dtype=np.uint8)
        out_label = np.full((crop, crop), self.ignore_index, dtype=np.uint8)
        if x1 > x0 and y1 > y0:
            if self.exact_resize:
                part = np.asarray(image.resize((sw, sh), Image.BICUBIC))[y0:y1, x0:x1]
            else:
                fx, fy = width / sw, height / sh
                part = image.resize((x1 - x0, y1 - y0), Image.BICUBIC, box=(x0 * fx, y0 * fy, x1 * fx, y1 * fy))
            out_image[dy : dy + y1 - y0, dx : dx + x1 - x0] = np.asarray(part)
            rows = nearest_indices(height, sh)[y0:y1]
            cols = nearest_indices(width, sw)[x0:x1]
            out_label[dy : dy + y1 - y0, dx : dx + x1 - x0] = label[np.ix_(rows, cols)]
        return out_image, out_label

    def __call__(self, image, label, rng: np.random.Generator, centroid=None):
        image = _as_pil_rgb(image)
        params = self.draw(image.size[0], image.size[1], rng, centroid)
        return self.apply(image, label, params)


# --------------------------------------------------------------------------------------------------
# Photometric transforms
# --------------------------------------------------------------------------------------------------


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength=(0.4, 0.4, 0.4, 0.1)) -> np.ndarray:
    """torchvision ColorJitter(b, c, s, h) on the PIL path: factors b, c, s ~ U(1 ± strength), hue ~
    U(±h), applied in a random order. All four parameters are always drawn."""
    import torchvision.transforms.functional as TF

    b, c, s, h = strength
    order = rng.permutation(4)
    factors = (
        float(rng.uniform(max(0.0, 1 - b), 1 + b)),
        float(rng.uniform(max(0.0, 1 - c), 1 + c)),
        float(rng.uniform(max(0.0, 1 - s), 1 + s)),
        float(rng.uniform(-h, h)),
    )
    functions = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    pil = Image.fromarray(image)
    for i in order:
        pil = functions[i](pil, factors[i])
    return np.asarray(pil)


def gaussian_blur(image: np.ndarray, sigma: float, rounding: str = "truncate") -> np.ndarray:
    """skimage `gaussian` as the reference calls it (docs/method.md §5.3 step 6): uint8 -> float64 in [0, 1],
    per-channel Gaussian (mode "nearest", truncate 4), x255, then truncated (or rounded) to uint8."""
    from scipy.ndimage import gaussian_filter

    as_float = np.multiply(image, 1.0 / 255.0, dtype=np.float64)
    blurred = gaussian_filter(as_float, sigma=(sigma, sigma, 0.0), mode="nearest", truncate=4.0)
    blurred *= 255.0
    if rounding == "round":
        blurred = np.rint(blurred)
    elif rounding != "truncate":
        raise ValueError(f"blur_rounding must be 'truncate' or 'round', got {rounding!r}")
    return np.clip(blurred, 0, 255).astype(np.uint8)


def to_tensors(image, label=None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(H, W, 3) uint8 image -> normalised float32 (3, H, W); (H, W) label -> int64 (H, W)."""
    import torch

    array = np.asarray(image, dtype=np.uint8)
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = array.copy()
    pixels = torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels.sub_(mean_t).div_(std_t)
    if label is None:
        return pixels
    return pixels, torch.from_numpy(np.asarray(label, dtype=np.uint8).astype(np.int64))


# --------------------------------------------------------------------------------------------------
# The whole training pipeline
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainTransform:
    """docs/method.md §5.3 steps 2-7 for one sample; `__call__` returns uint8 arrays, `to_tensors` the model inputs.

    Draw order per sample (fixed, so a sample's draws do not depend on branches taken): scale, crop x,
    crop y, flip, jitter on/off, a sub-seed for the jitter's order and factors, blur on/off, blur sigma."""

    crop_size: int = 768
    scale_range: tuple[float, float] = (0.5, 2.0)
    ignore_index: int = IGNORE_INDEX
    flip_p: float = 0.5
    color_jitter: bool = True
    jitter_p: float = 0.5
    jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # D1
    gaussian_blur: bool = True
    blur_p: float = 1.0  # D2: every sample
    blur_sigma: tuple[float, float] = (0.15, 1.3)
    blur_rounding: str = "truncate"  # D2
    shift_centroid_by_padding: bool = False  # D4
    exact_resize: bool = True  # faithful: resize the whole image, then crop; False: resample the crop window only (faster)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        self.scale_crop = RandomScaleCrop(
            self.crop_size, tuple(self.scale_range), self.ignore_index, self.shift_centroid_by_padding, self.exact_resize
        )

    def __call__(self, image, label, rng: np.random.Generator, centroid=None) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.scale_crop(image, label, rng, centroid)
        if rng.random() < self.flip_p:
            image, label = image[:, ::-1], label[:, ::-1]
        apply_jitter = rng.random() < self.jitter_p
        jitter_rng = np.random.default_rng(rng.integers(0, 2**63))  # one draw, whether applied or not
        if self.color_jitter and apply_jitter:
            image = color_jitter(np.ascontiguousarray(image), jitter_rng, self.jitter_strength)
        apply_blur = rng.random() < self.blur_p
        lo, hi = self.blur_sigma
        sigma = lo + (hi - lo) * float(rng.random())
        if self.gaussian_blur and apply_blur:
            image = gaussian_blur(image, sigma, self.blur_rounding)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

    def to_tensors(self, image, label):
        return to_tensors(image, label, self.mean, self.std)


def build_train_transform(**overrides) -> TrainTransform:
    """The docs/method.md §5.3 training transform; keyword arguments override `TrainTransform` fields."""
    return TrainTransform(**overrides)


# --------------------------------------------------------------------------------------------------
# Evaluation resizing (docs/method.md §6)
# --------------------------------------------------------------------------------------------------


@dataclass
class Resize:
    """Resize image (bicubic) and label (nearest) to a fixed (W, H); a no-op when already that size."""

    size: tuple[int, int]

    def __call__(self, image, label=None):
        image = _as_pil_rgb(image)
        size = tuple(self.size)
        if image.size != size:
            image = image.resize(size, Image.BICUBIC)
        if label is not None:
            label = Image.fromarray(_as_label_array(label))
            if label.size != size:
                label = label.resize(size, Image.NEAREST)
        return image, label


@dataclass
class ResizeHeight:
    """Resize to height `height`, width `int(W / H * height)` (docs/method.md §6.6 step 1)."""

    height: int = 1536

    def __call__(self, image, label=None):
        image = _as_pil_rgb(image)
        w, h = image.size
        size = (int(w / h * self.height), self.height)
        return Resize(size)(image, label)


def _crop_pad_axis(length: int, size: int, mode: str) -> int:
    """Offset `start` such that output pixel j shows source pixel start + j (outside -> fill)."""
    if mode == "faithful":
        # docs/method.md §9 D3: pad `size - length` on both sides, then crop at round((length - size) / 2)
        # (Python's round, half to even) computed from the *unpadded* length.
        pad = size - length if length < size else 0
        return round((length - size) / 2) - pad
    if mode == "corrected":
        return round((length - size) / 2) if length >= size else -((size - length) // 2)
    raise ValueError(f"mapillary_crop must be 'faithful' or 'corrected', got {mode!r}")


@dataclass
class CenterCropPad:
    """Centre crop / pad to `size`² (docs/method.md §6.6 step 2). mode "faithful" reproduces the reference (label
    fill 0 = road, mis-centred portrait crop, docs/method.md §9 D3); "corrected" centres and fills labels 255."""

    size: int = 1536
    mode: str = "faithful"
    ignore_index: int = IGNORE_INDEX

    def __call__(self, image, label=None):
        array = np.asarray(_as_pil_rgb(image))
        h, w = array.shape[:2]
        size = self.size
        sx, sy = _crop_pad_axis(w, size, self.mode), _crop_pad_axis(h, size, self.mode)
        # source range [s0, s1) lands at output [s0 - start, s1 - start)
        x0, x1 = max(0, sx), min(w, sx + size)
        y0, y1 = max(0, sy), min(h, sy + size)
        out = np.zeros((size, size, 3), dtype=np.uint8)
        out[y0 - sy : y1 - sy, x0 - sx : x1 - sx] = array[y0:y1, x0:x1]
        if label is None:
            return Image.fromarray(out), None
        lab = _as_label_array(label)
        fill = 0 if self.mode == "faithful" else self.ignore_index
        out_label = np.full((size, size), fill, dtype=np.uint8)
        out_label[y0 - sy : y1 - sy, x0 - sx : x1 - sx] = lab[y0:y1, x0:x1]
        return Image.fromarray(out), Image.fromarray(out_label)


class Compose:
    def __init__(self, steps: Sequence):
        self.steps = list(steps)

    def __call__(self, image, label=None):
        for step in self.steps:
            image, label = step(image, label)
        return image, label

    def __repr__(self):
        return f"Compose({self.steps!r})"


class Identity:
    def __call__(self, image, label=None):
        return _as_pil_rgb(image), (None if label is None else Image.fromarray(_as_label_array(label)))

    def __repr__(self):
        return "Identity()"


#: The benchmarks evaluated at full resolution, as they are (docs/method.md §6, §8.1).
FULL_RESOLUTION_BENCHMARKS = ("cityscapes", "bdd100k", "synthia", "acdc")


def build_eval_transform(
    name: str,
    *,
    mapillary_crop: str = "faithful",
    mapillary_size: int = 1536,
    gtav_size: Optional[tuple[int, int]] = (1914, 1052),
):
    """The evaluation resizing of docs/method.md §6 for benchmark `name`: `(image, label) -> (PIL, PIL)`.

    GTAV: resize to 1914x1052 (bicubic/nearest). Mapillary: ResizeHeight(1536) + CenterCropPad(1536)
    with `mapillary_crop` = "faithful" (docs/method.md §9 D3, default) or "corrected". Cityscapes, BDD-100K,
    Synthia, ACDC (1920x1080, docs/method.md §6.7): full resolution. The sizes are parameters so that small
    synthetic data can scale them."""
    from .benchmarks import get_spec

    key = get_spec(name).name
    if key == "gtav" and gtav_size is not None:
        return Resize(tuple(gtav_size))
    if key == "mapillary":
        return Compose([ResizeHeight(mapillary_size), CenterCropPad(mapillary_size, mapillary_crop)])
    if key in FULL_RESOLUTION_BENCHMARKS or key == "gtav":  # GTAV with gtav_size=None: as it is
        return Identity()
    raise ValueError(f"no evaluation resizing is defined for benchmark {key!r}")  # a benchmark added without one

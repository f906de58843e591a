"""Common image corruptions for evaluation: the Cityscapes-C protocol (docs/method.md §8.8).

The corruptions are those of Hendrycks & Dietterich (ImageNet-C) as packaged by ``imagecorruptions``;
``srha_hf`` uses its maintained fork ``imagecorruptions-imaug`` (the optional extra
``pip install "srha_hf[robustness]"``). Nineteen corruptions at severities 1-5:

* noise: gaussian_noise, shot_noise, impulse_noise, speckle_noise
* blur: defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur
* weather: snow, frost, fog, spatter
* digital: brightness, contrast, elastic_transform, pixelate, jpeg_compression, saturate

The families are those of the Cityscapes-C tables (Kamann & Rother; SegFormer's robustness table), where
brightness is digital and spatter weather; the corruptions those tables leave out (zoom blur, elastic
transform, pixelate) are put in the family ImageNet-C gives them. ``cityscapes-c`` names the sixteen of the
published benchmark, ``all`` the package's nineteen.

Every (image, corruption, severity) is corrupted from its own seed, derived from the image's file name (not
its position, process or worker), the corruption, the severity and a base seed (:func:`corruption_seed`),
so two runs, any number of processes and DataLoader workers corrupt every image identically.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "ALL_CORRUPTIONS",
    "CITYSCAPES_C",
    "FAMILIES",
    "SEVERITIES",
    "Corruption",
    "MissingExtraError",
    "corrupt_image",
    "corruption_seed",
    "family_of",
    "package_version",
    "require_imagecorruptions",
    "resolve_corruptions",
    "resolve_severities",
    "summarise_corruptions",
]

EXTRA = 'pip install "srha_hf[robustness]"'

FAMILIES: Dict[str, tuple] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "spatter"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
ALL_CORRUPTIONS: tuple = tuple(name for names in FAMILIES.values() for name in names)
# The sixteen corruptions of the published Cityscapes-C tables: four families of four.
CITYSCAPES_C: tuple = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
    "defocus_blur", "glass_blur", "motion_blur", "gaussian_blur",
    "snow", "frost", "fog", "spatter",
    "brightness", "contrast", "jpeg_compression", "saturate",
)  # fmt: skip
SEVERITIES = (1, 2, 3, 4, 5)
PRESETS = {"all": ALL_CORRUPTIONS, "cityscapes-c": CITYSCAPES_C, **FAMILIES}
# the corruptions whose functions take a seed of their own (the others draw from numpy's global generator)
_SEEDED_ARGUMENT = {"impulse_noise", "glass_blur"}


class MissingExtraError(ImportError):
    """The optional package a feature needs is not installed (the message names the extra)."""


def require_imagecorruptions():
    """The ``imagecorruptions`` module of ``imagecorruptions-imaug``, or :class:`MissingExtraError`."""
    try:
        import imagecorruptions
    except ImportError as err:
        raise MissingExtraError(
            f"evaluation under corruptions needs the package imagecorruptions-imaug ({type(err).__name__}: {err}); "
            f"install the extra: {EXTRA}"
        ) from None
    if not hasattr(imagecorruptions, "corrupt"):
        raise MissingExtraError(f"the installed imagecorruptions has no corrupt(): install the extra: {EXTRA}")
    return imagecorruptions


def package_version() -> Optional[str]:
    """The installed ``imagecorruptions-imaug`` version (recorded with every result), or None."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return None


def family_of(name: str) -> str:
    for family, names in FAMILIES.items():
        if name in names:
            return family
    raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(ALL_CORRUPTIONS)}")


def resolve_corruptions(spec) -> List[str]:
    """Corruption names from ``"all"``, ``"cityscapes-c"``, a family (``noise``, ``blur``, ``weather``,
    ``digital``), ``"name,name"`` or a list of these; in the order of :data:`ALL_CORRUPTIONS`, without repeats.
    An unknown name is a ValueError naming the valid ones."""
    items = [spec] if isinstance(spec, str) else list(spec)
    chosen = set()
    for item in items:
        for part in str(item).split(","):
            part = part.strip().lower().replace("cityscapes_c", "cityscapes-c")
            if not part:
                continue
            if part in PRESETS:
                chosen.update(PRESETS[part])
            elif part in ALL_CORRUPTIONS:
                chosen.add(part)
            else:
                raise ValueError(
                    f"unknown corruption {part!r}: expected all, cityscapes-c, a family ({', '.join(FAMILIES)}) "
                    f"or names among {', '.join(ALL_CORRUPTIONS)}"
                )
    if not chosen:
        raise ValueError(f"no corruption named in {spec!r}")
    return [name for name in ALL_CORRUPTIONS if name in chosen]


def resolve_severities(values: Iterable) -> List[int]:
    """Sorted distinct severities, each an integer in 1..5 (a ValueError naming the bad value otherwise)."""
    out = set()
    for value in values:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = None
        if number not in SEVERITIES:
            raise ValueError(f"severity {value!r}: expected an integer from 1 to 5")
        out.add(number)
    if not out:
        raise ValueError("no severity given: expected integers from 1 to 5")
    return sorted(out)


def corruption_seed(image_key: str, name: str, severity: int, base_seed: int = 0) -> int:
    """The 32-bit seed of one (image, corruption, severity): the first four bytes of the SHA-256 of
    ``"{base_seed}/{image_key}/{name}/{severity}"`` (``image_key``: the image's file name)."""
    digest = hashlib.sha256(f"{int(base_seed)}/{image_key}/{name}/{int(severity)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def image_key(image_path: Optional[str], index: int) -> str:
    """What seeds an image: its file name (the same on every machine and in every shard), else ``#index``."""
    return os.path.basename(str(image_path)) if image_path else f"#{int(index)}"


def corrupt_image(image, name: str, severity: int, seed: int) -> np.ndarray:
    """``image`` (an HxWx3 uint8 array or a PIL image, at least 32 px each side) corrupted by ``name`` at
    ``severity``, drawing every random number from ``seed``: numpy's global generator is seeded for the call
    (and restored after it), and the corruptions that take a seed of their own get it too. Returns uint8 HxWx3."""
    package = require_imagecorruptions()
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(ALL_CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: expected an integer from 1 to 5")
    array = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"corrupt_image expects an HxWx3 uint8 image, got shape {array.shape}")
    if min(array.shape[:2]) < 32:
        raise ValueError(f"corrupt_image: the image is {array.shape[1]}x{array.shape[0]}; the corruptions need 32 px or more on each side")
    kwargs = {"seed": int(seed)} if name in _SEEDED_ARGUMENT else {}
    state = np.random.get_state()
    np.random.seed(int(seed))
    try:
        out = package.corrupt(array, severity=int(severity), corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)
    return np.ascontiguousarray(out, dtype=np.uint8)


@dataclass(frozen=True)
class Corruption:
    """One corruption at one severity, with the base seed of its per-image seeds."""

    name: str
    severity: int
    seed: int = 0

    def __post_init__(self):
        if self.name not in ALL_CORRUPTIONS:
            raise ValueError(f"unknown corruption {self.name!r}; expected one of {', '.join(ALL_CORRUPTIONS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: expected an integer from 1 to 5")

    def label(self) -> str:
        return f"{self.name} s{self.severity}"

    def __call__(self, image, image_path: Optional[str], index: int) -> np.ndarray:
        return corrupt_image(image, self.name, self.severity, corruption_seed(image_key(image_path, index), self.name, self.severity, self.seed))


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(sum(values) / len(values)) if values else float("nan")


def summarise_corruptions(clean: float, table: Mapping[str, Mapping]) -> dict:
    """The summary of one dataset's corrupted mIoUs ``table[name][severity]`` (fractions) against its clean
    mIoU: ``per_corruption`` (mean over the severities), ``per_severity`` (mean over the corruptions),
    ``per_family`` (mean of its corruptions' means), ``mean`` (over every corruption × severity cell),
    ``relative`` (corrupted / clean: overall, per family and per corruption) and ``clean``."""
    table = {name: {str(s): v for s, v in by_severity.items()} for name, by_severity in table.items()}
    per_corruption = {name: _mean(list(by_severity.values())) for name, by_severity in table.items()}
    severities = sorted({int(s) for by_severity in table.values() for s in by_severity})
    per_severity = {str(s): _mean([by[str(s)] for by in table.values() if str(s) in by]) for s in severities}
    per_family = {}
    for family, names in FAMILIES.items():
        present = [per_corruption[n] for n in names if n in per_corruption]
        if present:
            per_family[family] = _mean(present)
    mean = _mean([v for by in table.values() for v in by.values()])

    def ratio(value):
        return float(value / clean) if clean and not math.isnan(value) else float("nan")

    return {
        "clean": float(clean),
        "mean": mean,
        "per_corruption": per_corruption,
        "per_severity": per_severity,
        "per_family": per_family,
        "relative": {
            "mean": ratio(mean),
            "per_family": {f: ratio(v) for f, v in per_family.items()},
            "per_corruption": {n: ratio(v) for n, v in per_corruption.items()},
        },
    }

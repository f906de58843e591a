"""An embedded synthetic benchmark: procedurally generated street scenes in the real on-disk layouts.

`make_synthetic_benchmark(root)` writes five small datasets that `load_benchmark` reads exactly like
the real ones:

* `root/gtav`        source domain: `images/{train,valid}/01/NNNNN.png`, palette label PNGs
                     (palette index = Cityscapes id, Cityscapes colours);
* `root/cityscapes`  `leftImg8bit_trainvaltest/...` and `gtFine_*_labelIds.png`;
* `root/bdd100k`     `images/{train,val}/<name>.jpg` and `labels/.../<name>_train_id.png`;
* `root/mapillary`   `config.json` (66 v1.2 labels), `{training,validation}/{images,labels}`,
                     palette PNGs of v1.2 class indices; every fifth image is portrait;
* `root/synthia`     `RGB/{train,val}/NNNNNNN.png` and 16-bit 3-channel `GT/LABELS/...` PNGs.

Scenes have sky at the top, a road in perspective at the bottom with lane markings and curbs,
sidewalks, buildings, trees, terrain, a wall and a fence, poles with lights and signs, a train near
the horizon, vehicles on the road, people, riders and bikes, and a little unlabeled clutter: all 19
classes are drawn in every image (a small one is sometimes hidden behind another). The scene is first
drawn as a map of semantic *kinds* (the 19 classes plus a few sub-kinds such as lane marking, curb,
manhole, utility pole, void) which every dataset encodes with its own native ids, so each dataset's
decoded train IDs follow its own table of docs/method.md §6 (e.g. a lane marking is road in Mapillary and
Cityscapes but ignore in Synthia).

Appearance is a per-kind colour plus texture (noise, stripes, vertical gradient); every target
domain shifts each class's colour and texture *differently* (and adds its own global tone), which is
the regional domain shift that SRHA's semantic rearrangement targets. Same seed, same files.

Version 2 (2026-12-02) made the small classes larger (poles, lights and signs scale with the image
width, pedestrians, bikes, wall and fence nearer the camera) so that a few hundred CPU steps can learn
them, and doubled the targets' per-class colour shifts (magnitudes 80-95 instead of 45-60, at least
half of it for every class) and their texture rescaling, so that a plain model's source-val mIoU is
well above its target mIoU (a domain gap of about 20 points on the demo; `benchmarks/README.md`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_text_atomic
from . import labels as L

SYNTHETIC_VERSION = 2
MARKER = ".srha_synthetic.json"
PARTIAL = ".srha_synthetic_partial"
# The five benchmarks in generation order (the order fixes each domain's random stream: keep it).
DOMAINS = ("gtav", "cityscapes", "bdd100k", "mapillary", "synthia")
assert sorted(DOMAINS) == sorted(L.BENCHMARK_NAMES)

# ---- semantic kinds: 0..18 are the train classes --------------------------------------------------
LANE_MARKING, CURB, MANHOLE, UTILITY_POLE, UNLABELED, CLUTTER, MOTORCYCLIST = range(19, 26)
NUM_KINDS = 26

# Native ids of every kind, per dataset (each then decoded by that dataset's table in labels.py).
_CITYSCAPES_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
NATIVE_IDS = {
    # Cityscapes labels markings and manholes as road, curbs as sidewalk; 0 unlabeled, 4 static.
    "cityscapes": _CITYSCAPES_IDS + [7, 8, 7, 17, 0, 4, 25],
    "gtav": _CITYSCAPES_IDS + [7, 8, 7, 17, 0, 5, 25],
    "bdd100k": list(range(19)) + [0, 1, 0, 5, 255, 255, 12],
    # Synthia: 22 lane-marking and 14 road-work are void (255) after mapping.
    "synthia": [3, 4, 2, 21, 5, 7, 15, 9, 6, 16, 1, 10, 17, 8, 18, 19, 20, 12, 11] + [22, 4, 3, 7, 0, 14, 17],
    # Mapillary v1.2: 24 marking--general, 2 curb, 41 manhole, 47 utility pole, 65 unlabeled,
    # 33 bench (void), 21 motorcyclist.
    "mapillary": [13, 15, 17, 6, 3, 45, 48, 50, 30, 29, 27, 19, 20, 55, 61, 54, 58, 57, 52] + [24, 2, 41, 47, 65, 33, 21],
}  # fmt: skip

# Cityscapes label colours by id (0..33), used as GTAV's label palette.
CITYSCAPES_ID_COLORS = [
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip


def train_ids_of_kinds(dataset: str) -> np.ndarray:
    """(NUM_KINDS,) train ID that each kind decodes to in `dataset`."""
    native = np.asarray(NATIVE_IDS[dataset])
    lut = {
        "cityscapes": L.CITYSCAPES_LUT,
        "gtav": L.CITYSCAPES_LUT,  # palette index = Cityscapes id, colours = Cityscapes colours
        "bdd100k": L.BDD_LUT,
        "synthia": L.SYNTHIA_LUT,
        "mapillary": L.MAPILLARY_LUT,
    }[dataset]
    return lut[native]


# ---- appearance ----------------------------------------------------------------------------------
# Source (GTAV-like) base colour per kind, roughly plausible.
_BASE_COLORS = np.array([
    (90, 88, 96), (150, 140, 135), (140, 110, 95), (170, 160, 140), (120, 100, 80), (95, 95, 100),
    (40, 40, 45), (230, 200, 40), (60, 120, 45), (130, 150, 70), (120, 170, 230), (190, 80, 70),
    (60, 90, 170), (170, 30, 40), (200, 200, 190), (230, 180, 40), (120, 120, 140), (30, 30, 35),
    (40, 140, 160), (235, 235, 225), (185, 180, 170), (60, 60, 60), (110, 85, 60), (20, 20, 20),
    (150, 60, 150), (80, 50, 110),
], dtype=np.float32)  # fmt: skip
# Texture per kind: (fine-noise amplitude, coarse-noise amplitude, stripe amplitude, stripe fx, stripe fy, vertical gradient)
_BASE_TEXTURE = np.array([
    (10, 12, 0, 0, 0, 0), (8, 6, 14, 0.06, 0.0, 0), (6, 10, 22, 0.0, 0.09, 0), (6, 8, 8, 0.05, 0.05, 0),
    (4, 4, 30, 0.18, 0.0, 0), (4, 2, 0, 0, 0, 0), (3, 2, 0, 0, 0, 0), (4, 2, 0, 0, 0, 0),
    (22, 24, 0, 0, 0, 0), (16, 18, 0, 0, 0, 0), (2, 12, 0, 0, 0, -45), (8, 6, 0, 0, 0, 0),
    (8, 6, 0, 0, 0, 0), (5, 4, 10, 0.0, 0.12, 0), (5, 4, 8, 0.0, 0.1, 0), (5, 4, 14, 0.1, 0.0, 0),
    (5, 4, 18, 0.12, 0.0, 0), (6, 3, 0, 0, 0, 0), (6, 3, 0, 0, 0, 0), (4, 2, 0, 0, 0, 0),
    (6, 4, 0, 0, 0, 0), (6, 4, 10, 0.2, 0.2, 0), (4, 3, 0, 0, 0, 0), (6, 6, 0, 0, 0, 0),
    (14, 8, 0, 0, 0, 0), (8, 6, 0, 0, 0, 0),
], dtype=np.float32)  # fmt: skip

# How strongly each domain shifts each class (colour shift magnitude, texture scaling spread) and its
# global tone (gain, offset, colour cast, saturation factor).
_DOMAIN_STYLE = {
    "gtav": dict(shift=0.0, tex=0.0, gain=1.0, offset=0.0, cast=(0, 0, 0), sat=1.15),
    "cityscapes": dict(shift=80.0, tex=0.7, gain=0.85, offset=5.0, cast=(-4, 4, 2), sat=0.7),
    "bdd100k": dict(shift=95.0, tex=0.9, gain=0.7, offset=0.0, cast=(12, 2, -14), sat=0.9),
    "mapillary": dict(shift=90.0, tex=0.8, gain=1.05, offset=8.0, cast=(0, 6, 10), sat=1.0),
    "synthia": dict(shift=85.0, tex=1.0, gain=0.95, offset=-5.0, cast=(6, -6, 0), sat=1.3),
}
_DOMAIN_KEY = {name: i for i, name in enumerate(DOMAINS)}


@dataclass
class DomainAppearance:
    colors: np.ndarray  # (NUM_KINDS, 3) float32
    texture: np.ndarray  # (NUM_KINDS, 6) float32
    gain: float
    offset: float
    cast: np.ndarray
    sat: float


def domain_appearance(domain: str, seed: int = 0) -> DomainAppearance:
    """The per-class appearance of a domain: the source palette shifted per class (a different random
    direction and size for every class: a regional shift), textures rescaled per class, plus a tone."""
    style = _DOMAIN_STYLE[domain]
    rng = np.random.default_rng([seed, 7, _DOMAIN_KEY[domain]])
    direction = rng.normal(size=(NUM_KINDS, 3)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    magnitude = style["shift"] * rng.uniform(0.5, 1.0, size=(NUM_KINDS, 1)).astype(np.float32)
    colors = np.clip(_BASE_COLORS + direction * magnitude, 0, 255)
    tex_scale = np.exp(style["tex"] * rng.normal(size=(NUM_KINDS, 1))).astype(np.float32)
    texture = _BASE_TEXTURE.copy()
    texture[:, :3] *= tex_scale
    texture[:, 3:5] *= np.exp(0.3 * style["tex"] * rng.normal(size=(NUM_KINDS, 1))).astype(np.float32)
    return DomainAppearance(colors, texture, style["gain"], style["offset"], np.asarray(style["cast"], np.float32), style["sat"])


# ---- scene layout --------------------------------------------------------------------------------


class _Canvas:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.kind = np.full((height, width), UNLABELED, dtype=np.uint8)
        self.yy, self.xx = np.mgrid[0:height, 0:width]

    def rect(self, k, x0, y0, x1, y1):
        x0, x1 = max(0, int(round(x0))), min(self.w, int(round(x1)))
        y0, y1 = max(0, int(round(y0))), min(self.h, int(round(y1)))
        if x1 > x0 and y1 > y0:
            self.kind[y0:y1, x0:x1] = k

    def ellipse(self, k, cx, cy, rx, ry):
        rx, ry = max(rx, 0.8), max(ry, 0.8)
        x0, x1 = max(0, int(cx - rx)), min(self.w, int(cx + rx) + 1)
        y0, y1 = max(0, int(cy - ry)), min(self.h, int(cy + ry) + 1)
        if x1 <= x0 or y1 <= y0:
            return
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        self.kind[y0:y1, x0:x1][mask] = k

    def band(self, k, y0, left, right):
        """Rows y >= y0 with left(y) <= x < right(y), for linear left/right: (x at y0, x at bottom)."""
        y0 = max(0, int(y0))
        rows = np.arange(y0, self.h)
        t = (rows - y0) / max(1, self.h - 1 - y0)
        lo = left[0] + (left[1] - left[0]) * t
        hi = right[0] + (right[1] - right[0]) * t
        xx = self.xx[y0:]
        mask = (xx >= lo[:, None]) & (xx < hi[:, None])
        self.kind[y0:][mask] = k


@dataclass
class _Street:
    """A scene being drawn: its canvas, the horizon row and the vanishing point's column."""

    c: _Canvas
    horizon: float
    vx: float

    def depth(self, y) -> float:
        """0 at the horizon, 1 at the bottom (clipped below at 0.05)."""
        return float(np.clip((y - self.horizon) / (self.c.h - self.horizon), 0.05, 1.0))

    def ground_y(self, rng: np.random.Generator, lo: float, hi: float) -> float:
        """A random row between the horizon (``lo = 0``) and the bottom (``hi = 1``)."""
        return self.horizon + (self.c.h - self.horizon) * rng.uniform(lo, hi)


def _draw_sky_buildings_trees(s: _Street, rng: np.random.Generator) -> None:
    """The sky, buildings along both sides reaching below the horizon, tree crowns and bushes."""
    c, W, H, horizon, vx = s.c, s.c.w, s.c.h, s.horizon, s.vx
    c.rect(10, 0, 0, W, horizon + 1)
    for side in (0, 1):
        x = 0.0 if side == 0 else vx + W * 0.08
        end = vx - W * 0.08 if side == 0 else W
        while x < end:
            bw = W * rng.uniform(0.08, 0.2)
            top = H * rng.uniform(0.04, 0.3)
            c.rect(2, x, top, min(x + bw, end), horizon + H * 0.12)
            x += bw + (W * rng.uniform(0.0, 0.05) if rng.random() < 0.4 else 0)
    for _ in range(int(rng.integers(3, 6))):
        cx = W * rng.uniform(0, 1)
        cy = horizon - H * rng.uniform(0.0, 0.15)
        c.ellipse(8, cx, cy, W * rng.uniform(0.04, 0.09), H * rng.uniform(0.06, 0.14))


def _draw_ground(s: _Street, rng: np.random.Generator) -> None:
    """Terrain, sidewalks, curbs and road in perspective, the dashed centre line and a manhole."""
    c, W, H, horizon, vx = s.c, s.c.w, s.c.h, s.horizon, s.vx
    c.band(9, horizon, (0, 0), (W, W))
    c.band(1, horizon, (vx - W * 0.06, -W * 0.35), (vx + W * 0.06, W * 1.35))
    c.band(CURB, horizon, (vx - W * 0.035, -W * 0.08), (vx + W * 0.035, W * 1.08))
    c.band(0, horizon, (vx - W * 0.03, -W * 0.05), (vx + W * 0.03, W * 1.05))
    y = horizon + 2
    while y < H:
        d = s.depth(y)
        length = 2 + 14 * d
        c.rect(LANE_MARKING, vx - 0.4 - 2.5 * d, y, vx + 0.4 + 2.5 * d, y + length)
        y += length * 2
    my = s.ground_y(rng, 0.6, 0.9)
    c.ellipse(MANHOLE, vx + W * rng.uniform(0.05, 0.15) * rng.choice([-1, 1]), my, 8 * s.depth(my), 2.5 * s.depth(my))


def _draw_wall_fence_train(s: _Street, rng: np.random.Generator) -> None:
    """A wall and a fence on the sidewalks, far from the camera, and a train on the horizon."""
    c, W, H, horizon = s.c, s.c.w, s.c.h, s.horizon
    wy = s.ground_y(rng, 0.15, 0.4)
    d = s.depth(wy)
    c.rect(3, W * rng.uniform(0.0, 0.06), wy - H * 0.22 * d - 6, W * rng.uniform(0.24, 0.32), wy + 4 * d)
    fy = s.ground_y(rng, 0.15, 0.4)
    d = s.depth(fy)
    c.rect(4, W * rng.uniform(0.68, 0.76), fy - H * 0.18 * d - 5, W * rng.uniform(0.94, 1.0), fy + 3 * d)
    ty = horizon + H * 0.02
    tx = W * rng.uniform(-0.1, 0.5)
    c.rect(16, tx, ty - H * 0.1, tx + W * rng.uniform(0.3, 0.5), ty)


def _draw_poles(s: _Street, rng: np.random.Generator) -> None:
    """Poles beside the road, topped by a traffic light (6), a sign (7) or nothing (utility pole)."""
    c, W, H, vx = s.c, s.c.w, s.c.h, s.vx
    for k, head in ((5, 6), (5, 7), (UTILITY_POLE, None), (5, 7), (5, 6)):
        py = s.ground_y(rng, 0.2, 0.8)
        d = s.depth(py)
        side = rng.choice([-1, 1])
        px = vx + side * (W * 0.06 + (W * 0.55) * d * rng.uniform(0.7, 1.0))
        top = py - H * rng.uniform(0.35, 0.6) * (0.4 + 0.6 * d)
        pw = max(2.5, W * 0.02 * d)
        c.rect(k, px - pw / 2, top, px + pw / 2, py)
        if head == 6:
            c.rect(6, px - 2.5 * pw - 2, top - 6, px + 2.5 * pw + 2, top + H * 0.08 * d + 8)
        elif head == 7:
            c.ellipse(7, px, top + 4, 5 + W * 0.025 * d, 5 + W * 0.025 * d)


def _draw_ridden_bike(c: _Canvas, k: int, x: float, y: float, vw: float, vh: float) -> None:
    """A motorcycle (17) or bicycle (18) with its rider above it."""
    c.ellipse(k, x - vw * 0.35, y - vh * 0.2, vw * 0.2, vh * 0.25)
    c.ellipse(k, x + vw * 0.35, y - vh * 0.2, vw * 0.2, vh * 0.25)
    c.rect(k, x - vw * 0.4, y - vh * 0.5, x + vw * 0.4, y - vh * 0.3)
    rider = MOTORCYCLIST if k == 17 else 12
    c.rect(rider, x - vw * 0.15, y - vh * 1.6, x + vw * 0.15, y - vh * 0.45)
    c.ellipse(rider, x, y - vh * 1.75, vw * 0.13, vh * 0.18)


def _draw_vehicles(s: _Street, rng: np.random.Generator) -> None:
    """Cars, a truck, a bus and two ridden bikes on the road, drawn far to near."""
    c, W, H, horizon, vx = s.c, s.c.w, s.c.h, s.horizon, s.vx
    vehicles = [(13, 1.0), (13, 1.0), (14, 1.6), (15, 2.0), (17, 0.8), (18, 0.7)]
    ys = np.sort(horizon + (H - horizon) * rng.uniform(0.15, 0.95, size=len(vehicles)))
    order = rng.permutation(len(vehicles))
    for y, (k, size) in zip(ys, [vehicles[i] for i in order]):
        d = s.depth(y)
        half_road = W * 0.03 + (W * 0.52) * d
        x = vx + rng.uniform(-0.8, 0.8) * half_road
        vw = W * 0.14 * d * size ** 0.5
        vh = H * 0.13 * d * (size if k in (14, 15) else 0.8 if k in (13,) else 1.0)
        if k in (17, 18):
            _draw_ridden_bike(c, k, x, y, vw, vh)
        else:
            c.rect(k, x - vw / 2, y - vh, x + vw / 2, y)


def _draw_pedestrians_clutter(s: _Street, rng: np.random.Generator) -> None:
    """Pedestrians on the sidewalks, then a blob of void clutter and one of unlabeled."""
    c, W, H, vx = s.c, s.c.w, s.c.h, s.vx
    for _ in range(int(rng.integers(2, 4))):
        y = s.ground_y(rng, 0.1, 0.9)
        d = s.depth(y)
        side = rng.choice([-1, 1])
        x = vx + side * (W * 0.05 + W * 0.6 * d * rng.uniform(0.9, 1.2))
        ph = H * 0.45 * d + 8
        c.rect(11, x - ph * 0.14, y - ph * 0.85, x + ph * 0.14, y)
        c.ellipse(11, x, y - ph * 0.92, ph * 0.09, ph * 0.09)
    for k in (CLUTTER, UNLABELED):
        y = s.ground_y(rng, 0.1, 0.9)
        c.ellipse(k, W * rng.uniform(0, 1), y, W * 0.02 + 2, H * 0.02 + 2)


def draw_scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An (H, W) uint8 map of semantic kinds for one street scene (all 19 classes drawn).

    The parts are drawn back to front, each from the same random stream in a fixed order (the order
    fixes every generated file: keep it).
    """
    c = _Canvas(width, height)
    horizon = height * rng.uniform(0.38, 0.48)
    street = _Street(c, horizon, width * rng.uniform(0.42, 0.58))
    for draw in (_draw_sky_buildings_trees, _draw_ground, _draw_wall_fence_train, _draw_poles, _draw_vehicles, _draw_pedestrians_clutter):
        draw(street, rng)
    return c.kind


def _noise(shape, cells, rng):
    import cv2

    h, w = shape
    small = rng.standard_normal((max(2, h // cells), max(2, w // cells))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def render(kind: np.ndarray, look: DomainAppearance, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 image of a kind map: per-kind colour and textures gathered through tables."""
    h, w = kind.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colors = look.colors * rng.uniform(0.92, 1.08, size=(NUM_KINDS, 1)).astype(np.float32)
    tex = look.texture[kind]  # (H, W, 6)
    fine, coarse = _noise((h, w), 2, rng), _noise((h, w), 12, rng)
    shade = (
        tex[..., 0] * fine
        + tex[..., 1] * coarse
        + tex[..., 2] * np.sin(2 * np.pi * (xx * tex[..., 3] + yy * tex[..., 4]))
        + tex[..., 5] * (yy / h - 0.5)
    )
    image = colors[kind] + shade[..., None]
    gray = image.mean(axis=2, keepdims=True)
    image = gray + (image - gray) * look.sat
    image = image * look.gain + look.offset + look.cast
    return np.clip(image, 0, 255).astype(np.uint8)


# ---- writers -------------------------------------------------------------------------------------


def _palette_png(path: Path, index: np.ndarray, palette) -> None:
    index = np.ascontiguousarray(index, dtype=np.uint8)
    image = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    image.putpalette(flat.ravel().tolist())
    image.save(path, compress_level=1)


def _save_rgb(path: Path, image: np.ndarray) -> None:
    if path.suffix == ".jpg":
        Image.fromarray(image).save(path, quality=90)
    else:
        Image.fromarray(image).save(path, compress_level=1)


def _synthia_label(path: Path, native: np.ndarray, instance: np.ndarray) -> None:
    import cv2

    rgb16 = np.stack([native.astype(np.uint16), instance.astype(np.uint16), np.zeros_like(native, np.uint16)], -1)
    if not cv2.imwrite(str(path), rgb16[..., ::-1].copy(), [cv2.IMWRITE_PNG_COMPRESSION, 1]):  # OpenCV writes BGR
        raise OSError(f"could not write {path}")


def mapillary_config() -> dict:
    """A v1.2-style config.json: 66 labels with name, readable, color, instances, evaluate."""
    rng = np.random.default_rng(66)
    colors = rng.integers(0, 256, size=(len(L.MAPILLARY_V12_NAMES), 3)).tolist()
    return {
        "labels": [
            {
                "name": name,
                "readable": name.split("--")[-1].replace("-", " ").title(),
                "color": colors[i],
                "instances": name.startswith(("human", "object--vehicle")),
                "evaluate": not name.startswith("void"),
            }
            for i, name in enumerate(L.MAPILLARY_V12_NAMES)
        ],
        "version": "1.2",
        "mapping": "public",
        "folder_structure": "{split}/{content}/{key:.{22}}.{ext}",
    }


def domain_size(domain: str, size: tuple[int, int], index: int = 0) -> tuple[int, int]:
    """(W, H) of image `index` of `domain` given the GTAV-like base size; each benchmark keeps its
    real aspect ratio (Cityscapes 2:1, BDD 16:9, Synthia 1280:760, Mapillary 4:3 with every fifth
    image portrait 3:4)."""
    w, h = size
    if domain == "gtav":
        return w, h
    if domain == "cityscapes":
        return w, w // 2
    if domain == "bdd100k":
        return w, w * 9 // 16
    if domain == "synthia":
        return w, int(round(w * 760 / 1280))
    if domain == "mapillary":
        return (w * 9 // 16, w * 3 // 4) if index % 5 == 4 else (w, w * 3 // 4)
    raise ValueError(f"unknown domain {domain!r}")


def _write_sample(domain: str, out: Path, split: str, i: int, global_index: int, kind: np.ndarray, image: np.ndarray, paths) -> None:
    native = np.asarray(NATIVE_IDS[domain], dtype=np.uint8)[kind]
    if domain == "gtav":
        folder = "valid" if split == "val" else split
        name = f"{global_index + 1:05d}"
        if paths["gtav_layout"] == "flat":
            img_path, lab_path = out / "images" / f"{name}.png", out / "labels" / f"{name}.png"
        else:
            img_path = out / "images" / folder / "01" / f"{name}.png"
            lab_path = out / "labels" / folder / "01" / f"{name}.png"
        paths["gtav_split"].setdefault(split, []).append(f"{name}.png")
        img_path.parent.mkdir(parents=True, exist_ok=True)
        lab_path.parent.mkdir(parents=True, exist_ok=True)
        _save_rgb(img_path, image)
        _palette_png(lab_path, native, CITYSCAPES_ID_COLORS)
    elif domain == "cityscapes":
        city = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}[split]
        city = city[i % len(city)]
        stem = f"{city}_000000_{i:06d}"
        img_dir = out / "leftImg8bit_trainvaltest" / "leftImg8bit" / split / city
        gt_dir = out / "gtFine_trainvaltest" / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        _save_rgb(img_dir / f"{stem}_leftImg8bit.png", image)
        Image.fromarray(native).save(gt_dir / f"{stem}_gtFine_labelIds.png", compress_level=1)
    elif domain == "bdd100k":
        stem = f"{0x7d2f0000 + global_index:08x}-{(global_index * 2654435761) % 2**32:08x}"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        _save_rgb(out / "images" / split / f"{stem}.jpg", image)
        Image.fromarray(native).save(out / "labels" / split / f"{stem}_train_id.png", compress_level=1)
    elif domain == "mapillary":
        folder = {"train": "training", "val": "validation"}[split]
        stem = f"synth{global_index:06d}_" + "".join("abcdefghijklmnopqrstuvwxyz"[(global_index * 7 + j) % 26] for j in range(10))
        (out / folder / "images").mkdir(parents=True, exist_ok=True)
        (out / folder / "labels").mkdir(parents=True, exist_ok=True)
        _save_rgb(out / folder / "images" / f"{stem}.jpg", image)
        _palette_png(out / folder / "labels" / f"{stem}.png", native, [tuple(e["color"]) for e in paths["mapillary_config"]["labels"]])
    elif domain == "synthia":
        stem = f"{global_index:07d}"
        (out / "RGB" / split).mkdir(parents=True, exist_ok=True)
        (out / "GT" / "LABELS" / split).mkdir(parents=True, exist_ok=True)
        _save_rgb(out / "RGB" / split / f"{stem}.png", image)
        # G channel: an instance id per connected kind region is overkill; use the kind itself + 1
        # (non-zero, 16-bit values above 255 so that an 8-bit reader would visibly break).
        instance = (kind.astype(np.uint16) + 1) * 300
        _synthia_label(out / "GT" / "LABELS" / split / f"{stem}.png", native, instance)


def render_sample(domain: str, split: str, index: int, width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``(H, W)`` kind map and ``(H, W, 3)`` uint8 image of sample ``index`` of ``split`` ("train" or "val")
    of ``domain``, drawn at ``width`` x ``height``: the sample that `generate_domain` writes (with the same
    seed, when that sample has this size; `domain_size` gives it)."""
    if domain not in _DOMAIN_KEY:
        raise ValueError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    rng = np.random.default_rng([seed, _DOMAIN_KEY[domain], ("train", "val").index(split), index])
    kind = draw_scene(width, height, rng)
    return kind, render(kind, domain_appearance(domain, seed), rng)


def generate_domain(domain: str, out: Path, *, num_train: int, num_val: int, size, seed: int, gtav_layout: str = "presplit") -> None:
    """Write one synthetic benchmark into `out` (which must not exist yet or be empty)."""
    paths = {"gtav_layout": gtav_layout, "gtav_split": {}, "mapillary_config": mapillary_config()}
    out.mkdir(parents=True, exist_ok=True)
    if domain == "mapillary":
        (out / "config.json").write_text(json.dumps(paths["mapillary_config"], indent=1))
    global_index = 0
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            w, h = domain_size(domain, size, global_index)
            kind, image = render_sample(domain, split, i, w, h, seed)
            _write_sample(domain, out, split, i, global_index, kind, image, paths)
            global_index += 1
    if domain == "gtav":
        split_dir = out / "split_data"
        split_dir.mkdir(exist_ok=True)
        for split, names in paths["gtav_split"].items():
            (split_dir / f"gtav_split_{split}.txt").write_text("".join(n + "\n" for n in names))


def _params(num_train, num_val, size, seed, gtav_layout) -> dict:
    return {
        "version": SYNTHETIC_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "size": [int(size[0]), int(size[1])],
        "seed": int(seed),
        "gtav_layout": gtav_layout,
    }


def make_synthetic_benchmark(
    root,
    num_train: int = 100,
    num_val: int = 20,
    size: tuple[int, int] = (384, 212),
    seed: int = 0,
    *,
    gtav_layout: str = "presplit",
    progress: bool = False,
) -> dict:
    """Write the five synthetic benchmarks under `root` (see the module docstring); return their roots.

    Deterministic (same arguments, identical files) and idempotent: when `root` already holds a
    complete benchmark made with the same arguments (its marker file, written last and atomically,
    says so) nothing is written. A benchmark made with other arguments is replaced; folders that this
    function did not make are never overwritten. `size` is the (W, H) of the GTAV-like source images;
    the other domains keep their benchmark's aspect ratio at the same width (`domain_size`)."""
    if gtav_layout not in ("presplit", "flat"):
        raise ValueError(f"gtav_layout must be 'presplit' or 'flat', got {gtav_layout!r}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train}, {num_val}")
    root = Path(root).expanduser()
    params = _params(num_train, num_val, size, seed, gtav_layout)
    result = {d: root / d for d in DOMAINS}
    marker = root / MARKER
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text())
        except Exception:
            stored = None
        if stored == params and all(p.is_dir() for p in result.values()):
            return result
    owned = marker.is_file() or (root / PARTIAL).exists()
    existing = [p for p in result.values() if p.exists()]
    if existing and not owned:
        raise FileExistsError(
            f"{existing[0]} exists and was not made by make_synthetic_benchmark (no {MARKER} in {root}); "
            "refusing to overwrite it: choose another root"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / PARTIAL).write_text(json.dumps(params))
    if marker.exists():
        marker.unlink()
    for path in existing:
        shutil.rmtree(path)
    domains = DOMAINS
    if progress:
        from tqdm.auto import tqdm

        domains = tqdm(DOMAINS, desc="synthetic benchmark")
    for domain in domains:
        generate_domain(domain, root / domain, num_train=num_train, num_val=num_val, size=size, seed=seed, gtav_layout=gtav_layout)
    write_text_atomic(marker, json.dumps(params))
    (root / PARTIAL).unlink()
    return result


def synthetic_eval_sizes(size: tuple[int, int] = (384, 212)) -> dict:
    """`build_eval_transform` arguments that scale docs/method.md §6's evaluation sizes to synthetic data:
    GTAV resized to its own size (a no-op), Mapillary to the Mapillary image height."""
    w, h = size
    return {"gtav_size": (w, h), "mapillary_size": domain_size("mapillary", size)[1]}

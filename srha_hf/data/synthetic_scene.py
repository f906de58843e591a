"""The street scenes of the synthetic benchmark (:mod:`srha_hf.data.synthetic`): what is drawn, where,
and how each domain paints it.

A scene is first drawn as a map of semantic *kinds* (`draw_scene`): the 19 train classes plus a few
sub-kinds (lane marking, curb, manhole, utility pole, unlabeled, clutter, motorcyclist) that each dataset
encodes with its own native ids. Sky at the top, a road in perspective with lane markings and curbs,
sidewalks, buildings, trees, terrain, a wall and a fence, poles with lights and signs, a train near the
horizon, vehicles, people, riders and bikes, and a little unlabeled clutter.

`render(kind, domain_appearance(domain, seed), rng)` paints it: a per-kind colour plus texture (noise,
stripes, vertical gradient); every target domain shifts each class's colour and texture *differently*
(and adds its own global tone), the regional domain shift that SRHA's semantic rearrangement targets.

`Appearance` is the one hook that changes how the scenes are painted: the shipped benchmark, the generic
corpus of the pretraining stage, and the trial benchmarks of ``experiments/`` (which subclass it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# The five benchmarks in generation order (the order fixes each domain's random stream: keep it).
DOMAINS = ("gtav", "cityscapes", "bdd100k", "mapillary", "synthia")

# ---- semantic kinds: 0..18 are the train classes --------------------------------------------------
LANE_MARKING, CURB, MANHOLE, UTILITY_POLE, UNLABELED, CLUTTER, MOTORCYCLIST = range(19, 26)
NUM_KINDS = 26


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
    "cityscapes": dict(shift=45.0, tex=0.7, gain=0.85, offset=5.0, cast=(-4, 4, 2), sat=0.7),
    "bdd100k": dict(shift=55.0, tex=0.9, gain=0.7, offset=0.0, cast=(12, 2, -14), sat=0.9),
    "mapillary": dict(shift=50.0, tex=0.8, gain=1.05, offset=8.0, cast=(0, 6, 10), sat=1.0),
    "synthia": dict(shift=50.0, tex=1.0, gain=0.95, offset=-5.0, cast=(6, -6, 0), sat=1.3),
}
_DOMAIN_KEY = {name: i for i, name in enumerate(DOMAINS)}


@dataclass(frozen=True)
class DomainStyle:
    """How strongly a domain shifts each class (``shift``: the size of the per-class colour shifts in RGB
    units; ``tex``: the spread, in log space, of the per-class texture rescaling) and its global tone."""

    shift: float
    tex: float
    gain: float
    offset: float
    cast: tuple
    sat: float


DOMAIN_STYLES = {name: DomainStyle(**style) for name, style in _DOMAIN_STYLE.items()}


def check_amount(value, name: str) -> float:
    """`value` as a float, or a ValueError naming it (as `name`) unless it is a finite number >= 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


@dataclass
class DomainAppearance:
    colors: np.ndarray  # (NUM_KINDS, 3) float32
    texture: np.ndarray  # (NUM_KINDS, 6) float32
    gain: float
    offset: float
    cast: np.ndarray
    sat: float


def domain_appearance(domain: str, seed: int = 0, style: Optional[DomainStyle] = None) -> DomainAppearance:
    """The per-class appearance of a domain: the source palette shifted per class (a different random
    direction and size for every class: a regional shift), textures rescaled per class, plus a tone.

    ``style`` (default ``DOMAIN_STYLES[domain]``, the benchmark as shipped) sets the sizes: the random draws
    (directions, sizes relative to ``style.shift``, texture factors relative to ``style.tex``) depend on the
    domain and the seed alone, so a restyled domain (a trial benchmark of ``experiments/``) changes one factor
    at a time. The source (GTAV) has no per-class shift."""
    if domain not in DOMAIN_STYLES:
        raise ValueError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    style = DOMAIN_STYLES[domain] if style is None else style
    rng = np.random.default_rng([seed, 7, _DOMAIN_KEY[domain]])
    direction = rng.normal(size=(NUM_KINDS, 3)).astype(np.float32)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    magnitude = style.shift * rng.uniform(0.5, 1.0, size=(NUM_KINDS, 1)).astype(np.float32)
    colors = np.clip(_BASE_COLORS + direction * magnitude, 0, 255)
    spread = style.tex
    tex_scale = np.exp(spread * rng.normal(size=(NUM_KINDS, 1))).astype(np.float32)
    texture = _BASE_TEXTURE.copy()
    texture[:, :3] *= tex_scale
    texture[:, 3:5] *= np.exp(0.3 * spread * rng.normal(size=(NUM_KINDS, 1))).astype(np.float32)
    cast = np.asarray(style.cast, np.float32)
    return DomainAppearance(colors, texture, style.gain, style.offset, cast, style.sat)


def random_appearance(rng: np.random.Generator) -> DomainAppearance:
    """A look drawn afresh for one image of a *generic* corpus (``make_synthetic_benchmark(...,
    random_look=True)``, the pretraining stage's ``pretrain_data: generic``): every kind gets an
    independent colour, uniform in [10, 245] per channel, so that no colour names a class; its textures keep
    their type (noise, stripes, gradient) with the amplitudes and stripe frequencies rescaled at random as
    in the most shifted target (spread 1.0); and the image gets a random tone. It belongs to no domain of
    the benchmark: neither the source's palette nor any target's shifted one."""
    colors = rng.uniform(10.0, 245.0, size=(NUM_KINDS, 3)).astype(np.float32)
    texture = _BASE_TEXTURE.copy()
    texture[:, :3] *= np.exp(rng.normal(size=(NUM_KINDS, 1))).astype(np.float32)
    texture[:, 3:5] *= np.exp(0.3 * rng.normal(size=(NUM_KINDS, 1))).astype(np.float32)
    gain, offset, sat = float(rng.uniform(0.7, 1.1)), float(rng.uniform(-8.0, 8.0)), float(rng.uniform(0.7, 1.3))
    cast = rng.uniform(-12.0, 12.0, size=3).astype(np.float32)
    return DomainAppearance(colors, texture, gain, offset, cast, sat)


class Appearance:
    """How the synthetic benchmark paints its scenes: the one hook through which a trial benchmark (the
    variants of ``experiments/``) changes the images. This base class is the benchmark as shipped
    (``generic=False``) or the generic corpus of the pretraining stage's ``pretrain_data: generic``
    (``generic=True``: other scenes, from their own random stream, each painted with `random_appearance`).

    A subclass may override:

    * :meth:`look` — the look of one image (called after its scene is drawn from ``rng``);
    * :meth:`adjust` — the image's per-kind colours and its shading, after every draw of the shipped image
      (draws made here come after all of those, so the rest of the image stays as shipped);
    * :meth:`marker` — what tells its files apart from the shipped ones: recorded in the benchmark's marker
      (so another look never reuses them) and in the pretraining stage's cache key;
    * :meth:`for_generic` — the look of the generic corpus that goes with it.

    The kind maps depend on ``generic`` alone, never on the look."""

    def __init__(self, generic: bool = False):
        self.generic = bool(generic)

    def look(self, domain: str, seed: int, rng: np.random.Generator) -> DomainAppearance:
        return random_appearance(rng) if self.generic else domain_appearance(domain, seed)

    def adjust(self, kind: np.ndarray, colors: np.ndarray, shade: np.ndarray, rng: np.random.Generator):
        """``(colors, shade)`` to paint with: ``colors`` (NUM_KINDS, 3) float32, ``shade`` (H, W) float32."""
        return colors, shade

    def marker(self) -> dict:
        return {"random_look": True} if self.generic else {}

    def for_generic(self) -> "Appearance":
        return Appearance(generic=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.marker()})"


SHIPPED = Appearance()
GENERIC = Appearance(generic=True)


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
        py = s.ground_y(rng, 0.3, 0.85)
        d = s.depth(py)
        side = rng.choice([-1, 1])
        px = vx + side * (W * 0.06 + (W * 0.55) * d * rng.uniform(0.7, 1.0))
        top = py - H * rng.uniform(0.4, 0.65) * (0.4 + 0.6 * d)
        pw = max(4.0, W * 0.03 * d)
        c.rect(k, px - pw / 2, top, px + pw / 2, py)
        if head == 6:
            c.rect(6, px - 2 * pw - 3, top - 8, px + 2 * pw + 3, top + H * 0.1 * d + 10)
        elif head == 7:
            c.ellipse(7, px, top + 5, 7 + W * 0.035 * d, 7 + W * 0.035 * d)


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
    ys = np.sort(horizon + (H - horizon) * rng.uniform(0.3, 0.98, size=len(vehicles)))
    order = rng.permutation(len(vehicles))
    for y, (k, size) in zip(ys, [vehicles[i] for i in order]):
        d = s.depth(y)
        half_road = W * 0.03 + (W * 0.52) * d
        x = vx + rng.uniform(-0.8, 0.8) * half_road
        vw = W * 0.2 * d * size ** 0.5
        vh = H * 0.18 * d * (size if k in (14, 15) else 0.8 if k in (13,) else 1.0)
        if k in (17, 18):
            _draw_ridden_bike(c, k, x, y, vw, vh)
        else:
            c.rect(k, x - vw / 2, y - vh, x + vw / 2, y)


def _draw_pedestrians_clutter(s: _Street, rng: np.random.Generator) -> None:
    """Pedestrians on the sidewalks, then a blob of void clutter and one of unlabeled."""
    c, W, H, vx = s.c, s.c.w, s.c.h, s.vx
    for _ in range(int(rng.integers(2, 4))):
        y = s.ground_y(rng, 0.3, 0.95)
        d = s.depth(y)
        side = rng.choice([-1, 1])
        x = vx + side * (W * 0.05 + W * 0.6 * d * rng.uniform(0.9, 1.2))
        ph = H * 0.6 * d + 14
        c.rect(11, x - ph * 0.16, y - ph * 0.85, x + ph * 0.16, y)
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


def render(kind: np.ndarray, look: DomainAppearance, rng: np.random.Generator, appearance: Appearance = SHIPPED) -> np.ndarray:
    """(H, W, 3) uint8 image of a kind map: per-kind colour and textures gathered through tables, then
    ``appearance.adjust`` (the shipped benchmark's is the identity)."""
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
    colors, shade = appearance.adjust(kind, colors, shade, rng)
    image = colors[kind] + shade[..., None]
    gray = image.mean(axis=2, keepdims=True)
    image = gray + (image - gray) * look.sat
    image = image * look.gain + look.offset + look.cast
    return np.clip(image, 0, 255).astype(np.uint8)

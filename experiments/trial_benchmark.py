"""The trial benchmarks: the synthetic benchmark repainted through the library's one appearance hook
(:class:`srha_hf.data.synthetic_scene.Appearance`), for the hypotheses of experiments/README.md.

:class:`TrialAppearance` takes four amounts (each 0 or 1 leaves the shipped benchmark as it is):

* ``shift_scale`` multiplies the targets' per-class colour shifts (the regional domain shift), and
  ``texture_shift`` the spread of their per-class texture changes (0 = the source's textures in every target):
  the directions, texture draws and global tones are the same random draws at every value, so
  ``dg_shift_strength.py`` grows one factor at a time (a target's :class:`DomainStyle` with its sizes scaled);
* ``class_colour_spread`` (RGB units, every domain, the source included) moves each kind's colour in every
  image by its own random offset of length uniform in [0, spread], drawn after everything else of the image:
  objects of one class then differ in colour from image to image, and a pixel's colour alone no longer names
  its class (``synthetic_colour_baseline.py``);
* ``class_pattern`` (grey levels, every domain alike) adds to every pixel of each of the 19 classes a grating
  of that class's own orientation and period (:func:`class_patterns`), drawing nothing: content that survives
  a change of a region's colour statistics, such as SRM's.

A generic corpus (``generic=True``, the pretraining stage's ``pretrain_data: generic``) takes the class colour
spread and pattern but no domain shift. Each variant writes the bytes it wrote when these were arguments of
``make_synthetic_benchmark`` (experiments/tests/test_trial_fixture.py), and records the same marker.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from srha_hf.data.synthetic import make_synthetic_benchmark
from srha_hf.data.synthetic_scene import DOMAIN_STYLES, NUM_KINDS, Appearance, check_amount, domain_appearance

# The trial amounts: (name, value that leaves the benchmark as shipped, help). The order is the marker's.
OPTIONS: Tuple[Tuple[str, float, str], ...] = (
    ("shift_scale", 1.0, "multiplies the targets' per-class colour shifts (the regional domain shift); 1 = the benchmark as shipped"),
    ("texture_shift", 1.0, "multiplies the spread of the targets' per-class texture changes; 1 = as shipped, 0 = the source's textures"),
    ("class_colour_spread", 0.0, "moves each class's colour by its own random offset of up to this length (RGB) in every image; 0 = as shipped"),
    ("class_pattern", 0.0, "amplitude (grey levels) of a grating of each class's own orientation and period, alike in every domain; 0 = as shipped"),
)
DEFAULTS: Dict[str, float] = {name: default for name, default, _ in OPTIONS}
# The training-config keys that carried the trial amounts before they left TrainConfig: experiments.train_trial
# still reads them (a sweep's --set, an old run's train_config.yaml) and turns them into a TrialAppearance.
CONFIG_KEYS = {"synthetic_class_colour_spread": "class_colour_spread", "synthetic_class_pattern": "class_pattern"}
GENERIC_CONFIG_KEY = "synthetic_random_look"

# Class patterns: each of the 19 classes gets a grating of its own orientation and period, drawn in the same way
# in every domain (content that a change of colour statistics leaves in place, as the outlines and parts of real
# objects are). Orientations 0-150 degrees in steps of 30, periods 1/48, 1/32 and 1/21 of the image width (8, 12
# and 18 px at 384 px: coarse enough to survive layer0's stride 4); class 18 (bicycle) gets a check (two crossed
# gratings). The other kinds have none.
PATTERN_ANGLE = np.deg2rad(np.array([30.0 * (k % 6) for k in range(19)], dtype=np.float32))
PATTERN_PERIOD = np.array([(1 / 48, 1 / 32, 1 / 21)[(k // 6) % 3] for k in range(19)], dtype=np.float32)


def class_patterns(kind: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [-1, 1]: every pixel of a train class carries its class's grating (`PATTERN_ANGLE`,
    `PATTERN_PERIOD`; bicycle a check), every other kind 0. A function of the kind map alone."""
    h, w = kind.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    labelled = kind < 19
    k = np.where(labelled, kind, 0)
    angle, period = PATTERN_ANGLE[k], PATTERN_PERIOD[k] * w
    phase = 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period
    wave = np.sin(phase)
    check = k == 18  # bicycle: the sign of the grating times that of the crossed one (its pixels only)
    a, y, x = angle[check], yy[check], xx[check]
    crossed = np.sin(2 * np.pi * (y * np.cos(a) - x * np.sin(a)) / period[check])
    wave[check] = np.sign(wave[check]) * np.sign(crossed)
    return np.where(labelled, wave, 0.0).astype(np.float32)


class TrialAppearance(Appearance):
    """A trial benchmark's look (see the module docstring); the amounts are checked (finite, >= 0) by name."""

    def __init__(self, generic: bool = False, **amounts):
        super().__init__(generic)
        unknown = sorted(set(amounts) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown trial option {unknown[0]!r}; expected some of {', '.join(DEFAULTS)}")
        self.amounts = {name: check_amount(amounts.get(name, default), name) for name, default in DEFAULTS.items()}
        if self.generic and (self.amounts["shift_scale"] != 1.0 or self.amounts["texture_shift"] != 1.0):
            raise ValueError(
                "a generic corpus (random_look) has no domain shift: shift_scale and texture_shift must be 1, "
                f"got {self.amounts['shift_scale']}, {self.amounts['texture_shift']}"
            )

    def look(self, domain, seed, rng):
        if self.generic or domain not in DOMAIN_STYLES:  # for an unknown domain the library raises, naming it
            return super().look(domain, seed, rng)
        base = DOMAIN_STYLES[domain]
        style = dataclasses.replace(base, shift=self.amounts["shift_scale"] * base.shift, tex=self.amounts["texture_shift"] * base.tex)
        return domain_appearance(domain, seed, style)

    def adjust(self, kind, colors, shade, rng):
        spread, pattern = self.amounts["class_colour_spread"], self.amounts["class_pattern"]
        if spread > 0:  # drawn after everything else, so that the rest of the image is unchanged
            direction = rng.normal(size=(NUM_KINDS, 3)).astype(np.float32)
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            colors = colors + direction * (spread * rng.uniform(0.0, 1.0, size=(NUM_KINDS, 1))).astype(np.float32)
        if pattern > 0:  # no random draw: every other value of the image stays as it was
            shade = shade + pattern * class_patterns(kind)
        return colors, shade

    def marker(self) -> dict:
        """The amounts that differ from the shipped benchmark, in :data:`OPTIONS` order, then ``random_look``:
        the marker entries these benchmarks had when the amounts were ``make_synthetic_benchmark`` arguments."""
        entries = {name: value for name, value in self.amounts.items() if value != DEFAULTS[name]}
        return {**entries, **super().marker()}

    def for_generic(self) -> "TrialAppearance":
        """The generic corpus with this benchmark's class colour spread and patterns (no domain shift)."""
        keep = {name: self.amounts[name] for name in ("class_colour_spread", "class_pattern")}
        return TrialAppearance(generic=True, **keep)


def make_trial_benchmark(root, *args, random_look: bool = False, **kwargs) -> dict:
    """``make_synthetic_benchmark(root, ...)`` of a trial benchmark: the trial amounts (:data:`OPTIONS`) among
    ``kwargs``, the rest passed on (``num_train``, ``num_val``, ``size``, ``seed``, ``progress``, ...)."""
    amounts = {name: kwargs.pop(name) for name in list(kwargs) if name in DEFAULTS}
    return make_synthetic_benchmark(root, *args, appearance=TrialAppearance(generic=random_look, **amounts), **kwargs)


def add_options(parser) -> None:
    """Add ``--shift-scale``, ``--texture-shift``, ``--class-colour-spread`` and ``--class-pattern`` to a parser."""
    for name, default, text in OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=default, help=text)


def options_from_args(parser, args) -> dict:
    """The trial amounts of parsed ``args``; a bad value ends the command through ``parser.error`` naming the flag."""
    values = {}
    for name, _, _ in OPTIONS:
        try:
            values[name] = check_amount(getattr(args, name), name)
        except ValueError as err:
            parser.error(f"--{name.replace('_', '-')}: {err}")
    return values


def split_config_values(values: dict) -> Tuple[dict, Optional[TrialAppearance]]:
    """``values`` (training-config keys) without the trial keys (:data:`CONFIG_KEYS`, ``synthetic_random_look``),
    and the :class:`TrialAppearance` they ask for (None when they ask for the benchmark as shipped)."""
    rest = {k: v for k, v in values.items() if k not in CONFIG_KEYS and k != GENERIC_CONFIG_KEY}
    amounts = {}
    for key, name in CONFIG_KEYS.items():
        if key in values:
            try:
                amounts[name] = check_amount(values[key], key)
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None
    generic = values.get(GENERIC_CONFIG_KEY, False)
    if not isinstance(generic, bool):
        raise ValueError(f"{GENERIC_CONFIG_KEY} expects true or false, got {generic!r}")
    look = TrialAppearance(generic=generic, **amounts)
    return rest, (look if look.marker() else None)

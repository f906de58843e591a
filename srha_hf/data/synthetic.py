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

The scenes themselves (the kind map of `draw_scene`, the per-domain appearance of `render`) are in
:mod:`srha_hf.data.synthetic_scene` (re-exported here); this module gives each kind its native id in every
dataset, so each dataset's decoded train IDs follow its own table of docs/method.md §6 (e.g. a lane marking
is road in Mapillary and Cityscapes but ignore in Synthia), and writes the files. Same seed, same files.

Version 2 (2026-12-02) made the small classes larger (poles, lights and signs scale with the image
width, pedestrians, bikes, wall and fence nearer the camera) so that a few hundred CPU steps can learn
them, and doubled the targets' per-class colour shifts (magnitudes 80-95 instead of 45-60, at least
half of it for every class) and their texture rescaling, so that a plain model's source-val mIoU is
well above its target mIoU (a domain gap of about 20 points on the demo; `experiments/README.md`).

Version 3 (2026-12-03) made the small classes larger again (poles at least 4 px wide and 3 % of the width
near the camera, lights and signs about 40 % larger, vehicles, bikes and pedestrians about 40 % larger,
none of them in the farthest 30 % of the ground) and set the targets' per-class colour shifts to
magnitudes 45-55 (version 2: 80-95), so that the demo's plain model reaches about 53 source-val and 39
target mIoU (a domain gap of about 15 points) instead of 49 and 23-27 (`experiments/README.md`).

`make_synthetic_benchmark(..., random_look=True)` writes a *generic corpus* in the same formats (other
scenes, a random look in every image): what the pretraining stage of ``pretrain_data: generic`` trains on.
`appearance=` takes the one hook (:class:`~srha_hf.data.synthetic_scene.Appearance`) through which the trial
benchmarks of ``experiments/`` (stronger or weaker regional shifts, classes that change colour from image to
image, class gratings) repaint the scenes; with the default the files are the benchmark as shipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..atomic import write_text_atomic
from . import labels as L
from .synthetic_scene import (  # noqa: F401 - re-exported: the scene is part of this module's API
    _DOMAIN_KEY,
    CLUTTER,
    CURB,
    DOMAIN_STYLES,
    DOMAINS,
    GENERIC,
    LANE_MARKING,
    MANHOLE,
    MOTORCYCLIST,
    NUM_KINDS,
    SHIPPED,
    UNLABELED,
    UTILITY_POLE,
    Appearance,
    DomainAppearance,
    DomainStyle,
    check_amount,
    domain_appearance,
    draw_scene,
    random_appearance,
    render,
)

SYNTHETIC_VERSION = 3
MARKER = ".srha_synthetic.json"
PARTIAL = ".srha_synthetic_partial"
# every synthetic domain is a benchmark; ACDC (an evaluation-only target, docs/method.md §6.7) has no synthetic twin
assert set(DOMAINS) <= set(L.BENCHMARK_NAMES)

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


def _appearance(random_look: bool, appearance: Optional[Appearance]) -> Appearance:
    """The hook of ``random_look`` / ``appearance`` (a hook's own ``generic`` must agree with ``random_look``)."""
    if appearance is None:
        return GENERIC if random_look else SHIPPED
    if not isinstance(appearance, Appearance):
        raise TypeError(f"appearance must be a srha_hf.data.synthetic_scene.Appearance, got {type(appearance).__name__}")
    if random_look and not appearance.generic:
        raise ValueError(f"random_look=True asks for a generic corpus but the appearance {appearance!r} is not generic (use its for_generic())")
    return appearance


def render_sample(
    domain: str,
    split: str,
    index: int,
    width: int,
    height: int,
    seed: int = 0,
    *,
    random_look: bool = False,
    appearance: Optional[Appearance] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(H, W)`` kind map and ``(H, W, 3)`` uint8 image of sample ``index`` of ``split`` ("train" or "val")
    of ``domain``, drawn at ``width`` x ``height``: the sample that `generate_domain` writes (with the same
    seed and appearance, when that sample has this size; `domain_size` gives it). The kind map depends on the
    look only through ``generic``.

    ``random_look=True`` draws the sample of a *generic* corpus instead: another scene (its own random
    stream) painted with a look of its own (`random_appearance`), for the pretraining stage's stand-in for
    ImageNet. ``appearance`` (default: the shipped benchmark, or the generic corpus) is the hook of a trial
    benchmark (:class:`Appearance`)."""
    if domain not in _DOMAIN_KEY:
        raise ValueError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    appearance = _appearance(random_look, appearance)
    key = [seed, _DOMAIN_KEY[domain], ("train", "val").index(split), index]
    rng = np.random.default_rng(key + [1] if appearance.generic else key)  # a generic corpus: other scenes than the benchmark's
    kind = draw_scene(width, height, rng)
    return kind, render(kind, appearance.look(domain, seed, rng), rng, appearance)


def generate_domain(
    domain: str,
    out: Path,
    *,
    num_train: int,
    num_val: int,
    size,
    seed: int,
    gtav_layout: str = "presplit",
    random_look: bool = False,
    appearance: Optional[Appearance] = None,
) -> None:
    """Write one synthetic benchmark into `out` (which must not exist yet or be empty)."""
    appearance = _appearance(random_look, appearance)
    paths = {"gtav_layout": gtav_layout, "gtav_split": {}, "mapillary_config": mapillary_config()}
    out.mkdir(parents=True, exist_ok=True)
    if domain == "mapillary":
        (out / "config.json").write_text(json.dumps(paths["mapillary_config"], indent=1))
    global_index = 0
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            w, h = domain_size(domain, size, global_index)
            kind, image = render_sample(domain, split, i, w, h, seed, appearance=appearance)
            _write_sample(domain, out, split, i, global_index, kind, image, paths)
            global_index += 1
    if domain == "gtav":
        split_dir = out / "split_data"
        split_dir.mkdir(exist_ok=True)
        for split, names in paths["gtav_split"].items():
            (split_dir / f"gtav_split_{split}.txt").write_text("".join(n + "\n" for n in names))


def _params(num_train, num_val, size, seed, gtav_layout, appearance: Appearance) -> dict:
    params = {
        "version": SYNTHETIC_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "size": [int(size[0]), int(size[1])],
        "seed": int(seed),
        "gtav_layout": gtav_layout,
    }
    extra = appearance.marker()  # {} for the benchmark as shipped: existing caches' markers stay valid
    clash = sorted(set(extra) & set(params))
    if clash:
        raise ValueError(f"the appearance {appearance!r} records {clash} in its marker: those names are the benchmark's own")
    params.update(extra)
    return params


def make_synthetic_benchmark(
    root,
    num_train: int = 100,
    num_val: int = 20,
    size: tuple[int, int] = (384, 212),
    seed: int = 0,
    *,
    gtav_layout: str = "presplit",
    progress: bool = False,
    random_look: bool = False,
    appearance: Optional[Appearance] = None,
) -> dict:
    """Write the five synthetic benchmarks under `root` (see the module docstring); return their roots.

    Deterministic (same arguments, identical files) and idempotent: when `root` already holds a
    complete benchmark made with the same arguments (its marker file, written last and atomically,
    says so) nothing is written. A benchmark made with other arguments is replaced; folders that this
    function did not make are never overwritten. `size` is the (W, H) of the GTAV-like source images;
    the other domains keep their benchmark's aspect ratio at the same width (`domain_size`).
    `random_look=True` writes a *generic corpus* in the same five formats instead: other scenes, each image
    painted with a random look of its own (`random_appearance`), so that no domain and no colour is shared
    with the benchmark; the pretraining stage trains on its GTAV-format part with `pretrain_data: generic`.
    `appearance` (default: the benchmark as shipped, or the generic corpus) is a trial benchmark's hook
    (:class:`~srha_hf.data.synthetic_scene.Appearance`, as ``experiments/trial_benchmark.py`` subclasses it):
    its `marker()` goes into the marker file, so files of another look are never reused."""
    if gtav_layout not in ("presplit", "flat"):
        raise ValueError(f"gtav_layout must be 'presplit' or 'flat', got {gtav_layout!r}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train}, {num_val}")
    appearance = _appearance(bool(random_look), appearance)
    root = Path(root).expanduser()
    params = _params(num_train, num_val, size, seed, gtav_layout, appearance)
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
        generate_domain(
            domain, root / domain, num_train=num_train, num_val=num_val, size=size, seed=seed, gtav_layout=gtav_layout,
            appearance=appearance,
        )  # fmt: skip
    write_text_atomic(marker, json.dumps(params))
    (root / PARTIAL).unlink()
    return result


def synthetic_eval_sizes(size: tuple[int, int] = (384, 212)) -> dict:
    """`build_eval_transform` arguments that scale docs/method.md §6's evaluation sizes to synthetic data:
    GTAV resized to its own size (a no-op), Mapillary to the Mapillary image height."""
    w, h = size
    return {"gtav_size": (w, h), "mapillary_size": domain_size("mapillary", size)[1]}

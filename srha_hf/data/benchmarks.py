"""The five benchmarks (docs/method.md §6) as `datasets.Dataset`s of file paths, decoded on access.

One `BenchmarkSpec` per benchmark holds everything that differs between them: where the files are
(the layouts users actually have on disk), how a label file decodes to train IDs (one lookup table
per dataset, `labels.py`) and which splits exist. There is one loader for all of them.

    >>> ds = load_benchmark("cityscapes", "/data/cityscapes", "val")
    >>> ex = ds[0]            # {"image": PIL RGB, "label": PIL "L" of train IDs (255 = ignore), ...}

The Arrow table holds only paths, names and sizes; no image bytes are copied.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from . import labels as L

BENCHMARK_NAMES = L.BENCHMARK_NAMES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# docs/method.md §6.2: official GTAV train IDs that SRHA's train list leaves out (size mismatches).
GTAV_EXCLUDED_TRAIN_IDS = (
    12160, 12166, 12167, 12191, 12192, 12193, 12195, 12202,
    12203, 12204, 12205, 12206, 12207, 12208, 15188, 19993,
)  # fmt: skip


class BenchmarkError(ValueError):
    """A dataset on disk does not have the layout, files or contents that were expected."""


class BenchmarkLayoutError(BenchmarkError, FileNotFoundError):
    """A root or folder is missing or empty: the message names the path and the expected layout."""


class UnreadableFileError(BenchmarkError, OSError):
    """An image or label file exists but cannot be decoded: the message names the file."""


class SizeMismatchError(BenchmarkError):
    """An image and its label differ in size (strict mode)."""


# --------------------------------------------------------------------------------------------------
# Decoding: one function per label encoding, each a lookup table applied to the raw array.
# --------------------------------------------------------------------------------------------------


def _open(path: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise UnreadableFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def read_image(path: str) -> Image.Image:
    """An image file as a PIL RGB image."""
    image = _open(path)
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_gtav_label(path: str) -> np.ndarray:
    """GTAV: palette or RGB PNG -> train IDs by the colour rule of docs/method.md §6.2 (unknown colours -> 255).

    A palette PNG is decoded without expanding it to RGB: its (at most 256) palette colours are
    mapped once and the pixel indices go through that 256-entry table."""
    image = _open(path)
    if image.mode == "P":
        palette = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        return L.palette_to_trainid_lut(palette)[np.asarray(image)]
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB") if image.mode == "RGBA" else image)
        return L.gtav_rgb_lut()[L.pack_rgb(rgb)]
    raise UnreadableFileError(
        f"{path}: GTAV label has PIL mode {image.mode!r}; expected a palette ('P') or RGB colour PNG"
    )


def _read_index_png(path: str, dataset: str, what: str) -> np.ndarray:
    image = _open(path)
    if image.mode not in ("L", "P"):
        raise UnreadableFileError(
            f"{path}: {dataset} label has PIL mode {image.mode!r}; expected a single-channel 8-bit "
            f"PNG of {what}"
        )
    return np.asarray(image)


def read_raw_label(name: str, path: str) -> np.ndarray:
    """The label file's raw values before mapping: GTAV packed RGB codes (int32), Synthia channel 0
    (uint16), the class-index PNG of the others (uint8)."""
    if name == "gtav":
        image = _open(path)
        if image.mode == "P":
            palette = np.zeros((256, 3), dtype=np.uint8)
            pal = np.asarray(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
            palette[: len(pal)] = pal
            return L.pack_rgb(palette[np.asarray(image)])
        return L.pack_rgb(np.asarray(image.convert("RGB")))
    if name == "synthia":
        return read_synthia_channel0(path)
    return _read_index_png(path, name, "class indices")


def read_synthia_channel0(path: str) -> np.ndarray:
    """Channel 0 (red) of a Synthia label PNG at its full 16-bit depth.

    PIL reduces 16-bit RGB PNGs to 8 bits by dropping the low byte, which turns every class id into 0,
    so OpenCV reads these files (it returns channels in BGR order, hence index 2 for red)."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise UnreadableFileError(f"cannot read {path}: not a PNG that OpenCV can decode")
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return array[..., 2]
    raise UnreadableFileError(f"{path}: Synthia label has shape {array.shape}; expected H x W x 3")


def decode_synthia_label(path: str) -> np.ndarray:
    # docs/method.md §6.3: cast to uint8 (ids <= 22), then map.
    return L.SYNTHIA_LUT[read_synthia_channel0(path).astype(np.uint8)]


def decode_cityscapes_label(path: str) -> np.ndarray:
    return L.CITYSCAPES_LUT[_read_index_png(path, "Cityscapes", "labelIds (0..33)")]


def decode_bdd100k_label(path: str) -> np.ndarray:
    return L.BDD_LUT[_read_index_png(path, "BDD-100K", "train IDs (0..18, 255)")]


def decode_mapillary_label(path: str) -> np.ndarray:
    return L.MAPILLARY_LUT[_read_index_png(path, "Mapillary", "v1.2 class indices (0..65)")]


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------


@dataclass
class Scan:
    """The result of scanning one split on disk (before any size checks)."""

    names: list[str]
    images: list[str]
    labels: list[Optional[str]]
    layout: str
    images_without_label: list[str] = field(default_factory=list)
    labels_without_image: list[str] = field(default_factory=list)
    #: The split list that selected the files (a GTAV split file), its entry count, the listed names
    #: found on disk, and the files on disk that the list leaves out (None without a list).
    split_list: Optional[dict] = None


def _files(folder: Path, suffixes: Sequence[str], recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in folder.glob(pattern)
        if p.suffix.lower() in suffixes and p.is_file() and not p.name.startswith(".")
    )


def _require_dir(path: Path, expected: str) -> Path:
    if not path.is_dir():
        raise BenchmarkLayoutError(f"folder not found: {path}\nexpected layout: {expected}")
    return path


def _pair_by_key(
    images: dict[str, Path], labels: dict[str, Path], layout: str, with_labels: bool
) -> Scan:
    keys = sorted(images)
    if not with_labels:
        return Scan(keys, [str(images[k]) for k in keys], [None] * len(keys), layout)
    paired = [k for k in keys if k in labels]
    return Scan(
        names=paired,
        images=[str(images[k]) for k in paired],
        labels=[str(labels[k]) for k in paired],
        layout=layout,
        images_without_label=[str(images[k]) for k in keys if k not in labels],
        labels_without_image=[str(labels[k]) for k in sorted(labels) if k not in images],
    )


def _read_split_list(path: Path) -> list[str]:
    with open(path) as f:
        return [Path(line.strip()).stem for line in f if line.strip()]


def read_gtav_split_file(path: str | os.PathLike, split: str) -> tuple[list[str], str]:
    """The names of GTAV split ``split`` from a split file, and a description of where they came from.

    ``path`` is the official ``split.mat`` of the GTAV code release (``trainIds`` / ``valIds`` /
    ``testIds``; for ``train`` the 16 IDs that SRHA's list leaves out, docs/method.md §6.2, are dropped: 12 403 ->
    12 387), a text list (one file name or 5-digit ID per line, e.g. SRHA's ``gtav_split_train.txt``),
    a path with ``{split}`` in it (formatted with the split, e.g. ``split_data/gtav_split_{split}.txt``),
    or a folder holding ``gtav_split_<split>.txt``."""
    path = Path(str(path).replace("{split}", split)).expanduser()
    if path.is_dir():
        path = path / f"gtav_split_{split}.txt"
    if not path.is_file():
        raise BenchmarkLayoutError(
            f"GTAV split file not found: {path}\nexpected the official split.mat, a text list of file names "
            f"(one per line), a path with {{split}} in it, or a folder holding gtav_split_{split}.txt"
        )
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        key = f"{split}Ids"
        try:
            table = loadmat(str(path))
        except Exception as err:
            raise UnreadableFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err
        if key not in table:
            found = sorted(k for k in table if not k.startswith("__"))
            raise BenchmarkError(f"{path} has no {key!r} array (it holds {', '.join(found) or 'nothing'}); expected "
                                 "the GTAV code release's split.mat with trainIds, valIds and testIds")  # fmt: skip
        ids = np.asarray(table[key]).ravel().astype(np.int64)
        source = f"{path} {key} ({len(ids)})"
        if split == "train":
            kept = ids[~np.isin(ids, GTAV_EXCLUDED_TRAIN_IDS)]
            source += f" minus SRHA's {len(ids) - len(kept)} excluded IDs ({len(kept)})"
            ids = kept
        return [f"{i:05d}" for i in ids], source
    try:
        names = _read_split_list(path)
    except (OSError, UnicodeDecodeError) as err:
        raise UnreadableFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    if not names:
        raise BenchmarkError(f"{path}: the split list is empty; expected one file name per line")
    return names, f"{path} ({len(names)})"


def _gtav_split_ids(root: Path, split: str, split_file=None) -> tuple[list[str], str]:
    """Names of a GTAV split: ``split_file`` if given, else (flat layout) SRHA's
    ``split_data/gtav_split_<split>.txt`` or the official ``split.mat`` found under the root."""
    if split_file is not None:
        return read_gtav_split_file(split_file, split)
    for folder in (root / "split_data", root):
        txt = folder / f"gtav_split_{split}.txt"
        if txt.is_file():
            return read_gtav_split_file(txt, split)
    if (root / "split.mat").is_file():
        return read_gtav_split_file(root / "split.mat", split)
    raise BenchmarkLayoutError(
        f"GTAV at {root} has the flat layout (images/*.png, labels/*.png) but no split list: expected "
        f"{root}/split_data/gtav_split_{split}.txt (one file name per line) or the official "
        f"{root}/split.mat, or pass split_file (the gtav_split_file key)"
    )


def _select_listed(scan: Scan, names: list[str], source: str, key=lambda name: name) -> Scan:
    """Keep the pairs of ``scan`` whose name (through ``key``) is in the list; count what differs."""
    wanted = dict.fromkeys(names)
    on_disk = {key(n) for n in scan.names} | {key(Path(p).stem) for p in scan.images_without_label}
    keep = [i for i, n in enumerate(scan.names) if key(n) in wanted]
    scan.split_list = {
        "source": source,
        "entries": len(wanted),
        "found": len(keep),
        "listed_not_on_disk": [n for n in wanted if n not in on_disk],
        "on_disk_not_listed": sum(key(n) not in wanted for n in scan.names),
    }
    scan.images_without_label = [p for p in scan.images_without_label if key(Path(p).stem) in wanted]
    scan.labels_without_image = [p for p in scan.labels_without_image if key(Path(p).stem) in wanted]
    scan.names = [scan.names[i] for i in keep]
    scan.images = [scan.images[i] for i in keep]
    scan.labels = [scan.labels[i] for i in keep]
    scan.layout += f", split from {source}"
    return scan


GTAV_LAYOUT = (
    "GTAV_ROOT/images/{train,valid,test}/<folder>/NNNNN.png + labels/{train,valid,test}/<folder>/NNNNN.png "
    "(pre-split), or GTAV_ROOT/images/NNNNN.png + labels/NNNNN.png + split_data/gtav_split_{train,val,test}.txt "
    "or split.mat (flat)"
)


def _scan_gtav(root: Path, split: str, split_file=None) -> Scan:
    images_root = _require_dir(root / "images", GTAV_LAYOUT)
    labels_root = _require_dir(root / "labels", GTAV_LAYOUT)
    split_dir = {"val": "valid"}.get(split, split)
    presplit = [d for d in (split_dir, split) if (images_root / d).is_dir()]
    if presplit:
        d = presplit[0]
        _require_dir(labels_root / d, GTAV_LAYOUT)
        images = {p.relative_to(images_root / d).with_suffix("").as_posix(): p for p in _files(images_root / d, (".png",), True)}
        labels = {p.relative_to(labels_root / d).with_suffix("").as_posix(): p for p in _files(labels_root / d, (".png",), True)}
        scan = _pair_by_key(images, labels, f"gtav pre-split images/{d}", True)
        if split_file is None:
            return scan
        names, source = read_gtav_split_file(split_file, split)
        return _select_listed(scan, names, source, key=lambda name: Path(name).name)  # "<folder>/NNNNN" -> NNNNN
    if any((images_root / d).is_dir() for d in ("train", "valid", "test")):
        raise BenchmarkLayoutError(f"folder not found: {images_root / split_dir}\nexpected layout: {GTAV_LAYOUT}")
    names, source = _gtav_split_ids(root, split, split_file)
    images = {p.stem: p for p in _files(images_root, (".png",), False)}
    labels = {p.stem: p for p in _files(labels_root, (".png",), False)}
    if not images:
        raise BenchmarkLayoutError(f"no images in {images_root}\nexpected layout: {GTAV_LAYOUT}")
    return _select_listed(_pair_by_key(images, labels, "gtav flat", True), names, source)


SYNTHIA_LAYOUT = (
    "SYNTHIA_ROOT/RGB/{train,val}/NNNNNNN.png + GT/LABELS/{train,val}/NNNNNNN.png (16-bit PNG), or "
    "RGB/*.png + GT/LABELS/*.png + split_data/synthia_split_{train,val}.txt"
)


def _scan_synthia(root: Path, split: str) -> Scan:
    rgb = _require_dir(root / "RGB", SYNTHIA_LAYOUT)
    gt = _require_dir(root / "GT" / "LABELS", SYNTHIA_LAYOUT)
    if (rgb / split).is_dir():
        _require_dir(gt / split, SYNTHIA_LAYOUT)
        images = {p.stem: p for p in _files(rgb / split, (".png",), False)}
        labels = {p.stem: p for p in _files(gt / split, (".png",), False)}
        return _pair_by_key(images, labels, f"synthia pre-split RGB/{split}", True)
    for folder in (root / "split_data", root):
        txt = folder / f"synthia_split_{split}.txt"
        if txt.is_file():
            wanted = set(_read_split_list(txt))
            images = {p.stem: p for p in _files(rgb, (".png",), False) if p.stem in wanted}
            labels = {p.stem: p for p in _files(gt, (".png",), False) if p.stem in wanted}
            return _pair_by_key(images, labels, f"synthia flat, split from {txt}", True)
    raise BenchmarkLayoutError(f"folder not found: {rgb / split}\nexpected layout: {SYNTHIA_LAYOUT}")


CITYSCAPES_LAYOUT = (
    "CITYSCAPES_ROOT/leftImg8bit_trainvaltest/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png "
    "+ gtFine_trainvaltest/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png "
    "(or leftImg8bit/ and gtFine/ directly under the root)"
)


def _scan_cityscapes(root: Path, split: str) -> Scan:
    candidates = [
        (root / "leftImg8bit_trainvaltest" / "leftImg8bit", root / "gtFine_trainvaltest" / "gtFine"),
        (root / "leftImg8bit", root / "gtFine"),
    ]
    found = [(i, g) for i, g in candidates if i.is_dir()]
    if not found:
        raise BenchmarkLayoutError(f"folder not found: {candidates[0][0]}\nexpected layout: {CITYSCAPES_LAYOUT}")
    image_root, gt_root = found[0]
    image_dir = _require_dir(image_root / split, CITYSCAPES_LAYOUT)
    suffix = "_leftImg8bit"
    images = {
        p.relative_to(image_dir).as_posix()[: -len(suffix + p.suffix)]: p
        for p in _files(image_dir, (".png",), True)
        if p.stem.endswith(suffix)
    }
    with_labels = split != "test"
    labels = {}
    if with_labels:
        gt_dir = _require_dir(gt_root / split, CITYSCAPES_LAYOUT)
        tail = "_gtFine_labelIds"
        labels = {
            p.relative_to(gt_dir).as_posix()[: -len(tail + ".png")]: p
            for p in _files(gt_dir, (".png",), True)
            if p.stem.endswith(tail)
        }
    return _pair_by_key(images, labels, f"cityscapes {image_root.relative_to(root)}/{split}", with_labels)


BDD_LAYOUT = (
    "BDD_ROOT/images/{train,val,test}/<name>.jpg + labels/{train,val}/<name>.png or <name>_train_id.png "
    "(also accepted: seg/images + seg/labels, or images/10k + labels/sem_seg/masks)"
)


def _scan_bdd100k(root: Path, split: str) -> Scan:
    candidates = [
        (root / "images" / split, root / "labels" / split),
        (root / "seg" / "images" / split, root / "seg" / "labels" / split),
        (root / "images" / "10k" / split, root / "labels" / "sem_seg" / "masks" / split),
    ]
    found = [(i, g) for i, g in candidates if i.is_dir()]
    if not found:
        raise BenchmarkLayoutError(f"folder not found: {candidates[0][0]}\nexpected layout: {BDD_LAYOUT}")
    image_dir, label_dir = found[0]
    images = {p.stem: p for p in _files(image_dir, IMAGE_SUFFIXES, False)}
    with_labels = split != "test"
    labels: dict[str, Path] = {}
    if with_labels:
        _require_dir(label_dir, BDD_LAYOUT)
        for p in _files(label_dir, (".png",), False):
            stem = p.stem[: -len("_train_id")] if p.stem.endswith("_train_id") else p.stem
            if stem in labels and p.stem.endswith("_train_id"):
                continue  # both namings present: prefer <stem>.png
            labels[stem] = p
    return _pair_by_key(images, labels, f"bdd100k {image_dir.relative_to(root)}", with_labels)


MAPILLARY_LAYOUT = (
    "MAPILLARY_ROOT/config.json (v1.2, 66 labels) + {training,validation}/images/*.jpg + "
    "{training,validation}/labels/*.png (or {training,validation}/v1.2/labels/*.png with config_v1.2.json)"
)


def check_mapillary_config(root: Path) -> Path:
    """The v1.2 config must list 66 labels (the index order that MAPILLARY_LUT assumes)."""
    for name in ("config.json", "config_v1.2.json"):
        path = root / name
        if path.is_file():
            break
    else:
        raise BenchmarkLayoutError(f"file not found: {root / 'config.json'}\nexpected layout: {MAPILLARY_LAYOUT}")
    try:
        config = json.loads(path.read_text())
        entries = config["labels"]
    except Exception as err:
        raise UnreadableFileError(f"cannot read the 'labels' list of {path}: {err}") from err
    if len(entries) != len(L.MAPILLARY_V12_NAMES):
        raise BenchmarkError(
            f"{path} lists {len(entries)} labels; expected the Mapillary Vistas v1.2 config with "
            f"{len(L.MAPILLARY_V12_NAMES)} labels (v2.0 labels are not supported)"
        )
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    for idx in L.MAPILLARY_ID_TO_TRAINID:
        if idx < len(names) and names[idx] not in (None, L.MAPILLARY_V12_NAMES[idx]):
            raise BenchmarkError(
                f"{path}: label {idx} is {names[idx]!r}; the v1.2 order expects {L.MAPILLARY_V12_NAMES[idx]!r}"
            )
    return path


def _scan_mapillary(root: Path, split: str) -> Scan:
    if not root.is_dir():
        raise BenchmarkLayoutError(f"folder not found: {root}\nexpected layout: {MAPILLARY_LAYOUT}")
    check_mapillary_config(root)
    folder = {"train": "training", "val": "validation"}[split]
    image_dir = _require_dir(root / folder / "images", MAPILLARY_LAYOUT)
    label_dirs = [root / folder / "labels", root / folder / "v1.2" / "labels"]
    label_dir = next((d for d in label_dirs if d.is_dir()), None)
    if label_dir is None:
        _require_dir(label_dirs[0], MAPILLARY_LAYOUT)
    images = {p.stem: p for p in _files(image_dir, IMAGE_SUFFIXES, False)}
    labels = {p.stem: p for p in _files(label_dir, (".png",), False)}
    return _pair_by_key(images, labels, f"mapillary {folder}", True)


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    splits: tuple[str, ...]
    layout: str
    scan: Callable[[Path, str], Scan]
    decode_label: Callable[[str], np.ndarray]
    eval_size: Optional[tuple[int, int]] = None  # (W, H) of docs/method.md §6's evaluation resize, if any


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "gtav": BenchmarkSpec("gtav", ("train", "val", "test"), GTAV_LAYOUT, _scan_gtav, decode_gtav_label, (1914, 1052)),
    "synthia": BenchmarkSpec("synthia", ("train", "val"), SYNTHIA_LAYOUT, _scan_synthia, decode_synthia_label),
    "cityscapes": BenchmarkSpec("cityscapes", ("train", "val", "test"), CITYSCAPES_LAYOUT, _scan_cityscapes, decode_cityscapes_label),
    "bdd100k": BenchmarkSpec("bdd100k", ("train", "val", "test"), BDD_LAYOUT, _scan_bdd100k, decode_bdd100k_label),
    "mapillary": BenchmarkSpec("mapillary", ("train", "val"), MAPILLARY_LAYOUT, _scan_mapillary, decode_mapillary_label),
}  # fmt: skip


def get_spec(name: str) -> BenchmarkSpec:
    key = name.lower().replace("-", "").replace("_", "")
    key = {"bdd": "bdd100k", "gta5": "gtav", "gta": "gtav", "mapillaryvistas": "mapillary"}.get(key, key)
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARK_NAMES)}")
    return BENCHMARKS[key]


def decode_label(name: str, path: str) -> np.ndarray:
    """A label file of benchmark `name` as an (H, W) uint8 array of train IDs (255 = ignore)."""
    return get_spec(name).decode_label(path)


def scan_benchmark(name: str, root: str | os.PathLike, split: str, split_file: str | os.PathLike | None = None) -> Scan:
    """Find the image/label pairs of one split without opening any file.

    ``split_file`` (GTAV only, either layout): the list that selects the split's files, see
    :func:`read_gtav_split_file`; the scan's ``split_list`` then holds the counts."""
    spec = get_spec(name)
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r} for {spec.name}; expected one of {', '.join(spec.splits)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchmarkLayoutError(f"{spec.name} root not found: {root}\nexpected layout: {spec.layout}")
    if split_file is not None and spec.name != "gtav":
        raise ValueError(f"split_file is for GTAV (its split.mat or text lists); {spec.name} splits come from its folders")
    scan = spec.scan(root, split, split_file) if split_file is not None else spec.scan(root, split)
    if not scan.images:
        where = Path(scan.images_without_label[0]).parent if scan.images_without_label else root
        what = "no image/label pairs" if scan.images_without_label else "no images"
        raise BenchmarkLayoutError(
            f"{what} for {spec.name} split {split!r} under {where} (layout detected: {scan.layout})\n"
            f"expected layout: {spec.layout}"
        )
    return scan


def image_size(path: str) -> tuple[int, int]:
    """(W, H) from the file header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise
    except Exception as err:
        raise UnreadableFileError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def read_sizes(paths: Sequence[str], num_threads: int = 8, progress: bool = False, desc: str = "") -> list[tuple[int, int]]:
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(num_threads, len(paths)))) as pool:
        results = pool.map(image_size, paths, chunksize=64)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(paths), desc=desc or "reading sizes")
        return list(results)


def _format_list(paths: Sequence[str], limit: int = 5) -> str:
    shown = "\n  ".join(paths[:limit])
    more = f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"\n  {shown}{more}"


# --------------------------------------------------------------------------------------------------
# The public loader
# --------------------------------------------------------------------------------------------------

#: What `load_benchmark` does with an image/label pair whose sizes differ.
SIZE_MISMATCH_RULES = ("next", "drop")


def default_size_mismatch(name: str) -> str:
    """The rule of the benchmark's reference loader: ``"next"`` for GTAV (its runtime skip), ``"drop"``
    for the others, whose reference loaders have none."""
    return "next" if get_spec(name).name == "gtav" else "drop"


def substitute_next(n: int, bad: Sequence[int]) -> list[int]:
    """For each of ``n`` positions, the position actually read when the ``bad`` ones are skipped the
    reference's way: the next good position, wrapping around to 0 (docs/method.md §6.2's runtime skip)."""
    good = np.setdiff1d(np.arange(n), np.asarray(bad, dtype=np.int64))
    if not len(good):
        raise ValueError("every position is bad: there is no pair to substitute")
    nxt = np.searchsorted(good, np.arange(n))  # first good position >= i
    return good[np.where(nxt < len(good), nxt, 0)].tolist()



def _decode_batch(batch: dict, benchmark: str) -> dict:
    """`datasets` on-access transform: paths -> `image` (PIL RGB) and `label` (PIL "L" train IDs)."""
    decode = BENCHMARKS[benchmark].decode_label
    out = dict(batch)
    out["image"] = [read_image(p) for p in batch["image_path"]]
    out["label"] = [None if p is None else Image.fromarray(decode(p)) for p in batch["label_path"]]
    return out


class _DecodeTransform:
    """Picklable on-access transform (so DataLoader workers can receive the dataset)."""

    def __init__(self, benchmark: str):
        self.benchmark = benchmark

    def __call__(self, batch: dict) -> dict:
        return _decode_batch(batch, self.benchmark)


def load_benchmark(
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    *,
    strict: bool = False,
    check_sizes: bool = True,
    num_threads: int = 8,
    progress: bool = False,
    split_file: str | os.PathLike | None = None,
    size_mismatch: Optional[str] = None,
):
    """One split of a benchmark as a `datasets.Dataset` of file paths, decoded on access.

    Columns: `image_path`, `label_path` (None for unlabeled test splits), `name`, `width`, `height`
    (from the image header). Reading an example adds `image` (PIL RGB) and `label` (PIL "L" holding
    uint8 train IDs, 255 = ignore; None without labels).

    Images without a label (or labels without an image), and names of a split list that are not on
    disk, are left out with a warning naming the files; with `strict=True` they raise instead.
    `split_file` (GTAV, either layout): the official `split.mat` or a text list selecting the split's
    files (:func:`read_gtav_split_file`); without it the pre-split folders' files are all taken and the
    flat layout looks for `split_data/gtav_split_<split>.txt` or `split.mat` under the root.

    Pairs whose image and label differ in size are handled by `size_mismatch`: `"next"` (the default
    for GTAV: the reference's GTAV loader moves on to the next pair whose sizes match, wrapping around,
    so the split keeps its length and that pair is read twice) or `"drop"` (the default for the other
    benchmarks, whose reference loaders have no rule: the pair is left out); either way a warning names
    the files, and `strict=True` raises. `check_sizes=False` skips reading the file headers (faster for
    huge folders; `width`/`height` are then -1, and mismatches are not looked for).
    """
    import datasets

    spec = get_spec(name)
    size_mismatch = size_mismatch or default_size_mismatch(spec.name)
    if size_mismatch not in SIZE_MISMATCH_RULES:
        raise ValueError(f"size_mismatch={size_mismatch!r}; expected one of {', '.join(SIZE_MISMATCH_RULES)}")
    scan = scan_benchmark(spec.name, root, split, split_file)
    root_abs = str(Path(root).expanduser().resolve())

    orphans = scan.images_without_label + scan.labels_without_image
    if orphans:
        msg = (
            f"{spec.name} {split}: {len(scan.images_without_label)} image(s) without a label and "
            f"{len(scan.labels_without_image)} label(s) without an image{_format_list(orphans)}"
        )
        if strict:
            raise BenchmarkError(msg)
        warnings.warn(msg + "\nthese files are left out", stacklevel=2)
    if scan.split_list and scan.split_list["listed_not_on_disk"]:
        absent = scan.split_list["listed_not_on_disk"]
        msg = f"{spec.name} {split}: {len(absent)} name(s) of {scan.split_list['source']} have no image on disk{_format_list(absent)}"
        if strict:
            raise BenchmarkError(msg)
        warnings.warn(msg, stacklevel=2)

    split_summary = None
    if scan.split_list:
        split_summary = {**scan.split_list, "listed_not_on_disk": len(scan.split_list["listed_not_on_disk"])}
    mismatch_summary = {"rule": size_mismatch, "pairs": []}
    names, images, label_paths = scan.names, scan.images, scan.labels
    widths = heights = [-1] * len(images)
    if check_sizes:
        sizes = read_sizes(images, num_threads, progress, f"{spec.name} {split} image headers")
        widths, heights = [s[0] for s in sizes], [s[1] for s in sizes]
        has_labels = label_paths[0] is not None
        if has_labels:
            label_sizes = read_sizes(label_paths, num_threads, progress, f"{spec.name} {split} label headers")
            bad = [i for i, (a, b) in enumerate(zip(sizes, label_sizes)) if a != b]
            if bad:
                lines = [
                    f"{images[i]} ({sizes[i][0]}x{sizes[i][1]}) vs {label_paths[i]} "
                    f"({label_sizes[i][0]}x{label_sizes[i][1]})"
                    for i in bad
                ]
                msg = f"{spec.name} {split}: {len(bad)} image/label pair(s) differ in size{_format_list(lines)}"
                if strict:
                    raise SizeMismatchError(msg)
                mismatch_summary["pairs"] = [names[i] for i in bad]
                if size_mismatch == "next" and len(bad) < len(images):
                    take = substitute_next(len(images), bad)  # every position kept, the bad ones read elsewhere
                    subs = [f"{names[i]} -> {names[take[i]]}" for i in bad]
                    warnings.warn(msg + "\neach is replaced by the next pair whose sizes match (size_mismatch='next', "
                                  f"as the reference's GTAV loader does):{_format_list(subs)}", stacklevel=2)  # fmt: skip
                else:
                    take = np.setdiff1d(np.arange(len(images)), bad).tolist()
                    warnings.warn(msg + "\nthese pairs are left out", stacklevel=2)
                names, images, label_paths, widths, heights = (
                    [column[j] for j in take] for column in (names, images, label_paths, widths, heights)
                )
                if not images:
                    raise BenchmarkError(msg + "\nno pair is left")

    table = {
        "image_path": images,
        "label_path": label_paths,
        "name": names,
        "width": widths,
        "height": heights,
    }
    features = datasets.Features(
        {
            "image_path": datasets.Value("string"),
            "label_path": datasets.Value("string"),
            "name": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
        }
    )
    info = datasets.DatasetInfo(
        description=json.dumps({"benchmark": spec.name, "root": root_abs, "split": split, "layout": scan.layout,
                                "split_list": split_summary, "size_mismatches": mismatch_summary}),  # fmt: skip
        dataset_name=spec.name,
        features=features,
    )
    ds = datasets.Dataset.from_dict(table, features=features, info=info, split=split)
    ds.set_transform(_DecodeTransform(spec.name))
    return ds


def load_benchmarks(name: str, root: str | os.PathLike, splits: Sequence[str] = ("train", "val"), **kwargs):
    """Several splits of one benchmark as a `datasets.DatasetDict` (keyword arguments as `load_benchmark`)."""
    import datasets

    if isinstance(splits, str):
        splits = (splits,)
    return datasets.DatasetDict({s: load_benchmark(name, root, s, **kwargs) for s in splits})


def describe_dataset(dataset) -> str:
    """One line on a `load_benchmark` dataset: pairs, layout, the split list's counts, size mismatches."""
    info = benchmark_info(dataset)
    text = f"{info['benchmark']} {info['split']}: {len(dataset)} pairs ({info['layout']})"
    listed = info.get("split_list")
    if listed:
        text += (f"; split list: {listed['entries']} names, {listed['found']} found, {listed['listed_not_on_disk']} "
                 f"not on disk, {listed['on_disk_not_listed']} on disk but not listed")  # fmt: skip
    mismatched = (info.get("size_mismatches") or {}).get("pairs") or []
    if mismatched:
        how = "each read as the next matching pair" if info["size_mismatches"]["rule"] == "next" else "left out"
        text += f"; {len(mismatched)} image/label size mismatch(es), {how}"
    return text


def benchmark_info(dataset) -> dict:
    """{"benchmark", "root", "split", "layout"} of a dataset made by `load_benchmark`."""
    try:
        info = json.loads(dataset.info.description)
        info["benchmark"]
        return info
    except Exception as err:
        raise ValueError("this dataset was not made by srha_hf.load_benchmark (no benchmark info)") from err

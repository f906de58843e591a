"""Where each benchmark's files are (the layouts users have on disk, docs/method.md §6) and the
``BenchmarkSpec`` table that ties a benchmark's layout scan, label decoder, splits and evaluation size
together. Scanning finds the image/label pairs of a split without opening any file; GTAV's split lists
(``split.mat`` or text lists) select its files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import labels as L
from .decoding import (
    decode_acdc_label,
    decode_bdd100k_label,
    decode_cityscapes_label,
    decode_gtav_label,
    decode_mapillary_label,
    decode_synthia_label,
)
from .errors import BenchmarkError, BenchmarkLayoutError, UnreadableFileError

BENCHMARK_NAMES = L.BENCHMARK_NAMES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# docs/method.md §6.2: official GTAV train IDs that SRHA's train list leaves out (size mismatches).
GTAV_EXCLUDED_TRAIN_IDS = (
    12160, 12166, 12167, 12191, 12192, 12193, 12195, 12202,
    12203, 12204, 12205, 12206, 12207, 12208, 15188, 19993,
)  # fmt: skip


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
    #: Further string columns of the dataset, one value per pair (ACDC: ``condition``).
    columns: dict[str, list] = field(default_factory=dict)


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
    scan.columns = {key: [column[i] for i in keep] for key, column in scan.columns.items()}
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


#: ACDC's four adverse conditions (docs/method.md §6.7), the folder names under rgb_anon/ and gt/.
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
ACDC_LAYOUT = (
    "ACDC_ROOT/rgb_anon/<condition>/{train,val,test}/<sequence>/<name>_rgb_anon.png + "
    "gt/<condition>/{train,val}/<sequence>/<name>_gt_labelIds.png, <condition> one of fog, night, rain, snow "
    "(or rgb_anon_trainvaltest/rgb_anon/ and gt_trainval/gt/ under the root); the <split>_ref folders are not read"
)
_ACDC_IMAGE_TAIL = "_rgb_anon.png"
_ACDC_LABEL_TAIL = "_gt_labelIds.png"


def acdc_conditions(conditions: Union[str, Sequence[str], None] = None) -> tuple[str, ...]:
    """The ACDC conditions to load: all four (fog, night, rain, snow) for None, else the given name(s)
    (case-insensitive, duplicates dropped, in the order given). An unknown name is a ValueError naming it
    and the allowed ones."""
    if conditions is None:
        return ACDC_CONDITIONS
    if isinstance(conditions, str):
        conditions = [conditions]
    chosen: list[str] = []
    for condition in conditions:
        key = condition.strip().lower() if isinstance(condition, str) else condition
        if key not in ACDC_CONDITIONS:
            raise ValueError(f"unknown ACDC condition {condition!r}; expected one or more of {', '.join(ACDC_CONDITIONS)}")
        if key not in chosen:
            chosen.append(key)
    if not chosen:
        raise ValueError(f"conditions is empty; expected one or more of {', '.join(ACDC_CONDITIONS)} (or None for all four)")
    return tuple(chosen)


def _acdc_files(folder: Path, tail: str, condition: str) -> dict[str, Path]:
    """``{"<condition>/<sequence>/<name>": path}`` of the files under ``folder`` whose name ends in ``tail``."""
    files = {}
    for p in _files(folder, (".png",), True):
        rel = p.relative_to(folder).as_posix()
        if rel.endswith(tail):
            files[f"{condition}/{rel[: -len(tail)]}"] = p
    return files


def _scan_acdc(root: Path, split: str, conditions: Union[str, Sequence[str], None] = None) -> Scan:
    chosen = acdc_conditions(conditions)
    candidates = [(root / "rgb_anon", root / "gt"), (root / "rgb_anon_trainvaltest" / "rgb_anon", root / "gt_trainval" / "gt")]
    found = [(i, g) for i, g in candidates if i.is_dir()]
    if not found:
        raise BenchmarkLayoutError(f"folder not found: {candidates[0][0]}\nexpected layout: {ACDC_LAYOUT}")
    image_root, gt_root = found[0]
    with_labels = split != "test"
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for condition in chosen:
        folders = [image_root / condition / split] + ([gt_root / condition / split] if with_labels else [])
        for folder in folders:
            if not folder.is_dir():
                raise BenchmarkLayoutError(
                    f"folder not found: {folder} (ACDC condition {condition!r}, split {split!r}; to load only the conditions "
                    f"on disk, pass conditions=[...])\nexpected layout: {ACDC_LAYOUT}"
                )
        found_images = _acdc_files(folders[0], _ACDC_IMAGE_TAIL, condition)  # *_ref_anon.png are not images of the split
        if not found_images:
            raise BenchmarkLayoutError(f"no *{_ACDC_IMAGE_TAIL} images in {folders[0]} (ACDC condition {condition!r})\n"
                                       f"expected layout: {ACDC_LAYOUT}")  # fmt: skip
        images.update(found_images)
        if with_labels:
            labels.update(_acdc_files(folders[1], _ACDC_LABEL_TAIL, condition))
    layout = f"acdc {image_root.relative_to(root)}/{{{','.join(chosen)}}}/{split}"
    scan = _pair_by_key(images, labels, layout, with_labels)
    scan.columns = {"condition": [name.split("/", 1)[0] for name in scan.names]}
    return scan


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
    "acdc": BenchmarkSpec("acdc", ("train", "val", "test"), ACDC_LAYOUT, _scan_acdc, decode_acdc_label),
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


def scan_benchmark(
    name: str,
    root: str | os.PathLike,
    split: str,
    split_file: str | os.PathLike | None = None,
    conditions: Union[str, Sequence[str], None] = None,
) -> Scan:
    """Find the image/label pairs of one split without opening any file.

    ``split_file`` (GTAV only, either layout): the list that selects the split's files, see
    :func:`read_gtav_split_file`; the scan's ``split_list`` then holds the counts. ``conditions`` (ACDC
    only): the conditions to read (:func:`acdc_conditions`; None = all four); the scan's
    ``columns["condition"]`` names each pair's condition."""
    spec = get_spec(name)
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r} for {spec.name}; expected one of {', '.join(spec.splits)}")
    if conditions is not None and spec.name != "acdc":
        raise ValueError(f"conditions is for ACDC ({', '.join(ACDC_CONDITIONS)}); {spec.name} has none")
    chosen = acdc_conditions(conditions) if spec.name == "acdc" else None  # an unknown condition fails before any disk access
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchmarkLayoutError(f"{spec.name} root not found: {root}\nexpected layout: {spec.layout}")
    if split_file is not None and spec.name != "gtav":
        raise ValueError(f"split_file is for GTAV (its split.mat or text lists); {spec.name} splits come from its folders")
    if spec.name == "acdc":
        scan = spec.scan(root, split, chosen)
    else:
        scan = spec.scan(root, split, split_file) if split_file is not None else spec.scan(root, split)
    if not scan.images:
        where = Path(scan.images_without_label[0]).parent if scan.images_without_label else root
        what = "no image/label pairs" if scan.images_without_label else "no images"
        raise BenchmarkLayoutError(
            f"{what} for {spec.name} split {split!r} under {where} (layout detected: {scan.layout})\n"
            f"expected layout: {spec.layout}"
        )
    return scan

"""Scan a benchmark on disk and report what `srha_hf.load_benchmark` will (not) be able to use.

    python scripts/check_data.py /data/gtav --dataset gtav [--split train val] [--json report.json]
    python scripts/check_data.py /data/acdc --dataset acdc --split val [--conditions fog night]

For every split: the layout found, counts of images / labels / pairs, the GTAV split list's counts
(`--gtav_split_file`, or the list found under the root), images without a label and labels without an
image, names of the split list that are not on disk, image/label size mismatches and what the loader
reads instead (`--size_mismatch`), unreadable files, label values that are not in
the dataset's table (docs/method.md §6), and the share of pixels per train ID; for ACDC also the counts per
condition (`--conditions`, default all four). Exit status 1 when a problem was found, 2 when the root or
layout is unusable.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail
from srha_hf.data import labels as L
from srha_hf.data.benchmarks import (
    ACDC_CONDITIONS,
    BENCHMARKS,
    BenchmarkError,
    acdc_conditions,
    default_size_mismatch,
    get_spec,
    image_size,
    read_raw_label,
    scan_benchmark,
    substitute_next,
)

# Raw label values each dataset's files may legitimately hold.
_KNOWN = {
    "cityscapes": np.arange(34),
    "acdc": np.arange(34),  # Cityscapes labelIds
    "bdd100k": np.r_[np.arange(19), 255],
    "mapillary": np.arange(len(L.MAPILLARY_V12_NAMES)),
    "synthia": np.arange(23),
}
# GTAV: the colours of the Cityscapes label definition (ids 0..33, including void colours).
_GTAV_COLORS = [
    (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128), (244, 35, 232), (250, 170, 160),
    (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153), (180, 165, 180),
    (150, 100, 100), (150, 120, 90), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
_KNOWN["gtav"] = L.pack_rgb(np.asarray(_GTAV_COLORS, dtype=np.uint8))


def _show_value(name: str, value: int) -> str:
    if name == "gtav":
        return f"RGB({value >> 16},{(value >> 8) & 255},{value & 255})"
    return str(value)


def _decode_raw(name: str, raw: np.ndarray) -> np.ndarray:
    if name == "gtav":
        return L.gtav_rgb_lut()[raw]
    table = {
        "cityscapes": L.CITYSCAPES_LUT,
        "acdc": L.CITYSCAPES_LUT,
        "bdd100k": L.BDD_LUT,
        "mapillary": L.MAPILLARY_LUT,
        "synthia": L.SYNTHIA_LUT,
    }[name]
    return table[raw.astype(np.uint8)]


def _condition_of(path: str) -> str:
    """ACDC: the condition folder of an image or label path (.../<rgb_anon|gt>/<condition>/<split>/...)."""
    parts = Path(path).parts
    top = max(i for i, part in enumerate(parts) if part in ("rgb_anon", "gt"))
    return parts[top + 1]


def _condition_counts(scan, with_labels: bool, conditions) -> dict:
    """ACDC: images, labels and pairs per condition of a scan."""
    counts = {}
    for condition in acdc_conditions(conditions):
        pairs = scan.columns["condition"].count(condition)
        unpaired_images = sum(_condition_of(p) == condition for p in scan.images_without_label)
        unpaired_labels = sum(_condition_of(p) == condition for p in scan.labels_without_image)
        counts[condition] = {"images": pairs + unpaired_images, "labels": pairs + unpaired_labels if with_labels else 0,
                             "pairs": pairs if with_labels else 0}  # fmt: skip
    return counts


def check_split(name: str, root: str, split: str, limit: int | None = None, progress: bool = True,
                split_file: str | None = None, size_mismatch: str | None = None, conditions=None) -> dict:  # fmt: skip
    report: dict = {"split": split}
    try:
        scan = scan_benchmark(name, root, split, split_file, conditions)
    except (BenchmarkError, FileNotFoundError, ValueError) as err:
        report["error"] = str(err)
        return report
    rule = size_mismatch or default_size_mismatch(name)
    with_labels = scan.labels and scan.labels[0] is not None
    pairs = list(zip(scan.images, scan.labels))[:limit]
    report.update(
        layout=scan.layout,
        images=len(scan.images) + len(scan.images_without_label),
        labels=(len(scan.labels) + len(scan.labels_without_image)) if with_labels else 0,
        pairs=len(scan.images) if with_labels else 0,
        scanned=len(pairs),
        images_without_label=scan.images_without_label,
        labels_without_image=scan.labels_without_image,
        size_mismatches=[],
        unreadable=[],
        size_mismatch_rule=rule,
    )
    if "condition" in scan.columns:
        report["conditions"] = _condition_counts(scan, with_labels, conditions)
    if scan.split_list is not None:
        report["split_list"] = scan.split_list
        report["listed_not_on_disk"] = scan.split_list["listed_not_on_disk"]
    bad: list[int] = []
    unknown: Counter = Counter()
    unknown_example: dict = {}
    class_pixels = np.zeros(256, dtype=np.int64)
    known = _KNOWN[name]
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(pairs, desc=f"{name} {split}", unit="file")
    for index, (image_path, label_path) in enumerate(iterator):
        try:
            size = image_size(image_path)
        except Exception as err:
            report["unreadable"].append(f"{image_path}: {err}")
            continue
        if label_path is None:
            continue
        try:
            raw = read_raw_label(name, label_path)
        except Exception as err:
            report["unreadable"].append(f"{label_path}: {err}")
            continue
        if (raw.shape[1], raw.shape[0]) != size:
            bad.append(index)
            report["size_mismatches"].append(
                f"{image_path} ({size[0]}x{size[1]}) vs {label_path} ({raw.shape[1]}x{raw.shape[0]})"
            )
        values = np.unique(raw)
        for value in values[~np.isin(values, known)].tolist():
            unknown[value] += 1
            unknown_example.setdefault(value, label_path)
        class_pixels += np.bincount(_decode_raw(name, raw).ravel(), minlength=256)
    if bad and rule == "next" and len(bad) < len(pairs):  # what the loader will read in their place
        take = substitute_next(len(pairs), bad)
        report["size_mismatches"] = [f"{line} -> read as {scan.names[take[i]]}" for line, i in zip(report["size_mismatches"], bad)]
    report["unknown_label_values"] = {
        _show_value(name, v): {"files": n, "example": unknown_example[v]} for v, n in sorted(unknown.items())
    }
    total = class_pixels.sum()
    if total:
        shares = {L.CLASS_NAMES[c]: float(class_pixels[c] / total) for c in range(L.NUM_CLASSES)}
        shares["ignore (255)"] = float(class_pixels[255] / total)
        report["pixel_share"] = shares
    return report


def problems(report: dict) -> int:
    if report.get("absent"):
        return 0
    return sum(
        len(report.get(k, ()))
        for k in ("images_without_label", "labels_without_image", "listed_not_on_disk", "size_mismatches", "unreadable",
                  "unknown_label_values")  # fmt: skip
    ) + int("error" in report)


def format_report(name: str, root: str, reports: list[dict]) -> str:
    lines = [f"check_data: {name} at {root}"]
    for r in reports:
        lines.append(f"\n[{r['split']}]")
        if "error" in r:
            lines.append(f"  {'not present' if r.get('absent') else 'ERROR'}: {r['error']}")
            continue
        lines.append(f"  layout: {r['layout']}")
        lines.append(f"  images: {r['images']}  labels: {r['labels']}  pairs: {r['pairs']}  scanned: {r['scanned']}")
        for condition, n in r.get("conditions", {}).items():
            lines.append(f"    {condition}: images {n['images']}  labels {n['labels']}  pairs {n['pairs']}")
        if "split_list" in r:
            sl = r["split_list"]
            lines.append(f"  split list: {sl['source']}: {sl['entries']} names, {sl['found']} pairs found, "
                         f"{sl['on_disk_not_listed']} pair(s) on disk not listed")  # fmt: skip
        how = {"next": "each read as the next pair whose sizes match", "drop": "left out"}[r["size_mismatch_rule"]]
        for key, title in (
            ("images_without_label", "images without a label"),
            ("labels_without_image", "labels without an image"),
            ("listed_not_on_disk", "names of the split list not on disk"),
            ("size_mismatches", "image/label size mismatches"),
            ("unreadable", "unreadable files"),
        ):
            if key not in r:
                continue
            items = r[key]
            lines.append(f"  {title}: {len(items)}")
            if key == "size_mismatches" and items:
                lines.append(f"    the loader's size_mismatch {r['size_mismatch_rule']!r}: {how}")
            lines += [f"    {x}" for x in items[:10]]
            if len(items) > 10:
                lines.append(f"    ... and {len(items) - 10} more")
        unknown = r["unknown_label_values"]
        lines.append(f"  unknown label values: {len(unknown)}")
        for value, info in list(unknown.items())[:20]:
            lines.append(f"    {value}: in {info['files']} file(s), e.g. {info['example']}")
        if "pixel_share" in r:
            share = ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["pixel_share"].items() if v > 0)
            lines.append(f"  pixels per class: {share}")
    total = sum(problems(r) for r in reports)
    lines.append(f"\n{'OK: no problems found' if total == 0 else f'PROBLEMS: {total}'}")
    return "\n".join(lines)


def check_args(args):
    """The dataset's spec once the arguments, the root folder and the --json path are checked (a
    UsageError or ValueError saying what is wrong otherwise)."""
    spec = get_spec(args.dataset)
    if not Path(args.root).is_dir():
        raise UsageError(f"{spec.name} root not found: {args.root} (expected layout: {spec.layout})")
    if args.gtav_split_file and spec.name != "gtav":
        raise UsageError(f"--gtav_split_file is for GTAV, not {spec.name}")
    if args.conditions and spec.name != "acdc":
        raise UsageError(f"--conditions is for ACDC, not {spec.name}")
    if args.conditions:
        acdc_conditions(args.conditions)
    if args.json_path:
        check_output(args.json_path, "--json")
    return spec


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the dataset root folder")
    parser.add_argument("--dataset", required=True, help=f"one of {', '.join(BENCHMARKS)}")
    parser.add_argument("--split", nargs="+", help="splits to check (default: all of the dataset's splits)")
    parser.add_argument("--limit", type=int, default=None, help="scan at most this many pairs per split")
    parser.add_argument("--json", dest="json_path", help="also write the report as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--gtav_split_file", default=None,
                        help="GTAV: the official split.mat, a text list, a path with {split} or a folder of "
                        "gtav_split_<split>.txt (the training key of the same name)")  # fmt: skip
    parser.add_argument("--conditions", nargs="+", default=None, metavar="CONDITION",
                        help=f"ACDC: the conditions to check, of {', '.join(ACDC_CONDITIONS)} (default: all four)")
    parser.add_argument("--size_mismatch", choices=("next", "drop"), default=None,
                        help="how the loader handles image/label size mismatches (default: next for GTAV, drop otherwise)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        spec = check_args(args)
    except (UsageError, ValueError) as err:
        return fail(err)
    splits = args.split or list(spec.splits)
    reports = [check_split(spec.name, args.root, s, args.limit, not args.no_progress, args.gtav_split_file,
                           args.size_mismatch, args.conditions) for s in splits]  # fmt: skip
    if not args.split and not all("error" in r for r in reports):
        for r in reports:  # splits not asked for explicitly may simply not be on disk
            if "error" in r:
                r["absent"] = True
    print(format_report(spec.name, args.root, reports))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"dataset": spec.name, "root": args.root, "splits": reports}, indent=1))
    if all("error" in r for r in reports):
        return 2
    return 1 if any(problems(r) for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())

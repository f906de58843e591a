"""The benchmarks (docs/method.md §6) as `datasets.Dataset`s of file paths, decoded on access.

One `BenchmarkSpec` per benchmark holds everything that differs between them: where the files are
(the layouts users actually have on disk), how a label file decodes to train IDs (one lookup table
per dataset, `labels.py`) and which splits exist. There is one loader for all of them.

    >>> ds = load_benchmark("cityscapes", "/data/cityscapes", "val")
    >>> ex = ds[0]            # {"image": PIL RGB, "label": PIL "L" of train IDs (255 = ignore), ...}
    >>> acdc = load_benchmark("acdc", "/data/acdc", "val", conditions=["night"])  # + a "condition" column

The Arrow table holds only paths, names and sizes; no image bytes are copied. The layouts and the
``BenchmarkSpec`` table live in ``layouts.py``, the file readers and label decoders in ``decoding.py``,
the errors in ``errors.py``; this module, the loader, re-exports their public names.
"""


from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import datasets
import numpy as np
from PIL import Image

from .decoding import (  # noqa: F401 - re-exported: srha_hf.data.benchmarks is the data API's one door
    decode_acdc_label,
    decode_bdd100k_label,
    decode_cityscapes_label,
    decode_gtav_label,
    decode_mapillary_label,
    decode_synthia_label,
    image_size,
    read_image,
    read_raw_label,
    read_sizes,
    read_synthia_channel0,
)
from .errors import BenchmarkError, BenchmarkLayoutError, SizeMismatchError, UnreadableFileError  # noqa: F401
from .layouts import (  # noqa: F401
    ACDC_CONDITIONS,
    BENCHMARK_NAMES,
    BENCHMARKS,
    GTAV_EXCLUDED_TRAIN_IDS,
    IMAGE_SUFFIXES,
    BenchmarkSpec,
    Scan,
    acdc_conditions,
    check_mapillary_config,
    decode_label,
    get_spec,
    read_gtav_split_file,
    scan_benchmark,
)


def _format_list(paths: Sequence[str], limit: int = 5) -> str:
    shown = "\n  ".join(paths[:limit])
    more = f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"\n  {shown}{more}"




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
    conditions: Union[str, Sequence[str], None] = None,
):
    """One split of a benchmark as a `datasets.Dataset` of file paths, decoded on access.

    Columns: `image_path`, `label_path` (None for unlabeled test splits), `name`, `width`, `height`
    (from the image header); ACDC adds `condition` ("fog", "night", "rain" or "snow"). Reading an example
    adds `image` (PIL RGB) and `label` (PIL "L" holding uint8 train IDs, 255 = ignore; None without labels).

    `conditions` (ACDC only): the condition(s) to load, by default all four (:data:`ACDC_CONDITIONS`);
    an unknown name or a condition folder missing on disk is an error naming it. The examples are sorted
    by `name` (`<condition>/<sequence>/<frame>`), so by condition first. :func:`example_conditions`
    reads the `condition` column without decoding any image, :func:`split_by_condition` splits the
    dataset into one dataset per condition.

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
    spec = get_spec(name)
    size_mismatch = size_mismatch or default_size_mismatch(spec.name)
    if size_mismatch not in SIZE_MISMATCH_RULES:
        raise ValueError(f"size_mismatch={size_mismatch!r}; expected one of {', '.join(SIZE_MISMATCH_RULES)}")
    scan = scan_benchmark(spec.name, root, split, split_file, conditions)
    _report_unpaired(scan, spec.name, split, strict)
    columns = {"image_path": scan.images, "label_path": scan.labels, "name": scan.names,
               "width": [-1] * len(scan.images), "height": [-1] * len(scan.images), **scan.columns}  # fmt: skip
    mismatched: list = []
    if check_sizes:
        columns, mismatched = _apply_size_rule(columns, f"{spec.name} {split}", size_mismatch, strict, num_threads, progress)
    split_summary = None
    if scan.split_list:
        split_summary = {**scan.split_list, "listed_not_on_disk": len(scan.split_list["listed_not_on_disk"])}
    info = {"benchmark": spec.name, "root": str(Path(root).expanduser().resolve()), "split": split, "layout": scan.layout,
            "split_list": split_summary, "size_mismatches": {"rule": size_mismatch, "pairs": mismatched}}  # fmt: skip
    if "condition" in columns:  # ACDC: the number of examples of each condition asked for
        info["conditions"] = {c: columns["condition"].count(c) for c in acdc_conditions(conditions)}
    return _path_dataset(columns, info)


def _report_unpaired(scan: Scan, name: str, split: str, strict: bool) -> None:
    """Warn about (``strict``: refuse) images without a label, labels without an image and names of a
    split list with no image on disk, naming the files."""
    orphans = scan.images_without_label + scan.labels_without_image
    if orphans:
        msg = (
            f"{name} {split}: {len(scan.images_without_label)} image(s) without a label and "
            f"{len(scan.labels_without_image)} label(s) without an image{_format_list(orphans)}"
        )
        if strict:
            raise BenchmarkError(msg)
        warnings.warn(msg + "\nthese files are left out", stacklevel=3)
    if scan.split_list and scan.split_list["listed_not_on_disk"]:
        absent = scan.split_list["listed_not_on_disk"]
        msg = f"{name} {split}: {len(absent)} name(s) of {scan.split_list['source']} have no image on disk{_format_list(absent)}"
        if strict:
            raise BenchmarkError(msg)
        warnings.warn(msg, stacklevel=3)


def _apply_size_rule(columns: dict, what: str, rule: str, strict: bool, num_threads: int, progress: bool) -> tuple:
    """Read the image (and label) headers into ``width``/``height``; pairs whose sizes differ are
    refused (``strict``), read as the next matching pair (``"next"``) or left out (``"drop"``), with a
    warning naming the files. Returns the columns and the names of the mismatched pairs."""
    images, labels, names = columns["image_path"], columns["label_path"], columns["name"]
    sizes = read_sizes(images, num_threads, progress, f"{what} image headers")
    columns = {**columns, "width": [s[0] for s in sizes], "height": [s[1] for s in sizes]}
    if labels[0] is None:
        return columns, []
    label_sizes = read_sizes(labels, num_threads, progress, f"{what} label headers")
    bad = [i for i, (a, b) in enumerate(zip(sizes, label_sizes)) if a != b]
    if not bad:
        return columns, []
    lines = [f"{images[i]} ({sizes[i][0]}x{sizes[i][1]}) vs {labels[i]} ({label_sizes[i][0]}x{label_sizes[i][1]})" for i in bad]
    msg = f"{what}: {len(bad)} image/label pair(s) differ in size{_format_list(lines)}"
    if strict:
        raise SizeMismatchError(msg)
    if rule == "next" and len(bad) < len(images):
        take = substitute_next(len(images), bad)  # every position kept, the bad ones read elsewhere
        subs = [f"{names[i]} -> {names[take[i]]}" for i in bad]
        warnings.warn(msg + "\neach is replaced by the next pair whose sizes match (size_mismatch='next', "
                      f"as the reference's GTAV loader does):{_format_list(subs)}", stacklevel=3)  # fmt: skip
    else:
        take = np.setdiff1d(np.arange(len(images)), bad).tolist()
        warnings.warn(msg + "\nthese pairs are left out", stacklevel=3)
    if not take:
        raise BenchmarkError(msg + "\nno pair is left")
    return {key: [column[j] for j in take] for key, column in columns.items()}, [names[i] for i in bad]


_PATH_COLUMNS = ("image_path", "label_path", "name", "width", "height")


def _path_dataset(columns: dict, info: dict):
    """The ``datasets.Dataset`` of path columns with ``info`` in its description, decoded on access."""
    features = datasets.Features(
        {
            "image_path": datasets.Value("string"),
            "label_path": datasets.Value("string"),
            "name": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            **{key: datasets.Value("string") for key in columns if key not in _PATH_COLUMNS},  # e.g. ACDC's condition
        }
    )
    description = datasets.DatasetInfo(description=json.dumps(info), dataset_name=info["benchmark"], features=features)
    ds = datasets.Dataset.from_dict(columns, features=features, info=description, split=info["split"])
    ds.set_transform(_DecodeTransform(info["benchmark"]))
    return ds


def load_benchmarks(name: str, root: str | os.PathLike, splits: Sequence[str] = ("train", "val"), **kwargs):
    """Several splits of one benchmark as a `datasets.DatasetDict` (keyword arguments as `load_benchmark`)."""

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
    if info.get("conditions"):
        text += "; conditions: " + ", ".join(f"{c} {n}" for c, n in info["conditions"].items())
    mismatched = (info.get("size_mismatches") or {}).get("pairs") or []
    if mismatched:
        how = "each read as the next matching pair" if info["size_mismatches"]["rule"] == "next" else "left out"
        text += f"; {len(mismatched)} image/label size mismatch(es), {how}"
    return text


def example_conditions(dataset) -> list[str]:
    """The ACDC condition of every example of a `load_benchmark` dataset (its `condition` column), read
    without decoding any image; a dataset without the column (every benchmark but ACDC) is a ValueError."""
    if "condition" not in dataset.column_names:
        raise ValueError(f"this dataset has no 'condition' column (columns: {', '.join(dataset.column_names)}); only ACDC has one")
    return list(dataset.with_format(None)["condition"])


def split_by_condition(dataset) -> dict:
    """An ACDC `load_benchmark` dataset as ``{condition: dataset of its examples}``, in the order of
    :data:`ACDC_CONDITIONS`, conditions without examples left out. Each part keeps the decoding and the
    benchmark info (`benchmark_info(part)["benchmark"] == "acdc"`), so it evaluates like the whole, e.g. as
    ``{f"acdc:{c}": part for c, part in split_by_condition(ds).items()}``."""
    column = np.asarray(example_conditions(dataset), dtype=object)
    return {c: dataset.select(np.flatnonzero(column == c).tolist()) for c in ACDC_CONDITIONS if (column == c).any()}


def benchmark_info(dataset) -> dict:
    """{"benchmark", "root", "split", "layout", ...} of a dataset made by `load_benchmark` (ACDC adds
    "conditions": {condition: number of examples})."""
    try:
        info = json.loads(dataset.info.description)
        info["benchmark"]
        return info
    except Exception as err:
        raise ValueError("this dataset was not made by srha_hf.load_benchmark (no benchmark info)") from err

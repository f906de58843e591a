"""Class-uniform sampling (docs/method.md §7): centroids, their JSON cache, epoch building, the sampler.

* `image_centroids` / `extract_centroids`: per (image, tile, class) the truncated centre of mass of
  the class mask inside each tile (docs/method.md §7.1), vectorised with `np.bincount`; over a split
  in `num_proc` processes (None: every usable core), with the same result and row order as one.
* `load_or_extract_centroids`: the same, cached to a JSON file whose name and contents are keyed by
  the dataset root, split and tile; a cache made for another root or another file list is never
  reused (it is recomputed with a warning).
* `build_epoch`: the epoch list, a pure function of (seed, epoch): identical on every process.
* `EpochSampler`: the distributed sampler of docs/method.md §7.3 (permutation seeded by the epoch).
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..atomic import write_text_atomic
from .labels import NUM_CLASSES
from .seeding import epoch_rng

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    base = os.environ.get("SRHA_HF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "srha_hf"
    )
    return Path(base) / "class_uniform"


def tile_origins(width: int, height: int, tile: int, whole_tiles_only: bool = True) -> list[tuple[int, int]]:
    """(x, y) origins of the tiles of an image. Faithfully (docs/method.md §9 D6) only whole tiles count: GTAV
    1914x1052 with tile 1024 has one tile and Synthia 1280x760 none. `whole_tiles_only=False` also
    uses the partial tiles at the right and bottom edges."""
    if whole_tiles_only:
        nx, ny = width // tile, height // tile
    else:
        nx, ny = -(-width // tile), -(-height // tile)
    return [(tx * tile, ty * tile) for ty in range(ny) for tx in range(nx)]


def image_centroids(
    label: np.ndarray, tile: int = 1024, num_classes: int = NUM_CLASSES, whole_tiles_only: bool = True
) -> list[tuple[int, int, int]]:
    """(class, x, y) for every tile and every class present in it (docs/method.md §7.1 step 3)."""
    label = np.asarray(label)
    height, width = label.shape
    out: list[tuple[int, int, int]] = []
    for x0, y0 in tile_origins(width, height, tile, whole_tiles_only):
        part = label[y0 : y0 + tile, x0 : x0 + tile]
        h, w = part.shape
        flat = part.ravel().astype(np.intp)
        counts = np.bincount(flat, minlength=256)[:num_classes]
        present = np.flatnonzero(counts)
        if present.size == 0:
            continue
        # centre of mass of each class mask = mean row / mean column (sums are exact in float64)
        row_sum = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=256)
        col_sum = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=256)
        ys = (row_sum[present] / counts[present]).astype(np.int64) + y0
        xs = (col_sum[present] / counts[present]).astype(np.int64) + x0
        out.extend(zip(present.tolist(), xs.tolist(), ys.tolist()))
    return out


Centroids = dict  # class id -> list of (row index, x, y)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a job scheduler's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_num_proc(num_proc: Optional[int]) -> int:
    """`num_proc` checked: an integer >= 1, or None for every usable core."""
    if num_proc is None:
        return usable_cores()
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc must be an integer >= 1 or None (every usable core), got {num_proc!r}")
    return num_proc


def _label_centroids(path: str, decode, tile: int, num_classes: int, whole_tiles_only: bool) -> list[tuple[int, int, int]]:
    return image_centroids(decode(path), tile, num_classes, whole_tiles_only)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # fork on Linux (as torch's DataLoader workers): the workers need no new import of the package; spawn elsewhere
    # (macOS's system libraries are not fork-safe). The workers only decode labels and count pixels.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def extract_centroids(
    label_paths: Sequence[str],
    decode,
    tile: int = 1024,
    num_classes: int = NUM_CLASSES,
    whole_tiles_only: bool = True,
    num_threads: int = 4,
    progress: bool = True,
    desc: str = "class-uniform centroids",
    num_proc: Optional[int] = 1,
) -> Centroids:
    """Centroids of every label file: {class: [(row index, x, y), ...]} in row order.

    `num_proc=1` decodes in this process (`num_threads` threads); `num_proc=N > 1` in N processes fed in
    chunks (`decode` must then be a module-level function); None: one process per usable core. The
    result does not depend on either."""
    label_paths = list(label_paths)
    workers = min(resolve_num_proc(num_proc), max(1, len(label_paths)))
    one = functools.partial(_label_centroids, decode=decode, tile=tile, num_classes=num_classes, whole_tiles_only=whole_tiles_only)
    if workers > 1:
        pool = _process_pool(workers)
        chunk = max(1, min(64, len(label_paths) // (16 * workers)))  # ~16 chunks per worker: balanced, cheap to send
        results = pool.map(one, label_paths, chunksize=chunk)
    else:
        pool = ThreadPoolExecutor(max_workers=max(1, num_threads))
        results = pool.map(one, label_paths)
    centroids: Centroids = {c: [] for c in range(num_classes)}
    if progress:
        from tqdm.auto import tqdm

        results = tqdm(results, total=len(label_paths), desc=f"{desc} ({workers} process{'es' if workers > 1 else ''})", unit="label")
    try:
        for row, records in enumerate(results):
            for c, x, y in records:
                centroids[c].append((row, x, y))
    except BrokenProcessPool as err:
        raise RuntimeError(
            f"a centroid worker process died ({workers} processes; out of memory?): retry with a smaller num_proc "
            "(TrainConfig key centroid_num_proc)"
        ) from err
    finally:  # after an error (an unreadable label) the chunks not yet started are dropped, not decoded
        pool.shutdown(wait=True, cancel_futures=True)
    return centroids


def _fingerprint(paths: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for p in paths:
        digest.update(p.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def cache_path(benchmark: str, root: str, split: str, tile: int, cache_dir=None, whole_tiles_only: bool = True) -> Path:
    root_key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
    partial = "" if whole_tiles_only else "_partial"
    return Path(cache_dir or default_cache_dir()) / f"{benchmark}_{split}_tile{tile}{partial}_{root_key}.json"


def load_or_extract_centroids(
    dataset,
    tile: int = 1024,
    *,
    cache_dir=None,
    num_classes: int = NUM_CLASSES,
    whole_tiles_only: bool = True,
    num_threads: int = 4,
    progress: bool = True,
    num_proc: Optional[int] = 1,
) -> Centroids:
    """Centroids of a `load_benchmark` dataset, read from / written to the JSON cache.

    The cache file holds the reference's record format (class -> [image path, label path, [x, y],
    class]) plus the root, split, tile and a fingerprint of the file list; it is only reused when all
    of them match. `num_proc` (see `extract_centroids`) only decides how a missing cache is computed."""
    resolve_num_proc(num_proc)  # a bad value fails before any work, cached or not
    from .benchmarks import BENCHMARKS, benchmark_info

    info = benchmark_info(dataset)
    plain = dataset.with_format(None)
    image_paths, label_paths = list(plain["image_path"]), list(plain["label_path"])
    if any(p is None for p in label_paths):
        raise ValueError("class-uniform sampling needs labels; this split has none")
    key = {
        "version": CACHE_VERSION,
        "benchmark": info["benchmark"],
        "root": info["root"],
        "split": info["split"],
        "tile": tile,
        "whole_tiles_only": whole_tiles_only,
        "num_classes": num_classes,
        "files": _fingerprint(label_paths),
    }
    path = cache_path(info["benchmark"], info["root"], info["split"], tile, cache_dir, whole_tiles_only)
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            stored = {k: cached.get(k) for k in key}
        except Exception as err:  # a corrupt cache is recomputed, not trusted
            cached, stored = None, {"error": str(err)}
        if cached is not None and stored == key:
            row_of = {p: i for i, p in enumerate(label_paths)}
            return {
                int(c): [(row_of[rec[1]], int(rec[2][0]), int(rec[2][1])) for rec in records]
                for c, records in cached["centroids"].items()
            }
        diff = {k: (stored.get(k), v) for k, v in key.items() if stored.get(k) != v}
        warnings.warn(f"class-uniform cache {path} does not match this dataset ({diff}); recomputing", stacklevel=2)

    decode = BENCHMARKS[info["benchmark"]].decode_label
    centroids = extract_centroids(
        label_paths, decode, tile, num_classes, whole_tiles_only, num_threads, progress,
        desc=f"{info['benchmark']} {info['split']} centroids", num_proc=num_proc,
    )  # fmt: skip
    payload = dict(key)
    payload["centroids"] = {
        str(c): [[image_paths[row], label_paths[row], [x, y], c] for row, x, y in records]
        for c, records in centroids.items()
    }
    write_text_atomic(path, json.dumps(payload))
    return centroids


@dataclass
class EpochPlan:
    """One class-uniform epoch: row index, centroid (x, y) or (-1, -1), and class (-1 = random)."""

    rows: np.ndarray
    centroids: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def item(self, i: int) -> tuple[int, Optional[tuple[int, int]]]:
        row = int(self.rows[i])
        if self.classes[i] < 0:
            return row, None
        return row, (int(self.centroids[i, 0]), int(self.centroids[i, 1]))


def build_epoch(
    num_images: int,
    centroids: Centroids,
    seed: int,
    epoch: int,
    pct: float = 0.5,
    num_classes: int = NUM_CLASSES,
) -> EpochPlan:
    """docs/method.md §7.2: `n_rand = N - 19 * int(N * pct / 19)` random images plus `int(N * pct / 19)`
    centroid records per class (wrapping around in the same shuffled order when a class has fewer);
    classes without records contribute nothing. A pure function of (seed, epoch)."""
    rng = epoch_rng(seed, epoch)
    per_class = int(num_images * pct / num_classes)
    n_rand = num_images - num_classes * per_class
    rows = [np.resize(rng.permutation(num_images), n_rand)]
    points = [np.full((n_rand, 2), -1, dtype=np.int64)]
    classes = [np.full(n_rand, -1, dtype=np.int64)]
    for c in range(num_classes):
        records = centroids.get(c) or []
        if not records or per_class == 0:
            continue
        table = np.asarray(records, dtype=np.int64).reshape(-1, 3)
        chosen = table[np.resize(rng.permutation(len(table)), per_class)]
        rows.append(chosen[:, 0])
        points.append(chosen[:, 1:])
        classes.append(np.full(per_class, c, dtype=np.int64))
    return EpochPlan(np.concatenate(rows), np.concatenate(points), np.concatenate(classes))


class EpochSampler:
    """docs/method.md §7.3: a permutation seeded with `seed + epoch`, padded to a multiple of `num_replicas`
    by repeating its first indices (training) or truncated (`pad=False`), then `[rank::num_replicas]`.

    With `yield_epoch=True` it yields `(epoch, index)` pairs, which `SRHATrainDataset` accepts, so
    that data workers (even persistent ones) never need to be told the epoch."""

    def __init__(
        self,
        dataset,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        pad: bool = True,
        yield_epoch: bool = False,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.seed, self.shuffle, self.pad, self.yield_epoch = seed, shuffle, pad, yield_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def _indices(self) -> list[int]:
        import torch

        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=generator).tolist()
        else:
            indices = list(range(n))
        if self.pad:
            total = -(-n // self.num_replicas) * self.num_replicas
            indices += (indices * (total // max(n, 1) + 1))[: total - n]
        else:
            indices = indices[: n - n % self.num_replicas]
        return indices[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator:
        indices = self._indices()
        if self.yield_epoch:
            return iter([(self.epoch, i) for i in indices])
        return iter(indices)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.pad:
            return -(-n // self.num_replicas)
        return n // self.num_replicas

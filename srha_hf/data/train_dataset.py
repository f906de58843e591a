"""The training dataset: a torch `Dataset` over a `load_benchmark` dataset, with the docs/method.md §5.3
transforms and optional class-uniform sampling (docs/method.md §7), deterministic per (seed, epoch, index)."""

from __future__ import annotations

from typing import Optional

import torch

from .benchmarks import BENCHMARKS, benchmark_info, read_image
from .seeding import sample_rng
from .transforms import TrainTransform
from .uniform import EpochPlan, build_epoch, load_or_extract_centroids


class SRHATrainDataset(torch.utils.data.Dataset):
    """Items are `{"pixel_values": float32 (3, H, W), "labels": int64 (H, W), "epoch": e, "index": i}`.

    * `set_epoch(e)` selects the epoch (and rebuilds the class-uniform list, a pure function of
      (seed, e), so it is the same on every process). Call it on every process before each epoch.
    * `dataset[i]` uses the current epoch; `dataset[(e, i)]` names the epoch explicitly, which is
      what `EpochSampler(..., yield_epoch=True)` yields, so persistent data workers stay correct.
    * Every random draw of item i in epoch e (scale, crop, flip, jitter, blur) comes from
      `sample_rng(seed, e, i)`; `SRMCollator` draws the SRM weights from the same (seed, e, i).

    `class_uniform=True` uses docs/method.md §7 (pct 0.5, tile 1024 by default): centroids are loaded from or
    written to the JSON cache in `cache_dir`, or passed in as `centroids`; a missing cache is computed in
    `centroid_num_proc` processes (None: every usable core; 1: in this process).
    """

    def __init__(
        self,
        dataset,
        transform: Optional[TrainTransform] = None,
        *,
        seed: int = 304,
        epoch: int = 0,
        class_uniform: bool = False,
        pct: float = 0.5,
        tile: int = 1024,
        whole_tiles_only: bool = True,
        centroids: Optional[dict] = None,
        cache_dir=None,
        num_classes: int = 19,
        progress: bool = True,
        centroid_num_proc: Optional[int] = 1,
    ):
        info = benchmark_info(dataset)
        self.benchmark = info["benchmark"]
        self.decode_label = BENCHMARKS[self.benchmark].decode_label
        plain = dataset.with_format(None)
        self.image_paths = list(plain["image_path"])
        self.label_paths = list(plain["label_path"])
        if any(p is None for p in self.label_paths):
            raise ValueError(f"{self.benchmark} {info['split']} has no labels; it cannot be used for training")
        self.transform = transform if transform is not None else TrainTransform()
        self.seed = int(seed)
        self.class_uniform = class_uniform
        self.pct = pct
        self.num_classes = num_classes
        self.centroids = None
        if class_uniform:
            self.centroids = centroids if centroids is not None else load_or_extract_centroids(
                dataset, tile, cache_dir=cache_dir, num_classes=num_classes,
                whole_tiles_only=whole_tiles_only, progress=progress, num_proc=centroid_num_proc,
            )  # fmt: skip
        self._plans: dict[int, EpochPlan] = {}
        self.epoch = 0
        self.set_epoch(epoch)

    def plan(self, epoch: int) -> Optional[EpochPlan]:
        if not self.class_uniform:
            return None
        if epoch not in self._plans:
            self._plans = {epoch: build_epoch(len(self.image_paths), self.centroids, self.seed, epoch, self.pct, self.num_classes)}
        return self._plans[epoch]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.plan(self.epoch)

    def __len__(self) -> int:
        plan = self.plan(self.epoch)
        return len(self.image_paths) if plan is None else len(plan)

    def item(self, epoch: int, index: int) -> tuple[int, Optional[tuple[int, int]]]:
        """(row in the underlying dataset, centroid or None) of item `index` in `epoch`."""
        plan = self.plan(epoch)
        if plan is None:
            return index, None
        return plan.item(index)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        epoch, index = int(epoch), int(index)
        if not 0 <= index < (len(self.image_paths) if not self.class_uniform else len(self.plan(epoch))):
            raise IndexError(f"index {index} out of range for epoch {epoch}")
        row, centroid = self.item(epoch, index)
        image = read_image(self.image_paths[row])
        label = self.decode_label(self.label_paths[row])
        if label.shape != (image.size[1], image.size[0]):
            raise ValueError(
                f"{self.image_paths[row]} is {image.size[0]}x{image.size[1]} but {self.label_paths[row]} "
                f"is {label.shape[1]}x{label.shape[0]}"
            )
        rng = sample_rng(self.seed, epoch, index)
        image, label = self.transform(image, label, rng, centroid)
        pixel_values, labels = self.transform.to_tensors(image, label)
        return {"pixel_values": pixel_values, "labels": labels, "epoch": epoch, "index": index}

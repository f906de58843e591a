"""`SRMCollator`: batches training items and draws the SRM mixing weights per sample."""

from __future__ import annotations

from typing import Sequence

import torch

from ..srm import DEFAULT_CONCENTRATION, sample_mixing_weights
from .seeding import STREAM_SRM, torch_generator


class SRMCollator:
    """Collate `SRHATrainDataset` items into `{"pixel_values": float32 (B, 3, H, W), "labels": int64
    (B, H, W), "srm_weights": float32 (B, R, R)}` with R = num_labels + 1 (the region layout of docs/method.md §2: row /
    column r is the region of label r; the ignore region is index num_labels).

    The weights of each sample come from one `srha_hf.srm.sample_mixing_weights` call with a
    `torch.Generator` seeded from (seed, epoch, index) of that sample, so a batch is the same whatever
    the number of workers or processes, and after a resume. Items without "epoch" count as epoch 0.
    `with_srm_weights=False` leaves the weights out (e.g. for a validation loader); `return_indices`
    adds the (epoch, index) pairs as "sample_ids"."""

    def __init__(
        self,
        seed: int = 304,
        num_labels: int = 19,
        concentration: float = DEFAULT_CONCENTRATION,
        with_srm_weights: bool = True,
        return_indices: bool = False,
    ):
        self.seed = int(seed)
        self.num_labels = num_labels
        self.concentration = concentration
        self.with_srm_weights = with_srm_weights
        self.return_indices = return_indices

    def weights_for(self, epoch: int, index: int) -> torch.Tensor:
        """(R, R) mixing weights of one sample."""
        generator = torch_generator(self.seed, epoch, index, STREAM_SRM)
        return sample_mixing_weights(1, self.num_labels + 1, self.concentration, generator=generator)[0]

    def __call__(self, features: Sequence[dict]) -> dict:
        if not features:
            raise ValueError("cannot collate an empty batch")
        batch = {
            "pixel_values": torch.stack([torch.as_tensor(f["pixel_values"], dtype=torch.float32) for f in features]),
            "labels": torch.stack([torch.as_tensor(f["labels"]).long() for f in features]),
        }
        if self.with_srm_weights or self.return_indices:
            missing = [i for i, f in enumerate(features) if "index" not in f]
            if missing:
                raise KeyError(
                    f"batch items {missing} have no 'index': SRMCollator needs the sample index (and epoch) "
                    "that SRHATrainDataset returns, to seed the SRM weights"
                )
            ids = [(int(f.get("epoch", 0)), int(f["index"])) for f in features]
        if self.with_srm_weights:
            batch["srm_weights"] = torch.stack([self.weights_for(e, i) for e, i in ids])
        if self.return_indices:
            batch["sample_ids"] = torch.tensor(ids, dtype=torch.int64)
        return batch

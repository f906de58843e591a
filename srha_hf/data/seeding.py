"""Per-sample random streams (the trainer's determinism, docs/method.md §7.3).

Every random draw of a training sample is a pure function of (seed, epoch, sample index, stream):
the same sample gets the same scale, crop, flip, jitter, blur and SRM weights whatever the number of
data workers or processes, and a resumed run replays an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

# Distinct streams so that, e.g., the SRM weights do not reuse the augmentation's numbers.
STREAM_AUGMENT = 0
STREAM_SRM = 1
STREAM_EPOCH = 2
STREAM_SAMPLER = 3


def _entropy(seed: int, *keys: int) -> list[int]:
    values = [int(seed), *map(int, keys)]
    if any(v < 0 for v in values):
        raise ValueError(f"seed, epoch and index must be non-negative, got {values}")
    return values


def sample_rng(seed: int, epoch: int, index: int, stream: int = STREAM_AUGMENT) -> np.random.Generator:
    """A numpy Generator that depends only on (seed, epoch, index, stream)."""
    return np.random.default_rng(np.random.SeedSequence(_entropy(seed, stream, epoch, index)))


def sample_seed(seed: int, epoch: int, index: int, stream: int = STREAM_SRM) -> int:
    """A 63-bit integer seed (for `torch.Generator.manual_seed`) from (seed, epoch, index, stream)."""
    state = np.random.SeedSequence(_entropy(seed, stream, epoch, index)).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def torch_generator(seed: int, epoch: int, index: int, stream: int = STREAM_SRM, device="cpu"):
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(sample_seed(seed, epoch, index, stream))
    return generator


def epoch_rng(seed: int, epoch: int, stream: int = STREAM_EPOCH) -> np.random.Generator:
    """A numpy Generator that depends only on (seed, epoch, stream): identical on every process."""
    return np.random.default_rng(np.random.SeedSequence(_entropy(seed, stream, epoch)))

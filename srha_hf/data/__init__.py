"""Data: the five benchmarks as `datasets`, the SPEC §5.3 transforms, class-uniform sampling, the SRM
collator and an embedded synthetic benchmark."""

from .benchmarks import (
    BENCHMARK_NAMES,
    BenchmarkError,
    BenchmarkLayoutError,
    SizeMismatchError,
    UnreadableFileError,
    benchmark_info,
    decode_label,
    load_benchmark,
    load_benchmarks,
    read_image,
    scan_benchmark,
)
from .collate import SRMCollator
from .labels import CITYSCAPES_PALETTE, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from .train_dataset import SRHATrainDataset
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCropPad,
    RandomScaleCrop,
    Resize,
    ResizeHeight,
    TrainTransform,
    build_eval_transform,
    build_train_transform,
    to_tensors,
)
from .uniform import EpochSampler, build_epoch, extract_centroids, load_or_extract_centroids

__all__ = [
    "BENCHMARK_NAMES",
    "BenchmarkError",
    "BenchmarkLayoutError",
    "SizeMismatchError",
    "UnreadableFileError",
    "benchmark_info",
    "decode_label",
    "load_benchmark",
    "load_benchmarks",
    "read_image",
    "scan_benchmark",
    "SRMCollator",
    "CITYSCAPES_PALETTE",
    "CLASS_NAMES",
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "SRHATrainDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCropPad",
    "RandomScaleCrop",
    "Resize",
    "ResizeHeight",
    "TrainTransform",
    "build_eval_transform",
    "build_train_transform",
    "to_tensors",
    "EpochSampler",
    "build_epoch",
    "extract_centroids",
    "load_or_extract_centroids",
]

"""Data: the benchmarks (the method's five and ACDC) as `datasets`, the docs/method.md §5.3 transforms,
class-uniform sampling, the SRM collator and an embedded synthetic benchmark."""

# Lazy exports (PEP 562): importing ``srha_hf`` (which reads the class names from ``labels``) must not
# pull in ``datasets``, OpenCV or scipy; the first use of a name below imports its module.
import importlib

_EXPORTS = {
    "ACDC_CONDITIONS": "benchmarks",
    "BENCHMARK_NAMES": "benchmarks",
    "BenchmarkError": "benchmarks",
    "BenchmarkLayoutError": "benchmarks",
    "SizeMismatchError": "benchmarks",
    "UnreadableFileError": "benchmarks",
    "benchmark_info": "benchmarks",
    "decode_label": "benchmarks",
    "describe_dataset": "benchmarks",
    "example_conditions": "benchmarks",
    "load_benchmark": "benchmarks",
    "load_benchmarks": "benchmarks",
    "SIZE_MISMATCH_RULES": "benchmarks",
    "read_gtav_split_file": "benchmarks",
    "read_image": "benchmarks",
    "scan_benchmark": "benchmarks",
    "split_by_condition": "benchmarks",
    "SRMCollator": "collate",
    "CITYSCAPES_PALETTE": "labels",
    "CLASS_NAMES": "labels",
    "IGNORE_INDEX": "labels",
    "NUM_CLASSES": "labels",
    "SRHATrainDataset": "train_dataset",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "CenterCropPad": "transforms",
    "RandomScaleCrop": "transforms",
    "Resize": "transforms",
    "ResizeHeight": "transforms",
    "TrainTransform": "transforms",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
    "to_tensors": "transforms",
    "EpochSampler": "uniform",
    "build_epoch": "uniform",
    "extract_centroids": "uniform",
    "load_or_extract_centroids": "uniform",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'srha_hf.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""The training configuration: one dataclass, loaded from YAML, every key overridable as ``--key value``."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..configuration_srha import DEFAULTS as SRHA_DEFAULTS
from ..configuration_srha import SRHAConfig
from ..data.benchmarks import SIZE_MISMATCH_RULES
from ..data.labels import BENCHMARK_NAMES
from ..data.uniform import resolve_num_proc
from .precision import PRECISIONS

DATASETS = BENCHMARK_NAMES  # the names a recipe may use


class ConfigError(ValueError):
    """A configuration file or command-line override is invalid (unknown key, bad value)."""


@dataclass
class TrainConfig:
    """Every setting of one SRHA training run (docs/method.md §5). The five recipes in ``configs/`` set the values
    of docs/method.md §5.2; see the README for what each key means."""

    # --- data (docs/method.md §5.3, §6, §7)
    source_dataset: str = "gtav"
    val_datasets: List[str] = field(default_factory=lambda: ["cityscapes", "bdd100k", "mapillary"])
    gtav_root: Optional[str] = None
    synthia_root: Optional[str] = None
    cityscapes_root: Optional[str] = None
    bdd100k_root: Optional[str] = None
    mapillary_root: Optional[str] = None
    acdc_root: Optional[str] = None
    train_split: str = "train"
    val_split: str = "val"
    # GTAV split list (either layout): the official split.mat, a path with {split} (e.g.
    # split_data/gtav_split_{split}.txt) or a folder of gtav_split_<split>.txt for every GTAV split the run
    # loads, or one text list (one name per line) for the source's training split. null: all the files of
    # the pre-split folders; the flat layout's split_data/ lists or split.mat.
    gtav_split_file: Optional[str] = None
    # An image and its label of different sizes: "next" (the reference's GTAV loader reads the next pair
    # whose sizes match) or "drop" (leave the pair out); null: "next" for GTAV, "drop" for the others.
    size_mismatch: Optional[str] = None
    synthetic_data: bool = False  # generate the embedded synthetic benchmark and train/evaluate on it
    synthetic_root: str = "outputs/synthetic"
    synthetic_num_train: int = 100
    synthetic_num_val: int = 20
    synthetic_size: List[int] = field(default_factory=lambda: [384, 212])
    crop_size: int = 768
    scale_min: float = 0.5
    scale_max: float = 2.0
    color_jitter: bool = True
    gaussian_blur: bool = True
    exact_resize: bool = True
    blur_p: float = 1.0  # docs/method.md §9 D2: the reference blurs every sample
    blur_rounding: str = "truncate"  # docs/method.md §9 D2: blurred values truncated to uint8 (faithful) or "round"ed
    shift_centroid_by_padding: bool = False  # docs/method.md §9 D4: the reference does not offset the centroid by the crop padding
    class_uniform: bool = True
    class_uniform_pct: float = 0.5
    class_uniform_tile: int = 1024
    class_uniform_whole_tiles_only: bool = True  # docs/method.md §9 D6: centroids only from whole tiles (faithful)
    centroid_cache_dir: Optional[str] = None  # default: <output_dir>/centroids
    centroid_num_proc: Optional[int] = None  # processes that compute a missing centroid cache; null: every usable core
    num_workers: int = 8

    # --- model (docs/method.md §1-§3)
    backbone: str = "resnet50"
    # a transformers backbone instead of `backbone` (SRHAConfig.backbone_config, docs/training.md "Backbones from
    # transformers"): a mapping with model_type, e.g. {"model_type": "convnext", "depths": [3, 3, 9, 3]}; on the
    # command line a JSON object. backbone_pretrained is then a transformers backbone folder or Hub id, or null.
    backbone_config: Optional[Dict[str, Any]] = None
    # "imagenet" (the backbone's own ImageNet weights: torchvision's, or Lite0's packaged file), "torchvision",
    # a local file or a Hub repo id; null = random (or the pretraining stage's backbone)
    backbone_pretrained: Optional[str] = "torchvision"
    teacher_mode: str = "faithful"
    # The offline stand-in for ImageNet weights (srha_hf/training/pretrain.py): a plain DeepLabV3+ stage
    # of this many steps on the source train split, whose backbone initialises student and teacher.
    pretrain_steps: int = 0  # 0: off
    pretrain_dir: Optional[str] = None  # cache; default <synthetic_root>/pretrained or <output_dir>/pretrain
    # what the stage trains on: "source" (the source's train split) or, with synthetic_data, "generic" (a
    # generic corpus of other synthetic scenes with a random look in every image, under <synthetic_root>/generic:
    # a backbone that has seen neither the source's colours nor the targets', as ImageNet weights have not)
    pretrain_data: str = "source"
    model_kwargs: Dict[str, Any] = field(default_factory=dict)  # any other SRHAConfig key

    # --- optimisation (docs/method.md §5.1)
    batch_size: int = 4  # images per process, before SRM doubles them
    # The recipe's total batch (images per optimizer step over all processes). When batch_size x processes is
    # smaller, gradients are accumulated over micro-batches to reach it (docs/method.md §5.4); null: one
    # micro-batch per step (batch_size x processes), as before the key existed.
    total_batch_size: Optional[int] = None
    max_iter: int = 60000
    lr: float = 0.005  # encoder (layer1..layer4)
    decoder_lr: float = 0.01  # everything else that trains
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on every trainable parameter (docs/method.md §9 T1)
    poly_power: float = 0.9
    # PC warm-up (docs/method.md §3.5, §9 further switches): the PC weight at step s (0-based) is
    # pc_weight * min(1, s / pc_warmup_steps); 0: full weight from step 0 (the reference).
    pc_warmup_steps: int = 0
    seed: int = 304
    # "no" (fp32, the reference), "bf16", "fp16", "fp8" or null (accelerate's setting); --mixed_precision on
    # the accelerate launch line wins over this key, the user's accelerate config does not.
    mixed_precision: Optional[str] = "no"
    deterministic: bool = True  # as the reference: cuDNN deterministic, benchmark mode off; false = benchmark on
    # activation checkpointing of the student (transformers' activation_checkpointing_enable: per stage for the
    # CNNs, per block for DINOv2): less memory, one more forward of the backbone per step; the same gradients
    gradient_checkpointing: bool = False

    # --- evaluation (docs/method.md §8)
    eval_steps: int = -1  # -1: after every epoch (the reference); 0: no periodic evaluation; N: every N steps
    eval_first_dataset_only: bool = True  # docs/method.md §9 T2: periodic evaluations use the first val dataset only
    # what periodic evaluations run on (docs/method.md §8.3): "target" (the reference: the val datasets, the first only
    # with eval_first_dataset_only) or "source" (the source's val split only, so a checkpoint can be selected without
    # touching a target). The published model is the last iteration either way.
    eval_select_on: str = "target"
    # the final evaluation's protocol (docs/method.md §8.6): "whole" (the reference), "slide" (eval_crop_size,
    # eval_stride) or "multiscale" (eval_scales, eval_flip; setting either alone selects it)
    eval_protocol: Optional[str] = None
    eval_scales: Optional[List[float]] = None
    eval_flip: bool = False
    eval_crop_size: Optional[List[int]] = None
    eval_stride: Optional[List[int]] = None
    # class subsets whose mIoU the final evaluation also reports (docs/method.md §8.7): synthia16, synthia13 or
    # comma-separated class names; a Synthia-source run reports both Synthia subsets on every dataset
    eval_class_subsets: List[str] = field(default_factory=list)
    eval_batch_size: int = 1
    eval_max_images: Optional[int] = None
    eval_drop_remainder: bool = True  # docs/method.md §9 T3: drop len % world images across processes, as the reference
    eval_source: bool = False  # the final evaluation also covers the source's val split (the in-domain reference)
    mapillary_crop: str = "faithful"  # docs/method.md §9 D3: "faithful" or "corrected"

    # --- checkpoints, logging, publishing
    output_dir: str = "outputs/run"
    checkpointing_steps: int = 1000
    checkpoints_total_limit: Optional[int] = 3
    resume_from_checkpoint: Optional[str] = None  # "latest" or a checkpoint folder
    logging_steps: int = 30
    report_to: str = "tensorboard"  # an Accelerate tracker name, or "none"
    push_to_hub: bool = False
    hub_model_id: Optional[str] = None
    hub_private: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.source_dataset not in DATASETS:
            raise ConfigError(f"source_dataset={self.source_dataset!r}; expected one of {', '.join(DATASETS)}")
        for name in self.val_datasets:
            if name not in DATASETS:
                raise ConfigError(f"val_datasets holds {name!r}; expected names among {', '.join(DATASETS)}")
        positive = ("batch_size", "max_iter", "crop_size", "eval_batch_size", "logging_steps")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_steps < -1:
            raise ConfigError(f"eval_steps must be -1 (every epoch), 0 (never) or a step count, got {self.eval_steps}")
        if self.checkpointing_steps < 0:
            raise ConfigError(f"checkpointing_steps must be >= 0 (0 = only at the end), got {self.checkpointing_steps}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ConfigError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        if not 0.0 <= self.blur_p <= 1.0:
            raise ConfigError(f"blur_p must be a probability in [0, 1], got {self.blur_p}")
        if self.blur_rounding not in ("truncate", "round"):
            raise ConfigError(f"blur_rounding must be 'truncate' or 'round', got {self.blur_rounding!r}")
        if self.size_mismatch is not None and self.size_mismatch not in SIZE_MISMATCH_RULES:
            raise ConfigError(f"size_mismatch must be 'next', 'drop' or null, got {self.size_mismatch!r}")
        if self.mixed_precision is not None and self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed_precision must be 'no', 'bf16', 'fp16', 'fp8' or null, got {self.mixed_precision!r}")
        if self.mapillary_crop not in ("faithful", "corrected"):
            raise ConfigError(f"mapillary_crop must be 'faithful' or 'corrected', got {self.mapillary_crop!r}")
        if self.teacher_mode not in ("faithful", "lean"):
            raise ConfigError(f"teacher_mode must be 'faithful' or 'lean', got {self.teacher_mode!r}")
        try:
            resolve_num_proc(self.centroid_num_proc)
        except ValueError:
            raise ConfigError(f"centroid_num_proc must be an integer >= 1 or null (every usable core), got {self.centroid_num_proc!r}") from None
        if self.pc_warmup_steps < 0:
            raise ConfigError(f"pc_warmup_steps must be >= 0 (0 = PC at full weight from step 0), got {self.pc_warmup_steps}")
        if self.pretrain_data not in ("source", "generic"):
            raise ConfigError(f"pretrain_data must be 'source' or 'generic', got {self.pretrain_data!r}")
        if self.pretrain_data == "generic" and not self.synthetic_data:
            raise ConfigError("pretrain_data: generic trains the stage on a synthetic corpus: it needs synthetic_data: true")
        if self.pretrain_steps < 0:
            raise ConfigError(f"pretrain_steps must be >= 0 (0 = off), got {self.pretrain_steps}")
        if self.pretrain_steps > 0 and self.backbone_pretrained:
            raise ConfigError(
                f"pretrain_steps={self.pretrain_steps} and backbone_pretrained={self.backbone_pretrained!r} are "
                "alternatives (the stage stands in for ImageNet weights): set backbone_pretrained: null or pretrain_steps: 0"
            )
        if self.total_batch_size is not None and self.total_batch_size < 1:
            raise ConfigError(f"total_batch_size must be >= 1 or null, got {self.total_batch_size}")
        if self.eval_select_on not in ("target", "source"):
            raise ConfigError(f"eval_select_on must be 'target' (the reference) or 'source', got {self.eval_select_on!r}")
        try:
            self.eval_protocol_spec()
        except ValueError as exc:
            raise ConfigError(f"eval_protocol / eval_scales / eval_flip / eval_crop_size / eval_stride: {exc}") from None
        from ..data.class_subsets import resolve_class_subset

        for subset in self.eval_class_subsets:
            try:
                resolve_class_subset(subset)
            except ValueError as exc:
                raise ConfigError(f"eval_class_subsets: {exc}") from None
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub needs hub_model_id (e.g. your-name/srha-r50-gtav)")
        if self.backbone_config is not None:
            if not isinstance(self.backbone_config, dict) or not self.backbone_config.get("model_type"):
                raise ConfigError(
                    f"backbone_config must be a mapping with a model_type (e.g. {BACKBONE_CONFIG_EXAMPLE}), got {self.backbone_config!r}"
                )
            if self.backbone_pretrained in ("imagenet", "torchvision"):
                raise ConfigError(
                    f"backbone_pretrained={self.backbone_pretrained!r} names torchvision's files, which do not fit a transformers backbone "
                    "(backbone_config): give a transformers backbone folder or Hub id, or null (random)"
                )
            if self.pretrain_steps > 0:
                raise ConfigError("pretrain_steps with backbone_config is not supported (the stage caches by the backbone's registered name)")
        allowed = set(SRHA_DEFAULTS) | {"num_labels"}
        for key in self.model_kwargs:
            if key not in allowed:
                raise ConfigError(f"model_kwargs has unknown SRHAConfig key {key!r}")
            if key in ("backbone", "backbone_config", "backbone_pretrained", "teacher_mode"):
                raise ConfigError(f"set {key!r} as a top-level key, not in model_kwargs")

    def eval_protocol_spec(self):
        """The final evaluation's :class:`~srha_hf.protocols.EvalProtocol`."""
        from ..protocols import make_protocol

        return make_protocol(self.eval_protocol, scales=self.eval_scales, flip=self.eval_flip, crop_size=self.eval_crop_size,
                             stride=self.eval_stride)  # fmt: skip

    def class_subsets(self) -> List[str]:
        """The subsets the final evaluation reports: ``eval_class_subsets``, and Synthia's two for a Synthia source."""
        from ..data.class_subsets import SYNTHIA_SUBSETS

        extra = [s for s in SYNTHIA_SUBSETS if s not in self.eval_class_subsets] if self.source_dataset == "synthia" else []
        return list(self.eval_class_subsets) + extra

    def data_root(self, name: str) -> Optional[str]:
        return getattr(self, f"{name}_root")

    def split_file_for(self, name: str, split: str) -> Optional[str]:
        """The ``split_file`` of :func:`~srha_hf.load_benchmark` for split ``split`` of ``name``:
        ``gtav_split_file`` for GTAV (a single text list only for the source's training split)."""
        path = self.gtav_split_file
        if name != "gtav" or not path:
            return None
        if "{split}" in path or path.lower().endswith(".mat") or Path(path).expanduser().is_dir():
            return path
        return path if (name == self.source_dataset and split == self.train_split) else None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self, backbone_pretrained: Optional[str] = None):
        """The :class:`~srha_hf.SRHAConfig` of the student (and the teacher). ``backbone_pretrained``
        replaces the config's value (the trainer passes the pretraining stage's backbone file)."""
        return SRHAConfig(
            backbone=self.backbone,
            backbone_config=self.backbone_config,
            backbone_pretrained=backbone_pretrained or self.backbone_pretrained,
            teacher_mode=self.teacher_mode,
            **self.model_kwargs,
        )


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


BACKBONE_CONFIG_EXAMPLE = '{"model_type": "convnext", "depths": [3, 3, 9, 3]}'


def _parse_value(key: str, text: str) -> Any:
    """Parse a command-line value with YAML rules (numbers, booleans, null, lists, dicts); ``--backbone_config``
    takes a JSON object (or ``null``), and anything else is an error showing one."""
    if key == "backbone_config":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--backbone_config: not valid JSON ({exc}); expected an object such as '{BACKBONE_CONFIG_EXAMPLE}'") from None
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"--backbone_config: expected a JSON object such as '{BACKBONE_CONFIG_EXAMPLE}', got {text!r}")
        return value
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--{key}: cannot parse value {text!r}: {exc}") from exc


_TYPES = typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: Any) -> Any:
    """Check a value against the field's type (ints are accepted for floats; a comma-separated string
    for a list), naming the key and the expected type on failure."""
    hint = _TYPES[key]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) is typing.Union and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} may not be null")
    origin = typing.get_origin(hint)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list, got {value!r}")
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} expects a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} expects true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e30" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key} expects a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} expects a string, got {value!r}")
        return str(value)
    return value


def parse_overrides(argv: Sequence[str]) -> Dict[str, Any]:
    """``["--key", "value", "--flag", ...]`` → ``{key: value}``; ``--key=value`` works too, and a bare
    ``--flag`` followed by another ``--`` option (or nothing) means ``true``."""
    out: Dict[str, Any] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}: options look like --key value")
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
        out[key] = _parse_value(key, value)
        i += 1
    return out


# Keys that trained on a trial benchmark of the synthetic data; the trial benchmarks are research, not the
# library's: experiments/trial_benchmark.py paints them (an Appearance hook) and experiments/train_trial.py
# takes these keys and trains on them.
MOVED_KEYS = {
    "synthetic_class_colour_spread": "experiments/trial_benchmark.py (TrialAppearance class_colour_spread)",
    "synthetic_class_pattern": "experiments/trial_benchmark.py (TrialAppearance class_pattern)",
    "synthetic_random_look": "the pretraining stage (pretrain_data: generic writes and uses the generic corpus itself)",
}


def _unknown_key(key: str, where: str) -> ConfigError:
    """The error for a key that is not a TrainConfig key: a moved key says where its feature went."""
    if key in MOVED_KEYS:
        return ConfigError(
            f"{key} {where} is no longer a training-config key: the feature moved to {MOVED_KEYS[key]}; "
            "train on a trial benchmark with python -m experiments.train_trial"
        )
    return ConfigError(f"unknown key {key!r} {where}" if where.startswith("in ") else f"unknown option --{key}")


BASE_KEY = "_base_"  # a recipe's parent recipe, a path relative to the recipe's folder


def read_recipe(path, _seen: tuple = ()) -> Dict[str, Any]:
    """The values of a YAML recipe after its ``_base_`` chain: the base's values, then the recipe's own
    over them (``model_kwargs`` mappings are merged key by key). Unknown keys, a missing base and a cycle
    are errors naming the file."""
    path = Path(path)
    if not path.is_file():
        where = f" (the _base_ of {_seen[-1]})" if _seen else ""
        raise ConfigError(f"config file {path} does not exist{where}")
    if path.resolve() in _seen:
        raise ConfigError(f"config file {path} inherits from itself: {' -> '.join(str(p) for p in (*_seen, path.resolve()))}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    values: Dict[str, Any] = {}
    base = loaded.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{BASE_KEY} in {path} must be one file name, got {base!r}")
        values = read_recipe(path.parent / base, (*_seen, path.resolve()))
    for key, value in loaded.items():
        if key not in _FIELDS:
            raise _unknown_key(key, f"in {path}")
        value = _coerce(key, value)
        if key == "model_kwargs" and isinstance(values.get(key), dict):
            value = {**values[key], **value}
        values[key] = value
    return values


def load_config(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Read a YAML recipe (with its ``_base_`` chain), apply ``overrides``, validate. Unknown keys anywhere
    are errors naming them. The result is the resolved config a run logs and saves (``train_config.yaml``)."""
    values: Dict[str, Any] = read_recipe(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        if key not in _FIELDS:
            raise _unknown_key(key, f"(--{key})")
        values[key] = _coerce(key, value)
    return TrainConfig(**values)


def save_config(config: TrainConfig, path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_json(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)

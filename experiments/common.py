"""What the experiments share (public names only: no script imports another's private ones): the sweep's
datasets and recipe, the machine record, and evaluation as the training script's final evaluation runs it."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import machine  # noqa: F401 - re-exported: every experiment records its machine
from srha_hf.data.synthetic import synthetic_eval_sizes

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"  # the recipe every ablation row and scale starts from
TARGETS = ("cityscapes", "bdd100k", "mapillary", "synthia")
SOURCE = "gtav"


def evaluate_as_trained(model, datasets: dict, config) -> dict:
    """``evaluate_model`` of ``model`` on ``datasets`` (``{name: val split}`` of the synthetic benchmark) with
    the settings of training config ``config``, as the training script's final evaluation runs it."""
    from srha_hf import evaluate_model

    return evaluate_model(
        model,
        datasets,
        batch_size=config.eval_batch_size,
        mapillary_crop=config.mapillary_crop,
        eval_sizes=synthetic_eval_sizes(tuple(config.synthetic_size)),
        progress=False,
        max_images=config.eval_max_images,
        drop_remainder=config.eval_drop_remainder,
    )

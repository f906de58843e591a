"""srha_hf: SRHA (Semantic-Rearrangement-based Hierarchical Alignment) for domain-generalized semantic
segmentation, in the Hugging Face ecosystem.

Importing the package registers ``SRHAConfig``, ``SRHAForSemanticSegmentation`` and
``SRHAImageProcessor`` with ``AutoConfig``, ``AutoModelForSemanticSegmentation`` and
``AutoImageProcessor``.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

from .backbones import BACKBONES, BackboneLoadError
from .configuration_srha import SRHAConfig
from .image_processing_srha import SRHAImageProcessor
from .losses import (
    global_alignment_loss,
    local_alignment_loss,
    prediction_consistency_loss,
    regional_alignment_loss,
    segmentation_losses,
)
from .modeling_srha import SRHAForSemanticSegmentation, SRHASemanticSegmenterOutput, style_elimination
from .objective import SRHATeacher, build_teacher, compute_srha_loss, pc_warmup_factor, update_teacher_ema, uses_teacher
from .srm import SemanticRearrangement, sample_mixing_weights, semantic_rearrangement
from .version import __version__  # noqa: F401 - srha_hf.__version__


def load_benchmark(name, root, split, **kwargs):
    """One benchmark split as a ``datasets.Dataset`` (see :func:`srha_hf.data.load_benchmark`)."""
    from .data import load_benchmark as _load

    return _load(name, root, split, **kwargs)


def load_metric(num_labels=None, ignore_index=None, **kwargs):
    """The project's streaming mIoU ``evaluate`` module (see :func:`srha_hf.metrics.load_metric`)."""
    from .metrics import load_metric as _load

    return _load(num_labels=num_labels, ignore_index=ignore_index, **kwargs)


def evaluate_model(model, datasets, **kwargs):
    """mIoU of ``model`` on target datasets with docs/method.md §6/§8's protocol (see
    :func:`srha_hf.evaluation.evaluate_model`)."""
    from .evaluation import evaluate_model as _evaluate

    return _evaluate(model, datasets, **kwargs)


def evaluate_corruptions(model, datasets, corruptions="all", severities=(1, 2, 3, 4, 5), **kwargs):
    """mIoU of ``model`` clean and under common corruptions, the Cityscapes-C protocol of docs/method.md §8.8
    (see :func:`srha_hf.evaluation.evaluate_corruptions`; needs ``pip install "srha_hf[robustness]"``)."""
    from .evaluation import evaluate_corruptions as _evaluate

    return _evaluate(model, datasets, corruptions, severities, **kwargs)


AutoConfig.register(SRHAConfig.model_type, SRHAConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(SRHAConfig, SRHAForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(SRHAConfig, fast_image_processor_class=SRHAImageProcessor, exist_ok=True)

__all__ = [
    "BACKBONES",
    "BackboneLoadError",
    "SRHAConfig",
    "SRHAForSemanticSegmentation",
    "SRHAImageProcessor",
    "SRHASemanticSegmenterOutput",
    "SRHATeacher",
    "SemanticRearrangement",
    "build_teacher",
    "uses_teacher",
    "compute_srha_loss",
    "pc_warmup_factor",
    "evaluate_corruptions",
    "evaluate_model",
    "global_alignment_loss",
    "load_benchmark",
    "load_metric",
    "local_alignment_loss",
    "prediction_consistency_loss",
    "regional_alignment_loss",
    "sample_mixing_weights",
    "segmentation_losses",
    "semantic_rearrangement",
    "style_elimination",
    "update_teacher_ema",
]

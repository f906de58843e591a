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
    SRHATeacher,
    build_teacher,
    compute_srha_loss,
    global_alignment_loss,
    local_alignment_loss,
    prediction_consistency_loss,
    regional_alignment_loss,
    segmentation_losses,
    update_teacher_ema,
)
from .modeling_srha import SRHAForSemanticSegmentation, SRHASemanticSegmenterOutput
from .srm import SemanticRearrangement, sample_mixing_weights, semantic_rearrangement, style_elimination

__version__ = "0.1.0"

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
    "compute_srha_loss",
    "global_alignment_loss",
    "local_alignment_loss",
    "prediction_consistency_loss",
    "regional_alignment_loss",
    "sample_mixing_weights",
    "segmentation_losses",
    "semantic_rearrangement",
    "style_elimination",
    "update_teacher_ema",
]

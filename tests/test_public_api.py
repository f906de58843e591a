"""The README's public API is a promise: every name it (and the docs pages) ever published still imports,
every script and recipe it names exists, and every training key is documented in docs/training.md."""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from srha_hf.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# Names the README and the docs pages have published (as of srha_hf 0.1.0 and since): top-level and dotted.
PUBLIC = [
    "srha_hf.SRHAConfig", "srha_hf.SRHAForSemanticSegmentation", "srha_hf.SRHAImageProcessor", "srha_hf.SRHASemanticSegmenterOutput",
    "srha_hf.SRHATeacher", "srha_hf.build_teacher", "srha_hf.compute_srha_loss", "srha_hf.uses_teacher", "srha_hf.update_teacher_ema",
    "srha_hf.pc_warmup_factor", "srha_hf.semantic_rearrangement", "srha_hf.sample_mixing_weights", "srha_hf.global_alignment_loss",
    "srha_hf.regional_alignment_loss", "srha_hf.local_alignment_loss", "srha_hf.prediction_consistency_loss", "srha_hf.evaluate_model",
    "srha_hf.load_metric", "srha_hf.data.load_benchmark", "srha_hf.inference.load_segmenter", "srha_hf.inference.predict_files",
    "srha_hf.inference.predict_image", "srha_hf.conversion.M2F_RULES", "srha_hf.backbones.BackboneLoadError",
    "srha_hf.modeling_srha.style_elimination", "srha_hf.efficientnet_lite.Lite0Classifier", "srha_hf.protocols.make_protocol",
    "srha_hf.data.class_subsets.resolve_class_subset", "srha_hf.data.split_by_condition",
    # the plug-in points (docs/development.md)
    "srha_hf.backbones.BackboneSpec", "srha_hf.backbones.register_backbone", "srha_hf.backbones.available_backbones",
    "srha_hf.backbones.torchvision_imagenet", "srha_hf.heads.DecodeHead", "srha_hf.heads.register_decode_head",
    "srha_hf.heads.available_decode_heads", "srha_hf.data.synthetic_scene.Appearance", "srha_hf.cli.train.run_training",
]  # fmt: skip


@pytest.mark.parametrize("name", PUBLIC)
def test_published_names_import(name):
    module, _, attr = name.rpartition(".")
    assert hasattr(importlib.import_module(module), attr), name


def test_scripts_and_recipes_named_in_the_docs_exist():
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for script in set(re.findall(r"scripts/(\w+)\.py", text)):
        assert (ROOT / "scripts" / f"{script}.py").is_file(), script
    for recipe in set(re.findall(r"configs/([\w/]+)\.yaml", text)):
        assert (ROOT / "configs" / f"{recipe}.yaml").is_file(), recipe


def test_every_training_key_is_documented():
    text = (ROOT / "docs" / "training.md").read_text()
    def documented(name):
        return f"`{name}`" in text or (name.endswith("_root") and "`<name>_root`" in text)

    missing = [f.name for f in dataclasses.fields(TrainConfig) if not documented(f.name)]
    assert not missing, f"TrainConfig keys not in docs/training.md: {missing}"

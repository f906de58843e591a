"""pipeline("image-segmentation") with SRHA models: one mask per predicted class at the image size."""

import logging

import numpy as np
import pytest
import torch
from interop_helpers import save_model
from PIL import Image
from transformers import pipeline

import srha_hf  # noqa: F401 - registers the Auto classes
from srha_hf import SRHAImageProcessor
from srha_hf.data.labels import CLASS_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline") / "model"
    return folder, save_model(folder, "shufflenetv2", seed=3)


@pytest.mark.parametrize("size", [(70, 90), (64, 128)])
def test_masks_at_image_size_with_class_names(saved, size):
    folder, model = saved
    segmenter = pipeline("image-segmentation", model=str(folder), device="cpu")
    assert type(segmenter.model).__name__ == "SRHAForSemanticSegmentation"
    assert type(segmenter.image_processor).__name__ == "SRHAImageProcessor"
    h, w = size
    image = Image.fromarray(np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    result = segmenter(image)

    pixels = SRHAImageProcessor()(image, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = model(pixel_values=pixels).logits.argmax(1)[0].numpy()
    present = sorted(np.unique(expected).tolist())
    assert [r["label"] for r in result] == [CLASS_NAMES[c] for c in present]
    covered = np.zeros((h, w), dtype=int)
    for r in result:
        mask = np.array(r["mask"])
        assert r["mask"].size == (w, h) and r["mask"].mode == "L" and r["score"] is None
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, expected == CLASS_NAMES.index(r["label"]))
        covered += mask == 255
    assert (covered == 1).all()  # the masks partition the image


def test_model_object_and_the_unsupported_model_log(saved, caplog):
    """With a model object the pipeline works the same. transformers 5's image-segmentation pipeline
    checks the class name against its built-in model tables only (not AutoModel.register), so it logs
    that the model "is not supported"; the message is harmless (documented in the README)."""
    folder, model = saved
    with caplog.at_level(logging.ERROR):
        segmenter = pipeline("image-segmentation", model=model, image_processor=SRHAImageProcessor())
    result = segmenter(Image.new("RGB", (40, 30), (128, 64, 128)))
    assert result and all(r["mask"].size == (40, 30) for r in result)

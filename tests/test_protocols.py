"""Evaluation protocols (docs/method.md §8.6) against plain loops, class subsets (§8.7) against the
definition, and what evaluate_model / scripts/evaluate.py record."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from eval_helpers import SYNTH, PaletteModel
from test_eval_script import script_args  # the evaluation script's arguments (its fixture `script`: conftest.py)

from srha_hf.data import load_benchmark
from srha_hf.data.class_subsets import SYNTHIA13, SYNTHIA16, resolve_class_subset, subset_mean_iou
from srha_hf.data.labels import CLASS_NAMES
from srha_hf.data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes
from srha_hf.evaluation import evaluate_model
from srha_hf.protocols import EvalProtocol, make_protocol, protocol_logits

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

GEN = torch.Generator().manual_seed(0)
WEIGHT = torch.randn(5, 3, 3, 3, generator=GEN)  # a context-sensitive "model": 3x3 conv, zero padding


def conv_model(x):
    return F.conv2d(x, WEIGHT, padding=1)


def test_slide_with_stride_equal_to_crop_is_tiling():
    x = torch.randn(2, 3, 8, 12, generator=GEN)
    got = protocol_logits(conv_model, x, (8, 12), make_protocol("slide", crop_size=4, stride=4))
    want = torch.zeros(2, 5, 8, 12)
    for top in range(0, 8, 4):
        for left in range(0, 12, 4):
            want[:, :, top:top + 4, left:left + 4] = conv_model(x[:, :, top:top + 4, left:left + 4])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(got, conv_model(x))  # tiles see less context than the whole image


def test_overlapping_slide_averages_every_covering_crop():
    """7x9 image, crop 4x5, stride 3x3: crops start at rows 0, 3 and columns 0, 3, 4 (the last flush with
    the edge); each pixel's logits are the mean over the crops containing it, checked pixel by pixel."""
    x = torch.randn(1, 3, 7, 9, generator=GEN)
    protocol = make_protocol("slide", crop_size=[4, 5], stride=[3, 3])
    got = protocol_logits(conv_model, x, (7, 9), protocol)
    crops = [(t, left) for t in (0, 3) for left in (0, 3, 4)]
    outputs = {c: conv_model(x[:, :, c[0]:c[0] + 4, c[1]:c[1] + 5]) for c in crops}
    for i in range(7):
        for j in range(9):
            covering = [outputs[(t, left)][0, :, i - t, j - left] for t, left in crops if t <= i < t + 4 and left <= j < left + 5]
            torch.testing.assert_close(got[0, :, i, j], torch.stack(covering).mean(0), rtol=1e-6, atol=1e-6)


def test_crop_larger_than_the_image_is_the_whole_image():
    x = torch.randn(1, 3, 6, 7, generator=GEN)
    got = protocol_logits(conv_model, x, (6, 7), make_protocol("slide", crop_size=16, stride=8))
    torch.testing.assert_close(got, conv_model(x), rtol=0, atol=0)


def test_scale_one_without_flip_is_whole_bit_for_bit():
    x = torch.randn(2, 3, 9, 10, generator=GEN)
    assert make_protocol(scales=[1.0]) == make_protocol() == EvalProtocol("whole")
    whole = protocol_logits(conv_model, x, (18, 20), make_protocol())
    as_multiscale = protocol_logits(conv_model, x, (18, 20), EvalProtocol("multiscale", (1.0,), False))
    assert torch.equal(whole, as_multiscale)
    assert torch.equal(whole, F.interpolate(conv_model(x), size=(18, 20), mode="bilinear", align_corners=False))


def test_multiscale_and_flip_against_the_formula():
    x = torch.randn(1, 3, 8, 10, generator=GEN)
    protocol = make_protocol(scales=[0.5, 1.0, 1.5], flip=True)
    want = []
    for s in (0.5, 1.0, 1.5):
        xs = x if s == 1.0 else F.interpolate(x, size=(round(8 * s), round(10 * s)), mode="bilinear", align_corners=False)
        for view in (conv_model(xs), conv_model(xs.flip(-1)).flip(-1)):
            want.append(F.interpolate(view, size=(8, 10), mode="bilinear", align_corners=False) if s != 1.0 else view)
    torch.testing.assert_close(protocol_logits(conv_model, x, (8, 10), protocol), torch.stack(want).mean(0), rtol=1e-6, atol=1e-6)


def test_flip_of_a_mirror_symmetric_input_under_a_mirror_symmetric_model():
    """A kernel symmetric left-right and a mirror-symmetric image: the flipped view's logits are the
    original's, so flip averaging changes nothing; an asymmetric kernel's flip average differs."""
    sym = (WEIGHT + WEIGHT.flip(-1)) / 2
    half = torch.randn(1, 3, 6, 5, generator=GEN)
    x = torch.cat([half, half.flip(-1)], dim=-1)  # 6x10, mirror-symmetric
    model = lambda t: F.conv2d(t, sym, padding=1)  # noqa: E731
    flipped = protocol_logits(model, x, (6, 10), make_protocol(flip=True))
    torch.testing.assert_close(flipped, model(x), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(protocol_logits(conv_model, x, (6, 10), make_protocol(flip=True)), conv_model(x), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"protocol": "tiles"}, "protocol must be one of whole, slide, multiscale"),
        ({"protocol": "slide", "scales": [0.5, 1.0]}, "the slide protocol runs at scale 1 without flip"),
        ({"protocol": "whole", "crop_size": 512}, "crop size and stride belong to the slide protocol"),
        ({"protocol": "slide", "crop_size": 256, "stride": 300}, "stride .* is larger than the crop"),
        ({"scales": [0.5, -1.0]}, "scales must be positive"),
        ({"protocol": "whole", "scales": [0.5, 1.0]}, "the whole protocol is single-scale"),
    ],
)
def test_bad_protocols_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_protocol(**kwargs)


def test_synthia_subsets_and_their_mean_from_the_confusion_matrix():
    assert len(SYNTHIA16) == 16 and len(SYNTHIA13) == 13
    assert set(CLASS_NAMES) - set(SYNTHIA16) == {"terrain", "truck", "train"}
    assert set(SYNTHIA16) - set(SYNTHIA13) == {"wall", "fence", "pole"}
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 50, size=(19, 19))
    matrix[9] = 0  # terrain absent from the ground truth ...
    matrix[:, 9] = 0  # ... and from the predictions: NaN IoU, left out (it is not in the subsets anyway)
    matrix[5] = 0
    matrix[:, 5] = 0  # pole absent: NaN, left out of the 16-class mean
    for subset, classes in (("synthia16", SYNTHIA16), ("synthia13", SYNTHIA13)):
        ious = []
        for name in classes:  # the definition, class by class
            c = CLASS_NAMES.index(name)
            union = matrix[c].sum() + matrix[:, c].sum() - matrix[c, c]
            if union:
                ious.append(matrix[c, c] / union)
        assert subset_mean_iou(matrix, CLASS_NAMES, resolve_class_subset(subset)[1]) == pytest.approx(np.mean(ious), rel=1e-12)
    assert resolve_class_subset("road, car,bus") == ("3 classes", ("road", "car", "bus"))
    with pytest.raises(ValueError, match=r"unknown classes \['cars'\]"):
        resolve_class_subset("road,cars")
    with pytest.raises(ValueError, match="expected synthia16 or synthia13"):
        resolve_class_subset("synthia12")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol_synthetic")
    roots = make_synthetic_benchmark(root, **SYNTH)
    return {name: load_benchmark(name, roots[name], "val") for name in ("cityscapes", "synthia")}


def test_evaluate_model_records_protocol_label_set_and_subsets(bench):
    sizes = synthetic_eval_sizes(SYNTH["size"])
    model = PaletteModel()
    whole = evaluate_model(model, bench, eval_sizes=sizes, progress=False)
    slide = evaluate_model(model, bench, eval_sizes=sizes, progress=False, protocol=make_protocol("slide", crop_size=32, stride=24),
                           class_subsets=["road,car"])  # fmt: skip
    assert whole["cityscapes"]["protocol"] == {"name": "whole", "scales": [1.0], "flip": False, "crop_size": None, "stride": None}
    assert slide["synthia"]["protocol"] == {"name": "slide", "scales": [1.0], "flip": False, "crop_size": [32, 32], "stride": [24, 24]}
    assert whole["cityscapes"]["label_set"] == {"name": "cityscapes19", "num_labels": 19}
    # the palette model is element-wise: sliding crops give the whole image's predictions
    assert whole["synthia"]["confusion_matrix"] == slide["synthia"]["confusion_matrix"]
    assert "class_subsets" not in whole["cityscapes"] and set(whole["synthia"]["class_subsets"]) == {"synthia16", "synthia13"}
    assert set(slide["cityscapes"]["class_subsets"]) == {"2 classes"}
    assert set(slide["synthia"]["class_subsets"]) == {"2 classes", "synthia16", "synthia13"}
    matrix = np.array(whole["synthia"]["confusion_matrix"])
    assert whole["synthia"]["class_subsets"]["synthia13"]["mean_iou"] == subset_mean_iou(matrix, CLASS_NAMES, SYNTHIA13)


@pytest.mark.integration
def test_script_multiscale_flip_is_recorded_and_conflicts_are_refused(script, tmp_path, capsys):  # noqa: F811 - the fixture
    root = tmp_path
    make_synthetic_benchmark(root / "data", **SYNTH)
    torch.manual_seed(0)
    from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, SRHAImageProcessor

    SRHAForSemanticSegmentation(SRHAConfig(backbone="mobilenetv2")).save_pretrained(root / "model")
    SRHAImageProcessor().save_pretrained(root / "model")
    out = tmp_path / "ms.json"
    args = [str(a) for a in script_args(root, out, "--scales", "0.5", "1.0", "--flip", "--class_subset", "synthia13", "--num_overlays", "1")]
    assert script.main(args) == 0
    saved = json.loads(out.read_text())
    assert saved["protocol"] == {"name": "multiscale", "scales": [0.5, 1.0], "flip": True, "crop_size": None, "stride": None}
    assert saved["results"]["cityscapes"]["protocol"]["name"] == "multiscale"
    assert set(saved["results"]["mapillary"]["class_subsets"]) == {"synthia13"}
    assert "protocol: multi-scale (0.5, 1) + flip" in capsys.readouterr().out
    bad = [str(a) for a in script_args(root, out, "--protocol", "slide", "--flip")]
    assert script.main(bad) == 2
    assert "the slide protocol runs at scale 1 without flip" in capsys.readouterr().err

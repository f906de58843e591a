"""Cityscapes-format predictions: label-ID PNGs that the official cityscapesScripts evaluation reads, with
its class-IoU average equal to our evaluate_model mIoU; the file names and folders the server expects;
scripts/predict.py and scripts/evaluate.py --format cityscapes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import SYNTH, PaletteModel
from interop_helpers import load_script
from PIL import Image

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, SRHAImageProcessor
from srha_hf.data import load_benchmark
from srha_hf.data.labels import CITYSCAPES_ID_TO_TRAINID, NUM_CLASSES
from srha_hf.data.synthetic import make_synthetic_benchmark
from srha_hf.evaluation import evaluate_model
from srha_hf.prediction_files import check_prediction_format, encode_prediction, prediction_path

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

# Cityscapes' 19 evaluated classes by label ID (the official labels table), in train-ID order
EVAL_LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs_format")
    make_synthetic_benchmark(root / "data", **SYNTH)
    return root


def official_evaluation(prediction_files, ground_truth_files):
    """cityscapesScripts' pixel-level evaluation of the pairs (no instance-level scores: the synthetic
    split has no instanceIds files); returns its result dictionary."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    return official.evaluateImgLists([str(p) for p in prediction_files], [str(g) for g in ground_truth_files], args)


def ground_truth_for(prediction: Path, gt_root: Path) -> Path:
    city, seq, frame = prediction.name.split("_")[:3]
    return gt_root / city / f"{city}_{seq}_{frame}_gtFine_labelIds.png"


def test_names_and_encoding():
    base = Path("out/val/frankfurt/frankfurt_000000_000294_leftImg8bit")
    assert prediction_path(base, "cityscapes") == Path("out/val/frankfurt/frankfurt_000000_000294_labelIds.png")
    assert prediction_path(base, "trainid") == Path("out/val/frankfurt/frankfurt_000000_000294_leftImg8bit_labelTrainIds.png")
    assert prediction_path(Path("out/street"), "cityscapes") == Path("out/street_labelIds.png")
    mask = np.array([[0, 1, 2, 5], [13, 18, 255, 10]], dtype=np.uint8)
    expected = np.zeros_like(mask)  # the inverse of the labelIds -> train IDs table, written as a plain loop
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        expected[mask == train_id] = label_id
    assert np.array_equal(encode_prediction(mask, "cityscapes"), expected)
    assert encode_prediction(mask, "cityscapes").tolist() == [[7, 8, 11, 17], [26, 33, 0, 23]]
    assert encode_prediction(mask, "trainid") is not None and np.array_equal(encode_prediction(mask, "trainid"), mask)
    with pytest.raises(ValueError, match="this model has 20 classes"):
        check_prediction_format("cityscapes", 20)
    with pytest.raises(ValueError, match="'labelids' is not one of trainid, cityscapes"):
        check_prediction_format("labelids", NUM_CLASSES)


def test_official_evaluation_equals_evaluate_model(data, tmp_path):
    dataset = load_benchmark("cityscapes", data / "data" / "cityscapes", "val")
    out = tmp_path / "preds"
    results = evaluate_model(PaletteModel(), {"cityscapes": dataset}, progress=False, save_predictions=out,
                             prediction_format="cityscapes")  # fmt: skip
    ours = results["cityscapes"]
    files = sorted(Path(p) for p in ours["prediction_files"])
    assert len(files) == SYNTH["num_val"] == ours["num_images"]
    image_root = data / "data" / "cityscapes" / "leftImg8bit_trainvaltest" / "leftImg8bit" / "val"
    gt_root = data / "data" / "cityscapes" / "gtFine_trainvaltest" / "gtFine" / "val"
    for path in files:  # the image's folders below the benchmark root, the server's file name, label IDs
        image = next(image_root.glob(f"*/{path.name.replace('_labelIds.png', '_leftImg8bit.png')}"))
        assert path.parent == out / "cityscapes" / image.parent.relative_to(data / "data" / "cityscapes")
        written = Image.open(path)
        assert written.mode == "L" and written.size == Image.open(image).size
        assert set(np.unique(np.asarray(written)).tolist()) <= set(EVAL_LABEL_IDS)
    predicted_classes = sum(v > 0 for v in np.asarray(ours["confusion_matrix"]).sum(axis=0))
    assert predicted_classes >= 5  # a non-trivial prediction: the check below compares many classes

    official = official_evaluation(files, [ground_truth_for(p, gt_root) for p in files])
    assert official["averageScoreClasses"] == pytest.approx(ours["mean_iou"], abs=1e-12)
    for label_id, train_id in zip(EVAL_LABEL_IDS, range(NUM_CLASSES)):
        name = ours["class_names"][train_id]
        theirs, mine = official["classScores"][name], ours["per_category_iou"][name]
        assert (np.isnan(theirs) and np.isnan(mine)) or theirs == pytest.approx(mine, abs=1e-12), name


@pytest.fixture
def reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.mark.integration
def test_scripts_write_the_same_cityscapes_files(data, tmp_path, reset_accelerate, capsys):
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2")).save_pretrained(model_dir)
    SRHAImageProcessor().save_pretrained(model_dir)
    cityscapes = data / "data" / "cityscapes"
    image_root = cityscapes / "leftImg8bit_trainvaltest" / "leftImg8bit"

    evaluated = tmp_path / "eval"
    assert load_script("evaluate").main([
        "--model", str(model_dir), "--dataset", "cityscapes", "--data_root", str(data / "data"), "--split", "val",
        "--output_json", str(tmp_path / "eval.json"), "--no_progress", "--num_overlays", "0",
        "--save_predictions", str(evaluated), "--format", "cityscapes",
    ]) == 0  # fmt: skip
    predicted = tmp_path / "predict"
    assert load_script("predict").main([
        "--model", str(model_dir), "--input", str(image_root / "val"), "--output", str(predicted),
        "--format", "cityscapes", "--device", "cpu", "--no_progress", "--num_workers", "0",
    ]) == 0  # fmt: skip

    from_eval = sorted(evaluated.rglob("*.png"))
    from_predict = sorted(predicted.rglob("*.png"))  # only the label-ID masks: no colour masks, no overlays
    assert len(from_eval) == len(from_predict) == SYNTH["num_val"]
    for a, b in zip(from_eval, from_predict):
        assert a.relative_to(evaluated / "cityscapes" / "leftImg8bit_trainvaltest" / "leftImg8bit" / "val") == b.relative_to(predicted)
        assert a.name.endswith("_labelIds.png") and "leftImg8bit" not in a.name
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name

    with pytest.raises(SystemExit):  # an unknown format is refused by argparse
        load_script("predict").main(["--model", str(model_dir), "--input", str(image_root), "--output", str(tmp_path / "x"),
                                     "--format", "labelids"])  # fmt: skip
    assert "invalid choice: 'labelids'" in capsys.readouterr().err


def test_cityscapes_format_refused_for_other_class_counts(data, tmp_path, reset_accelerate, capsys):
    model_dir = tmp_path / "model20"
    SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2", num_labels=20)).save_pretrained(model_dir)
    code = load_script("evaluate").main([
        "--model", str(model_dir), "--dataset", "cityscapes", "--data_root", str(data / "data"), "--split", "val",
        "--output_json", str(tmp_path / "eval.json"), "--save_predictions", str(tmp_path / "p"), "--format", "cityscapes",
    ])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--format cityscapes" in err and "this model has 20 classes" in err
    assert not (tmp_path / "p").exists()

"""ACDC (docs/method.md §6.7) written in its real on-disk format: pairing, the `condition` column, the
conditions filter, the errors, every decoded pixel against a per-pixel loop over the Cityscapes labelId
table (restated here, independently of srha_hf.data.labels), and scripts/check_data.py."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srha_hf.data import (
    ACDC_CONDITIONS,
    BENCHMARK_NAMES,
    BenchmarkError,
    BenchmarkLayoutError,
    benchmark_info,
    build_eval_transform,
    decode_label,
    describe_dataset,
    example_conditions,
    load_benchmark,
    load_benchmarks,
    split_by_condition,
)

# ---- docs/method.md §6.4, restated: Cityscapes labelId -> train ID, everything else -> 255 ----------------
SPEC_CITYSCAPES = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                   25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip

W, H = 48, 27
SEQUENCES = {"fog": "GOPR0475", "night": "GOPR0355", "rain": "GP010400", "snow": "GP020606"}
PER_CONDITION = {"train": 2, "val": 3, "test": 2}


def expected_train_ids(raw):
    """Plain per-pixel dictionary lookup (the slow obvious way)."""
    out = np.full(raw.shape, 255, dtype=np.uint8)
    for y in range(raw.shape[0]):
        for x in range(raw.shape[1]):
            out[y, x] = SPEC_CITYSCAPES.get(int(raw[y, x]), 255)
    return out


def frame(condition, split, i):
    return f"{SEQUENCES[condition]}_frame_{split[:2]}{i:04d}"


def make_acdc(root, conditions=ACDC_CONDITIONS, seed=0):
    """ACDC's real layout: images, labels (+ the gt files that are not read) and the reference images."""
    rng = np.random.default_rng(seed)
    written = {}
    for condition in conditions:
        seq = SEQUENCES[condition]
        for split, count in PER_CONDITION.items():
            image_dir = root / "rgb_anon" / condition / split / seq
            ref_dir = root / "rgb_anon" / condition / f"{split}_ref" / seq
            image_dir.mkdir(parents=True)
            ref_dir.mkdir(parents=True)
            gt_dir = root / "gt" / condition / split / seq
            if split != "test":
                gt_dir.mkdir(parents=True)
            for i in range(count):
                name = frame(condition, split, i)
                image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
                Image.fromarray(image).save(image_dir / f"{name}_rgb_anon.png")
                # the normal-condition reference image of the same scene: never an example
                Image.fromarray(255 - image).save(ref_dir / f"{name}_ref_anon.png")
                raw = None
                if split != "test":
                    raw = rng.integers(0, 34, (H, W), dtype=np.uint8)  # every Cityscapes labelId 0..33
                    raw[0, :34] = np.arange(34)  # each id at least once, ignored ones (0..6, 9, 10, ...) included
                    Image.fromarray(raw).save(gt_dir / f"{name}_gt_labelIds.png")
                    # the other gt files of the release, which are not labels of the split
                    Image.fromarray(expected_train_ids(raw)).save(gt_dir / f"{name}_gt_labelTrainIds.png")
                    Image.fromarray((raw > 20).astype(np.uint8) * 255).save(gt_dir / f"{name}_gt_invIds.png")
                    Image.fromarray(image).save(gt_dir / f"{name}_gt_labelColor.png")
                written[(condition, split, name)] = (image, raw)
        # a stray reference image inside the split folder is not an image of the split either
        stray = root / "rgb_anon" / condition / "val" / seq / f"{frame(condition, 'val', 99)}_ref_anon.png"
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(stray)
    return written


@pytest.fixture
def acdc(tmp_path):
    return tmp_path, make_acdc(tmp_path)


# ---- loading ------------------------------------------------------------------------------------------


def test_pixel_exact_decoding_and_pairing(acdc):
    root, written = acdc
    ds = load_benchmark("acdc", root, "val")
    assert len(ds) == 4 * PER_CONDITION["val"]
    assert set(ds.column_names) == {"image_path", "label_path", "name", "width", "height", "condition"}
    for i in range(len(ds)):
        ex = ds[i]
        condition, seq, name = ex["name"].split("/")
        assert (condition, seq) == (ex["condition"], SEQUENCES[condition])
        image, raw = written[(condition, "val", name)]
        assert ex["image_path"].endswith(f"rgb_anon/{condition}/val/{seq}/{name}_rgb_anon.png")
        assert ex["label_path"].endswith(f"gt/{condition}/val/{seq}/{name}_gt_labelIds.png")
        assert (ex["width"], ex["height"]) == (W, H)
        assert ex["image"].mode == "RGB" and ex["label"].mode == "L"
        np.testing.assert_array_equal(np.asarray(ex["image"]), image)
        label = np.asarray(ex["label"])
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, expected_train_ids(raw))
        np.testing.assert_array_equal(decode_label("acdc", ex["label_path"]), expected_train_ids(raw))
    # the labelIds table reaches every train ID and the ignore value
    labels = np.concatenate([np.asarray(ds[i]["label"]).ravel() for i in range(len(ds))])
    assert set(np.unique(labels).tolist()) == set(range(19)) | {255}


def test_reference_images_and_other_gt_files_are_ignored(acdc):
    root, _ = acdc
    for split in ("train", "val", "test"):
        ds = load_benchmark("acdc", root, split)
        plain = ds.with_format(None)
        assert len(ds) == 4 * PER_CONDITION[split]
        relative = [Path(p).relative_to(root).as_posix() for p in plain["image_path"]]
        assert all(p.endswith("_rgb_anon.png") and "_ref" not in p for p in relative)
        assert {p.split("/")[2] for p in relative} == {split}  # never the <split>_ref folders
        if split != "test":
            assert all(p.endswith("_gt_labelIds.png") for p in plain["label_path"])


def test_condition_column(acdc):
    root, _ = acdc
    ds = load_benchmark("acdc", root, "val")
    n = PER_CONDITION["val"]
    conditions = example_conditions(ds)
    assert conditions == [c for c in ACDC_CONDITIONS for _ in range(n)]  # sorted by name: condition first
    assert conditions == ds.with_format(None)["condition"]
    assert [ds[i]["condition"] for i in range(len(ds))] == conditions
    assert ds.features["condition"].dtype == "string"
    info = benchmark_info(ds)
    assert info["benchmark"] == "acdc" and info["conditions"] == {c: n for c in ACDC_CONDITIONS}
    assert "conditions: fog 3, night 3, rain 3, snow 3" in describe_dataset(ds)
    with pytest.raises(ValueError, match="no 'condition' column"):
        example_conditions(ds.remove_columns("condition"))


def test_split_by_condition(acdc):
    root, written = acdc
    ds = load_benchmark("acdc", root, "val")
    parts = split_by_condition(ds)
    assert list(parts) == list(ACDC_CONDITIONS)
    for condition, part in parts.items():
        assert len(part) == PER_CONDITION["val"] and set(example_conditions(part)) == {condition}
        assert benchmark_info(part)["benchmark"] == "acdc"
        ex = part[0]  # still decoded on access
        _, raw = written[(condition, "val", ex["name"].split("/")[-1])]
        np.testing.assert_array_equal(np.asarray(ex["label"]), expected_train_ids(raw))
    only_night = split_by_condition(load_benchmark("acdc", root, "val", conditions=["night"]))
    assert list(only_night) == ["night"]


def test_conditions_filter(acdc):
    root, _ = acdc
    night = load_benchmark("acdc", root, "val", conditions=["night"])
    assert set(example_conditions(night)) == {"night"} and len(night) == PER_CONDITION["val"]
    assert benchmark_info(night)["conditions"] == {"night": PER_CONDITION["val"]}
    assert example_conditions(load_benchmark("acdc", root, "val", conditions="Night")) == example_conditions(night)
    two = load_benchmark("acdc", root, "train", conditions=("snow", "fog", "snow"))
    assert example_conditions(two) == ["fog"] * 2 + ["snow"] * 2
    assert all(name.split("/")[0] in ("fog", "snow") for name in two.with_format(None)["name"])
    assert len(load_benchmark("acdc", root, "val", conditions=None)) == len(load_benchmark("acdc", root, "val"))


def test_test_split_has_no_labels(acdc):
    root, _ = acdc
    ds = load_benchmark("acdc", root, "test")
    assert len(ds) == 4 * PER_CONDITION["test"]
    assert all(p is None for p in ds.with_format(None)["label_path"])
    ex = ds[0]
    assert ex["label"] is None and ex["image"].size == (W, H) and ex["condition"] == "fog"
    assert set(example_conditions(ds)) == set(ACDC_CONDITIONS)
    assert list(load_benchmarks("acdc", root, ("val", "test"), conditions=["rain"])) == ["val", "test"]


# ---- errors -------------------------------------------------------------------------------------------


def test_unknown_condition_names_it_and_the_allowed_ones(acdc):
    root, _ = acdc
    with pytest.raises(ValueError, match=r"unknown ACDC condition 'sunny'.*fog, night, rain, snow"):
        load_benchmark("acdc", root, "val", conditions=["fog", "sunny"])
    with pytest.raises(ValueError, match="conditions is empty"):
        load_benchmark("acdc", root, "val", conditions=[])
    with pytest.raises(ValueError, match="unknown ACDC condition 'sunny'"):  # before any disk access
        load_benchmark("acdc", root / "nope", "val", conditions="sunny")
    with pytest.raises(ValueError, match="conditions is for ACDC"):
        load_benchmark("cityscapes", root, "val", conditions=["fog"])
    with pytest.raises(ValueError, match="unknown split 'valid' for acdc"):
        load_benchmark("acdc", root, "valid")


def test_missing_condition_folder_names_the_path(tmp_path):
    make_acdc(tmp_path, conditions=("fog", "night", "rain"))
    missing = tmp_path / "rgb_anon" / "snow" / "val"
    with pytest.raises(BenchmarkLayoutError, match="snow") as info:
        load_benchmark("acdc", tmp_path, "val")
    assert str(missing) in str(info.value) and "expected layout" in str(info.value)
    ok = load_benchmark("acdc", tmp_path, "val", conditions=["fog", "night", "rain"])
    assert set(example_conditions(ok)) == {"fog", "night", "rain"}
    shutil.rmtree(tmp_path / "gt" / "rain")  # images there, labels not
    with pytest.raises(BenchmarkLayoutError) as info:
        load_benchmark("acdc", tmp_path, "val", conditions=["rain"])
    assert str(tmp_path / "gt" / "rain" / "val") in str(info.value)
    assert len(load_benchmark("acdc", tmp_path, "test", conditions=["rain"])) == PER_CONDITION["test"]  # no labels needed
    with pytest.raises(BenchmarkLayoutError, match="rgb_anon"):
        load_benchmark("acdc", tmp_path / "gt", "val")  # a root without rgb_anon/


def test_unpaired_files_are_reported(acdc):
    root, _ = acdc
    name = frame("night", "val", 1)
    label = root / "gt" / "night" / "val" / SEQUENCES["night"] / f"{name}_gt_labelIds.png"
    label.unlink()
    orphan = root / "gt" / "rain" / "val" / SEQUENCES["rain"] / "GP010400_frame_orphan_gt_labelIds.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(orphan)
    with pytest.warns(UserWarning, match=r"1 image\(s\) without a label and 1 label\(s\) without an image") as record:
        ds = load_benchmark("acdc", root, "val")
    text = str(record[0].message)
    assert f"{name}_rgb_anon.png" in text and orphan.name in text
    assert len(ds) == 4 * PER_CONDITION["val"] - 1
    assert benchmark_info(ds)["conditions"]["night"] == PER_CONDITION["val"] - 1
    with pytest.raises(BenchmarkError, match="without a label"):
        load_benchmark("acdc", root, "val", strict=True)


# ---- registration -------------------------------------------------------------------------------------


def test_registered_as_a_benchmark(acdc):
    from srha_hf.data.benchmarks import get_spec
    from srha_hf.training.config import DATASETS, TrainConfig

    assert "acdc" in BENCHMARK_NAMES and "acdc" in DATASETS
    assert get_spec("ACDC").name == "acdc" and get_spec("acdc").splits == ("train", "val", "test")
    config = TrainConfig(val_datasets=["cityscapes", "acdc"], acdc_root="/data/acdc")
    assert config.data_root("acdc") == "/data/acdc" and TrainConfig().data_root("acdc") is None
    # evaluated at full resolution (1920x1080), as it is
    image = Image.fromarray(np.zeros((1080, 1920, 3), np.uint8))
    label = np.full((1080, 1920), 255, np.uint8)
    out_image, out_label = build_eval_transform("acdc")(image, label)
    assert out_image.size == (1920, 1080) and out_label.size == (1920, 1080)
    root, _ = acdc
    ex = load_benchmark("acdc", root, "val")[0]
    out_image, out_label = build_eval_transform("acdc")(ex["image"], ex["label"])
    np.testing.assert_array_equal(np.asarray(out_label), np.asarray(ex["label"]))


def test_evaluation_keys_resolve_to_acdc():
    from srha_hf.evaluation import benchmark_of

    assert benchmark_of("acdc") == "acdc" and benchmark_of("acdc:night") == "acdc"


# ---- scripts/check_data.py ----------------------------------------------------------------------------


def test_check_data_on_acdc(acdc, check_data, capsys, tmp_path_factory):
    root, _ = acdc
    report_path = tmp_path_factory.mktemp("report") / "acdc.json"
    assert check_data.main([str(root), "--dataset", "acdc", "--no-progress", "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "OK: no problems found" in out and "night: images 3  labels 3  pairs 3" in out
    report = json.loads(report_path.read_text())
    by_split = {r["split"]: r for r in report["splits"]}
    val = by_split["val"]
    assert (val["images"], val["labels"], val["pairs"]) == (12, 12, 12)
    assert val["conditions"] == {c: {"images": 3, "labels": 3, "pairs": 3} for c in ACDC_CONDITIONS}
    assert val["unknown_label_values"] == {} and abs(sum(val["pixel_share"].values()) - 1) < 1e-9
    assert val["pixel_share"]["ignore (255)"] > 0
    test = by_split["test"]
    assert (test["images"], test["labels"], test["pairs"]) == (8, 0, 0)
    assert test["conditions"]["fog"] == {"images": 2, "labels": 0, "pairs": 0}

    assert check_data.main([str(root), "--dataset", "acdc", "--split", "val", "--conditions", "fog", "--no-progress",
                            "--json", str(report_path)]) == 0  # fmt: skip
    assert list(json.loads(report_path.read_text())["splits"][0]["conditions"]) == ["fog"]


def test_check_data_reports_acdc_problems(acdc, check_data, capsys):
    root, _ = acdc
    seq = SEQUENCES["snow"]
    (root / "gt" / "snow" / "val" / seq / f"{frame('snow', 'val', 0)}_gt_labelIds.png").unlink()
    bad = np.zeros((H, W), np.uint8)
    bad[0, 0] = 77  # not a Cityscapes labelId
    Image.fromarray(bad).save(root / "gt" / "fog" / "val" / SEQUENCES["fog"] / f"{frame('fog', 'val', 0)}_gt_labelIds.png")
    assert check_data.main([str(root), "--dataset", "acdc", "--split", "val", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "images without a label: 1" in out and "snow: images 3  labels 2  pairs 2" in out
    assert "unknown label values: 1" in out and "77: in 1 file(s)" in out
    assert check_data.main([str(root), "--dataset", "acdc", "--conditions", "sunny", "--no-progress"]) == 2
    assert "unknown ACDC condition 'sunny'" in capsys.readouterr().err
    assert check_data.main([str(root), "--dataset", "cityscapes", "--conditions", "fog", "--no-progress"]) == 2
    shutil.rmtree(root / "rgb_anon" / "rain" / "val")
    assert check_data.main([str(root), "--dataset", "acdc", "--split", "val", "--no-progress"]) == 2
    assert str(root / "rgb_anon" / "rain" / "val") in capsys.readouterr().out


# ---- evaluation: per-condition and overall mIoU --------------------------------------------------------


def test_per_condition_and_overall_miou(acdc):
    """evaluate_model on ACDC: one confusion matrix per condition (each equal to a plain per-image loop over
    that condition's images), the overall result from their sum; batches that mix conditions are split."""
    from eval_helpers import PaletteModel

    from srha_hf.data import to_tensors
    from srha_hf.evaluation import evaluate_model
    from srha_hf.metrics import confusion_matrix, scores_from_confusion_matrix

    root, _ = acdc
    dataset = load_benchmark("acdc", root, "val")
    model = PaletteModel()
    result = evaluate_model(model, {"acdc": dataset}, batch_size=4, progress=False)["acdc"]
    assert list(result["per_condition"]) == sorted(ACDC_CONDITIONS)
    total = np.zeros((19, 19), dtype=np.int64)
    for condition in ACDC_CONDITIONS:
        want = np.zeros((19, 19), dtype=np.int64)
        for example in split_by_condition(dataset)[condition]:
            pixels = to_tensors(np.asarray(example["image"]))[None]
            pred = model(pixels).logits.argmax(1)[0].numpy()
            want += confusion_matrix(pred, np.asarray(example["label"]), 19, 255)
        got = result["per_condition"][condition]
        np.testing.assert_array_equal(np.array(got["confusion_matrix"]), want)
        assert got["num_images"] == 3 and got["mean_iou"] == float(scores_from_confusion_matrix(want)["mean_iou"])
        total += want
    np.testing.assert_array_equal(np.array(result["confusion_matrix"]), total)
    assert result["num_images"] == 12 and result["mean_iou"] == float(scores_from_confusion_matrix(total)["mean_iou"])


def test_acdc_in_a_training_config_and_one_condition_in_the_evaluate_script(acdc, tmp_path):
    import importlib.util

    from eval_helpers import REPO

    from srha_hf.training import load_config

    root, _ = acdc
    config = load_config(None, {"val_datasets": ["cityscapes", "acdc"], "acdc_root": str(root)})
    assert config.data_root("acdc") == str(root)
    spec = importlib.util.spec_from_file_location("srha_evaluate_script_acdc", REPO / "scripts" / "evaluate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    loaded = script.load_datasets(["acdc:night", "acdc"], {"acdc:night": str(root), "acdc": str(root)}, "val")
    assert example_conditions(loaded["acdc:night"]) == ["night"] * 3 and len(loaded["acdc"]) == 12

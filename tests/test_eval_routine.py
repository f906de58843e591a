"""evaluate_model: the docs/method.md §6/§8 protocol per benchmark, exact across processes, report outputs."""

import json

import numpy as np
import pytest
import torch
from eval_helpers import SYNTH, PaletteModel, check, torchrun
from PIL import Image

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.data import build_eval_transform, load_benchmark, to_tensors
from srha_hf.data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes
from srha_hf.evaluation import evaluate_model, shard_indices
from srha_hf.evaluation_report import write_evaluation_report
from srha_hf.metrics import load_metric

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

SIZES = synthetic_eval_sizes(SYNTH["size"])
ALL = ("gtav", "cityscapes", "bdd100k", "mapillary", "synthia")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_synthetic")
    roots = make_synthetic_benchmark(root, **SYNTH)
    return root, {name: load_benchmark(name, roots[name], "val") for name in ALL}


def manual_metric(model, dataset, kind, **transform_kwargs):
    """One image at a time, straight from the building blocks: transform, forward, argmax, metric."""
    transform = build_eval_transform(kind, **transform_kwargs)
    metric = load_metric(num_labels=19, ignore_index=255)
    for i in range(len(dataset)):
        example = dataset[i]
        image, label = transform(example["image"], example["label"])
        pixels = to_tensors(np.asarray(image))[None]
        with torch.no_grad():
            pred = model(pixel_values=pixels).logits.argmax(1)[0]
        metric.add(prediction=pred.numpy(), reference=np.asarray(label))
    return metric


def test_equals_a_plain_per_image_loop_on_every_benchmark(bench):
    _, datasets = bench
    model = PaletteModel()
    keyed = {("mapillary:corrected" if k == "mapillary" else k): d for k, d in datasets.items()}
    results = evaluate_model(model, keyed, eval_sizes=SIZES, batch_size=2, mapillary_crop="corrected", progress=False)
    assert list(results) == list(keyed)
    for key, result in results.items():
        kind = key.split(":")[0]
        metric = manual_metric(model, datasets[kind], kind, mapillary_crop="corrected", **SIZES)
        np.testing.assert_array_equal(np.array(result["confusion_matrix"]), metric.confusion_matrix())
        want = metric.compute()
        assert result["mean_iou"] == want["mean_iou"] and result["overall_accuracy"] == want["overall_accuracy"]
        np.testing.assert_array_equal(list(result["per_category_iou"].values()), want["per_category_iou"])
        assert list(result["per_category_iou"])[:3] == ["road", "sidewalk", "building"]
        assert result["num_images"] == SYNTH["num_val"] and result["benchmark"] == kind


def test_model_modes_restored_and_srha_model_runs(bench):
    _, datasets = bench
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="shufflenetv2")).train()
    modes = {name: m.training for name, m in model.named_modules()}
    assert modes["layer0"] is False and modes[""] is True  # frozen layer0 stays in eval mode in training
    results = evaluate_model(model, {"gtav": datasets["gtav"]}, eval_sizes=SIZES, max_images=2, progress=False)
    assert {name: m.training for name, m in model.named_modules()} == modes
    r = results["gtav"]
    assert r["num_images"] == 2 and np.array(r["confusion_matrix"]).sum() > 0
    assert set(r) >= {"mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "confusion_matrix", "num_images"}


def test_shards_are_disjoint_and_complete():
    for n in (0, 1, 5, 7):
        for world in (1, 2, 3):
            shards = [shard_indices(n, r, world) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            dropped = [shard_indices(n, r, world, drop_remainder=True) for r in range(world)]
            flat = [i for s in dropped for i in s]
            assert len(flat) == len(set(flat)) == n - n % world  # docs/method.md §9 T3: len % world dropped
    assert shard_indices(5, 0, 2, drop_remainder=True) == torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()[:4][0::2]


@pytest.mark.slow  # a subprocess / torchrun test
def test_two_processes_equal_one_on_an_odd_split(bench, tmp_path):
    """Two real processes (torchrun, gloo, no Accelerate) on 5 images: the summed confusion matrices
    equal the single-process result; drop_remainder drops exactly one image."""
    root, datasets = bench
    out = tmp_path / "dist.json"
    check(torchrun(["tests/eval_dist_worker.py", root, out]))
    got = json.loads(out.read_text())
    assert got["world"] == 2
    assert got["ddp"]["cityscapes"]["confusion_matrix"] == got["default"]["cityscapes"]["confusion_matrix"]
    assert got["ddp_training_after"] is True
    model = PaletteModel()
    keyed = {"cityscapes": datasets["cityscapes"], "mapillary:faithful": datasets["mapillary"]}
    single = evaluate_model(model, keyed, eval_sizes=SIZES, progress=False)
    for key, want in single.items():
        dist = got["default"][key]
        assert dist["num_images"] == want["num_images"] == 5
        assert dist["confusion_matrix"] == want["confusion_matrix"]
        np.testing.assert_array_equal(list(dist["per_category_iou"].values()), list(want["per_category_iou"].values()))
        assert dist["mean_iou"] == want["mean_iou"]
        assert got["drop_remainder"][key]["num_images"] == 4
        kept = sorted(shard_indices(5, 0, 2, drop_remainder=True) + shard_indices(5, 1, 2, drop_remainder=True))
        kind = key.split(":")[0]
        sub = evaluate_model(model, {key: datasets[kind].select(kept)}, eval_sizes=SIZES, progress=False)[key]
        assert got["drop_remainder"][key]["confusion_matrix"] == sub["confusion_matrix"]


# ---- Mapillary: ResizeHeight + CenterCropPad, docs/method.md §6.6 and §9 D3 -------------------------------------


def expected_mapillary(image, label, size, mode):
    """docs/method.md §6.6 / §9 D3 from the text: height -> size (width int(W/H*size)), then landscape: centre
    crop at round((w - size)/2); portrait faithful: |x1| + p black columns labelled 0 (road), then the
    first size - |x1| - p image columns; portrait corrected: centred, padding labelled 255."""
    w, h = image.size
    nw = int(w / h * size)
    img = np.asarray(image.resize((nw, size), Image.BICUBIC))
    lab = np.asarray(Image.fromarray(label).resize((nw, size), Image.NEAREST))
    if nw >= size:
        x1 = round((nw - size) / 2)
        return img[:, x1 : x1 + size], lab[:, x1 : x1 + size]
    out_img = np.zeros((size, size, 3), np.uint8)
    if mode == "faithful":
        p, x1 = size - nw, round((nw - size) / 2)
        left = -x1 + p
        out_lab = np.zeros((size, size), np.uint8)
        out_img[:, left:], out_lab[:, left:] = img[:, : size - left], lab[:, : size - left]
    else:
        left = (size - nw) // 2
        out_lab = np.full((size, size), 255, np.uint8)
        out_img[:, left : left + nw], out_lab[:, left : left + nw] = img, lab
    return out_img, out_lab


@pytest.mark.parametrize("mode", ["faithful", "corrected"])
def test_mapillary_protocol_portrait_and_landscape(bench, mode):
    _, datasets = bench
    ds = datasets["mapillary"]
    sizes = [ds[i]["image"].size for i in range(len(ds))]
    landscape, portrait = sizes.index((96, 72)), sizes.index((54, 72))
    pair = ds.select([landscape, portrait])
    size = 60  # landscape 96x72 -> 80x60 -> crop x1 = 10; portrait 54x72 -> 45x60 -> x1 = round(-7.5) = -8, p = 15
    model = PaletteModel()
    result = evaluate_model(model, {"mapillary": pair}, eval_sizes={"mapillary_size": size}, mapillary_crop=mode, progress=False)["mapillary"]
    want = np.zeros((19, 19), np.int64)
    for i in range(2):
        image, label = expected_mapillary(pair[i]["image"], np.asarray(pair[i]["label"]), size, mode)
        assert image.shape == (size, size, 3) and label.shape == (size, size)
        pred = model(to_tensors(image)[None]).logits.argmax(1)[0].numpy()
        want += _hist(pred, label)
        if i == 1 and mode == "faithful":
            assert (label[:, :23] == 0).all() and (image[:, :23] == 0).all()  # black columns labelled road
    np.testing.assert_array_equal(np.array(result["confusion_matrix"]), want)


def _hist(pred, label):
    keep = label < 19
    return np.bincount(19 * label[keep].astype(np.int64) + pred[keep], minlength=361).reshape(19, 19)


@pytest.mark.integration
def test_report_writes_pngs_tables_and_json(bench, tmp_path):
    _, datasets = bench
    model = PaletteModel()
    keyed = {"cityscapes": datasets["cityscapes"], "mapillary:faithful": datasets["mapillary"]}
    results = evaluate_model(model, keyed, eval_sizes=SIZES, progress=False)
    content = write_evaluation_report(results, tmp_path / "report", model=model, datasets=keyed, num_overlays=2,
                                      eval_sizes=SIZES, metadata={"model": "palette"})  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert files == sorted(
        [f"{s}_{kind}" for s in ("cityscapes", "mapillary_faithful")
         for kind in ("per_class_iou.png", "confusion_matrix.png", "per_class_iou.md", "overlay_0.png", "overlay_1.png")]
        + ["eval_results.json"]
    )  # fmt: skip
    for name in files:
        if name.endswith(".png"):
            with Image.open(tmp_path / "report" / name) as png:
                assert png.format == "PNG" and min(png.size) >= 64
    saved = json.loads((tmp_path / "report" / "eval_results.json").read_text())
    assert saved == content and saved["model"] == "palette"
    assert saved["mean_iou"] == {k: r["mean_iou"] for k, r in results.items()}
    city = saved["results"]["cityscapes"]
    assert set(city["per_category_iou"]) == set(results["cityscapes"]["per_category_iou"])
    nan_classes = [c for c, v in results["cityscapes"]["per_category_iou"].items() if v != v]
    assert all(city["per_category_iou"][c] is None for c in nan_classes)  # NaN -> null (strict JSON)
    table = (tmp_path / "report" / "cityscapes_per_class_iou.md").read_text()
    assert "| 0 | road |" in table and "mIoU" in table

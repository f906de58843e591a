"""The streaming mean-IoU metric against a per-image histogram reference (evaluate's `mean_iou` rules)."""

import warnings

import evaluate
import numpy as np
import pytest
import torch

from srha_hf.metrics import (
    METRIC_PATH,
    MeanIoU,
    confusion_matrix,
    frequency_weighted_iou,
    load_metric,
    scores_from_confusion_matrix,
)
from srha_hf.metrics import mean_iou as M

KEYS = ("mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy")


def reference_mean_iou(predictions, references, num_labels, ignore_index, nan_to_num=None, label_map=None, reduce_labels=False):
    """Per image: map/reduce the labels, drop ignored pixels, three histograms over [0, num_labels-1]
    (intersection, prediction, label), summed over images in float64; then IoU, accuracy, nanmean."""
    total_i = np.zeros(num_labels, dtype=np.float64)
    total_u = np.zeros(num_labels, dtype=np.float64)
    total_p = np.zeros(num_labels, dtype=np.float64)
    total_l = np.zeros(num_labels, dtype=np.float64)
    for pred, label in zip(predictions, references):
        pred = np.array(pred, dtype=np.int64)
        label = np.array(label, dtype=np.int64)
        if label_map is not None:
            for old, new in label_map.items():
                label[label == old] = new
        if reduce_labels:
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        keep = label != ignore_index
        pred, label = pred[keep], label[keep]
        inter = pred[pred == label]
        hist = lambda a: np.histogram(a, bins=num_labels, range=(0, num_labels - 1))[0]  # noqa: E731
        a_i, a_p, a_l = hist(inter), hist(pred), hist(label)
        total_i += a_i
        total_p += a_p
        total_l += a_l
        total_u += a_p + a_l - a_i
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        iou = total_i / total_u
        acc = total_i / total_l
        out = {
            "mean_iou": np.nanmean(iou),
            "mean_accuracy": np.nanmean(acc),
            "overall_accuracy": total_i.sum() / total_l.sum(),
            "per_category_iou": iou,
            "per_category_accuracy": acc,
        }
    if nan_to_num is not None:
        out = {k: np.nan_to_num(v, nan=nan_to_num) for k, v in out.items()}
    return out


def assert_same(a, b):
    assert set(KEYS) <= set(a)
    for key in KEYS:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)  # exact, NaN == NaN


def random_maps(seed=0, num_labels=12):
    """Maps of several shapes: street-like blocks, ignore pixels, classes 9 absent from the references
    but predicted, class 11 absent from both, a few out-of-range references (20) and predictions (13)."""
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for i, (h, w) in enumerate([(17, 23), (32, 48), (5, 64), (40, 40), (1, 1), (24, 36), (64, 8)]):
        ref = rng.integers(0, 9, size=(h, w))
        ref[rng.random((h, w)) < 0.15] = 255
        if i % 3 == 1:
            ref[rng.random((h, w)) < 0.02] = 20
        pred = np.where(rng.random((h, w)) < 0.6, np.clip(ref, 0, 10), rng.integers(0, 11, size=(h, w)))
        pred[rng.random((h, w)) < 0.01] = 13
        refs.append(ref.astype(np.uint8))
        preds.append(pred.astype(np.uint8 if i % 2 else np.int64))
    return preds, refs, num_labels


def feed_in_batches(metric, preds, refs):
    metric.add_batch(predictions=preds[:2], references=refs[:2])  # lists of numpy maps
    metric.add(prediction=preds[2], reference=refs[2])
    metric.add_batch(predictions=[torch.from_numpy(p) for p in preds[3:5]], references=[torch.from_numpy(r) for r in refs[3:5]])
    metric.add_batch(predictions=[p.tolist() for p in preds[5:]], references=[r.tolist() for r in refs[5:]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"nan_to_num": -1},
        {"reduce_labels": True},
        {"label_map": {3: 4, 4: 7, 20: 255}},  # chained, and the out-of-range 20 becomes ignored
    ],
)
def test_equals_per_image_histogram_reference(kwargs):
    preds, refs, n = random_maps()
    metric = load_metric()
    feed_in_batches(metric, preds, refs)
    assert len(metric) == len(preds)
    got = metric.compute(num_labels=n, ignore_index=255, **kwargs)
    want = reference_mean_iou(preds, refs, n, 255, **kwargs)
    assert_same(got, want)
    if not kwargs:
        iou = want["per_category_iou"]
        assert np.isnan(iou[11]) and iou[9] == 0 and np.isnan(got["per_category_iou"][11])  # absent / only predicted
    assert len(metric) == 0  # compute() resets, like evaluate


def test_stacked_batches_and_compute_inputs_and_reset():
    rng = np.random.default_rng(1)
    refs = rng.integers(0, 5, size=(6, 9, 11)).astype(np.uint8)
    refs[:, 0] = 255
    preds = rng.integers(0, 5, size=(6, 9, 11))
    metric = load_metric(num_labels=5, ignore_index=255)
    metric.add_batch(predictions=preds[:3], references=refs[:3])  # (B, H, W) arrays
    got = metric.compute(predictions=torch.from_numpy(preds[3:]), references=torch.from_numpy(refs[3:]))
    assert_same(got, reference_mean_iou(preds, refs, 5, 255))
    metric.add_batch(predictions=preds[:1], references=refs[:1])
    metric.reset()
    metric.add_batch(predictions=preds[1:2], references=refs[1:2])
    assert_same(metric.compute(), reference_mean_iou(preds[1:2], refs[1:2], 5, 255))


def test_memory_does_not_grow_with_images():
    metric = load_metric()
    rng = np.random.default_rng(2)
    for _ in range(30):
        ref = rng.integers(0, 19, size=(8, 8)).astype(np.uint8)
        ref[0, 0] = 255
        metric.add_batch(predictions=[rng.integers(0, 19, size=(8, 8))], references=[ref])
    assert metric.joint_counts().shape == (256, 19)
    assert metric.joint_counts().sum() == 30 * 64 and len(metric) == 30


def test_evaluate_load_gives_the_same_module(tmp_path):
    preds, refs, n = random_maps(3)
    loaded = evaluate.load(METRIC_PATH, cache_dir=str(tmp_path))
    assert isinstance(loaded, evaluate.Metric) and type(loaded).__name__ == "MeanIoU"
    loaded.add_batch(predictions=preds, references=refs)
    assert_same(loaded.compute(num_labels=n, ignore_index=255), reference_mean_iou(preds, refs, n, 255))


def test_large_values_use_the_sparse_table():
    rng = np.random.default_rng(4)
    refs = [rng.choice([0, 1, 2, 255, 5000], size=(10, 12)) for _ in range(3)]
    preds = [rng.choice([0, 1, 2, 3000], size=(10, 12)) for _ in range(3)]
    metric = load_metric()
    metric.add_batch(predictions=preds, references=refs)
    assert metric._counts.sparse  # 5001 x 3001 cells would not fit the dense table
    assert_same(metric.compute(num_labels=4, ignore_index=255), reference_mean_iou(preds, refs, 4, 255))


def test_evaluate_style_multi_process_files(tmp_path):
    preds, refs, n = random_maps(5)
    kw = dict(num_process=2, experiment_id="srha-test", cache_dir=str(tmp_path))
    workers = [load_metric(process_id=i, **kw) for i in range(2)]
    workers[0].add_batch(predictions=preds[::2], references=refs[::2])
    workers[1].add_batch(predictions=preds[1::2], references=refs[1::2])
    assert workers[1].compute(num_labels=n, ignore_index=255) is None
    got = workers[0].compute(num_labels=n, ignore_index=255)
    assert_same(got, reference_mean_iou(preds, refs, n, 255))
    assert not list(tmp_path.rglob("*.srha_counts.npz"))


def test_confusion_matrix_helper_is_spec_8_2():
    rng = np.random.default_rng(6)
    gt = rng.integers(0, 19, size=(2, 30, 40)).astype(np.uint8)
    gt[:, :3] = 255
    gt[0, 5, :7] = 40  # out of range, not ignore: dropped (docs/method.md §8.2), predictions never masked
    pred = rng.integers(0, 19, size=(2, 30, 40))
    want = np.zeros((19, 19), dtype=np.int64)
    for g, p in zip(gt.reshape(-1), pred.reshape(-1)):  # per-pixel loop, method's formula
        if g < 19:
            want[g, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 19), want)
    got_t = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(gt), 19)
    assert got_t.dtype == torch.int64
    np.testing.assert_array_equal(got_t.numpy(), want)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int64)), 19).numpy(), want)
    # with references in range, scores from the matrix equal the metric's (evaluate's rules)
    gt[0, 5, :7] = 255
    want = confusion_matrix(pred, gt, 19)
    assert_same(scores_from_confusion_matrix(want), reference_mean_iou(list(pred), list(gt), 19, 255))
    metric = load_metric(num_labels=19, ignore_index=255)
    metric.add_counts(want, num_examples=2)
    assert_same(metric.compute(), reference_mean_iou(list(pred), list(gt), 19, 255))
    freq = want.sum(1) / want.sum()
    iou = np.diag(want) / (want.sum(1) + want.sum(0) - np.diag(want))
    assert frequency_weighted_iou(want) == pytest.approx(float((freq * iou)[freq > 0].sum()))


def test_clear_errors():
    metric = load_metric()
    with pytest.raises(TypeError, match="integer class ids.*argmax"):
        metric.add_batch(predictions=[np.zeros((2, 2), np.float32)], references=[np.zeros((2, 2), np.uint8)])
    with pytest.raises(ValueError, match=r"predictions\[1\] has shape \(3, 2\) but references\[1\] has shape \(2, 2\)"):
        metric.add_batch(predictions=[np.zeros((2, 2), int), np.zeros((3, 2), int)], references=[np.zeros((2, 2), int)] * 2)
    with pytest.raises(ValueError, match="Mismatch in the number of predictions"):
        metric.add_batch(predictions=[np.zeros((2, 2), int)], references=[np.zeros((2, 2), int)] * 2)
    with pytest.raises(ValueError, match=r"references\[0\] holds negative values"):
        metric.add(prediction=np.zeros((2, 2), int), reference=-np.ones((2, 2), int))
    assert len(metric) == 0 and metric.joint_counts().size == 0  # nothing was counted
    with pytest.raises(ValueError, match="num_labels is required"):
        metric.compute(ignore_index=255)
    with pytest.raises(ValueError, match="confusion matrix must be square"):
        scores_from_confusion_matrix(np.zeros((3, 4), int))
    with pytest.raises(ValueError, match=r"predictions must lie in 0..18"):
        confusion_matrix(np.full((2, 2), 19), np.zeros((2, 2), np.uint8), 19)
    assert isinstance(M.MeanIoU(), MeanIoU)

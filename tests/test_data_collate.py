"""SRHATrainDataset + SRMCollator: batches, SRM weights and reproducibility across workers/resumes."""

import numpy as np
import pytest
import torch

from srha_hf.data import EpochSampler, SRHATrainDataset, SRMCollator, TrainTransform, load_benchmark
from srha_hf.data.synthetic import make_synthetic_benchmark


@pytest.fixture(scope="module")
def gtav(tmp_path_factory):
    roots = make_synthetic_benchmark(tmp_path_factory.mktemp("synthetic"), num_train=6, num_val=2, size=(96, 54))
    return load_benchmark("gtav", roots["gtav"], "train")


def make_train(ds, tmp_path=None, **kw):
    transform = TrainTransform(crop_size=32, scale_range=(0.5, 1.0))
    return SRHATrainDataset(ds, transform, seed=7, progress=False, **kw)


def test_item_and_batch_layout(gtav):
    train = make_train(gtav)
    item = train[0]
    assert item["pixel_values"].shape == (3, 32, 32) and item["pixel_values"].dtype == torch.float32
    assert item["labels"].shape == (32, 32) and item["labels"].dtype == torch.int64
    assert (item["epoch"], item["index"]) == (0, 0)
    batch = SRMCollator(seed=7)([train[i] for i in range(3)])
    assert set(batch) == {"pixel_values", "labels", "srm_weights"}
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["labels"].shape == (3, 32, 32)
    w = batch["srm_weights"]
    assert w.shape == (3, 20, 20) and w.dtype == torch.float32
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 20))
    labels = batch["labels"]
    assert ((labels >= 0) & (labels < 19) | (labels == 255)).all()


def test_srm_weights_depend_only_on_seed_epoch_index():
    collate = SRMCollator(seed=3)
    items = [{"pixel_values": torch.zeros(3, 4, 4), "labels": torch.zeros(4, 4, dtype=torch.long), "epoch": e, "index": i}
             for e, i in ((0, 0), (0, 1), (1, 0), (0, 5))]  # fmt: skip
    full = collate(items)["srm_weights"]
    alone = torch.cat([collate([it])["srm_weights"] for it in items])
    torch.testing.assert_close(full, alone, rtol=0, atol=0)  # independent of the batch it lands in
    shuffled = collate(items[::-1])["srm_weights"]
    torch.testing.assert_close(shuffled, full.flip(0), rtol=0, atol=0)
    assert not torch.equal(full[0], full[1]) and not torch.equal(full[0], full[2])
    assert not torch.equal(full, SRMCollator(seed=4)(items)["srm_weights"])
    # same (seed, epoch, index) through the core SRM sampler with the documented generator
    from srha_hf.data.seeding import torch_generator
    from srha_hf.srm import sample_mixing_weights

    direct = sample_mixing_weights(1, 20, 0.0156, generator=torch_generator(3, 1, 0))[0]
    torch.testing.assert_close(full[2], direct, rtol=0, atol=0)
    # sparse rows, as Dirichlet(2^-6) should give
    assert (full.max(-1).values > 0.5).float().mean() > 0.6
    with pytest.raises(KeyError, match="no 'index'"):
        collate([{"pixel_values": torch.zeros(3, 2, 2), "labels": torch.zeros(2, 2)}])


def test_same_batches_with_and_without_workers(gtav):
    train = make_train(gtav)
    collate = SRMCollator(seed=7)

    def batches(workers):
        sampler = EpochSampler(train, seed=7)
        loader = torch.utils.data.DataLoader(train, batch_size=2, sampler=sampler, collate_fn=collate,
                                             num_workers=workers, drop_last=True)  # fmt: skip
        out = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            out += list(loader)
        return out

    single, multi = batches(0), batches(2)
    assert len(single) == len(multi) == 6
    for a, b in zip(single, multi):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(single[0]["pixel_values"], single[3]["pixel_values"])


def test_resume_replays_the_same_epoch(gtav):
    first = make_train(gtav)
    first.set_epoch(2)
    resumed = make_train(gtav, epoch=2)
    for i in (0, 3):
        a, b = first[i], resumed[i]
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    # (epoch, index) keys address an epoch explicitly (what persistent workers receive)
    other = make_train(gtav)
    assert torch.equal(other[(2, 3)]["pixel_values"], first[3]["pixel_values"])
    assert not torch.equal(other[(1, 3)]["pixel_values"], first[3]["pixel_values"])


def test_class_uniform_training_dataset(gtav, tmp_path):
    train = make_train(gtav, class_uniform=True, tile=32, cache_dir=tmp_path)
    n = len(gtav)
    per_class = int(n * 0.5 / 19)
    assert len(train) == n - 19 * per_class + per_class * sum(1 for r in train.centroids.values() if r)
    train.set_epoch(1)
    plan1 = train.plan(1).rows.copy()
    assert np.array_equal(make_train(gtav, class_uniform=True, tile=32, cache_dir=tmp_path, epoch=1).plan(1).rows, plan1)
    item = train[len(train) - 1]
    assert item["labels"].shape == (32, 32)


def test_training_needs_labels(tmp_path):
    from PIL import Image

    (tmp_path / "images/test").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images/test/a.jpg")
    with pytest.raises(ValueError, match="no labels"):
        SRHATrainDataset(load_benchmark("bdd100k", tmp_path, "test"), progress=False)

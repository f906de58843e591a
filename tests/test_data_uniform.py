"""Class-uniform sampling (docs/method.md §7): centroids, cache keyed by root, epochs, sampler."""

import json
import multiprocessing
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import center_of_mass

from srha_hf.data import EpochSampler, build_epoch, load_benchmark, load_or_extract_centroids
from srha_hf.data.uniform import cache_path, image_centroids, tile_origins


def reference_centroids(label, tile, whole=True):
    """docs/method.md §7.1 step 3 as a plain loop over tiles and classes with scipy's center_of_mass."""
    h, w = label.shape
    ny, nx = (h // tile, w // tile) if whole else (-(-h // tile), -(-w // tile))
    out = []
    for ty in range(ny):
        for tx in range(nx):
            part = label[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile]
            for c in range(19):
                mask = part == c
                if mask.any():
                    cy, cx = center_of_mass(mask)
                    out.append((c, int(cx) + tx * tile, int(cy) + ty * tile))
    return sorted(out)


@pytest.mark.parametrize("whole", [True, False])
def test_centroids_match_scipy_center_of_mass(whole):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (70, 83)).astype(np.uint8)
    label[rng.random(label.shape) < 0.2] = 255
    label[:32, :32][label[:32, :32] == 4] = 5  # class 4 absent from the first tile
    assert sorted(image_centroids(label, 32, whole_tiles_only=whole)) == reference_centroids(label, 32, whole)


def test_tiles_cover_only_whole_tiles_d6():
    assert tile_origins(2048, 1024, 1024) == [(0, 0), (1024, 0)]
    assert tile_origins(1914, 1052, 1024) == [(0, 0)]
    assert tile_origins(1280, 760, 1024) == []
    assert len(tile_origins(1280, 760, 1024, whole_tiles_only=False)) == 2


def fake_centroids(counts):
    return {c: [(i % 50, 3, 4) for i in range(n)] for c, n in enumerate(counts)}


@pytest.mark.parametrize("n, per_class, n_rand", [(12387, 325, 6212), (2975, 78, 1493)])
def test_epoch_sizes_match_appendix_b(n, per_class, n_rand):
    plan = build_epoch(n, fake_centroids([400] * 19), seed=304, epoch=0)
    assert len(plan) == n == 19 * per_class + n_rand
    assert (plan.classes == -1).sum() == n_rand
    assert np.bincount(plan.classes[plan.classes >= 0], minlength=19).tolist() == [per_class] * 19
    random_rows = plan.rows[plan.classes == -1]
    assert len(set(random_rows.tolist())) == n_rand  # a shuffle, no repeats
    assert (plan.centroids[plan.classes == -1] == -1).all()


def test_epoch_wraps_small_classes_and_skips_empty_ones():
    counts = [400] * 19
    counts[3], counts[7] = 10, 0
    records = fake_centroids(counts)
    records[3] = [(i, i, i) for i in range(10)]
    plan = build_epoch(2975, records, seed=1, epoch=0)
    assert len(plan) == 2975 - 78
    rows3 = plan.rows[plan.classes == 3]
    assert len(rows3) == 78 and set(rows3.tolist()) == set(range(10))
    np.testing.assert_array_equal(rows3[10:20], rows3[:10])  # wraps in the same shuffled order
    assert plan.item(int(np.flatnonzero(plan.classes == 3)[0]))[1] == (rows3[0], rows3[0])


def _epoch_digest(args):
    seed, epoch = args
    plan = build_epoch(1000, fake_centroids([30] * 19), seed, epoch)
    return plan.rows.tobytes() + plan.classes.tobytes()


def test_epoch_is_a_pure_function_of_seed_and_epoch_across_processes():
    local = [_epoch_digest((304, e)) for e in range(3)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        remote = pool.map(_epoch_digest, [(304, e) for e in range(3)])
    assert local == remote
    assert local[0] != local[1] and _epoch_digest((305, 0)) != local[0]


def make_cityscapes(root, n=3, size=(40, 20)):
    rng = np.random.default_rng(7)
    img_dir = root / "leftImg8bit/train/ulm"
    gt_dir = root / "gtFine/train/ulm"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    ids = np.array([7, 8, 11, 26, 0])
    for i in range(n):
        stem = f"ulm_000000_{i:06d}"
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(img_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(ids[rng.integers(0, 5, (size[1], size[0]))].astype(np.uint8)).save(gt_dir / f"{stem}_gtFine_labelIds.png")
    return root


def test_cache_is_keyed_by_root_and_never_reused_for_another(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    root_a = make_cityscapes(tmp_path / "a")
    ds_a = load_benchmark("cityscapes", root_a, "train")
    cents = load_or_extract_centroids(ds_a, tile=16, cache_dir=cache, progress=False)
    # 3 images x 2 whole 16-px tiles; classes road, sidewalk, building, car present
    assert sorted(c for c, r in cents.items() if r) == [0, 1, 2, 13]
    assert all(len(cents[c]) == 6 for c in (0, 1, 2, 13))
    path = cache_path("cityscapes", str(root_a), "train", 16, cache)
    payload = json.loads(path.read_text())
    assert payload["root"] == str(root_a.resolve()) and payload["tile"] == 16
    img_path, label_path, (x, y), c = payload["centroids"]["13"][0]
    assert label_path.endswith("_gtFine_labelIds.png") and c == 13

    # a second call reads the cache (extraction is not run again)
    import srha_hf.data.uniform as U

    def boom(*a, **k):
        raise AssertionError("extract_centroids must not run when the cache matches")

    monkeypatch.setattr(U, "extract_centroids", boom)
    assert load_or_extract_centroids(ds_a, tile=16, cache_dir=cache, progress=False) == cents
    monkeypatch.undo()

    # a copy at another root gets its own cache file
    root_b = tmp_path / "b"
    shutil.copytree(root_a, root_b)
    ds_b = load_benchmark("cityscapes", root_b, "train")
    assert cache_path("cityscapes", str(root_b), "train", 16, cache) != path
    cents_b = load_or_extract_centroids(ds_b, tile=16, cache_dir=cache, progress=False)
    assert cents_b == cents

    # a cache file whose key does not match (other root, or other files) is recomputed with a warning
    forged = json.loads(path.read_text())
    forged["root"] = "/somewhere/else"
    forged["centroids"] = {"0": []}
    path.write_text(json.dumps(forged))
    with pytest.warns(UserWarning, match="does not match this dataset"):
        again = load_or_extract_centroids(ds_a, tile=16, cache_dir=cache, progress=False)
    assert again == cents
    # a different tile is a different cache
    assert load_or_extract_centroids(ds_a, tile=8, cache_dir=cache, progress=False) != cents
    # a changed file list (one image removed) invalidates the cache
    for p in [*(root_a / "leftImg8bit/train/ulm").glob("*000002*"), *(root_a / "gtFine/train/ulm").glob("*000002*")]:
        p.unlink()
    ds_small = load_benchmark("cityscapes", root_a, "train")
    with pytest.warns(UserWarning, match="files"):
        smaller = load_or_extract_centroids(ds_small, tile=16, cache_dir=cache, progress=False)
    assert len(smaller[0]) == 4


def test_sampler_pads_partitions_and_is_seeded_by_epoch():
    data = list(range(10))
    ranks = [EpochSampler(data, num_replicas=3, rank=r) for r in range(3)]
    parts = [list(s) for s in ranks]
    assert [len(p) for p in parts] == [4, 4, 4] == [len(s) for s in ranks]
    merged = sorted(i for p in parts for i in p)
    assert set(merged) == set(data) and len(merged) == 12  # two indices repeated as padding
    again = [list(EpochSampler(data, num_replicas=3, rank=r)) for r in range(3)]
    assert again == parts
    for s in ranks:
        s.set_epoch(1)
    assert [list(s) for s in ranks] != parts
    val = EpochSampler(data, num_replicas=3, rank=0, pad=False)
    assert len(list(val)) == len(val) == 3
    with_epoch = EpochSampler(data, yield_epoch=True)
    with_epoch.set_epoch(5)
    assert all(e == 5 for e, _ in with_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="rank 3"):
            EpochSampler(data, num_replicas=3, rank=3)


def write_gtav_labels(folder, n=5, size=(70, 45)):
    """GTAV-format labels (palette and RGB colour PNGs, alternating) with blocky classes, ignored pixels and
    a different size every file; returns the paths and the train-ID maps they decode to."""
    from srha_hf.data.decoding import decode_gtav_label
    from srha_hf.data.synthetic import CITYSCAPES_ID_COLORS

    rng = np.random.default_rng(11)
    colours = np.asarray(CITYSCAPES_ID_COLORS, dtype=np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = colours
    folder.mkdir(parents=True, exist_ok=True)
    paths, maps = [], []
    for i in range(n):
        w, h = size[0] + 7 * i, size[1] + 3 * i
        ids = np.kron(rng.integers(0, 34, (h // 5 + 1, w // 5 + 1)), np.ones((5, 5), dtype=np.int64))[:h, :w].astype(np.uint8)
        path = folder / f"{i:05d}.png"
        if i % 2:
            Image.fromarray(colours[ids]).save(path)
        else:
            image = Image.frombytes("P", (w, h), ids.tobytes())
            image.putpalette(palette.ravel().tolist())
            image.save(path)
        paths.append(str(path))
        maps.append(decode_gtav_label(str(path)))  # GTAV's colour rule (polegroup's colour is pole's)
    return paths, maps


@pytest.mark.parametrize("whole", [True, False])
def test_centroids_in_processes_equal_one_process_in_row_order(tmp_path, whole):
    from srha_hf.data.decoding import decode_gtav_label
    from srha_hf.data.uniform import extract_centroids

    paths, maps = write_gtav_labels(tmp_path / "labels", n=7)
    one = extract_centroids(paths, decode_gtav_label, tile=16, whole_tiles_only=whole, progress=False, num_proc=1)
    two = extract_centroids(paths, decode_gtav_label, tile=16, whole_tiles_only=whole, progress=False, num_proc=2)
    every = extract_centroids(paths, decode_gtav_label, tile=16, whole_tiles_only=whole, progress=True, num_proc=None)
    assert two == one and every == one  # the same records, in the same (row) order
    # and both equal the plain per-image loop, row by row
    expected = {c: [] for c in range(19)}
    for row, label in enumerate(maps):
        for c, x, y in reference_centroids(label, 16, whole):
            expected[c].append((row, x, y))
    assert {c: sorted(r) for c, r in two.items()} == expected
    assert all(r == sorted(r, key=lambda rec: rec[0]) for r in two.values())
    assert sum(map(len, two.values())) > 50


def test_num_proc_is_validated_and_worker_errors_name_the_file(tmp_path):
    from srha_hf.data.decoding import decode_gtav_label
    from srha_hf.data.errors import UnreadableFileError
    from srha_hf.data.uniform import extract_centroids, usable_cores
    from srha_hf.training.config import ConfigError, load_config

    paths, _ = write_gtav_labels(tmp_path / "labels", n=4)
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(ValueError, match=rf"num_proc must be an integer >= 1 or None \(every usable core\), got {bad!r}"):
            extract_centroids(paths, decode_gtav_label, tile=16, progress=False, num_proc=bad)
    ds = load_benchmark("cityscapes", make_cityscapes(tmp_path / "cs"), "train")
    with pytest.raises(ValueError, match="num_proc must be an integer >= 1"):
        load_or_extract_centroids(ds, tile=16, cache_dir=tmp_path / "cache", progress=False, num_proc=0)
    assert usable_cores() >= 1

    broken = tmp_path / "labels" / "00002.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(UnreadableFileError, match=r"cannot read .*00002\.png"):
        extract_centroids(paths, decode_gtav_label, tile=16, progress=False, num_proc=2)

    assert load_config(None, {}).centroid_num_proc is None  # every usable core
    assert load_config(None, {"centroid_num_proc": 3}).centroid_num_proc == 3
    with pytest.raises(ConfigError, match=r"centroid_num_proc must be an integer >= 1 or null \(every usable core\), got 0"):
        load_config(None, {"centroid_num_proc": 0})
    with pytest.raises(ConfigError, match="centroid_num_proc expects an integer, got 'all'"):
        load_config(None, {"centroid_num_proc": "all"})


def test_cache_written_from_processes_is_the_same_file(tmp_path):
    ds = load_benchmark("cityscapes", make_cityscapes(tmp_path / "cs", n=5), "train")
    one = load_or_extract_centroids(ds, tile=16, cache_dir=tmp_path / "c1", progress=False, num_proc=1)
    two = load_or_extract_centroids(ds, tile=16, cache_dir=tmp_path / "c2", progress=False, num_proc=2)
    assert two == one
    (f1,), (f2,) = (tmp_path / "c1").glob("*.json"), (tmp_path / "c2").glob("*.json")
    assert f1.read_bytes() == f2.read_bytes()

"""Each benchmark written in its real on-disk format; every decoded train-ID pixel checked against
the tables of docs/method.md §6 (restated here, independently of srha_hf.data.labels)."""

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from srha_hf.data import CITYSCAPES_PALETTE, CLASS_NAMES, load_benchmark, load_benchmarks
from srha_hf.data.labels import MAPILLARY_V12_NAMES

# ---- docs/method.md §6 tables, restated -------------------------------------------------------------------
SPEC_GTAV_COLORS = {
    (128, 64, 128): 0, (244, 35, 232): 1, (70, 70, 70): 2, (102, 102, 156): 3, (190, 153, 153): 4,
    (153, 153, 153): 5, (250, 170, 30): 6, (220, 220, 0): 7, (107, 142, 35): 8, (152, 251, 152): 9,
    (70, 130, 180): 10, (220, 20, 60): 11, (255, 0, 0): 12, (0, 0, 142): 13, (0, 0, 70): 14,
    (0, 60, 100): 15, (0, 80, 100): 16, (0, 0, 230): 17, (119, 11, 32): 18,
}  # fmt: skip
SPEC_CITYSCAPES = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                   25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
SPEC_SYNTHIA = {0: 255, 1: 10, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 13, 9: 7, 10: 11, 11: 18, 12: 17,
                13: 255, 14: 255, 15: 6, 16: 9, 17: 12, 18: 14, 19: 15, 20: 16, 21: 3, 22: 255}  # fmt: skip
SPEC_MAPILLARY = {13: 0, 24: 0, 41: 0, 2: 1, 15: 1, 17: 2, 6: 3, 3: 4, 45: 5, 47: 5, 48: 6, 50: 7, 30: 8,
                  29: 9, 27: 10, 19: 11, 20: 12, 21: 12, 22: 12, 55: 13, 61: 14, 54: 15, 58: 16, 57: 17,
                  52: 18}  # fmt: skip
# Cityscapes colours by id 0..33 (GTAV's palette); polegroup (18) shares pole's colour.
CITYSCAPES_ID_COLORS = [
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128),
    (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230),
    (119, 11, 32),
]  # fmt: skip


def expected_from(table, raw, default=255):
    """Plain per-pixel dictionary lookup (the slow obvious way)."""
    out = np.full(raw.shape[:2], default, dtype=np.uint8)
    for y in range(raw.shape[0]):
        for x in range(raw.shape[1]):
            key = tuple(int(v) for v in raw[y, x]) if raw.ndim == 3 else int(raw[y, x])
            out[y, x] = table.get(key, default)
    return out


def write_png16(path, rgb16):
    """A minimal, independent 16-bit RGB PNG writer (big-endian samples, filter 0)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_palette_png(path, index, palette):
    image = Image.frombytes("P", (index.shape[1], index.shape[0]), np.ascontiguousarray(index, np.uint8).tobytes())
    flat = np.zeros((256, 3), np.uint8)
    flat[: len(palette)] = palette
    image.putpalette(flat.ravel().tolist())
    image.save(path)


def random_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def check_example(ds, i, image, expected):
    ex = ds[i]
    assert ex["image"].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(ex["image"]), image)
    assert ex["label"].mode == "L"
    label = np.asarray(ex["label"])
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, expected)


def test_class_names_and_palette():
    assert CLASS_NAMES[0] == "road" and CLASS_NAMES[-1] == "bicycle" and len(CLASS_NAMES) == 19
    assert CLASS_NAMES[6] == "traffic light" and CLASS_NAMES[16] == "train"
    assert {c: i for i, c in enumerate(CITYSCAPES_PALETTE)} == SPEC_GTAV_COLORS


# ---- GTAV ------------------------------------------------------------------------------------------


@pytest.fixture
def gtav_palette_sample():
    rng = np.random.default_rng(0)
    h, w = 24, 40
    index = rng.integers(0, 40, (h, w)).astype(np.uint8)  # 0..33 Cityscapes ids + 6 extra colours
    palette = list(CITYSCAPES_ID_COLORS) + [(153, 153, 154), (128, 64, 129), (1, 2, 3), (255, 255, 255), (0, 0, 141), (70, 70, 71)]
    rgb = np.asarray(palette, np.uint8)[index]
    return index, palette, rgb, random_image(rng, h, w)


def test_gtav_presplit_palette_labels(tmp_path, gtav_palette_sample):
    index, palette, rgb, image = gtav_palette_sample
    for split in ("train", "valid"):
        (tmp_path / "images" / split / "01").mkdir(parents=True)
        (tmp_path / "labels" / split / "01").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "images/train/01/00001.png")
    write_palette_png(tmp_path / "labels/train/01/00001.png", index, palette)
    Image.fromarray(image[::-1]).save(tmp_path / "images/valid/01/00002.png")
    write_palette_png(tmp_path / "labels/valid/01/00002.png", index[::-1], palette)

    expected = expected_from(SPEC_GTAV_COLORS, rgb)
    # polegroup (id 18) has pole's colour in the palette -> pole under the colour rule
    assert (expected[index == 18] == 5).all() and (expected[index == 34] == 255).all()
    ds = load_benchmark("gtav", tmp_path, "train")
    assert len(ds) == 1 and ds[0]["name"] == "01/00001"
    check_example(ds, 0, image, expected)
    val = load_benchmark("gtav", tmp_path, "val")  # "val" reads the folder "valid"
    check_example(val, 0, image[::-1], expected[::-1])


def test_gtav_rgb_labels_and_flat_layout_with_split_list(tmp_path):
    rng = np.random.default_rng(1)
    h, w = 20, 30
    colors = list(SPEC_GTAV_COLORS) + [(153, 153, 154), (0, 0, 0), (12, 200, 7), (128, 64, 127)]
    rgb = np.asarray(colors, np.uint8)[rng.integers(0, len(colors), (h, w))]
    rgb[0, :5] = rng.integers(0, 256, (5, 3))  # arbitrary colours
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "split_data").mkdir()
    images = {}
    for name in ("00003", "00007", "00010"):
        images[name] = random_image(rng, h, w)
        Image.fromarray(images[name]).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(rgb).save(tmp_path / "labels" / f"{name}.png")  # RGB label PNG
    (tmp_path / "split_data/gtav_split_train.txt").write_text("00003.png\n00010.png\n")
    (tmp_path / "split_data/gtav_split_val.txt").write_text("00007.png\n")
    ds = load_benchmark("gtav", tmp_path, "train")
    assert list(ds.with_format(None)["name"]) == ["00003", "00010"]
    expected = expected_from(SPEC_GTAV_COLORS, rgb)
    check_example(ds, 1, images["00010"], expected)
    assert len(load_benchmark("gtav", tmp_path, "val")) == 1


def test_gtav_flat_layout_with_official_split_mat_drops_the_16_ids(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    label = np.zeros((8, 8, 3), np.uint8)
    for i in (12159, 12160, 15188, 19993, 19994, 20000):
        Image.fromarray(random_image(rng, 8, 8)).save(tmp_path / "images" / f"{i:05d}.png")
        Image.fromarray(label).save(tmp_path / "labels" / f"{i:05d}.png")
    savemat(tmp_path / "split.mat", {"trainIds": np.array([[12159, 12160, 15188, 19993, 19994]]).T,
                                     "valIds": np.array([[20000]]), "testIds": np.array([[1]])})  # fmt: skip
    ds = load_benchmark("gtav", tmp_path, "train")
    assert list(ds.with_format(None)["name"]) == ["12159", "19994"]
    assert list(load_benchmark("gtav", tmp_path, "val").with_format(None)["name"]) == ["20000"]


# ---- Cityscapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
def test_cityscapes_label_ids(tmp_path, nested):
    rng = np.random.default_rng(3)
    h, w = 16, 32
    ids = rng.integers(0, 36, (h, w)).astype(np.uint8)
    ids[0, :4] = (255, 34, 200, 1)
    image = random_image(rng, h, w)
    img_root = tmp_path / ("leftImg8bit_trainvaltest/leftImg8bit" if nested else "leftImg8bit")
    gt_root = tmp_path / ("gtFine_trainvaltest/gtFine" if nested else "gtFine")
    for split in ("train", "val", "test"):
        (img_root / split / "ulm").mkdir(parents=True)
        (gt_root / split / "ulm").mkdir(parents=True)
        Image.fromarray(image).save(img_root / split / "ulm" / "ulm_000000_000019_leftImg8bit.png")
        Image.fromarray(ids).save(gt_root / split / "ulm" / "ulm_000000_000019_gtFine_labelIds.png")
        # the other gtFine files must be ignored
        Image.fromarray(ids).save(gt_root / split / "ulm" / "ulm_000000_000019_gtFine_color.png")
        Image.fromarray(ids).save(gt_root / split / "ulm" / "ulm_000000_000019_gtFine_instanceIds.png")
    expected = expected_from(SPEC_CITYSCAPES, ids)
    ds = load_benchmark("cityscapes", tmp_path, "train")
    assert len(ds) == 1 and ds[0]["name"] == "ulm/ulm_000000_000019"
    check_example(ds, 0, image, expected)
    test = load_benchmark("cityscapes", tmp_path, "test")
    assert test[0]["label"] is None and test[0]["label_path"] is None
    both = load_benchmarks("cityscapes", tmp_path, ("train", "val"))
    assert set(both) == {"train", "val"}
    check_example(both["val"], 0, image, expected)


# ---- BDD-100K --------------------------------------------------------------------------------------


def test_bdd100k_both_label_namings(tmp_path):
    rng = np.random.default_rng(4)
    h, w = 18, 32
    for split in ("train", "val", "test"):
        (tmp_path / "images" / split).mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    (tmp_path / "labels/val").mkdir(parents=True)
    labels = {}
    for split, stem, label_name in (
        ("train", "0a0a0b1a-7c39d841", "0a0a0b1a-7c39d841_train_id.png"),
        ("train", "0a0c3694-4cc8b0e3", "0a0c3694-4cc8b0e3.png"),
        ("val", "7d2f7975-e0c1c5a7", "7d2f7975-e0c1c5a7_train_id.png"),
    ):
        Image.fromarray(random_image(rng, h, w)).save(tmp_path / "images" / split / f"{stem}.jpg", quality=95)
        values = np.r_[np.arange(19), 255, 19, 100, 254]
        labels[stem] = values[rng.integers(0, len(values), (h, w))].astype(np.uint8)
        Image.fromarray(labels[stem]).save(tmp_path / "labels" / split / label_name)
    Image.fromarray(random_image(rng, h, w)).save(tmp_path / "images/test/cabc30fc-e7726578.jpg")
    table = {i: i for i in range(19)}
    ds = load_benchmark("bdd100k", tmp_path, "train")
    assert list(ds.with_format(None)["name"]) == ["0a0a0b1a-7c39d841", "0a0c3694-4cc8b0e3"]
    for i, stem in enumerate(["0a0a0b1a-7c39d841", "0a0c3694-4cc8b0e3"]):
        ex = ds[i]
        assert ex["image"].mode == "RGB" and ex["image"].size == (w, h)
        np.testing.assert_array_equal(np.asarray(ex["label"]), expected_from(table, labels[stem]))
    assert len(load_benchmark("bdd100k", tmp_path, "val")) == 1
    test = load_benchmark("bdd100k", tmp_path, "test")
    assert len(test) == 1 and test[0]["label"] is None


# ---- Mapillary -------------------------------------------------------------------------------------


def mapillary_config(n=66):
    return {"labels": [{"name": MAPILLARY_V12_NAMES[i] if i < 66 else f"extra{i}", "color": [i, i, i],
                        "readable": str(i), "instances": False, "evaluate": True} for i in range(n)]}  # fmt: skip


def test_mapillary_v12_index_pngs(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "config.json").write_text(json.dumps(mapillary_config()))
    for folder in ("training", "validation"):
        (tmp_path / folder / "images").mkdir(parents=True)
        (tmp_path / folder / "labels").mkdir(parents=True)
    h, w = 20, 16  # portrait, as many Mapillary images are
    index = rng.integers(0, 66, (h, w)).astype(np.uint8)
    image = random_image(rng, h, w)
    palette = [(i * 3 % 256, i * 7 % 256, i * 11 % 256) for i in range(66)]
    Image.fromarray(image).save(tmp_path / "training/images/AbCdEfGhIjKlMnOpQrStUv.jpg", quality=95)
    write_palette_png(tmp_path / "training/labels/AbCdEfGhIjKlMnOpQrStUv.png", index, palette)
    Image.fromarray(image).save(tmp_path / "validation/images/zz.jpg")
    Image.fromarray(index).save(tmp_path / "validation/labels/zz.png")  # also as a plain 8-bit PNG
    (tmp_path / "training/images/.DS_Store").write_bytes(b"junk")
    expected = expected_from(SPEC_MAPILLARY, index)
    ds = load_benchmark("mapillary", tmp_path, "train")
    assert len(ds) == 1
    np.testing.assert_array_equal(np.asarray(ds[0]["label"]), expected)
    np.testing.assert_array_equal(np.asarray(load_benchmark("mapillary", tmp_path, "val")[0]["label"]), expected)


def test_mapillary_newer_download_layout(tmp_path):
    (tmp_path / "config_v1.2.json").write_text(json.dumps(mapillary_config()))
    (tmp_path / "validation/images").mkdir(parents=True)
    (tmp_path / "validation/v1.2/labels").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "validation/images/a.jpg")
    Image.fromarray(np.full((4, 4), 55, np.uint8)).save(tmp_path / "validation/v1.2/labels/a.png")
    assert (np.asarray(load_benchmark("mapillary", tmp_path, "val")[0]["label"]) == 13).all()


# ---- Synthia ---------------------------------------------------------------------------------------


def test_synthia_16bit_labels(tmp_path):
    rng = np.random.default_rng(6)
    h, w = 12, 20
    ids = rng.integers(0, 23, (h, w)).astype(np.uint16)
    rgb16 = np.stack([ids, rng.integers(0, 60000, (h, w)).astype(np.uint16), np.zeros((h, w), np.uint16)], -1)
    image = random_image(rng, h, w)
    for split in ("train", "val"):
        (tmp_path / "RGB" / split).mkdir(parents=True)
        (tmp_path / "GT/LABELS" / split).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "RGB" / split / "0000042.png")
        write_png16(tmp_path / "GT/LABELS" / split / "0000042.png", rgb16)
    (tmp_path / "GT/COLOR").mkdir()
    label_path = tmp_path / "GT/LABELS/train/0000042.png"
    # the pitfall this guards against: PIL keeps only the high byte, so every class id reads as 0
    assert (np.asarray(Image.open(label_path).convert("RGB"))[..., 0] == 0).all()
    expected = expected_from(SPEC_SYNTHIA, ids)
    ds = load_benchmark("synthia", tmp_path, "train")
    check_example(ds, 0, image, expected)
    assert set(np.unique(expected)) >= {0, 2, 10, 255}
    check_example(load_benchmark("synthia", tmp_path, "val"), 0, image, expected)


def test_synthia_flat_layout_with_split_lists(tmp_path):
    (tmp_path / "RGB").mkdir()
    (tmp_path / "GT/LABELS").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "RGB" / f"{i:07d}.png")
        write_png16(tmp_path / "GT/LABELS" / f"{i:07d}.png", np.full((4, 6, 3), 8, np.uint16))
    (tmp_path / "synthia_split_train.txt").write_text("0000000.png\n0000002.png\n")
    (tmp_path / "synthia_split_val.txt").write_text("0000001.png\n")
    ds = load_benchmark("synthia", tmp_path, "train")
    assert list(ds.with_format(None)["name"]) == ["0000000", "0000002"]
    assert (np.asarray(ds[1]["label"]) == 13).all()


def test_dataset_holds_paths_not_pixels(tmp_path):
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "labels/val").mkdir(parents=True)
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "images/val/x.jpg")
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "labels/val/x.png")
    ds = load_benchmark("bdd100k", tmp_path, "val")
    assert set(ds.column_names) == {"image_path", "label_path", "name", "width", "height"}
    assert ds.data.nbytes < 2000
    assert (ds[0]["width"], ds[0]["height"]) == (400, 300)

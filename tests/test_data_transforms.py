"""docs/method.md §5.3 / §6 / §7.4 transforms: equal to a naive full-resize-pad-crop, aligned, seeded."""

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter1d

from srha_hf.data import CenterCropPad, RandomScaleCrop, ResizeHeight, TrainTransform, build_eval_transform
from srha_hf.data.seeding import sample_rng
from srha_hf.data.transforms import gaussian_blur, nearest_indices


class FixedRNG:
    """Stands in for numpy's Generator with chosen draws (uniform -> value, integers -> low end)."""

    def __init__(self, scale, pick="low"):
        self.scale, self.pick = scale, pick

    def uniform(self, lo, hi):
        return self.scale

    def integers(self, lo, hi):
        return lo if self.pick == "low" else hi - 1


def naive_scale_crop(image, label, params, crop, centroid=None):
    """The reference's order of operations: resize everything, pad, crop (docs/method.md §5.3 step 2)."""
    sw, sh = params["size"]
    px, py = params["pad"]
    x1, y1 = params["origin"]
    img = np.asarray(image.resize((sw, sh), Image.BICUBIC))
    lab = np.asarray(Image.fromarray(label).resize((sw, sh), Image.NEAREST))
    img = np.pad(img, ((py, py), (px, px), (0, 0)), constant_values=0)
    lab = np.pad(lab, ((py, py), (px, px)), constant_values=255)
    return img[y1 : y1 + crop, x1 : x1 + crop], lab[y1 : y1 + crop, x1 : x1 + crop]


def test_nearest_indices_match_pil():
    rng = np.random.default_rng(0)
    for _ in range(200):
        src = int(rng.integers(2, 3000))
        dst = max(1, int(src * rng.uniform(0.3, 2.2)))
        line = Image.fromarray(np.arange(src, dtype=np.int32)[None].repeat(2, 0))
        np.testing.assert_array_equal(nearest_indices(src, dst), np.asarray(line.resize((dst, 2), Image.NEAREST))[0])


@pytest.mark.parametrize("seed", range(12))
def test_scale_crop_equals_full_resize_pad_crop(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    label = rng.integers(0, 19, (h, w)).astype(np.uint8)
    crop = 48
    t = RandomScaleCrop(crop_size=crop, scale_range=(0.5, 2.0), exact_resize=True)
    centroid = None if seed % 3 == 0 else (int(rng.integers(0, w)), int(rng.integers(0, h)))
    params = t.draw(w, h, np.random.default_rng(seed + 100), centroid)
    got_img, got_lab = t.apply(image, label, params)
    want_img, want_lab = naive_scale_crop(image, label, params, crop)
    np.testing.assert_array_equal(got_img, want_img)
    np.testing.assert_array_equal(got_lab, want_lab)
    # the fast path resamples only the crop window: same label, image within PIL rounding
    fast_img, fast_lab = RandomScaleCrop(crop_size=crop).apply(image, label, params)
    np.testing.assert_array_equal(fast_lab, want_lab)
    assert fast_img.shape == want_img.shape


@pytest.mark.parametrize("seed", range(6))
def test_fast_scale_crop_on_smooth_landscape_images_is_within_rounding(seed):
    rng = np.random.default_rng(seed)
    h = int(rng.integers(40, 120))
    w = int(h * rng.uniform(1.3, 2.0))
    image = Image.fromarray(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
    label = np.zeros((h, w), np.uint8)
    params = RandomScaleCrop(64).draw(w, h, rng)
    fast, _ = RandomScaleCrop(64).apply(image, label, params)
    want, _ = naive_scale_crop(image, label, params, 64)
    diff = np.abs(fast.astype(int) - want)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.02


def test_appendix_b_padding_examples():
    t = RandomScaleCrop(768)
    p = t.draw(1914, 1052, FixedRNG(0.5))
    assert p["size"] == (957, 526) and p["pad"] == (0, 122) and 526 + 2 * 122 == 770
    p = t.draw(2048, 1024, FixedRNG(0.5))
    assert p["size"] == (1024, 512) and p["pad"] == (0, 129)
    p = t.draw(2048, 1024, FixedRNG(2.0), centroid=(100, 1000))
    assert p["origin"] == (0, 2000 - 768)  # x clamped to 0; y from randint(cy - 768, cy)


def test_centroid_crop_contains_the_centroid_and_d4_switch():
    rng = np.random.default_rng(1)
    t = RandomScaleCrop(64, (1.0, 2.0))
    for _ in range(200):
        w, h = int(rng.integers(64, 200)), int(rng.integers(64, 200))
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p = t.draw(w, h, rng, c)
        s = p["scale"]
        cx, cy = int(c[0] * s), int(c[1] * s)
        x1, y1 = p["origin"]
        assert x1 <= cx <= x1 + 64 and y1 <= cy <= y1 + 64
    # with padding the faithful crop ignores the pad offset (D4); the switch adds it
    # (padded height 30 + 2 * 18 = 66, so the crop origin is clamped to [0, 2])
    faithful = RandomScaleCrop(64, (1.0, 1.0)).draw(100, 30, FixedRNG(1.0, pick="high"), (50, 0))
    shifted = RandomScaleCrop(64, (1.0, 1.0), shift_centroid_by_padding=True).draw(100, 30, FixedRNG(1.0, pick="high"), (50, 0))
    assert faithful["pad"] == (0, 18) and faithful["origin"][1] == 0 and shifted["origin"][1] == 2


def block_scene(h=96, w=128, block=16, seed=0):
    """Image = a colour per label block, so image and label encode each other."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 19, (h // block, w // block)).astype(np.uint8)
    label = np.kron(blocks, np.ones((block, block), np.uint8))
    colors = (np.arange(19)[:, None] * np.array([13, 47, 101]) % 256).astype(np.uint8)
    return Image.fromarray(colors[label]), label, colors


@pytest.mark.parametrize("index", range(6))
def test_train_transform_keeps_image_and_label_aligned(index):
    image, label, colors = block_scene(h=96, w=144, block=24, seed=index)
    t = TrainTransform(crop_size=64, color_jitter=False, gaussian_blur=False)
    img, lab = t(image, label, sample_rng(304, 0, index))
    assert img.shape == (64, 64, 3) and lab.shape == (64, 64) and img.dtype == lab.dtype == np.uint8
    # interior pixels (label constant in a 7x7 window, away from the crop border) must show their
    # label's colour exactly (the bicubic kernel reaches at most 2 output pixels at scale >= 0.5)
    padded = np.pad(lab.astype(int), 3, constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (7, 7))
    interior = (windows.min(axis=(2, 3)) == windows.max(axis=(2, 3))) & (lab != 255)
    assert interior.sum() > 150
    np.testing.assert_array_equal(img[interior], colors[lab[interior]])
    assert (img[lab == 255] == 0).all()  # padding: image 0, label 255


def test_flip_is_joint_and_happens_about_half_the_time():
    image, label, colors = block_scene()
    t = TrainTransform(crop_size=64, scale_range=(1.0, 1.0), color_jitter=False, gaussian_blur=False)
    flips = 0
    for i in range(40):
        rng = sample_rng(0, 0, i)
        params = t.scale_crop.draw(128, 96, sample_rng(0, 0, i))
        unflipped_img, unflipped_lab = t.scale_crop.apply(image, label, params)
        img, lab = t(image, label, rng)
        if np.array_equal(lab, unflipped_lab[:, ::-1]) and not np.array_equal(lab, unflipped_lab):
            flips += 1
            np.testing.assert_array_equal(img, unflipped_img[:, ::-1])
        else:
            np.testing.assert_array_equal(lab, unflipped_lab)
            np.testing.assert_array_equal(img, unflipped_img)
    assert 10 <= flips <= 30


def test_gaussian_blur_matches_per_channel_reference():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    for sigma in (0.15, 0.7, 1.3):
        expected = np.empty_like(image)
        for ch in range(3):  # skimage gaussian on [0, 1] floats, per channel, then x255 truncated
            x = image[..., ch] / 255.0
            x = gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=4.0)
            x = gaussian_filter1d(x, sigma, axis=1, mode="nearest", truncate=4.0)
            expected[..., ch] = (x * 255).astype(np.uint8)
        got = gaussian_blur(image, sigma)
        assert np.abs(got.astype(int) - expected).max() <= 1
        assert (got == expected).mean() > 0.99
    flat = np.full((8, 8, 3), 200, np.uint8)
    assert np.abs(gaussian_blur(flat, 1.0, "round").astype(int) - 200).max() == 0


def test_draws_are_a_pure_function_of_seed_epoch_index():
    image, label, _ = block_scene()
    t = TrainTransform(crop_size=48)
    a = t(image, label, sample_rng(304, 3, 7))
    b = t(image, label, sample_rng(304, 3, 7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    others = [t(image, label, sample_rng(*k)) for k in ((304, 3, 8), (304, 4, 7), (305, 3, 7))]
    assert all(not np.array_equal(a[0], o[0]) for o in others)


def test_jitter_applied_with_p_half_and_blur_always():
    image, label, _ = block_scene()
    base = TrainTransform(crop_size=48, color_jitter=False, gaussian_blur=False)
    jitter_only = TrainTransform(crop_size=48, gaussian_blur=False)
    changed = 0
    for i in range(40):
        a, _ = base(image, label, sample_rng(1, 0, i))
        b, _ = jitter_only(image, label, sample_rng(1, 0, i))
        changed += not np.array_equal(a, b)
    assert 10 <= changed <= 30
    blurred = TrainTransform(crop_size=48, color_jitter=False)
    assert all(
        not np.array_equal(base(image, label, sample_rng(1, 0, i))[0], blurred(image, label, sample_rng(1, 0, i))[0])
        for i in range(10)
    )


def test_to_tensors_normalises_with_imagenet_stats():
    t = TrainTransform(crop_size=8)
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0] = 255
    pixels, labels = t.to_tensors(img, np.full((8, 8), 255, np.uint8))
    assert pixels.dtype.is_floating_point and pixels.shape == (3, 8, 8) and labels.dtype.is_signed
    assert abs(pixels[0, 0, 0].item() - (1 - 0.485) / 0.229) < 1e-5
    assert abs(pixels[1, 0, 0].item() + 0.456 / 0.224) < 1e-5
    assert labels.max().item() == 255


# ---- evaluation resizing ------------------------------------------------------------------------


def test_mapillary_faithful_portrait_crop_d3():
    h, w, size = 16, 10, 16
    image = np.arange(1, w + 1, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    label = np.tile(np.arange(1, w + 1, dtype=np.uint8), (h, 1))
    out_img, out_lab = CenterCropPad(size, "faithful")(Image.fromarray(image), label)
    out_img, out_lab = np.asarray(out_img), np.asarray(out_lab)
    # p = 6 on both sides, x1 = round(-3) = -3: 9 black/road columns, then image columns 0..6
    assert (out_lab[:, :9] == 0).all() and (out_img[:, :9] == 0).all()
    np.testing.assert_array_equal(out_lab[0, 9:], np.arange(1, 8))
    np.testing.assert_array_equal(out_img[0, 9:, 0], np.arange(1, 8))
    out_img, out_lab = CenterCropPad(size, "corrected")(Image.fromarray(image), label)
    np.testing.assert_array_equal(np.asarray(out_lab)[0], [255] * 3 + list(range(1, 11)) + [255] * 3)
    # landscape: plain centre crop with Python's round-half-even offset round(2.5) = 2
    wide = np.tile(np.arange(21, dtype=np.uint8), (16, 1))
    _, lab = CenterCropPad(16, "faithful")(Image.fromarray(np.stack([wide] * 3, -1)), wide)
    np.testing.assert_array_equal(np.asarray(lab)[0], np.arange(2, 18))


def test_eval_transforms_per_dataset():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    label = rng.integers(0, 19, (30, 20)).astype(np.uint8)
    m = build_eval_transform("mapillary", mapillary_size=24)
    img, lab = m(image, label)
    assert img.size == (24, 24) and lab.size == (24, 24)
    resized_w = int(20 / 30 * 24)
    assert ResizeHeight(24)(image, label)[0].size == (resized_w, 24)
    corrected = build_eval_transform("mapillary", mapillary_size=24, mapillary_crop="corrected")(image, label)[1]
    assert (np.asarray(corrected) == 255).any() and not (np.asarray(lab) == 255).any()
    g_img, g_lab = build_eval_transform("gtav")(image, label)
    assert g_img.size == (1914, 1052) and g_lab.size == (1914, 1052)
    assert set(np.unique(np.asarray(g_lab))) <= set(np.unique(label))
    for name in ("cityscapes", "bdd100k", "synthia"):
        i2, l2 = build_eval_transform(name)(image, label)
        np.testing.assert_array_equal(np.asarray(l2), label)
        np.testing.assert_array_equal(np.asarray(i2), np.asarray(image))
    with pytest.raises(ValueError, match="mapillary_crop must be 'faithful' or 'corrected'"):
        build_eval_transform("mapillary", mapillary_crop="fixed")(image, label)

"""The libspng fast path of `srha_hf.data.decoding` returns PIL's pixels on every format it takes, leaves
palette PNGs (their indices) and every other format to PIL, and falls back to PIL's errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from srha_hf.data import decoding as D
from srha_hf.data import labels as L
from srha_hf.data.errors import UnreadableFileError
from srha_hf.data.synthetic import CITYSCAPES_ID_COLORS

H, W = 37, 53  # odd sizes: row padding and strides differ from a square power of two


def _rng():
    return np.random.default_rng(7)


def _ids():
    ids = _rng().integers(0, 34, (H, W)).astype(np.uint8)
    ids[0, :5] = [0, 1, 2, 3, 255]  # unlabeled ids and a value outside the table
    return ids


@pytest.fixture
def files(tmp_path):
    """One file per format: {name: (path, PIL's pixels or indices)}."""
    rng = _rng()
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[:10] = rgb[:1]  # flat rows, so that every PNG row filter is exercised
    ids = _ids()
    colours = np.asarray(CITYSCAPES_ID_COLORS, dtype=np.uint8)
    label_rgb = colours[np.minimum(ids, 33)]
    label_rgb[1, 1] = (1, 2, 3)  # a colour that maps to no class
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:34] = colours  # ids 0..4 share black: only the indices tell them apart
    out = {}

    def save(name, image, **options):
        path = tmp_path / f"{name}.png"
        image.save(path, **options)
        opened = Image.open(path)
        out[name] = (str(path), np.asarray(opened if opened.mode in ("P", "L", "I;16") else opened.convert("RGB")))

    save("rgb_level1", Image.fromarray(rgb), compress_level=1)
    save("rgb_level9", Image.fromarray(rgb), compress_level=9)
    save("rgb_trns", Image.fromarray(rgb), transparency=(1, 2, 3))
    save("gtav_rgb_label", Image.fromarray(label_rgb))
    pal = Image.frombytes("P", (W, H), ids.tobytes())
    pal.putpalette(palette.ravel().tolist())
    save("palette_label", pal)
    save("grey_label", Image.fromarray(ids))
    save("grey_trns", Image.fromarray(ids), transparency=3)
    save("rgba", Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (H, W), dtype=np.uint8)])))
    save("grey16", Image.fromarray(ids.astype(np.uint16) * 257))
    return out


def _counting(monkeypatch):
    """Counts the calls that reach libspng (requires pyspng)."""
    spng = pytest.importorskip("pyspng")
    calls = []

    class Counting:
        @staticmethod
        def load(data, fmt=None):
            calls.append(fmt)
            return spng.load(data, fmt)

    monkeypatch.setattr(D, "_spng", Counting)
    return calls


def _readers():
    return {
        "image": lambda p: np.asarray(D.read_image(p)),
        "gtav": D.decode_gtav_label,
        "raw_gtav": lambda p: D.read_raw_label("gtav", p),
        "index": lambda p: D._read_index_png(p, "Cityscapes", "labelIds"),
    }


def _expected(files):
    """(reader, file) -> what the PIL-only path returns, computed without srha_hf's readers."""
    lut = L.gtav_rgb_lut()
    ids = _ids()
    expect = {("image", n): files[n][1] for n in ("rgb_level1", "rgb_level9", "rgb_trns", "gtav_rgb_label", "rgba")}
    expect[("image", "grey_label")] = np.repeat(files["grey_label"][1][..., None], 3, axis=2)
    expect[("image", "palette_label")] = np.asarray(Image.open(files["palette_label"][0]).convert("RGB"))
    expect[("gtav", "gtav_rgb_label")] = lut[L.pack_rgb(files["gtav_rgb_label"][1])]
    expect[("raw_gtav", "gtav_rgb_label")] = L.pack_rgb(files["gtav_rgb_label"][1])
    palette = np.asarray(CITYSCAPES_ID_COLORS, dtype=np.uint8)
    expect[("gtav", "palette_label")] = np.where(ids < 34, lut[L.pack_rgb(palette[np.minimum(ids, 33)])], lut[0])
    expect[("index", "palette_label")] = ids  # the indices, not the (shared) colours
    expect[("index", "grey_label")] = ids
    expect[("index", "grey_trns")] = ids
    return expect


def test_fast_path_returns_pils_pixels_on_every_format(files, monkeypatch):
    calls = _counting(monkeypatch)
    readers = _readers()
    for (reader, name), want in _expected(files).items():
        got = readers[reader](files[name][0])
        assert got.dtype == want.dtype and got.shape == want.shape, (reader, name)
        np.testing.assert_array_equal(got, want, err_msg=f"{reader} on {name}")
    # libspng read exactly the 8-bit RGB and grey files; palette, RGBA and 16-bit ones went to PIL
    assert calls.count("RGB") == 6  # 4 RGB files through read_image, the RGB label through two label readers
    assert calls.count("L") == 2  # the grey labels through _read_index_png


def test_pil_only_when_pyspng_is_missing(files, monkeypatch):
    monkeypatch.setattr(D, "_spng", None)
    assert D.png_decoder() == "PIL"
    readers = _readers()
    for (reader, name), want in _expected(files).items():
        np.testing.assert_array_equal(readers[reader](files[name][0]), want, err_msg=f"{reader} on {name}")


def test_formats_the_fast_path_leaves_alone_keep_their_checks(files, monkeypatch):
    _counting(monkeypatch)
    with pytest.raises(UnreadableFileError, match=r"grey16\.png: Cityscapes label has PIL mode 'I;16'"):
        D._read_index_png(files["grey16"][0], "Cityscapes", "labelIds")
    with pytest.raises(UnreadableFileError, match=r"rgb_level1\.png: Cityscapes label has PIL mode 'RGB'"):
        D._read_index_png(files["rgb_level1"][0], "Cityscapes", "labelIds")
    with pytest.raises(UnreadableFileError, match=r"grey16\.png: GTAV label has PIL mode 'I;16'"):
        D.decode_gtav_label(files["grey16"][0])


def test_corrupt_png_falls_back_to_pils_error_naming_the_file(files, tmp_path, monkeypatch):
    _counting(monkeypatch)
    data = open(files["rgb_level1"][0], "rb").read()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])  # header intact (an 8-bit RGB PNG), IDAT cut short
    with pytest.raises(UnreadableFileError, match=r"cannot read .*broken\.png"):
        D.read_image(str(broken))
    with pytest.raises(FileNotFoundError):
        D.read_image(str(tmp_path / "missing.png"))

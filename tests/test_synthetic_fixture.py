"""The shipped synthetic benchmark and the pretraining cache keys, pinned: the files `make_synthetic_benchmark`
writes with its defaults (and with ``random_look=True``, the generic corpus of ``pretrain_data: generic``), and the
stage keys of ``configs/demo.yaml`` and of a ``pretrain_data: generic`` recipe, as they were before the trial
benchmarks moved to ``experiments/`` (recorded 2026-12-08 with the code of that day).

The images are encoded by Pillow and OpenCV (PNG, JPEG), whose encoders may change the bytes between releases
while the pixels stay the same: the byte hashes are checked with the library versions they were recorded
with; the hashes of the drawn arrays (before encoding) are checked everywhere."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import PIL
import pytest

from srha_hf.data import synthetic as S
from srha_hf.training.config import load_config
from srha_hf.training.pretrain import stage_dir, stage_key

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(num_train=2, num_val=1, size=(96, 54), seed=3)
RECORDED_WITH = {"PIL": "12.3.0", "cv2": "5.1.0"}
FILES = {  # sha256 over (relative path, sha256 of the bytes) of every file, in sorted order, the marker included
    "shipped": "b3a5593869217977a204955265903e043ad4858a99757ef9424a2f7a840c9baa",
    "generic": "01b79165d5061ae366d764693e9c71fdaee1b9f3137b54c52df5c3fd1efca28a",
}
ARRAYS = {  # sha256 over the kind map and image of samples train 0, train 1, val 0 of every domain
    "shipped": "eba6d47e15a302cc45b5f7ec4773a1022bfca20768abb079b265a69e8d5e4d33",
    "generic": "bcca5d46f8c4323873c55f5edfc90e62cc137aab3dd9dfee8a0b3b9ea30a14ba",
}
STAGE_KEYS = {
    "demo": ("de768478f6f2", "outputs/synthetic/pretrained/efficientnet_lite0-gtav-0steps-de768478f6f2"),
    "generic": ("120ff9ee13bf", "outputs/synthetic/pretrained/shufflenetv2-gtav-300steps-120ff9ee13bf"),
}
GENERIC_RECIPE = {"pretrain_data": "generic", "pretrain_steps": 300, "backbone_pretrained": None, "backbone": "shufflenetv2"}


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def array_hash(**options) -> str:
    digest = hashlib.sha256()
    for domain in S.DOMAINS:
        for split, index, global_index in (("train", 0, 0), ("train", 1, 1), ("val", 0, 2)):
            width, height = S.domain_size(domain, SMALL["size"], global_index)
            kind, image = S.render_sample(domain, split, index, width, height, SMALL["seed"], **options)
            digest.update(kind.tobytes())
            digest.update(image.tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name, options", [("shipped", {}), ("generic", {"random_look": True})])
def test_the_drawn_samples_are_unchanged(name, options):
    assert array_hash(**options) == ARRAYS[name]


@pytest.mark.parametrize("name, options", [("shipped", {}), ("generic", {"random_look": True})])
def test_the_written_files_are_byte_identical(tmp_path, name, options):
    versions = {"PIL": PIL.__version__, "cv2": cv2.__version__}
    if versions != RECORDED_WITH:
        pytest.skip(f"the file hashes were recorded with {RECORDED_WITH}, this is {versions} (the array hashes still hold)")
    S.make_synthetic_benchmark(tmp_path / name, **SMALL, **options)
    assert tree_hash(tmp_path / name) == FILES[name]
    marker = (tmp_path / name / S.MARKER).read_text()
    expected = '{"version": 3, "num_train": 2, "num_val": 1, "size": [96, 54], "seed": 3, "gtav_layout": "presplit"'
    assert marker == expected + (', "random_look": true}' if options else "}")


@pytest.mark.parametrize("name, overrides", [("demo", {}), ("generic", GENERIC_RECIPE)])
def test_the_pretraining_cache_keys_are_unchanged(name, overrides):
    config = load_config(ROOT / "configs" / "demo.yaml", dict(overrides))
    assert (stage_key(config), str(stage_dir(config))) == STAGE_KEYS[name]


def test_a_hash_sees_one_changed_pixel(tmp_path):
    """The fixture would notice a change: one pixel of one image changes the tree hash."""
    S.make_synthetic_benchmark(tmp_path / "b", **SMALL)
    before = tree_hash(tmp_path / "b")
    path = next((tmp_path / "b" / "gtav").rglob("*.png"))
    image = np.array(PIL.Image.open(path).convert("RGB"))
    image[0, 0] = 255 - image[0, 0]
    PIL.Image.fromarray(image).save(path)
    assert tree_hash(tmp_path / "b") != before

"""scripts/predict.py: masks, colour masks and overlays per image; batches; unreadable inputs."""

import json

import numpy as np
import pytest
import torch
from interop_helpers import load_script, random_image, save_model
from PIL import Image

from srha_hf import SRHAImageProcessor
from srha_hf.data.labels import CITYSCAPES_PALETTE

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = save_model(root / "model", "shufflenetv2")
    images = {
        "a.png": random_image(root / "in" / "a.png", 64, 96, 1),
        "b.jpg": random_image(root / "in" / "b.jpg", 64, 96, 2),  # JPEG: compare with the decoded file below
        "c.png": random_image(root / "in" / "c.png", 72, 80, 3),
        "city/d.png": random_image(root / "in" / "city" / "d.png", 64, 96, 4),
    }
    (root / "in" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then garbage
    jpeg = (root / "in" / "b.jpg").read_bytes()
    (root / "in" / "city" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a JPEG cut in half
    (root / "in" / "README.txt").write_text("not an image")
    return root, model, images


@pytest.fixture(scope="module")
def script():
    return load_script("predict")


def expected_mask(model, path, resize=None):
    image = Image.open(path).convert("RGB")
    kwargs = {"do_resize": True, "size": {"height": resize[0], "width": resize[1]}} if resize else {}
    pixels = SRHAImageProcessor()(image, return_tensors="pt", **kwargs)["pixel_values"]
    with torch.inference_mode():
        logits = model(pixel_values=pixels).logits
    if resize:
        logits = torch.nn.functional.interpolate(logits, size=(image.height, image.width), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].numpy().astype(np.uint8)


def test_folder_with_a_corrupt_file(setup, script, tmp_path, capsys):
    root, model, images = setup
    out = tmp_path / "out"
    argv = ["--model", str(root / "model"), "--input", str(root / "in"), "--output", str(out),
            "--batch_size", "2", "--device", "cpu", "--no_progress"]  # fmt: skip
    assert script.main(argv) == 1  # two inputs failed, the others were predicted
    captured = capsys.readouterr()
    assert "2 image(s) failed" in captured.err
    assert "corrupt.png: not a readable image" in captured.err
    assert "truncated.jpg: cannot decode image" in captured.err and "truncated" in captured.err.split("truncated.jpg:")[1]
    assert "predicted 4 of 6 image(s)" in captured.out
    assert "skipping 1 file(s) without an image extension" in captured.err

    for name in images:
        stem = out / name.rsplit(".", 1)[0]
        mask = np.array(Image.open(f"{stem}_labelTrainIds.png"))
        color = np.array(Image.open(f"{stem}_color.png"))
        over = Image.open(f"{stem}_overlay.png")
        source = root / "in" / name
        h, w = Image.open(source).size[::-1]
        assert mask.shape == (h, w) and mask.dtype == np.uint8 and mask.max() < 19
        assert np.array_equal(mask, expected_mask(model, source))
        assert np.array_equal(color, np.asarray(CITYSCAPES_PALETTE, dtype=np.uint8)[mask])
        assert over.size == (w, h) and over.mode == "RGB"
    assert not list(out.rglob("corrupt*")) and not list(out.rglob("truncated*"))

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_inputs"] == 6 and summary["num_predicted"] == 4 and summary["num_failed"] == 2
    assert sorted(f["path"].rsplit("/", 1)[1] for f in summary["failures"]) == ["corrupt.png", "truncated.jpg"]
    assert {o["input"].split("/in/")[1] for o in summary["outputs"]} == set(images)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # atomic writes left no temporaries


def test_single_image_resize_and_options(setup, script, tmp_path, capsys):
    root, model, _ = setup
    out = tmp_path / "one"
    argv = ["--model", str(root / "model"), "--input", str(root / "in" / "c.png"), "--output", str(out),
            "--resize", "48", "64", "--no_overlay", "--num_workers", "0", "--no_progress"]  # fmt: skip
    assert script.main(argv) == 0
    mask = np.array(Image.open(out / "c_labelTrainIds.png"))
    assert mask.shape == (72, 80)  # mapped back to the image size
    assert np.array_equal(mask, expected_mask(model, root / "in" / "c.png", resize=(48, 64)))
    assert (out / "c_color.png").is_file() and not (out / "c_overlay.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"][0]["model_input_size"] == [48, 64]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--model": "MISSING"}, "model folder"),
        ({"--input": "MISSING"}, "does not exist"),
        ({"--batch_size": "0"}, "--batch_size must be >= 1"),
        ({"--device": "cuda:7" if not torch.cuda.is_available() else "bogus"}, "device"),
    ],
)
def test_bad_arguments_fail_before_any_work(setup, script, tmp_path, capsys, change, message):
    root, _, _ = setup
    args = {"--model": str(root / "model"), "--input": str(root / "in"), "--output": str(tmp_path / "o")}
    for key, value in change.items():
        args[key] = str(tmp_path / "nowhere" / "x") if value == "MISSING" else value
    argv = [x for kv in args.items() for x in kv] + ["--no_progress"]
    assert script.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

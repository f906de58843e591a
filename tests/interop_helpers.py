"""Shared by the predict / pipeline / Hub / ONNX / conversion tests."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def save_model(folder: Path, backbone: str = "shufflenetv2", seed: int = 0, **config):
    from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, SRHAImageProcessor

    torch.manual_seed(seed)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone, **config)).eval()
    model.save_pretrained(folder)
    SRHAImageProcessor().save_pretrained(folder)
    return model


def load_script(name: str):
    """A script of scripts/ as a module (its ``main(argv)`` runs in this process)."""
    spec = importlib.util.spec_from_file_location(f"srha_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_image(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    from PIL import Image

    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_cache_layout(folder: Path, cache: Path, repo_id: str, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Put the files of ``folder`` into ``cache`` exactly as huggingface_hub's downloads lay them out:
    ``models--org--name/blobs/<etag>`` (sha256 for LFS files such as safetensors, the git blob sha1
    otherwise), ``refs/main`` holding the commit hash, and ``snapshots/<commit>/<file>`` as relative
    symlinks to the blobs. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        lfs = file.suffix in (".safetensors", ".bin", ".onnx", ".pth")
        etag = hashlib.sha256(data).hexdigest() if lfs else _git_blob_sha1(data)
        (repo / "blobs" / etag).write_bytes(data)
        os.symlink(os.path.join("..", "..", "blobs", etag), snapshot / file.name)
    return snapshot


def predicted_masks(tmp_path: Path, models: dict, height: int, width: int) -> dict:
    """``scripts/predict.py``'s train-ID mask of one random ``height``x``width`` image per model (name ->
    model folder or ``.onnx`` file), each written under ``tmp_path/<name>``."""
    from PIL import Image

    random_image(tmp_path / "in" / "a.png", height, width, 1)
    predict = load_script("predict")
    masks = {}
    for name, model_arg in models.items():
        argv = ["--model", str(model_arg), "--input", str(tmp_path / "in"), "--output", str(tmp_path / name),
                "--device", "cpu", "--no_progress", "--no_overlay"]  # fmt: skip
        assert predict.main(argv) == 0
        masks[name] = np.array(Image.open(tmp_path / name / "a_labelTrainIds.png"))
    return masks


def run_tool(tool: str, argv, capsys) -> tuple:
    """(exit status, stdout, the non-empty stderr lines) of ``srha_hf.cli.<tool>.main(argv)`` in this process;
    a traceback on stderr fails the test."""
    capsys.readouterr()
    try:
        status = importlib.import_module(f"srha_hf.cli.{tool}").main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return status, out, [line for line in err.splitlines() if line.strip()]


def tool_errors(tool: str, argv, capsys) -> tuple:
    """(exit status, the non-empty stderr lines) of :func:`run_tool`."""
    status, _, lines = run_tool(tool, argv, capsys)
    return status, lines


def assert_one_error(status, lines, *names):
    """A failed run that printed exactly one ``error: ...`` line, naming each of ``names``."""
    assert status not in (0, None), (status, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


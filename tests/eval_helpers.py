"""Shared by the evaluation tests and their multi-process worker (run with torchrun)."""

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from srha_hf.data.labels import CITYSCAPES_PALETTE

REPO = Path(__file__).resolve().parents[1]
SYNTH = dict(num_train=1, num_val=5, size=(96, 54), seed=0)  # 5 validation images: an odd split


class PaletteModel(nn.Module):
    """A deterministic stand-in segmenter: each pixel gets the class whose Cityscapes palette colour
    (ImageNet-normalised) is nearest. Purely element-wise, so the prediction of an image does not
    depend on the batch it is in, the process or the thread count. Has a BN child to check modes."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        super().__init__()
        colors = torch.tensor(CITYSCAPES_PALETTE, dtype=torch.float32) / 255.0
        centers = (colors - torch.tensor(mean)) / torch.tensor(std)
        self.register_buffer("centers", centers[None, :, :, None, None])  # (1, 19, 3, 1, 1)
        self.norm = nn.BatchNorm2d(3)
        self.config = SimpleNamespace(num_labels=19, id2label={})

    def forward(self, pixel_values):
        logits = -((pixel_values[:, None] - self.centers) ** 2).sum(dim=2)
        return SimpleNamespace(logits=logits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    for key in list(env):  # never inherit a launcher's rendezvous from the test runner
        if key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") or key.startswith("ACCELERATE_"):
            env.pop(key)
    return env


def torchrun(args, nproc=2, timeout=240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *map(str, args)]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout)


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


def write_model_and_benchmark(root: Path) -> Path:
    """A random MobileNetV2 SRHA model with its image processor under ``root/model`` and the small synthetic
    benchmark (:data:`SYNTH`) under ``root/data``, as the evaluation scripts' tests read them; returns ``root``."""
    from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, SRHAImageProcessor
    from srha_hf.data.synthetic import make_synthetic_benchmark

    make_synthetic_benchmark(root / "data", **SYNTH)
    torch.manual_seed(0)
    model = SRHAForSemanticSegmentation(SRHAConfig(backbone="mobilenetv2"))
    model.save_pretrained(root / "model")
    SRHAImageProcessor().save_pretrained(root / "model")
    return root

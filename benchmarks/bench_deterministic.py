"""The speed cost of the ``deterministic`` training key (cuDNN deterministic kernels, benchmark mode off,
as the reference) against ``deterministic: false`` (cuDNN autotuning), on one full SRHA training step.

The two settings are interleaved step by step in one process (``set_cudnn_determinism`` is what the
trainer calls), after a warm-up of each that lets autotuning finish; the median of each is reported.
On a CPU both settings run the same kernels (the flags are cuDNN's), so the ratio is 1 up to noise:
the number that matters is the GPU one (``benchmarks/gpu_check.sh`` runs this script).

Usage: python -m benchmarks.bench_deterministic [--backbone resnet50] [--crop 768] [--batch 4] [--amp bf16] [--repeats 7]
"""

import argparse
import statistics

import torch

from benchmarks.common import emit, street_labels, time_call
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss
from srha_hf.training.trainer import set_cudnn_determinism


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--crop", type=int, default=None, help="default 768 on CUDA (the recipe), 256 on the CPU")
    parser.add_argument("--batch", type=int, default=None, help="default 4 on CUDA (the recipe), 2 on the CPU")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2, help="steps per setting before timing (autotuning)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["no", "bf16", "fp16"], default="no", help="autocast dtype")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.crop = args.crop or (768 if on_gpu else 256)
    args.batch = args.batch or (4 if on_gpu else 2)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    config = SRHAConfig(backbone=args.backbone)
    student = SRHAForSemanticSegmentation(config).to(device).train()
    teacher = build_teacher(config, student=student, device=device)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    x = torch.randn(args.batch, 3, args.crop, args.crop, generator=gen).to(device)
    labels = street_labels(args.batch, args.crop, gen, block=32).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss, _ = compute_srha_loss(student, teacher, x, labels)
        loss.backward()
        optimizer.step()

    settings = (("deterministic", True), ("autotuned", False))
    for _, deterministic in settings:
        set_cudnn_determinism(deterministic)
        for _ in range(args.warmup):
            time_call(step, 1, warmup=0, sync=sync)
    samples = {name: [] for name, _ in settings}
    for _ in range(args.repeats):
        for name, deterministic in settings:
            set_cudnn_determinism(deterministic)
            samples[name].append(time_call(step, 1, warmup=0, sync=sync))
    set_cudnn_determinism(True)
    times = {name: statistics.median(values) for name, values in samples.items()}
    emit(
        "deterministic_cost",
        {
            "backbone": args.backbone,
            "batch": args.batch,
            "crop": args.crop,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "amp": args.amp,
            **{f"{k}_s": round(v, 4) for k, v in times.items()},
            "deterministic_over_autotuned": round(times["deterministic"] / times["autotuned"], 3),
        },
    )


if __name__ == "__main__":
    main()

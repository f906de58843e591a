"""One SRHA training step (compute_srha_loss + backward + SGD step) against the same step without the
SRHA terms.

Setting of issue 2: ResNet-50 DeepLabV3+, batch 2, crop 256, CPU. Three variants, each timed as the
median of several steps:

* ``srha``: the full objective (student on the SRM-doubled batch, frozen teacher, CE + aux + GA + RA +
  LA + PC).
* ``without_srha_terms``: the same student and teacher forwards, but only CE + aux are back-propagated:
  the ratio ``srha / without_srha_terms`` is the cost of the HAC and PC terms themselves.
* ``plain_deeplab``: DeepLabV3+ alone (no SRM, no teacher) on the B images, for context.

Usage: python -m benchmarks.bench_step [--backbone resnet50] [--crop 256] [--batch 2] [--repeats 3]
"""

import argparse
import statistics

import torch

from benchmarks.common import emit, street_labels, time_call
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss, segmentation_losses


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["no", "bf16", "fp16"], default="no", help="autocast dtype")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    config = SRHAConfig(backbone=args.backbone)
    student = SRHAForSemanticSegmentation(config).to(device).train()
    teacher = build_teacher(config, device=device)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, args.crop, args.crop, generator=gen).to(device)
    labels = street_labels(args.batch, args.crop, gen, block=32).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def srha_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss, _ = compute_srha_loss(student, teacher, x, labels)
        loss.backward()
        optimizer.step()

    def without_terms_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = student(x, labels=labels, output_features=True)
            teacher(x, labels=labels)
            ce, aux = segmentation_losses(out.logits, labels, out.aux_logits)
        (ce + config.aux_weight * aux).backward()
        optimizer.step()

    def plain_step():
        optimizer.zero_grad(set_to_none=True)
        student.config.srm = False
        try:
            with autocast():
                out = student(x, labels=labels)
        finally:
            student.config.srm = True
        out.loss.backward()
        optimizer.step()

    # Interleave the variants so that background load affects them alike; median per variant.
    variants = (("srha", srha_step), ("without_srha_terms", without_terms_step), ("plain_deeplab", plain_step))
    samples = {name: [] for name, _ in variants}
    for name, fn in variants:
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in variants:
            samples[name].append(time_call(fn, 1, warmup=0, sync=sync))
    times = {name: statistics.median(values) for name, values in samples.items()}
    emit(
        "srha_step",
        {
            "backbone": args.backbone,
            "batch": args.batch,
            "crop": args.crop,
            "device": str(device),
            "amp": args.amp,
            **{f"{k}_s": round(v, 3) for k, v in times.items()},
            "srha_over_without_terms": round(times["srha"] / times["without_srha_terms"], 3),
            "srha_over_plain": round(times["srha"] / times["plain_deeplab"], 3),
        },
    )


if __name__ == "__main__":
    main()

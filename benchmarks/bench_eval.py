"""Evaluation throughput per backbone at Cityscapes resolution (1024x2048), through `evaluate_model`.

Writes a small Cityscapes-format set with the synthetic benchmark at 2048x1024 (PNG images and
labelIds), then per backbone (random init: the speed does not depend on the weights) times
`evaluate_model` end to end (PNG decode, label mapping, normalisation, forward, argmax, confusion
matrix) after one warm-up image, plus the forward pass alone. With `--protocols whole slide msflip` it
also times each evaluation protocol (docs/method.md §8.6: slide = 768 crops every 512 px; msflip = scales
0.5-1.75 with flip, the papers' multi-scale protocol) end to end, with its ratio to `whole`. Prints JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from benchmarks.common import emit, time_call
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.data import load_benchmark
from srha_hf.data.synthetic import make_synthetic_benchmark
from srha_hf.evaluation import evaluate_model
from srha_hf.protocols import make_protocol

PROTOCOLS = {
    "whole": make_protocol(),
    "slide": make_protocol("slide", crop_size=768, stride=512),
    "msflip": make_protocol(scales=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75], flip=True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["mobilenetv2", "shufflenetv2", "resnet50", "resnet101"])
    parser.add_argument("--images", type=int, default=2, help="timed images per backbone (after 1 warm-up)")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--data_root", default=None, help="reuse/keep the synthetic data here (default: a temp dir)")
    parser.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOLS), default=["whole"],
                        help="evaluation protocols to time end to end (default: whole)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = None if args.data_root else tempfile.TemporaryDirectory()
    root = args.data_root or tmp.name
    start = time.perf_counter()
    roots = make_synthetic_benchmark(root, num_train=1, num_val=args.images + 1, size=(args.width, args.width * 9 // 16))
    dataset = load_benchmark("cityscapes", roots["cityscapes"], "val")
    data_seconds = time.perf_counter() - start
    width, height = dataset[0]["image"].size
    device = torch.device(args.device)

    results = {"image_size": [height, width], "images": args.images, "device": str(device), "batch_size": args.batch_size,
               "mixed_precision": args.mixed_precision or "no", "synthetic_data_seconds": round(data_seconds, 1)}  # fmt: skip
    for backbone in args.backbones:
        torch.manual_seed(0)
        model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone)).to(device).eval()
        kw = dict(batch_size=args.batch_size, num_workers=args.num_workers, mixed_precision=args.mixed_precision, progress=False)
        evaluate_model(model, {"cityscapes": dataset.select([0])}, **kw)  # warm-up
        timed = dataset.select(range(1, args.images + 1))
        sync = torch.cuda.synchronize if device.type == "cuda" else None
        t0 = time.perf_counter()
        out = evaluate_model(model, {"cityscapes": timed}, **kw)["cityscapes"]
        seconds = time.perf_counter() - t0
        pixels = torch.randn(args.batch_size, 3, height, width, device=device)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision)

        def forward(net=model):  # bound now: the loop deletes `model` before the next backbone
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                net(pixels).logits.argmax(1)

        t_forward = time_call(forward, repeats=max(1, args.images), warmup=1, sync=sync)
        results[backbone] = {
            "images_per_second": round(out["num_images"] / seconds, 3),
            "seconds_per_image": round(seconds / out["num_images"], 2),
            "forward_seconds_per_batch": round(t_forward, 3),
            "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        }
        per_protocol = {}
        for name in args.protocols:
            t0 = time.perf_counter()
            evaluate_model(model, {"cityscapes": timed}, protocol=PROTOCOLS[name], **kw)
            per_protocol[name] = (time.perf_counter() - t0) / args.images
        if per_protocol:
            base = per_protocol.get("whole")
            results[backbone]["protocols"] = {
                name: {"label": PROTOCOLS[name].label(), "seconds_per_image": round(t, 2), "ratio_to_whole": round(t / base, 2) if base else None}
                for name, t in per_protocol.items()
            }
        print(backbone, results[backbone], file=sys.stderr, flush=True)
        del model
    emit("evaluation_throughput", results)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

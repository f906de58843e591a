"""Prediction throughput per backbone at Cityscapes resolution (1024x2048): PyTorch and ONNX Runtime.

Per backbone (random init: the speed does not depend on the weights), batch 1, fp32:

* PyTorch: the predict path of `scripts/predict.py` (`TorchSegmenter.predict`: forward + argmax at the
  image size) on normalised pixels;
* ONNX Runtime (CPU): the model exported by `srha_hf.onnx_export.export_onnx` (traced at 128x160,
  dynamic height/width), the same predict path (`OnnxSegmenter.predict`); the logits are compared
  with PyTorch's at 1024x2048 (max abs diff, and the largest logit for scale).

One warm-up image each, then the two runtimes alternate image by image (median of --repeats).
* optionally (`--end_to_end`) `predict_files` on a few 2048x1024 PNG files: decode, processor,
  forward, argmax, and the three PNG outputs (mask, colour, overlay) written.

Prints JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import emit, time_call
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.inference import OnnxSegmenter, TorchSegmenter, collect_inputs, predict_files


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["mobilenetv2", "shufflenetv2", "resnet50", "resnet101"])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2, help="timed images per backbone and runtime (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch and onnxruntime intra-op threads")
    parser.add_argument("--no_onnx", action="store_true")
    parser.add_argument("--end_to_end", type=int, default=0, metavar="N",
                        help="also time predict_files on N PNG images per backbone (PyTorch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w = args.height, args.width
    pixels = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    results = {"image_size": [h, w], "batch_size": 1, "dtype": "float32", "threads": args.threads, "repeats": args.repeats}
    tmp = tempfile.TemporaryDirectory()
    if args.end_to_end:
        from PIL import Image

        rng = np.random.default_rng(0)
        os.makedirs(os.path.join(tmp.name, "in"))
        for i in range(args.end_to_end + 1):  # one more for the warm-up
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            image.save(os.path.join(tmp.name, "in", f"{i:03d}.png"))
    for backbone in args.backbones:
        torch.manual_seed(0)
        model = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone)).eval()
        entry = {"parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
        segmenter = TorchSegmenter(model, device="cpu")
        runners = {"pytorch": lambda: segmenter.predict(pixels, (h, w))}
        if not args.no_onnx:
            from srha_hf.onnx_export import export_onnx

            path = os.path.join(tmp.name, f"{backbone}.onnx")
            report = export_onnx(model, path, check=False)
            onnx_segmenter = OnnxSegmenter(path, threads=args.threads)
            runners["onnxruntime"] = lambda: onnx_segmenter.predict(pixels, (h, w))
        # warm up each, then alternate the runtimes image by image: a shared machine's load changes
        # over minutes, and alternating keeps the comparison fair
        times = {name: [] for name in runners}
        for name, run in runners.items():
            time_call(run, repeats=1, warmup=0)
        for _ in range(args.repeats):
            for name, run in runners.items():
                times[name].append(time_call(run, repeats=1, warmup=0))
        for name, samples in times.items():
            seconds = statistics.median(samples)
            entry[name] = {"images_per_second": round(1 / seconds, 3), "seconds_per_image": round(seconds, 2),
                           "samples": [round(t, 2) for t in samples]}  # fmt: skip
        if not args.no_onnx:
            with torch.inference_mode():
                reference = model(pixel_values=pixels).logits
                diff = float((onnx_segmenter.logits(pixels) - reference).abs().max())
            entry["onnxruntime"].update(export_seconds=report["export_seconds"], file_mb=report["size_mb"],
                                        max_abs_diff_vs_pytorch=diff, max_abs_logit=float(reference.abs().max()))  # fmt: skip
            entry["onnxruntime_speedup"] = round(entry["pytorch"]["seconds_per_image"] / entry["onnxruntime"]["seconds_per_image"], 2)
            del onnx_segmenter, runners
            os.remove(path)
        print(backbone, {k: v for k, v in entry.items()}, file=sys.stderr, flush=True)

        if args.end_to_end:
            collected = collect_inputs(os.path.join(tmp.name, "in"))
            out = os.path.join(tmp.name, "out", backbone)
            predict_files(segmenter, collected.items[:1], out, progress=False)  # warm-up
            start = time.perf_counter()
            summary = predict_files(segmenter, collected.items[1:], out, progress=False)
            seconds = (time.perf_counter() - start) / max(1, summary["num_predicted"])
            entry["end_to_end_pytorch"] = {"images_per_second": round(1 / seconds, 3), "seconds_per_image": round(seconds, 2),
                                           "images": summary["num_predicted"]}  # fmt: skip
            print(backbone, "end to end", entry["end_to_end_pytorch"], file=sys.stderr, flush=True)
        results[backbone] = entry
    tmp.cleanup()
    emit("predict", results)


if __name__ == "__main__":
    main()

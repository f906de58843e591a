"""Evaluation throughput on a CUDA device at 1024x2048 (JSON lines; without CUDA it says so and stops).

Images/s per backbone, fp32 and bf16 autocast: `evaluate_model` end to end (DataLoader workers decode the
PNGs) and the forward pass alone. Its exactness against the CPU is tested in tests/test_gpu.py (pytest -m gpu).

Usage: python -m benchmarks.bench_eval_gpu (writes $OUT/bench_eval_gpu.jsonl)
"""

import json
import os
import tempfile
import time

import torch

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation
from srha_hf.data import load_benchmark
from srha_hf.data.synthetic import make_synthetic_benchmark
from srha_hf.evaluation import evaluate_model

OUT = os.environ.get("OUT", ".")
LINES = []


def report(name, **values):
    line = json.dumps({"check": name, **values})
    LINES.append(line)
    print(line, flush=True)


def main():
    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "eval_gpu", "skipped": "no CUDA device"}))
        return
    cuda = torch.device("cuda")
    report("env", torch=torch.__version__, gpu=torch.cuda.get_device_name(0), cpus=os.cpu_count())
    tmp = tempfile.mkdtemp()
    start = time.perf_counter()
    big = make_synthetic_benchmark(os.path.join(tmp, "big"), num_train=1, num_val=9, size=(2048, 1152))
    city = load_benchmark("cityscapes", big["cityscapes"], "val")
    report("big_data", seconds=round(time.perf_counter() - start, 1), images=len(city), size=list(city[0]["image"].size))
    for backbone in ("mobilenetv2", "shufflenetv2", "resnet50", "resnet101"):
        torch.manual_seed(0)
        net = SRHAForSemanticSegmentation(SRHAConfig(backbone=backbone)).to(cuda).eval()
        for mp, bs in (("no", 1), ("bf16", 1), ("bf16", 4)):
            kw = dict(mixed_precision=mp, batch_size=bs, num_workers=8, progress=False)
            evaluate_model(net, {"cityscapes": city.select([0])}, **kw)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = evaluate_model(net, {"cityscapes": city.select(range(1, len(city)))}, **kw)["cityscapes"]
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            x = torch.randn(bs, 3, 1024, 2048, device=cuda)
            dtype = torch.bfloat16 if mp == "bf16" else torch.float32
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=mp == "bf16"):
                for _ in range(2):
                    net(x).logits.argmax(1)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                for _ in range(5):
                    net(x).logits.argmax(1)
                torch.cuda.synchronize()
            forward = (time.perf_counter() - t1) / 5
            report("throughput", backbone=backbone, mixed_precision=mp, batch_size=bs,
                   end_to_end_images_per_s=round(out["num_images"] / seconds, 2),
                   forward_images_per_s=round(bs / forward, 2), forward_ms_per_batch=round(1e3 * forward, 1))  # fmt: skip
        del net
        torch.cuda.empty_cache()
    with open(os.path.join(OUT, "bench_eval_gpu.jsonl"), "w") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()

"""Evaluation on a CUDA device: exactness against the CPU and throughput at 1024x2048 (JSON lines).

1. `evaluate_model` with a deterministic per-pixel model on all five synthetic benchmarks: CUDA
   confusion matrices equal the CPU ones (the confusion matrix is built on the device).
2. The metric fed CUDA tensors equals the metric fed the same maps as numpy arrays.
3. An SRHA model (MobileNetV2) on CUDA in fp32 and bf16 against the CPU fp32 result.
4. Images/s per backbone at 1024x2048, fp32 and bf16 autocast: `evaluate_model` end to end
   (DataLoader workers decode the PNGs) and the forward pass alone.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from eval_helpers import PaletteModel  # noqa: E402

from srha_hf import SRHAConfig, SRHAForSemanticSegmentation  # noqa: E402
from srha_hf.data import load_benchmark  # noqa: E402
from srha_hf.data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes  # noqa: E402
from srha_hf.evaluation import evaluate_model  # noqa: E402
from srha_hf.metrics import load_metric  # noqa: E402

OUT = os.environ.get("OUT", ".")
LINES = []


def report(name, **values):
    line = json.dumps({"check": name, **values})
    LINES.append(line)
    print(line, flush=True)


def main():
    dry = os.environ.get("EVAL_CHECK_DRY") == "1"  # CPU dry run of the checks (no timings)
    if not torch.cuda.is_available() and not dry:
        sys.exit("no CUDA device")
    cuda = torch.device("cpu" if dry else "cuda")
    report("env", torch=torch.__version__, gpu=None if dry else torch.cuda.get_device_name(0), cpus=os.cpu_count())
    tmp = tempfile.mkdtemp()

    small = (96, 54)
    roots = make_synthetic_benchmark(os.path.join(tmp, "small"), num_train=1, num_val=5, size=small)
    sets = {name: load_benchmark(name, roots[name], "val") for name in roots}
    sizes = synthetic_eval_sizes(small)
    model = PaletteModel()
    cpu = evaluate_model(model, sets, eval_sizes=sizes, progress=False)
    gpu = evaluate_model(model.to(cuda), sets, eval_sizes=sizes, progress=False, batch_size=2)
    report("palette_cuda_equals_cpu", equal={k: cpu[k]["confusion_matrix"] == gpu[k]["confusion_matrix"] for k in cpu},
           miou={k: gpu[k]["mean_iou"] for k in gpu})  # fmt: skip

    rng = np.random.default_rng(0)
    refs = rng.integers(0, 19, size=(4, 512, 1024)).astype(np.uint8)
    refs[:, :40] = 255
    preds = rng.integers(0, 19, size=(4, 512, 1024))
    a, b = load_metric(num_labels=19, ignore_index=255), load_metric(num_labels=19, ignore_index=255)
    a.add_batch(predictions=list(preds), references=list(refs))
    b.add_batch(predictions=torch.from_numpy(preds).to(cuda), references=torch.from_numpy(refs).to(cuda))
    ra, rb = a.compute(), b.compute()
    report("metric_cuda_equals_numpy", equal=all(np.array_equal(ra[k], rb[k], equal_nan=True) for k in ra))

    torch.manual_seed(0)
    srha = SRHAForSemanticSegmentation(SRHAConfig(backbone="mobilenetv2")).eval()
    ref = evaluate_model(srha, sets, eval_sizes=sizes, progress=False)
    srha.to(cuda)
    for mp in ("no", "bf16"):
        got = evaluate_model(srha, sets, eval_sizes=sizes, progress=False, batch_size=2, mixed_precision=mp)
        same = {k: float(np.minimum(np.array(got[k]["confusion_matrix"]), np.array(ref[k]["confusion_matrix"])).sum()
                         / np.array(ref[k]["confusion_matrix"]).sum()) for k in got}  # fmt: skip
        report("srha_mobilenetv2_cuda_vs_cpu", mixed_precision=mp, confusion_overlap=same, num_images={k: got[k]["num_images"] for k in got},
               miou_cpu={k: ref[k]["mean_iou"] for k in ref}, miou_cuda={k: got[k]["mean_iou"] for k in got})  # fmt: skip

    if dry:
        return
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
    with open(os.path.join(OUT, "gpu_eval_check.jsonl"), "w") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()

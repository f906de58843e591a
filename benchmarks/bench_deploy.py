"""Deployment on CPU: per-image latency of PyTorch eager, torch.compile, ONNX Runtime fp32 and ONNX Runtime
int8 (static, QDQ) side by side, for DeepLabV3+ on EfficientNet-Lite0 and ResNet-50 and for ResNet-50 +
Mask2Former, at 512x1024 and 1024x2048 (docs/inference.md "Deploy").

Per model (random init: the speed does not depend on the weights), batch 1:

* ``eager``: ``model(pixel_values=x).logits`` under ``torch.inference_mode`` (fp32);
* ``compile``: the same module through ``torch.compile`` (inductor, CPU C++ code; compiled per input size
  during the warm-up, whose time is reported as ``compile_seconds``);
* ``ort_fp32``: the file ``srha_hf.onnx_export.export_onnx`` writes (dynamic height and width), onnxruntime's
  CPUExecutionProvider, all graph optimisations;
* ``ort_int8``: that file quantised by ``srha_hf.quantization.quantize_onnx`` (static, QDQ, per-channel int8
  weights, uint8 activations), calibrated on ``--calibration_images`` random-noise 256x512 PNGs (the ranges
  change the numbers, not the speed; the accuracy of int8 is measured on a trained model, benchmarks/README.md
  "Deployment"). Both files are made once per model (dynamic sizes) and serve every timed size.

After one warm-up call each, the backends take turns call by call (``--repeats`` rounds; median, min and max per
backend), so that a change of load on this shared machine hits them alike. torch and onnxruntime use
``--threads`` intra-op threads, and neither busy-waits between calls (onnxruntime's
``session.intra_op.allow_spinning`` off; run with ``OMP_WAIT_POLICY=PASSIVE`` for torch's OpenMP pool, which
the script sets when it is unset): otherwise one runtime's spinning threads slow the next one down.
Prints JSON (one record per model and size, plus the machine).
"""

from __future__ import annotations

import argparse
import gc
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch's OpenMP pool starts: before `import torch`
import statistics
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import emit
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation

MODELS = {
    "lite0_deeplabv3plus": dict(backbone="efficientnet_lite0"),
    "r50_deeplabv3plus": dict(backbone="resnet50"),
    "r50_mask2former": dict(backbone="resnet50", decode_head="mask2former"),
}
BACKENDS = ("eager", "compile", "ort_fp32", "ort_int8")


def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no busy-waiting between calls: a spinning pool would steal the cores from the backend timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _noise_images(folder: str, count: int, size) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


def _onnx_files(model, tmp: str, args) -> dict:
    """{"ort_fp32": path, "ort_int8": path} with the seconds each took to make, for the asked backends."""
    from srha_hf.onnx_export import export_onnx
    from srha_hf.quantization import quantize_onnx

    files = {}
    if not {"ort_fp32", "ort_int8"} & set(args.backends):
        return files
    fp32 = os.path.join(tmp, "fp32.onnx")
    start = time.perf_counter()
    export_onnx(model, fp32, check=False)
    files["ort_fp32"] = (fp32, time.perf_counter() - start)
    if "ort_int8" in args.backends:
        start = time.perf_counter()
        images = _noise_images(os.path.join(tmp, "calibration"), args.calibration_images, (256, 512))
        int8 = os.path.join(tmp, "int8.onnx")
        quantize_onnx(fp32, int8, mode="static", calibration=images, num_calibration=None, progress=False)
        files["ort_int8"] = (int8, time.perf_counter() - start)
    return files


def _runners(model, size, files: dict, args) -> dict:
    """name -> (callable, preparation seconds): each callable runs one batch-1 forward at ``size``."""
    x = torch.randn(1, 3, size[0], size[1], generator=torch.Generator().manual_seed(0))
    feed = x.numpy()
    runners = {}

    def eager():
        with torch.inference_mode():
            return model(pixel_values=x).logits

    runners["eager"] = (eager, 0.0)
    if "compile" in args.backends:
        compiled = torch.compile(model)

        def run_compiled():
            with torch.inference_mode():
                return compiled(pixel_values=x).logits

        runners["compile"] = (run_compiled, None)  # compiled in the warm-up call
    for key in ("ort_fp32", "ort_int8"):
        if key in args.backends:
            path, seconds = files[key]
            session = _session(path, args.threads)
            runners[key] = (lambda session=session: session.run(None, {"pixel_values": feed})[0], seconds)
    return runners


def bench(name: str, size, model, files: dict, args) -> dict:
    record = {"model": name, "image_size": list(size), "batch_size": 1, "backends": {}}
    runners = _runners(model, size, files, args)
    samples = {key: [] for key in runners}
    for key, (fn, prepare) in runners.items():  # warm-up (compilation for torch.compile)
        start = time.perf_counter()
        fn()
        record["backends"][key] = {"warmup_seconds": round(time.perf_counter() - start, 2)}
        if prepare is not None:
            record["backends"][key]["prepare_seconds"] = round(prepare, 1)
    for _ in range(args.repeats):
        for key, (fn, _) in runners.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    eager = statistics.median(samples["eager"])
    for key, times in samples.items():
        median = statistics.median(times)
        record["backends"][key].update(seconds=round(median, 3), min=round(min(times), 3), max=round(max(times), 3),
                                       images_per_second=round(1 / median, 3), speedup_vs_eager=round(eager / median, 2))  # fmt: skip
    del runners
    torch._dynamo.reset()  # drop compiled graphs before the next size
    gc.collect()
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"], help="HEIGHTxWIDTH")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="intra-op threads of torch and onnxruntime")
    parser.add_argument("--calibration_images", type=int, default=4, help="noise images that calibrate the int8 model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    records = []
    for name in args.models:
        torch.manual_seed(0)
        model = SRHAForSemanticSegmentation(SRHAConfig(backbone_pretrained=None, **MODELS[name])).eval()
        with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
            files = _onnx_files(model, tmp, args)
            for size in sizes:
                records.append(bench(name, size, model, files, args))
                print(f"# {name} {size}: " + ", ".join(f"{k} {v['seconds']} s" for k, v in records[-1]["backends"].items()), flush=True)
        del model
        gc.collect()
    import onnxruntime

    emit("deploy", {"threads": args.threads, "repeats": args.repeats, "onnxruntime": onnxruntime.__version__,
                    "load_average": [round(v, 2) for v in os.getloadavg()], "records": records})  # fmt: skip


if __name__ == "__main__":
    main()

"""Export a segmentation model's eval forward to ONNX (dynamic batch, height and width), checked against
PyTorch with onnxruntime on the CPU.

    python scripts/export_onnx.py --model outputs/r50_gtav/model --output r50_gtav.onnx
    python scripts/export_onnx.py --model org/srha-r50-gtav --output model.onnx --check_size 512 1024

Input `pixel_values` (B, 3, H, W), ImageNet-normalised as the model's image processor does; output
`logits` (B, num_labels, H, W). The file is traced at --trace_size, then run by onnxruntime at each
--check_size (default 96x136 and, batch 2, 150x212) and compared with PyTorch: if the logits differ by
--atol or more, nothing is written and the exit status is 1. The labels, config and image-processor
settings go into the ONNX metadata; `scripts/predict.py --model file.onnx` uses them. Both heads export:
DeepLabV3+ and Mask2Former (its deformable attention as GridSample, opset >= 16). Needs the `onnx` and
`onnxruntime` packages.

int8 (ONNX Runtime's quantisation; docs/inference.md "Deploy"):

    python scripts/export_onnx.py --model outputs/demo/model --output demo_int8.onnx --quantize int8 \
        --calibration outputs/synthetic/gtav/images/train --num_calibration 100
    python scripts/export_onnx.py --model demo_fp32.onnx --output demo_int8.onnx --quantize int8 --calibration DIR

With --calibration, static quantisation (QDQ; int8 weights per channel, uint8 activations calibrated on the
first --num_calibration images of DIR, preprocessed as scripts/predict.py does); without it, dynamic
quantisation (no images; usually slow for convolutions on CPU). The float model is exported and checked
first (or read from --model when that is an .onnx file); the int8 file's argmax maps are then compared
with the float ones (on calibration images when there are some) and its 'quantization' metadata records
how it was made. The report prints as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub repo id")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--revision", default=None, help="Hub revision of --model")
    p.add_argument("--cache_dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--trace_size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=[128, 160],
                   help="input size used to trace the model (default 128 160)")
    p.add_argument("--check_size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), action="append", default=None,
                   help="input size for the onnxruntime check (repeatable; default 96 136 and 150 212)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed |onnxruntime - PyTorch| (default 1e-4)")
    p.add_argument("--no_check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--threads", type=int, default=None, help="torch / onnxruntime intra-op threads")
    q = p.add_argument_group("int8 quantisation")
    q.add_argument("--quantize", choices=["int8"], default=None, help="write an int8 model (ONNX Runtime quantisation)")
    q.add_argument("--quantize_mode", choices=["auto", "static", "dynamic"], default="auto",
                   help="static (needs --calibration) or dynamic; auto: static when --calibration is given")
    q.add_argument("--calibration", default=None, metavar="DIR", help="folder of calibration images (e.g. the source's train images)")
    q.add_argument("--num_calibration", type=int, default=100, help="calibration images used, the first N in sorted order (default 100)")
    q.add_argument("--calibration_method", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="how activation ranges are calibrated (default minmax)")
    q.add_argument("--calibration_max_size", type=int, default=None,
                   help="resize calibration images so the longer side is at most this (as predict --max_size)")
    q.add_argument("--no_progress", action="store_true", help="no calibration progress bar")
    q.add_argument("--no_per_channel", action="store_true", help="one weight scale per tensor instead of per output channel")
    return p


def check_quantize_args(args) -> None:
    """A UsageError for quantisation flags that do not fit together."""
    if args.quantize is None:
        if args.calibration is not None or args.quantize_mode != "auto":
            raise UsageError("--calibration and --quantize_mode need --quantize int8")
        return
    args.quantize_mode = args.quantize_mode if args.quantize_mode != "auto" else ("static" if args.calibration else "dynamic")
    if args.quantize_mode == "static" and args.calibration is None:
        raise UsageError("--quantize_mode static needs --calibration DIR (images to calibrate the activation ranges)")
    if args.num_calibration < 1:
        raise UsageError(f"--num_calibration must be >= 1, got {args.num_calibration}")
    if args.calibration is not None:  # the folder and the images' headers, before anything is exported
        from srha_hf.quantization import calibration_images

        args.calibration_paths = calibration_images(args.calibration, args.num_calibration)


def quantize(args, float_path: str) -> dict:
    """Quantise ``float_path`` into --output and compare the two; the report of the int8 part."""
    from srha_hf.quantization import compare_quantized, quantize_onnx

    if args.quantize_mode == "dynamic":
        print("note: dynamic quantisation runs convolutions as ConvInteger, often slower than float on CPU; "
              "give --calibration DIR for static quantisation", file=sys.stderr)  # fmt: skip
    record = quantize_onnx(float_path, args.output, mode=args.quantize_mode, calibration=args.calibration,
                           num_calibration=args.num_calibration, calibration_method=args.calibration_method,
                           per_channel=not args.no_per_channel, max_size=args.calibration_max_size,
                           progress=not args.no_progress)  # fmt: skip
    images = args.calibration_paths[:4] if args.calibration else []
    sizes = [tuple(s) for s in args.check_size] if args.check_size else [(96, 136)]
    compared = compare_quantized(float_path, args.output, images=images, sizes=sizes, max_size=args.calibration_max_size,
                                 threads=args.threads)  # fmt: skip
    return {"output": args.output, "quantization": record, "size_mb": round(os.path.getsize(args.output) / 2**20, 1),
            "against_float": compared}  # fmt: skip


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import onnx  # noqa: F401
        if not args.no_check or args.quantize:
            import onnxruntime  # noqa: F401
    except ImportError as exc:
        return fail(f"{exc.name} is not installed: pip install \"srha_hf[onnx]\" (onnx and onnxruntime)")
    if not args.output.lower().endswith(".onnx"):
        return fail(f"--output must name a .onnx file, got {args.output}")
    from srha_hf.quantization import CalibrationError

    try:
        check_quantize_args(args)
        check_output(args.output, "--output")
        if args.model.lower().endswith(".onnx"):
            if not args.quantize:
                raise UsageError(f"--model {args.model} is already an ONNX file (expected a model folder or Hub repo id; "
                                 "add --quantize int8 to quantise it)")  # fmt: skip
            if not Path(args.model).is_file():
                raise UsageError(f"--model {args.model}: ONNX file not found")
            report = {"float": {"model": args.model}}
            report.update(quantize(args, args.model))
        elif args.quantize:
            with tempfile.TemporaryDirectory(prefix="srha-export-") as folder:
                float_path = os.path.join(folder, "float.onnx")
                report = {"float": export(args, float_path)}
                report.update(quantize(args, float_path))
        else:
            report = export(args, args.output)
    except (UsageError, CalibrationError) as exc:
        return fail(exc)
    except ExportFailure as exc:
        return fail(exc, status=1)
    print(json.dumps(report, indent=2))
    return 0


class ExportFailure(RuntimeError):
    """The float export did not pass its check against PyTorch (exit status 1)."""


def export(args, output: str) -> dict:
    """Export --model in float32 to ``output``, checked against PyTorch; the export report."""
    import torch

    from srha_hf.inference import ModelLoadError, load_segmenter
    from srha_hf.onnx_export import DEFAULT_CHECK_SIZES, ExportCheckError, export_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        segmenter = load_segmenter(args.model, device="cpu", revision=args.revision, cache_dir=args.cache_dir)
    except ModelLoadError as exc:
        raise UsageError(str(exc)) from None
    sizes = [tuple(s) for s in args.check_size] if args.check_size else list(DEFAULT_CHECK_SIZES)
    try:
        return export_onnx(segmenter.model, output, processor=segmenter.processor, opset=args.opset,
                           trace_size=tuple(args.trace_size), check=not args.no_check, check_sizes=sizes,
                           atol=args.atol, source=args.model, threads=args.threads)  # fmt: skip
    except ExportCheckError as exc:
        raise ExportFailure(f"{exc}; {args.output} was not written") from None
    except ValueError as exc:
        raise UsageError(f"--opset {args.opset}: {exc}") from None

if __name__ == "__main__":
    sys.exit(main())

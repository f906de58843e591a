"""Export a segmentation model's eval forward to ONNX (dynamic batch, height and width), checked against
PyTorch with onnxruntime on the CPU.

    python scripts/export_onnx.py --model outputs/r50_gtav/model --output r50_gtav.onnx
    python scripts/export_onnx.py --model org/srha-r50-gtav --output model.onnx --check_size 512 1024

Input `pixel_values` (B, 3, H, W), ImageNet-normalised as the model's image processor does; output
`logits` (B, num_labels, H, W). The file is traced at --trace_size, then run by onnxruntime at each
--check_size (default 96x136 and, batch 2, 150x212) and compared with PyTorch: if the logits differ by
--atol or more, nothing is written and the exit status is 1. The labels, config and image-processor
settings go into the ONNX metadata; `scripts/predict.py --model file.onnx` uses them. Needs the
`onnx` and `onnxruntime` packages.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import onnx  # noqa: F401
        if not args.no_check:
            import onnxruntime  # noqa: F401
    except ImportError as exc:
        return fail(f"{exc.name} is not installed: pip install onnx onnxruntime")
    import torch

    from srha_hf.inference import ModelLoadError, load_segmenter
    from srha_hf.onnx_export import DEFAULT_CHECK_SIZES, ExportCheckError, export_onnx

    if not args.output.lower().endswith(".onnx"):
        return fail(f"--output must name a .onnx file, got {args.output}")
    if args.model.lower().endswith(".onnx"):
        return fail(f"--model {args.model} is already an ONNX file (expected a model folder or Hub repo id)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        check_output(args.output, "--output")
        segmenter = load_segmenter(args.model, device="cpu", revision=args.revision, cache_dir=args.cache_dir)
    except (ModelLoadError, UsageError) as exc:
        return fail(exc)
    sizes = [tuple(s) for s in args.check_size] if args.check_size else list(DEFAULT_CHECK_SIZES)
    try:
        report = export_onnx(segmenter.model, args.output, processor=segmenter.processor, opset=args.opset,
                             trace_size=tuple(args.trace_size), check=not args.no_check, check_sizes=sizes,
                             atol=args.atol, source=args.model, threads=args.threads)  # fmt: skip
    except ExportCheckError as exc:
        return fail(f"{exc}; {args.output} was not written", status=1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Segment images with a trained model: per image a train-ID mask, a colour mask and an overlay.

    python scripts/predict.py --model outputs/r50_gtav/model --input street.png --output predictions/
    python scripts/predict.py --model org/srha-r50-gtav --input /data/frames --output out/ --batch_size 4
    python scripts/predict.py --model model.onnx --input frames/ --output out/ --max_size 1024
    python scripts/predict.py --model org/srha-r50-gtav --input leftImg8bit/test --output results/ --format cityscapes

--model is a folder written by save_pretrained, a Hub repo id (with HF_HUB_OFFLINE=1: from the Hugging
Face cache only) or an .onnx file from scripts/export_onnx.py (run with onnxruntime). --input is an
image or a folder (searched recursively; the outputs keep its sub-folders). Per image, in --output:
`<name>_labelTrainIds.png` (8-bit grey, the class index per pixel), `<name>_color.png` (Cityscapes
palette) and `<name>_overlay.png`, all at the image's own size, plus `summary.json` for the run.
With --format cityscapes only one PNG per image is written: Cityscapes label IDs (road 7, ..., bicycle 33),
named `<city>_<seq>_<frame>_labelIds.png` for `<city>_<seq>_<frame>_leftImg8bit.png`, what the official
cityscapesScripts evaluation and the Cityscapes benchmark server read.
Unreadable images are reported and skipped; the exit status is 0 when every image was predicted,
1 when some failed, 2 for a bad argument or model.
"""

from __future__ import annotations

import argparse
import sys

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model folder, Hub repo id (org/name) or .onnx file")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the masks, colour masks, overlays and summary.json")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of --model")
    p.add_argument("--cache_dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch_size", type=int, default=1, help="images per forward (equal-sized images are batched)")
    p.add_argument("--resize", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=None,
                   help="resize every image to HEIGHT x WIDTH for the model (masks are mapped back to the image size)")
    p.add_argument("--max_size", type=int, default=None,
                   help="downscale images whose longer side exceeds this (aspect kept; masks mapped back)")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="autocast (PyTorch models)")
    p.add_argument("--format", dest="prediction_format", choices=["trainid", "cityscapes"], default="trainid",
                   help="mask format: trainid (class index per pixel, default) or cityscapes (Cityscapes label IDs, "
                   "for the official evaluation / benchmark server; no colour masks or overlays)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the colour mask (default 0.5)")
    p.add_argument("--no_color", action="store_true", help="do not write the colour masks")
    p.add_argument("--no_overlay", action="store_true", help="do not write the overlays")
    p.add_argument("--num_workers", type=int, default=2, help="threads that decode inputs and encode outputs (0: none)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for torch / onnxruntime")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _check_args(args) -> None:
    from srha_hf.inference import check_image_options

    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    check_image_options(args.resize, args.max_size, args.alpha)
    if args.num_workers < 0:
        raise ValueError(f"--num_workers must be >= 0, got {args.num_workers}")
    check_output(args.output, "--output", folder=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from srha_hf.inference import IMAGE_EXTENSIONS, ModelLoadError, collect_inputs, load_segmenter, predict_files
    from srha_hf.prediction_files import check_prediction_format

    try:
        _check_args(args)
        collected = collect_inputs(args.input, args.output)
        if not collected.items:
            raise ValueError(f"no images under {args.input} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        if args.threads:
            torch.set_num_threads(args.threads)
        segmenter = load_segmenter(args.model, device=args.device, revision=args.revision, cache_dir=args.cache_dir,
                                   mixed_precision=args.mixed_precision, threads=args.threads)  # fmt: skip
        check_prediction_format(args.prediction_format, segmenter.num_labels)
    except (ValueError, FileNotFoundError, ModelLoadError, UsageError) as exc:
        return fail(exc)
    if collected.skipped:
        print(f"skipping {len(collected.skipped)} file(s) without an image extension", file=sys.stderr)
    print(f"{len(collected.items)} image(s), model {args.model} ({segmenter.backend} on {segmenter.device})", file=sys.stderr)

    summary = predict_files(
        segmenter,
        collected.items,
        args.output,
        batch_size=args.batch_size,
        resize=args.resize,
        max_size=args.max_size,
        alpha=args.alpha,
        write_color=not args.no_color,
        write_overlay=not args.no_overlay,
        num_workers=args.num_workers,
        progress=not args.no_progress,
        prediction_format=args.prediction_format,
    )
    rate = summary["images_per_second"]
    print(f"predicted {summary['num_predicted']} of {summary['num_inputs']} image(s) in {summary['seconds']:.1f} s"
          + (f" ({rate:.3f} images/s)" if rate else "") + f"; outputs in {args.output}")  # fmt: skip
    if summary["failures"]:
        print(f"{summary['num_failed']} image(s) failed:", file=sys.stderr)
        for failure in summary["failures"]:
            print(f"  {failure['path']}: {failure['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

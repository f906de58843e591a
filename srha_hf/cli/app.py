"""A browser demo: upload an image (or pick an example) and see the model's segmentation.

    python scripts/app.py --model outputs/demo/model
    python scripts/app.py --model outputs/r50_gtav/model --model org/srha-r50-gtav --port 7861
    python scripts/app.py --model model.onnx --examples my_frames/ --max_size 1024

Serves a Gradio page on http://127.0.0.1:7860 by default (--host, --port; --share asks Gradio for a
public link, off by default) and prints its URL. The page shows the overlay of the colour mask on the
image, the colour mask (Cityscapes palette), a legend of the classes present and their pixel shares;
a dropdown picks the model when several are given. The prediction is the one of scripts/predict.py
(srha_hf.inference.predict_image: same loading, preprocessing, --resize / --max_size). --model takes
what predict.py takes: a save_pretrained folder, a Hub repo id (with HF_HUB_OFFLINE=1: from the cache)
or an .onnx file. Examples: the images of --examples DIR, else the first validation image of each
synthetic benchmark domain, drawn on first use into --examples_cache (default
$SRHA_HF_CACHE/app_examples, i.e. ~/.cache/srha_hf/app_examples). Needs the [app] extra:
pip install -e '.[app]'. Exit status 2 for a bad argument or model.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from srha_hf.cli import ArgumentParser, fail


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", action="append", required=True,
                   help="model folder, Hub repo id (org/name) or .onnx file; repeat for a model dropdown")  # fmt: skip
    p.add_argument("--examples", default=None, help="folder of example images (default: synthetic benchmark images)")
    p.add_argument("--examples_cache", default=None, help="folder for the generated synthetic examples")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (off by default)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of every Hub --model")
    p.add_argument("--cache_dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N or mps")
    p.add_argument("--resize", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=None,
                   help="resize every image to HEIGHT x WIDTH for the model (masks are mapped back to the image size)")
    p.add_argument("--max_size", type=int, default=None,
                   help="downscale images whose longer side exceeds this (aspect kept; masks mapped back)")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="autocast (PyTorch models)")
    p.add_argument("--alpha", type=float, default=0.5, help="initial overlay opacity of the colour mask (default 0.5)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for torch / onnxruntime")
    return p


def _check_args(args) -> None:
    from srha_hf.inference import check_image_options

    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    check_image_options(args.resize, args.max_size, args.alpha)
    repeated = sorted({m for m in args.model if args.model.count(m) > 1})
    if repeated:
        raise ValueError(f"--model {repeated[0]} is given more than once")


def _load(args):
    import torch

    from srha_hf.browser_demo import SegmentationDemo, example_images
    from srha_hf.inference import load_segmenter

    if args.threads:
        torch.set_num_threads(args.threads)
    segmenters = {}
    for name in args.model:
        segmenters[name] = load_segmenter(name, device=args.device, revision=args.revision, cache_dir=args.cache_dir,
                                          mixed_precision=args.mixed_precision, threads=args.threads)  # fmt: skip
        print(f"model {name}: {segmenters[name].backend} on {segmenters[name].device}", file=sys.stderr)
    demo = SegmentationDemo(segmenters, alpha=args.alpha, resize=args.resize, max_size=args.max_size)
    return demo, example_images(args.examples, args.examples_cache)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (read when gradio is imported)
    try:
        import gradio  # noqa: F401 - fail early, before the models load
    except ImportError:
        return fail("the browser demo needs gradio: pip install -e '.[app]'")
    from srha_hf.browser_demo import build_interface, launch
    from srha_hf.inference import ModelLoadError

    try:
        _check_args(args)
        demo, examples = _load(args)
    except (ValueError, FileNotFoundError, ModelLoadError) as exc:
        return fail(exc)
    page = build_interface(demo, examples)
    try:
        local_url, share_url = launch(page, host=args.host, port=args.port, share=args.share)
    except OSError as exc:
        return fail(exc)
    print(f"browser demo running on {local_url}" + (f" (public link: {share_url})" if share_url else ""), flush=True)
    print("press Ctrl+C to stop", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server like Ctrl+C
    try:
        page.block_thread()
    finally:
        page.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

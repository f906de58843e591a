"""Evaluate a segmentation model on target domains (docs/method.md §6 / §8): mIoU, per-class IoU, plots, JSON.

    python scripts/evaluate.py --model runs/gtav-r50 --dataset cityscapes bdd100k mapillary \
        --data_root /data --split val --output_json results/eval.json

Runs as one process, under `accelerate launch` and under `torchrun --nproc_per_node N` (each process
evaluates a disjoint shard; the confusion matrices are summed, so the numbers equal the
single-process ones for any split size). Per dataset it prints the mIoU and the per-class IoU table
and writes, next to the JSON (or in --output_dir), `<dataset>_per_class_iou.png`,
`<dataset>_confusion_matrix.png`, `<dataset>_per_class_iou.md` and `<dataset>_overlay_<k>.png`.

`--save_predictions DIR` also writes every evaluated image's prediction under `DIR/<dataset>/` (keeping
the image's folders below the benchmark root): train IDs (`--format trainid`, `<name>_labelTrainIds.png`)
or Cityscapes label IDs (`--format cityscapes`, `<city>_<seq>_<frame>_labelIds.png`) for the official
cityscapesScripts evaluation. They are at the size the evaluation compares (the original size for
Cityscapes, BDD-100K and Synthia).

Protocols (docs/method.md §8.6), recorded in the JSON: `--protocol whole` (default, the reference's),
`--protocol slide [--crop_size H W] [--stride H W]` (logits averaged over overlapping crops), and
multi-scale with optional flip, selected by `--scales 0.5 0.75 1.0 1.25 1.5 1.75 [--flip]` or `--flip`
alone. `--class_subset synthia16` (or `synthia13`, or `road,car,...`) also reports the mIoU over those
classes from the same confusion matrix; Synthia datasets always report both Synthia subsets.

Under corruptions (docs/method.md §8.8; `pip install "srha_hf[robustness]"`): `--corruptions all` (the 19
of imagecorruptions; or `cityscapes-c` for the published 16, a family `noise`/`blur`/`weather`/`digital`, or
names `fog,snow`) with `--severities 1 2 3 4 5` (the default) evaluates every dataset clean and under each
corruption × severity, each image corrupted after the evaluation resizing from its own seed
(`--corruption_seed`, default 0), in the DataLoader workers. Per dataset it prints and writes
`<dataset>_corruptions.md` and the heatmap `<dataset>_corruptions.png`; the JSON's `corruptions` holds the
mIoU of every cell, the means per corruption, family and severity, the overall mean and the relative
robustness. `--model_card README.md` writes them into a model card (its robustness section and
`model-index`). A long run resumes: finished cells are kept in `<output_json>.partial.json` until the end.

`--data_root` is either a folder holding one sub-folder per benchmark (`ROOT/cityscapes`, ...; the
layout `make_synthetic_data.py` writes), the benchmark's own root when one dataset is evaluated, or
`NAME=PATH` (repeatable) for each dataset. A missing model or dataset is reported before any work.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model directory (save_pretrained), Hub id, or an .onnx file from srha-export-onnx (fp32 or int8)")
    p.add_argument("--revision", default=None, help="Hub revision of --model")
    p.add_argument("--dataset", required=True, nargs="+", action="extend", metavar="NAME",
                   help="benchmark(s): gtav, cityscapes, bdd100k, mapillary, synthia, acdc; acdc:fog (night, rain, snow) "
                   "evaluates one ACDC condition (repeatable)")
    p.add_argument("--data_root", required=True, action="append", metavar="ROOT|NAME=ROOT",
                   help="folder with one sub-folder per benchmark, the benchmark root, or NAME=PATH (repeatable)")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--output_json", required=True, help="where to write the results JSON")
    p.add_argument("--output_dir", default=None, help="folder for plots, tables and overlays (default: the JSON's folder)")
    p.add_argument("--batch_size", type=int, default=1, help="images per process and forward (default 1)")
    p.add_argument("--num_workers", type=int, default=0, help="DataLoader workers per process")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None,
                   help="autocast for the forward (default: no, fp32 as the reference, unless --mixed_precision is "
                   "given on the accelerate launch line; your accelerate config's default does not apply)")
    p.add_argument("--mapillary_crop", choices=["faithful", "corrected"], default="faithful",
                   help="docs/method.md §9 D3: the reference's buggy centre crop/pad (faithful) or the corrected one")
    p.add_argument("--gtav_size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="GTAV evaluation resize (default 1914 1052)")
    p.add_argument("--mapillary_size", type=int, default=None, help="Mapillary resize height and crop (default 1536)")
    p.add_argument("--synthetic_size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="evaluation sizes scaled for a synthetic benchmark made with this --size")
    p.add_argument("--max_images", type=int, default=None, help="evaluate only the first N images of each dataset")
    p.add_argument("--drop_remainder", action="store_true",
                   help="docs/method.md §9 T3: drop len %% world images like the reference's validation sampler")
    p.add_argument("--save_predictions", default=None, metavar="DIR",
                   help="also write each evaluated image's prediction under DIR/<dataset>/")
    p.add_argument("--format", dest="prediction_format", choices=["trainid", "cityscapes"], default="trainid",
                   help="format of --save_predictions: trainid (default) or cityscapes (label IDs)")
    p.add_argument("--protocol", choices=["whole", "slide", "multiscale"], default=None,
                   help="whole (default: one forward per image, the reference's), slide, or multiscale (set by --scales/--flip)")
    p.add_argument("--scales", type=float, nargs="+", default=None, metavar="S",
                   help="multi-scale: the image resized by each factor, logits averaged at the image size")
    p.add_argument("--flip", action="store_true", help="also average the horizontally mirrored image's logits (multi-scale)")
    p.add_argument("--crop_size", type=int, nargs="+", default=None, metavar="PX", help="slide: crop H [W] (default 768)")
    p.add_argument("--stride", type=int, nargs="+", default=None, metavar="PX", help="slide: stride H [W] (default 512)")
    p.add_argument("--class_subset", action="append", default=[], metavar="NAME|C1,C2,...",
                   help="also report the mIoU over a class subset: synthia16, synthia13 or class names (repeatable)")
    p.add_argument("--corruptions", default=None, metavar="all|cityscapes-c|FAMILY|NAME[,NAME...]",
                   help="also evaluate under common corruptions (docs/method.md §8.8; needs srha_hf[robustness])")
    p.add_argument("--severities", type=int, nargs="+", default=None, metavar="S",
                   help="corruption severities, 1-5 (default with --corruptions: 1 2 3 4 5)")
    p.add_argument("--corruption_seed", type=int, default=0, help="base seed of the per-image corruption seeds (default 0)")
    p.add_argument("--model_card", default=None, metavar="README.md",
                   help="write the corruption results into this model card (created if missing)")
    p.add_argument("--num_overlays", type=int, default=3, help="prediction overlays per dataset (default 3)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is available")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def resolve_roots(names, data_roots) -> dict:
    """Benchmark name -> root folder from the --data_root values."""
    from srha_hf.data.benchmarks import get_spec

    explicit, plain = {}, []
    for value in data_roots:
        key, sep, path = value.partition("=")
        if sep and key and not os.path.exists(value):
            try:
                explicit[get_spec(key).name] = path
            except ValueError as err:
                raise UsageError(f"--data_root {value!r}: {err}") from None
        else:
            plain.append(value)
    if len(plain) > 1:
        raise UsageError(f"--data_root given {len(plain)} plain folders ({', '.join(plain)}); give one, or NAME=PATH each")
    roots = {}
    for name in names:
        kind = get_spec(name.split(":", 1)[0]).name
        if kind in explicit:
            roots[name] = explicit[kind]
        elif plain:
            base = Path(plain[0]).expanduser()
            candidates = [base / kind, base / name.split(":", 1)[0]]
            roots[name] = str(next((c for c in candidates if c.is_dir()), base))
        else:
            raise UsageError(f"no --data_root for dataset {name!r}; pass --data_root ROOT or --data_root {kind}=PATH")
    return roots


def check_model(model: str, revision=None):
    """The model's config, or a UsageError saying why it cannot be loaded."""
    from transformers import AutoConfig

    import srha_hf  # noqa: F401  (registers the SRHA Auto* classes)

    path = Path(model).expanduser()
    if path.suffix.lower() == ".onnx":
        return _onnx_config(path, model)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--model {model}: not a directory (expected a save_pretrained folder with config.json)")
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {model}: no config.json in this directory (expected a save_pretrained folder)")
    elif model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
        raise UsageError(f"--model {model}: directory not found")  # not shaped like a Hub id (name or org/name)
    try:
        return AutoConfig.from_pretrained(str(path) if path.exists() else model, revision=revision)
    except Exception as err:  # noqa: BLE001 - reported as a usage error with the cause
        where = "directory" if path.exists() else "Hub id (not found in the Hugging Face cache or on the Hub)"
        raise UsageError(f"--model {model}: cannot load its config as a {where}: {type(err).__name__}: {err}") from None


def onnx_segmenter(model: str):
    """The ``.onnx`` --model, opened once per run for its config, its image normalisation, the evaluated module
    and the results' record (a session of a large model takes seconds to build)."""
    stat = os.stat(model)
    return _open_onnx(os.path.abspath(model), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _open_onnx(path: str, mtime_ns: int, size: int):
    from srha_hf.segmenters import OnnxSegmenter

    del mtime_ns, size  # part of the cache key only: a rewritten file is opened again
    return OnnxSegmenter(path, device="cpu")


def _onnx_config(path: Path, model: str):
    """The config an exported ONNX file carries in its metadata (srha-export-onnx writes it)."""
    from srha_hf.segmenters import ModelLoadError

    if not path.is_file():
        raise UsageError(f"--model {model}: ONNX file not found")
    try:
        config = onnx_segmenter(model).config()
    except (ModelLoadError, ValueError) as err:
        raise UsageError(f"--model {model}: {err}") from None
    if config is None:
        raise UsageError(f"--model {model}: this ONNX file has no 'config' metadata (export it with srha-export-onnx)")
    return config


def load_datasets(names, roots, split) -> dict:
    from srha_hf.data.benchmarks import BenchmarkError, get_spec, load_benchmark

    datasets = {}
    for name in names:
        if name in datasets:
            raise UsageError(f"--dataset {name} given twice")
        kind = get_spec(name.split(":", 1)[0]).name
        root = roots[name]
        if not Path(root).expanduser().is_dir():
            raise UsageError(f"dataset {name}: root folder not found: {root}")
        label = name.split(":", 1)[1] if ":" in name else None
        conditions = [label] if kind == "acdc" and label else None  # acdc:night: that condition only
        try:
            datasets[name] = load_benchmark(kind, root, split, conditions=conditions)
        except (BenchmarkError, FileNotFoundError, ValueError) as err:
            raise UsageError(f"dataset {name} ({split}) at {root}: {err}") from None
    return datasets


def eval_sizes_from(args) -> dict:
    sizes = {}
    if args.synthetic_size:
        from srha_hf.data.synthetic import synthetic_eval_sizes

        sizes.update(synthetic_eval_sizes(tuple(args.synthetic_size)))
    if args.gtav_size:
        sizes["gtav_size"] = tuple(args.gtav_size)
    if args.mapillary_size:
        sizes["mapillary_size"] = args.mapillary_size
    return sizes


def image_normalisation(model: str, revision=None):
    """(mean, std) of the model's image processor if it has one, else ImageNet's (docs/method.md §6)."""
    from srha_hf.evaluation import IMAGENET_MEAN, IMAGENET_STD

    try:
        from transformers import AutoImageProcessor

        if model.lower().endswith(".onnx"):
            processor = onnx_segmenter(model).processor  # the processor in the file's metadata
        else:
            processor = AutoImageProcessor.from_pretrained(model, revision=revision)
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        if mean is not None and std is not None and len(mean) == 3 and len(std) == 3:
            return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except Exception:  # noqa: BLE001 - no processor saved: the ImageNet normalisation of docs/method.md §5.3
        pass
    return IMAGENET_MEAN, IMAGENET_STD


def load_model(args):
    """The model of --model, loaded as predict and export-onnx load it (srha_hf.segmenters.load_segmenter:
    a damaged config.json or weights file is a UsageError naming it)."""
    from srha_hf.inference import ModelLoadError, load_segmenter

    try:
        if args.model.lower().endswith(".onnx"):
            return onnx_segmenter(args.model).as_module()
        return load_segmenter(args.model, device="cpu", revision=args.revision).model
    except ModelLoadError as err:
        raise UsageError(f"--model: {err}") from None


def check_inputs(args, parser):
    """(model config, roots, datasets, model) once every argument, the output paths, the model and each
    dataset are checked; a UsageError saying what is wrong otherwise."""
    for flag in ("batch_size", "max_images"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1, got {value}")
    if args.num_workers < 0 or args.num_overlays < 0:
        parser.error("--num_workers and --num_overlays must be >= 0")
    from srha_hf.data.benchmarks import get_spec
    from srha_hf.prediction_files import check_prediction_format

    for name in args.dataset:
        try:
            get_spec(name.split(":", 1)[0])
        except ValueError as err:
            raise UsageError(f"--dataset {name}: {err}") from None
    args.eval_protocol = protocol_from(args)
    args.corruption_names, args.severity_levels = corruptions_from(args)
    check_output(args.output_json, "--output_json")
    if args.model_card is not None:
        check_output(args.model_card, "--model_card")
    for flag in ("output_dir", "save_predictions"):
        if getattr(args, flag) is not None:
            check_output(getattr(args, flag), f"--{flag}", folder=True)
    from srha_hf.data.class_subsets import resolve_class_subset

    for subset in args.class_subset:
        try:
            resolve_class_subset(subset)
        except ValueError as err:
            raise UsageError(f"--class_subset {subset}: {err}") from None
    config = check_model(args.model, args.revision)
    if args.save_predictions is not None:
        try:
            check_prediction_format(args.prediction_format, config.num_labels)
        except ValueError as err:
            raise UsageError(f"--format {args.prediction_format}: {err}") from None
    roots = resolve_roots(args.dataset, args.data_root)
    datasets = load_datasets(args.dataset, roots, args.split)
    return config, roots, datasets, load_model(args)


def corruptions_from(args):
    """``(corruption names, severities)`` of the flags (``(None, None)`` without --corruptions), with the
    robustness extra checked; a UsageError naming the flag otherwise."""
    if args.corruptions is None:
        for flag in ("severities", "model_card"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} needs --corruptions (e.g. --corruptions all)")
        return None, None
    from srha_hf.corruptions import MissingExtraError, require_imagecorruptions, resolve_corruptions, resolve_severities

    try:
        names = resolve_corruptions(args.corruptions)
    except ValueError as err:
        raise UsageError(f"--corruptions {args.corruptions}: {err}") from None
    try:
        levels = resolve_severities(args.severities if args.severities is not None else (1, 2, 3, 4, 5))
    except ValueError as err:
        raise UsageError(f"--severities: {err}") from None
    try:
        require_imagecorruptions()
    except MissingExtraError as err:
        raise UsageError(f"--corruptions: {err}") from None
    return names, levels


def protocol_from(args):
    """The :class:`~srha_hf.protocols.EvalProtocol` of the flags, or a UsageError naming the conflict."""
    from srha_hf.protocols import make_protocol

    try:
        return make_protocol(args.protocol, scales=args.scales, flip=args.flip, crop_size=args.crop_size, stride=args.stride)
    except ValueError as err:
        raise UsageError(f"--protocol/--scales/--flip/--crop_size/--stride: {err}") from None


def build_accelerator(args):
    """The Accelerator (fp32 unless --mixed_precision is given here or on the accelerate launch line) and
    where its precision came from."""
    import torch
    from accelerate import Accelerator

    from srha_hf.training.precision import resolve_mixed_precision

    if args.mixed_precision is None:
        mixed_precision, source = resolve_mixed_precision("no")
    else:
        mixed_precision, source = args.mixed_precision, f"{args.mixed_precision} from --mixed_precision"
    # Accelerate only sets up multi-process CPU runs (gloo) when asked for the CPU explicitly.
    return Accelerator(cpu=args.cpu or not torch.cuda.is_available(), mixed_precision=mixed_precision), source


def run_metadata(args, roots, eval_sizes, accelerator) -> dict:
    """What the results JSON records about the run."""
    import torch

    return {
        "model": args.model,
        "revision": args.revision,
        "split": args.split,
        "data_roots": {n: str(Path(r).expanduser().resolve()) for n, r in roots.items()},
        "mapillary_crop": args.mapillary_crop,
        "eval_sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in eval_sizes.items()},
        "mixed_precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "drop_remainder": args.drop_remainder,
        "max_images": args.max_images,
        "save_predictions": args.save_predictions,
        "prediction_format": args.prediction_format if args.save_predictions else None,
        "protocol": args.eval_protocol.describe(),
        "class_subsets": list(args.class_subset),
        "corruptions": args.corruption_names,
        "severities": args.severity_levels,
        "corruption_seed": args.corruption_seed if args.corruption_names else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        **onnx_metadata(args.model),
    }


def onnx_metadata(model: str) -> dict:
    """For an ``.onnx`` --model: the runtime and how the file was quantised (None for a float file)."""
    if not model.lower().endswith(".onnx"):
        return {}
    import onnxruntime

    from srha_hf.quantization import quantization_record

    record = quantization_record(onnx_segmenter(model).metadata)
    return {"backend": "onnxruntime", "onnxruntime": onnxruntime.__version__, "quantization": record}


def evaluate(args, model, roots, datasets, accelerator, precision_source) -> None:
    """Evaluate ``model`` on every dataset; the main process prints the tables and writes the report."""
    from srha_hf.evaluation import evaluate_model
    from srha_hf.evaluation_report import format_corruption_table, format_iou_table, write_evaluation_report
    from srha_hf.training.precision import describe

    model.to(accelerator.device)
    mean, std = image_normalisation(args.model, args.revision)
    eval_sizes = eval_sizes_from(args)
    if accelerator.is_main_process:
        listing = ", ".join(f"{n} ({len(d)} images)" for n, d in datasets.items())
        print(f"evaluating {args.model} ({type(model).__name__}) on {listing} [{args.split}] with "
              f"{accelerator.num_processes} process(es) on {accelerator.device}, precision "
              f"{describe(accelerator.mixed_precision)} ({precision_source}); protocol: {args.eval_protocol.label()}", flush=True)  # fmt: skip
    protocol = dict(mapillary_crop=args.mapillary_crop, eval_sizes=eval_sizes, mixed_precision=accelerator.mixed_precision,
                    image_mean=mean, image_std=std, protocol=args.eval_protocol)  # fmt: skip
    common = dict(accelerator=accelerator, batch_size=args.batch_size, num_workers=args.num_workers, progress=not args.no_progress,
                  max_images=args.max_images, drop_remainder=args.drop_remainder, class_subsets=args.class_subset, **protocol)  # fmt: skip
    corruptions = None
    if args.corruption_names is None:
        results = evaluate_model(model, datasets, save_predictions=args.save_predictions, prediction_format=args.prediction_format, **common)
    else:
        corruptions = evaluate_under_corruptions(args, model, roots, datasets, accelerator, eval_sizes, common)
        results = {name: entry["clean"] for name, entry in corruptions.items()}
    if not accelerator.is_main_process:
        return
    for name, result in results.items():
        print(format_iou_table(name, result), flush=True)
    for name, entry in (corruptions or {}).items():
        print(format_corruption_table(name, entry), flush=True)
    output_dir = args.output_dir or os.path.dirname(os.path.abspath(args.output_json))
    write_evaluation_report(results, output_dir, model=model, datasets=datasets, num_overlays=args.num_overlays,
                            json_path=args.output_json, metadata=run_metadata(args, roots, eval_sizes, accelerator),
                            corruptions=corruptions, **protocol)  # fmt: skip
    if corruptions:
        partial_path(args).unlink(missing_ok=True)
        if args.model_card:
            from srha_hf.hub import write_robustness_card

            print(f"model card: {write_robustness_card(args.model_card, corruptions, split=args.split)}", flush=True)
    summary = ", ".join(f"{n} {100 * r['mean_iou']:.2f}" for n, r in results.items())
    print(f"mIoU: {summary}\nwrote {args.output_json} and plots in {output_dir}", flush=True)
    if args.save_predictions:
        print(f"predictions ({args.prediction_format} format) in {args.save_predictions}", flush=True)


def partial_path(args) -> Path:
    """Where a corruption run keeps its finished cells until the report is written."""
    return Path(args.output_json + ".partial.json")


def run_fingerprint(args, roots, eval_sizes, accelerator) -> dict:
    """What must be equal for a resumed corruption run to reuse finished cells."""
    meta = run_metadata(args, roots, eval_sizes, accelerator)
    for key in ("date", "save_predictions", "prediction_format"):
        meta.pop(key, None)
    return {**meta, "datasets": list(args.dataset), "image_normalisation": image_normalisation(args.model, args.revision)}


def evaluate_under_corruptions(args, model, roots, datasets, accelerator, eval_sizes, common) -> dict:
    """``evaluate_corruptions`` of the flags; finished cells are kept in ``partial_path(args)`` (the main
    process writes it, every process gets its content from the main one) and reused by a rerun with the
    same settings."""
    import json

    from accelerate.utils import broadcast_object_list

    from srha_hf.atomic import json_safe, write_json_atomic
    from srha_hf.evaluation import evaluate_corruptions, evaluate_model

    path, fingerprint = partial_path(args), json_safe(run_fingerprint(args, roots, eval_sizes, accelerator))
    state = {"fingerprint": fingerprint, "clean": None, "cells": {}}
    if accelerator.is_main_process and path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = None
        if stored and stored.get("fingerprint") == fingerprint:
            state = stored
            count = sum(len(by) for by in state["cells"].values())
            print(f"resuming from {path}: {count} finished corruption × severity cells", flush=True)
        else:
            print(f"{path} is from a run with other settings: starting afresh", flush=True)
    if accelerator.num_processes > 1:
        box = [state]
        broadcast_object_list(box, from_process=0)
        state = box[0]

    def save(name, severity, results):
        if name is None:
            state["clean"] = results
        else:
            state["cells"].setdefault(name, {})[str(severity)] = results
        if accelerator.is_main_process:
            write_json_atomic(path, json_safe(state), indent=None)

    if state["clean"] is None and args.save_predictions:  # the clean pass writes the predictions, as without --corruptions
        save(None, None, evaluate_model(model, datasets, save_predictions=args.save_predictions,
                                        prediction_format=args.prediction_format, **common))  # fmt: skip

    return evaluate_corruptions(model, datasets, args.corruption_names, args.severity_levels, seed=args.corruption_seed,
                                done=state, on_cell=save, **common)  # fmt: skip


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # everything that can be missing is checked before any work
        _, roots, datasets, model = check_inputs(args, parser)
    except UsageError as err:
        return fail(err)

    import torch

    accelerator, precision_source = build_accelerator(args)
    try:
        evaluate(args, model, roots, datasets, accelerator, precision_source)
        accelerator.wait_for_everyone()
    finally:
        accelerator.end_training()  # destroys the process group (else torchrun's processes abort at exit)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

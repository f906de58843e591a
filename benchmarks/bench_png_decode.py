#!/usr/bin/env python
"""PNG decoders side by side on GTAV-size (1914x1052) files: PIL against libspng (pyspng, what
`srha_hf.data.decoding` uses when it is installed), OpenCV and torchvision, with a pixel-identity check.

    python -m benchmarks.bench_png_decode [--images 3] [--rounds 5]

Formats: RGB images as the synthetic benchmark writes them (zlib level 1), at PIL's default level 6,
and with photo-like pixel noise (level 6); GTAV RGB colour labels, GTAV palette labels and 8-bit grey
index labels (Cityscapes labelIds). For every format the srha_hf reader is timed with libspng on and
off (`srha`, `pil`), interleaved round by round in a rotating order so that a change of machine load
hits both; OpenCV and torchvision are timed on the RGB images. Prints one JSON object: median ms per
format and decoder, the speed-up of srha's reader over PIL, and whether every decoder returned PIL's
pixels (palette labels: their indices) on every file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (1914, 1052)


def write_files(folder: Path, images: int) -> dict:
    """{format: [paths]} of `images` synthetic GTAV samples written in each format."""
    from srha_hf.data.synthetic import CITYSCAPES_ID_COLORS, NATIVE_IDS, render_sample

    files: dict = {k: [] for k in ("image_rgb_level1", "image_rgb_level6", "image_rgb_noisy_level6",
                                   "label_gtav_rgb", "label_gtav_palette", "label_grey")}  # fmt: skip
    colours = np.asarray(CITYSCAPES_ID_COLORS, dtype=np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = colours
    for i in range(images):
        kind, image = render_sample("gtav", "train", i, *SIZE)
        ids = np.asarray(NATIVE_IDS["gtav"], dtype=np.uint8)[kind]
        noise = np.random.default_rng(i).integers(-6, 7, image.shape)
        noisy = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        writes = {
            "image_rgb_level1": (Image.fromarray(image), {"compress_level": 1}),
            "image_rgb_level6": (Image.fromarray(image), {}),
            "image_rgb_noisy_level6": (Image.fromarray(noisy), {}),
            "label_gtav_rgb": (Image.fromarray(colours[ids]), {}),
            "label_gtav_palette": (Image.frombytes("P", SIZE, ids.tobytes()), {}),
            "label_grey": (Image.fromarray(ids), {}),
        }
        writes["label_gtav_palette"][0].putpalette(palette.ravel().tolist())
        for name, (pil, options) in writes.items():
            path = folder / f"{name}_{i}.png"
            pil.save(path, **options)
            files[name].append(str(path))
    return files


def pil_reference(name: str, path: str) -> np.ndarray:
    """What PIL decodes: RGB pixels, or the raw index plane of palette / grey labels."""
    image = Image.open(path)
    return np.asarray(image if image.mode in ("P", "L") else image.convert("RGB"))


def readers(name: str) -> dict:
    """The timed decoders of one format: {decoder: path -> pixels as an array}."""
    import cv2
    import torch
    from torchvision.io import ImageReadMode, decode_png, read_file

    from srha_hf.data import decoding as D

    if name.startswith("image"):
        out = {"srha": lambda p: np.asarray(D.read_image(p))}
        out["opencv"] = lambda p: cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION), cv2.COLOR_BGR2RGB)
        out["torchvision"] = lambda p: decode_png(read_file(p), ImageReadMode.RGB).permute(1, 2, 0).numpy()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
    elif name == "label_gtav_rgb":
        out = {"srha": lambda p: D.read_raw_label("gtav", p)}
    elif name == "label_gtav_palette":  # libspng would expand the palette: these stay with PIL (a control)
        out = {"srha": lambda p: D._read_index_png(p, "GTAV", "palette indices")}
    else:
        out = {"srha": lambda p: D._read_index_png(p, "Cityscapes", "labelIds")}
    return out


def time_formats(files: dict, rounds: int) -> tuple[dict, dict]:
    """Median ms per (format, decoder) and whether each decoder matched PIL on every file."""
    from srha_hf.data import decoding as D
    from srha_hf.data.labels import pack_rgb

    fast = D._spng
    times: dict = {}
    identical: dict = {}
    for name, paths in files.items():
        funcs = readers(name)
        decoders = ["pil", *funcs]
        times[name] = {d: [] for d in decoders}
        identical[name] = {d: True for d in decoders if d != "pil"}
        for path in paths:  # identity first, on every file
            ref = pil_reference(name, path)
            for d, fn in funcs.items():
                got = fn(path)
                ref_d = pack_rgb(ref) if name == "label_gtav_rgb" else ref
                identical[name][d] &= bool(got.shape == ref_d.shape and np.array_equal(got, ref_d))
        for r in range(rounds):
            for path in paths:
                order = decoders[r % len(decoders) :] + decoders[: r % len(decoders)]
                for d in order:
                    fn = funcs["srha"] if d == "pil" else funcs[d]
                    D._spng = None if d == "pil" else fast
                    start = time.perf_counter()
                    fn(path)
                    times[name][d].append(time.perf_counter() - start)
                    D._spng = fast
    medians = {n: {d: round(1000 * float(np.median(v)), 1) for d, v in per.items()} for n, per in times.items()}
    return medians, identical


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3, help="files per format")
    parser.add_argument("--rounds", type=int, default=5, help="timed decodes of each file per decoder")
    args = parser.parse_args(argv)

    from srha_hf.data import decoding as D
    from srha_hf.data.labels import gtav_rgb_lut

    if D._spng is None:
        print("pyspng is not installed: srha_hf reads every PNG with PIL (pip install pyspng)", file=sys.stderr)
        return 1
    gtav_rgb_lut()  # built once per process
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.images)
        sizes = {n: round(float(np.mean([os.path.getsize(p) for p in ps])) / 1e6, 2) for n, ps in files.items()}
        medians, identical = time_formats(files, args.rounds)
    import PIL

    result = {
        "benchmark": "png_decode",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, one thread per decoder",
        "versions": {"pillow": PIL.__version__, "pyspng": getattr(D._spng, "__version__", "?"), "opencv": __import__("cv2").__version__,
                     "torchvision": __import__("torchvision").__version__},  # fmt: skip
        "image_size": list(SIZE),
        "files_per_format": args.images,
        "rounds": args.rounds,
        "mean_file_mb": sizes,
        "ms_median": medians,
        "srha_speedup_over_pil": {n: round(m["pil"] / m["srha"], 2) for n, m in medians.items()},
        "identical_to_pil": identical,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

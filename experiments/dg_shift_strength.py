"""The ablation under a growing regional shift: every finished run of a ``dg_ablation.py`` sweep,
re-evaluated on the four synthetic targets regenerated with their per-class colour shifts multiplied by
each ``--scales`` value (``make_trial_benchmark(..., shift_scale=s)``, experiments/trial_benchmark.py; 1 = the benchmark the sweep
trained and evaluated on). ``--texture-shift T`` also multiplies the spread of the targets' per-class
texture changes by ``T`` at every scale (``texture_shift=T``; 0 = the source's textures, so that only the
colours and the global tone move; default 1, the benchmark's own textures).

SRM is built for a regional shift (each class's appearance moving differently); this measures whether
SRHA's rows lose less than plain training as that shift grows. Nothing is retrained: the source, the
models and the label maps are the same at every scale, only the targets' class colours move further
(same directions, texture changes and global tone; `experiments.trial_benchmark.TrialAppearance`).

For each scale the targets are written once under ``--data-root/<tag>`` (``x<scale>``, or ``x<scale>_t<T>``
with a texture shift T other than 1; the sweep's recipe: image count, size and the generator's seed),
then each run's ``model/`` is evaluated in this process exactly as the training script's final
evaluation does (same evaluation sizes, batch size, Mapillary crop). Each evaluation is cached as
``<out>/evals/<tag>/<row>_seed<seed>.json``, so an interrupted run continues where it stopped. Scale 1 with
texture shift 1 must reproduce the sweep's own numbers: ``scale1_max_abs_diff_to_sweep`` (mIoU points)
says how closely it does (thread counts can move a prediction at a tie).

Prints one JSON object and writes ``results.json`` (per scale and row: the targets' mean and each target
as mean ± std over seeds, and the paired difference to the plain row of the same seed), ``table.md`` and
``shift_strength.png`` (targets mean against the scale, one line per row) into ``--out``.

Usage:
    python -m experiments.dg_shift_strength outputs/dg_ablation/demo-pretrained --scales 1 1.4 1.8 2.4
    python -m experiments.dg_shift_strength outputs/dg_ablation/demo-pretrained --scales 1 1.8 --texture-shift 0  # -> shift_strength_t0/
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from experiments.common import DEMO_CONFIG, ROOT, TARGETS, evaluate_as_trained, machine
from experiments.dg_ablation import RUN_RECORD, read_run
from experiments.dg_ablation import SCALES as SWEEP_SCALES
from experiments.rows import ABLATION_ROWS as ROWS
from experiments.trial_benchmark import DEFAULTS, make_trial_benchmark, split_config_values
from srha_hf.atomic import write_json_atomic, write_text_atomic
from srha_hf.data import load_benchmark
from srha_hf.data.synthetic_scene import DOMAIN_STYLES, check_amount
from srha_hf.training.config import ConfigError, load_config
from srha_hf.training.results import plain_results


def texture_tag(texture_shift: float) -> str:
    """``""`` at the benchmark's own textures (1), else ``_t<T>``: the suffix of every folder of a texture shift."""
    return "" if texture_shift == 1.0 else f"_t{texture_shift:g}"


def scale_tag(scale: float, texture_shift: float = 1.0) -> str:
    """``1.8`` -> ``x1.8``; ``2.0`` -> ``x2``; ``(1.8, 0)`` -> ``x1.8_t0``: the folder name of one scale."""
    return f"x{scale:g}" + texture_tag(texture_shift)


def find_runs(sweep: Path, rows=None, seeds=None) -> list:
    """The finished runs of a sweep, as ``(row, seed, folder, record)`` in the sweep's row order."""
    if not sweep.is_dir():
        raise SystemExit(f"{sweep} is not a folder: pass the folder of a dg_ablation.py sweep (e.g. outputs/dg_ablation/demo-pretrained)")
    found = []
    for row in ROWS:
        if rows is not None and row not in rows:
            continue
        for folder in sorted((sweep / row).glob("seed*")):
            record_path = folder / RUN_RECORD
            if not (folder / "all_results.json").is_file() or not (folder / "model").is_dir() or not record_path.is_file():
                continue
            record = json.loads(record_path.read_text())
            if seeds is not None and record["seed"] not in seeds:
                continue
            found.append((row, int(record["seed"]), folder, record))
    if not found:
        raise SystemExit(f"no finished run in {sweep} (a finished run has all_results.json, model/ and {RUN_RECORD})")
    return found


def recipe_of(record: dict, sweep_scales: dict):
    """The training config a sweep's run used and its trial look (None: the benchmark as shipped):
    configs/demo.yaml, the scale's overrides, the variant's ``--set`` (trial keys included)."""
    overrides = {**sweep_scales.get(record.get("scale", "demo"), {}), **record.get("set", {})}
    try:
        rest, look = split_config_values(overrides)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return load_config(DEMO_CONFIG, rest), look


def synthetic_params(config, look=None) -> dict:
    """What fixes the synthetic files of a recipe (every run of one sweep must agree on it)."""
    if not config.synthetic_data:
        raise SystemExit("the sweep's recipe does not train on the synthetic benchmark (synthetic_data: false)")
    amounts = DEFAULTS if look is None else look.amounts
    return {
        "num_train": config.synthetic_num_train,
        "num_val": config.synthetic_num_val,
        "size": tuple(config.synthetic_size),
        "class_colour_spread": amounts["class_colour_spread"],
        "class_pattern": amounts["class_pattern"],
    }


def evaluate_run(folder: Path, datasets: dict, config) -> dict:
    """mIoU (%) per target and per class of ``folder/model`` on ``datasets`` (``{target: val split}``),
    evaluated as the training script's final evaluation is."""
    from srha_hf import SRHAForSemanticSegmentation

    model = SRHAForSemanticSegmentation.from_pretrained(str(folder / "model"))
    clean = plain_results(evaluate_as_trained(model, datasets, config))  # NaN (a class absent from labels and predictions) as null
    return {
        "miou": {t: clean[t]["mean_iou"] * 100 for t in TARGETS},
        "per_class_iou": {t: {k: None if v is None else v * 100 for k, v in clean[t]["per_category_iou"].items()} for t in TARGETS},
    }


def mean_std(values: list) -> dict:
    return {
        "mean": round(statistics.fmean(values), 2),
        "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarise(evals: dict, scales: list, texture_shift: float = 1.0) -> dict:
    """``{scale_tag: {row: {"targets_mean", each target, "minus_plain"}}}`` from ``evals[(tag, row, seed)] =
    {"miou": {target: value}}``; ``minus_plain`` is the row's targets mean minus the plain row's, paired by
    seed (only seeds that both have), as mean ± std over those seeds."""
    summary = {}
    for scale in scales:
        tag = scale_tag(scale, texture_shift)
        by_row: dict = {}
        for (t, row, seed), ev in evals.items():
            if t == tag:
                by_row.setdefault(row, {})[seed] = ev["miou"]
        rows = {}
        for row in [r for r in ROWS if r in by_row]:
            seeds = by_row[row]
            means = {seed: statistics.fmean(m[t] for t in TARGETS) for seed, m in seeds.items()}
            entry = {"targets_mean": mean_std(list(means.values()))}
            for target in TARGETS:
                entry[target] = mean_std([m[target] for m in seeds.values()])
            if "plain" in by_row and row != "plain":
                paired = [means[s] - statistics.fmean(by_row["plain"][s][t] for t in TARGETS) for s in means if s in by_row["plain"]]
                if paired:
                    entry["minus_plain"] = mean_std(paired)
            rows[row] = entry
        summary[tag] = rows
    return summary


def markdown(summary: dict, scales: list, magnitudes: dict, sweep: Path, texture_shift: float = 1.0) -> str:
    tags = [scale_tag(s, texture_shift) for s in scales]
    textures = "" if texture_shift == 1.0 else f" and their per-class texture changes' spread multiplied by {texture_shift:g} at every scale"
    rows = [r for r in ROWS if any(r in summary[t] for t in tags)]
    lines = [
        f"Sweep `{sweep}`: targets mean mIoU (%), mean ± std over seeds, with the targets' per-class colour shifts "
        "multiplied by the scale (largest shift per target: "
        + "; ".join(f"{tag}: " + " / ".join(f"{magnitudes[tag][t]:g}" for t in TARGETS) for tag in tags)
        + f", C / B / M / S){textures}.",
        "",
        "| row | " + " | ".join(tags) + " |",
        "|---|" + "---|" * len(tags),
    ]
    for row in rows:
        cells = []
        for tag in tags:
            entry = summary[tag].get(row)
            if entry is None:
                cells.append("—")
                continue
            text = f"{entry['targets_mean']['mean']:.1f} ± {entry['targets_mean']['std']:.1f}"
            if "minus_plain" in entry:
                text += f" ({entry['minus_plain']['mean']:+.1f} ± {entry['minus_plain']['std']:.1f})"
            cells.append(text)
        lines.append(f"| {ROWS[row][0]} | " + " | ".join(cells) + " |")
    lines += ["", "In brackets: the row minus plain DeepLabV3+ of the same seed (mean ± std over seeds)."]
    return "\n".join(lines) + "\n"


def chart(summary: dict, scales: list, path: Path, title: str, texture_shift: float = 1.0) -> None:
    from matplotlib.figure import Figure

    from srha_hf.visualization import save_figure

    tags = [scale_tag(s, texture_shift) for s in scales]
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    for row in ROWS:
        points = [(s, summary[t][row]["targets_mean"]) for s, t in zip(scales, tags) if row in summary[t]]
        if not points:
            continue
        xs = [p[0] for p in points]
        ax.errorbar(xs, [p[1]["mean"] for p in points], yerr=[p[1]["std"] for p in points], marker="o", capsize=3, label=ROWS[row][0])
    textures = "" if texture_shift == 1.0 else f"; texture changes x{texture_shift:g}"
    ax.set_xlabel(f"targets' per-class colour shift (x the benchmark's{textures})")
    ax.set_ylabel("targets mean mIoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def parse_scales(parser, values) -> list:
    scales = []
    for value in values:
        try:
            scales.append(check_amount(value, "shift_scale"))
        except ValueError as err:
            parser.error(f"--scales: {err}")
    if len(set(map(scale_tag, scales))) != len(scales):
        parser.error(f"--scales: each scale once, got {values}")
    return scales


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", default=str(ROOT / "outputs" / "dg_ablation" / "demo-pretrained"), help="a dg_ablation.py sweep folder")
    parser.add_argument("--scales", nargs="+", default=["1", "1.4", "1.8", "2.4"], help="shift scales (default: 1 1.4 1.8 2.4)")
    parser.add_argument(
        "--texture-shift", type=float, default=1.0,
        help="multiplies the spread of the targets' per-class texture changes at every scale (default 1; 0 = the source's textures)",
    )  # fmt: skip
    parser.add_argument("--data-root", default=None, help="where the targets of each scale go (default <out>/data)")
    parser.add_argument("--out", default=None, help="output folder (default <sweep>/shift_strength, or shift_strength_t<T> with --texture-shift T)")
    parser.add_argument("--rows", default=None, help=f"comma-separated rows among {', '.join(ROWS)} (default: every row found)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: every seed found)")
    args = parser.parse_args(argv)
    scales = parse_scales(parser, args.scales)
    try:
        texture_shift = check_amount(args.texture_shift, "texture_shift")
    except ValueError as err:
        parser.error(f"--texture-shift: {err}")
    rows = None if args.rows is None else [r.strip() for r in args.rows.split(",") if r.strip()]
    if rows is not None and [r for r in rows if r not in ROWS]:
        parser.error(f"--rows: unknown rows {[r for r in rows if r not in ROWS]}; expected some of {', '.join(ROWS)}")
    try:
        seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    sweep = Path(args.sweep)
    out = Path(args.out) if args.out else sweep / ("shift_strength" + texture_tag(texture_shift))
    data_root = Path(args.data_root) if args.data_root else out / "data"

    runs = find_runs(sweep, rows, seeds)
    try:
        recipes = {(row, seed): recipe_of(record, SWEEP_SCALES) for row, seed, _, record in runs}
    except ConfigError as err:
        raise SystemExit(f"cannot rebuild the recipe of a run in {sweep}: {err}") from None
    configs = {key: config for key, (config, _) in recipes.items()}
    params = {json.dumps(synthetic_params(c, look), sort_keys=True) for c, look in recipes.values()}
    if len(params) != 1:
        raise SystemExit(f"the runs of {sweep} trained on different synthetic benchmarks ({sorted(params)}): pass --rows / --seeds")
    synth = json.loads(params.pop())

    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per evaluation would drown this script's own bar

    start = time.time()
    evals, magnitudes, diffs = {}, {}, []
    bar = tqdm(total=len(runs) * len(scales), desc="shift strength", dynamic_ncols=True)
    for scale in scales:
        tag = scale_tag(scale, texture_shift)
        magnitudes[tag] = {t: round(DOMAIN_STYLES[t].shift * scale, 2) for t in TARGETS}
        root = data_root / tag
        datasets = None  # the targets of this scale, written and loaded at its first uncached evaluation
        for row, seed, folder, _ in runs:
            cache = out / "evals" / tag / f"{row}_seed{seed}.json"
            if cache.is_file():
                ev = json.loads(cache.read_text())
            else:
                if datasets is None:
                    bar.set_postfix_str(f"writing the targets at {tag}")
                    make_trial_benchmark(
                        root, synth["num_train"], synth["num_val"], tuple(synth["size"]), shift_scale=scale, texture_shift=texture_shift,
                        class_colour_spread=synth["class_colour_spread"], class_pattern=synth["class_pattern"],
                    )  # fmt: skip
                    datasets = {t: load_benchmark(t, root / t, "val") for t in TARGETS}
                bar.set_postfix_str(f"{tag} {row} seed {seed}")
                ev = evaluate_run(folder, datasets, configs[(row, seed)])
                write_json_atomic(cache, ev, indent=1)
            evals[(tag, row, seed)] = ev
            if scale == 1.0 and texture_shift == 1.0:
                sweep_miou = read_run(folder)["miou"]
                diffs += [abs(ev["miou"][t] - sweep_miou[t]) for t in TARGETS]
            bar.update(1)
    bar.close()

    summary = summarise(evals, scales, texture_shift)
    md = markdown(summary, scales, magnitudes, sweep, texture_shift)
    write_text_atomic(out / "table.md", md)
    n_seeds = len({seed for _, seed, _, _ in runs})
    textures = "" if texture_shift == 1.0 else f", texture changes x{texture_shift:g}"
    title = f"SRHA ablation under a growing regional shift ({sweep.name}, {n_seeds} seeds{textures})"
    chart(summary, scales, out / "shift_strength.png", title, texture_shift)
    result = {
        "benchmark": "dg_shift_strength",
        "machine": machine(),
        "sweep": str(sweep),
        "scales": scales,
        "texture_shift": texture_shift,
        "largest_class_shift": magnitudes,
        "runs": [f"{row}/seed{seed}" for row, seed, _, _ in runs],
        "scale1_max_abs_diff_to_sweep": round(max(diffs), 4) if diffs else None,
        "summary": summary,
        "wall_s": round(time.time() - start, 1),
        "table_md": str(out / "table.md"),
        "chart_png": str(out / "shift_strength.png"),
    }
    per_run = {f"{tag}/{row}/seed{seed}": ev["miou"] for (tag, row, seed), ev in evals.items()}
    write_json_atomic(out / "results.json", {**result, "per_run": per_run}, indent=1, sort_keys=False)
    print(json.dumps(result, indent=1))
    sys.stderr.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

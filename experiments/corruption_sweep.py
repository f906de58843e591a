"""The ablation's models under the common corruptions (docs/method.md §8.8), and the schedule axis.

Three sweeps of the demo recipe from ImageNet (``configs/demo.yaml``, EfficientNet-Lite0, the reference's
objective; ``experiments/dg_ablation.py`` trains every run, in its own folders, resumably):

* ``ablation``: the five rows (``experiments/rows.py``) × seeds 304-306 at the recipe's 200 steps (the
  models of the ablation table in experiments/README.md; a finished ``dg_ablation`` sweep is reused);
* ``steps800``: plain and full SRHA × seeds 304-306 at 800 steps (the poly schedule over the 800);
* ``steps1600``: plain and full SRHA, seed 304, at 1600 steps (a trend point).

Each finished model is evaluated, in this process as the training script's final evaluation runs it, on
the source's val split (``gtav``) and the Cityscapes-format target (``cityscapes``), clean and under every
corruption of ``--corruptions`` (default: all 19 of imagecorruptions; glass blur included, its cost being
1.3x the others' mean at this size: benchmarks/README.md) at severities ``--severities`` (default 1 3 5), the base
seed 0 (``srha_hf.evaluate_corruptions``). One JSON record per run is written, atomically, under
``--records`` (default ``experiments/results/corruptions/<sweep>/<row>-seed<seed>.json``, committed with the
repository, so a sweep continues on another machine where it stopped: a run with a record is neither
trained nor evaluated again). The record holds the training's own mIoUs (targets, source), the
corrupted mIoU of every cell and its per-class IoU, the summaries, the times and the machine.

``--report`` (with no training or evaluation) reads the records and writes ``table.md`` and the charts into
``--out``: per row, mean ± std over seeds of the clean and corrupted mIoU per family, of the appearance
corruptions (brightness, contrast, saturate, fog, frost, snow), of all; the drop (clean − corrupted, points)
and the relative robustness (corrupted / clean); paired differences against plain (same seed); and for the
schedule, each row's targets mean, source val, domain gap (source − targets mean) and full − plain at 200,
800 and 1600 steps.

Usage:
    python -m experiments.corruption_sweep --sweep ablation               # 15 runs: train (or reuse), evaluate
    python -m experiments.corruption_sweep --sweep steps800 steps1600     # 8 runs of 800 / 1600 steps
    python -m experiments.corruption_sweep --report                       # tables and charts from the records
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from experiments.common import DEMO_CONFIG, ROOT, SOURCE, machine
from experiments.dg_ablation import run_one
from experiments.rows import ABLATION_ROWS as ROWS
from srha_hf.atomic import write_json_atomic, write_text_atomic

SWEEPS = {
    "ablation": {"rows": list(ROWS), "seeds": [304, 305, 306], "variant": None, "set": {}},
    "steps800": {"rows": ["plain", "full"], "seeds": [304, 305, 306], "variant": "steps800", "set": {"max_iter": 800}},
    "steps1600": {"rows": ["plain", "full"], "seeds": [304], "variant": "steps1600", "set": {"max_iter": 1600}},
}
STEPS = {"ablation": 200, "steps800": 800, "steps1600": 1600}
RECORDS = ROOT / "experiments" / "results" / "corruptions"
DATASETS = (SOURCE, "cityscapes")  # the source's val split and the Cityscapes-format target
SEVERITIES = (1, 3, 5)
LEFT_OUT = ()  # none: glass blur costs 1.3x the others' mean at 384x212 (benchmarks/README.md, "Corruptions")
APPEARANCE = ("brightness", "contrast", "saturate", "fog", "frost", "snow")  # what the paper's premise names
FAMILY_COLUMNS = ("noise", "blur", "weather", "digital")


def default_corruptions() -> list:
    from srha_hf.corruptions import ALL_CORRUPTIONS

    return [name for name in ALL_CORRUPTIONS if name not in LEFT_OUT]


def sweep_folder(sweep: str) -> Path:
    variant = SWEEPS[sweep]["variant"]
    return ROOT / "outputs" / "dg_ablation" / ("demo-imagenet" + (f"-{variant}" if variant else ""))


def record_path(records: Path, sweep: str, row: str, seed: int) -> Path:
    return records / sweep / f"{row}-seed{seed}.json"


def evaluate_run(folder: Path, corruptions: list, severities: list) -> tuple:
    """``(evaluate_corruptions result, seconds)`` of ``folder/model`` on the source val and the Cityscapes
    target of the run's own synthetic benchmark, with the training script's evaluation settings."""
    import torch

    from srha_hf import SRHAForSemanticSegmentation, evaluate_corruptions
    from srha_hf.data import load_benchmark
    from srha_hf.data.synthetic import synthetic_eval_sizes
    from srha_hf.training.config import load_config

    config = load_config(str(folder / "train_config.yaml"))
    root = Path(config.synthetic_root)
    root = root if root.is_absolute() else ROOT / root
    datasets = {name: load_benchmark(name, str(root / name), "val") for name in DATASETS}
    model = SRHAForSemanticSegmentation.from_pretrained(str(folder / "model")).eval()
    start = time.time()
    with torch.inference_mode():
        result = evaluate_corruptions(
            model, datasets, corruptions, severities, seed=0,
            batch_size=config.eval_batch_size, mapillary_crop=config.mapillary_crop,
            eval_sizes=synthetic_eval_sizes(tuple(config.synthetic_size)), progress=True,
            max_images=config.eval_max_images, drop_remainder=config.eval_drop_remainder,
        )  # fmt: skip
    return result, time.time() - start


def pct(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(100 * value, 4)


def make_record(sweep: str, row: str, seed: int, trained: dict, evaluated: dict, seconds: float) -> dict:
    per_dataset = {}
    for name, res in evaluated.items():
        cells = {c: {s: pct(r["mean_iou"]) for s, r in by.items()} for c, by in res["corrupted"].items()}
        per_class = {c: {s: {k: pct(v) for k, v in r["per_category_iou"].items()} for s, r in by.items()} for c, by in res["corrupted"].items()}
        summary = res["summary"]
        per_dataset[name] = {
            "clean": pct(summary["clean"]),
            "clean_in_training": trained["miou"].get(name),
            "mean": pct(summary["mean"]),
            "per_family": {k: pct(v) for k, v in summary["per_family"].items()},
            "per_severity": {k: pct(v) for k, v in summary["per_severity"].items()},
            "per_corruption": {k: pct(v) for k, v in summary["per_corruption"].items()},
            "relative": summary["relative"]["mean"],
            "cells": cells,
            "per_class_iou": per_class,
            "clean_per_class_iou": {k: pct(v) for k, v in res["clean"]["per_category_iou"].items()},
        }
    first = next(iter(evaluated.values()))
    return {
        "sweep": sweep, "row": row, "seed": seed, "steps": STEPS[sweep], "set": SWEEPS[sweep]["set"],
        "recipe": str(DEMO_CONFIG.relative_to(ROOT)), "init": "imagenet",
        "training": {"miou": trained["miou"], "target_mean": trained["target_mean"], "train_time_s": trained["train_time_s"]},
        "corruptions": first["corruptions"], "severities": first["severities"], "corruption_seed": first["seed"],
        "package": first["package"], "eval_seconds": round(seconds, 1), "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "datasets": per_dataset,
    }  # fmt: skip


def run_sweep(sweep: str, records: Path, corruptions: list, severities: list, rows=None, seeds=None) -> None:
    spec = SWEEPS[sweep]
    folder = sweep_folder(sweep)
    log_dir = folder / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds or spec["seeds"]:
        for row in rows or spec["rows"]:
            path = record_path(records, sweep, row, seed)
            if path.is_file():
                stored = json.loads(path.read_text())
                if stored["corruptions"] != corruptions or stored["severities"] != severities:
                    raise SystemExit(f"{path} holds {stored['corruptions']} at {stored['severities']}, not what this run asks: move it away")
                print(f"[corruption_sweep] {sweep} {row} seed {seed}: recorded", file=sys.stderr, flush=True)
                continue
            run = folder / row / f"seed{seed}"
            trained = run_one(row, seed, "imagenet", "demo", run, log_dir, spec["set"] or None)
            print(f"[corruption_sweep] {sweep} {row} seed {seed}: evaluating under {len(corruptions)} corruptions", file=sys.stderr, flush=True)
            evaluated, seconds = evaluate_run(run, corruptions, severities)
            record = make_record(sweep, row, seed, trained, evaluated, seconds)
            write_json_atomic(path, record, indent=1, sort_keys=False)
            means = ", ".join(f"{n} clean {d['clean']:.2f} corrupted {d['mean']:.2f}" for n, d in record["datasets"].items())
            print(f"[corruption_sweep] {sweep} {row} seed {seed}: {means} ({seconds:.0f} s)", file=sys.stderr, flush=True)


# ---- the report ------------------------------------------------------------------------------------------


def load_records(records: Path) -> dict:
    """``{sweep: {row: {seed: record}}}`` of every record under ``records``; rows in the ablation's order
    (``ROWS``), which every table and chart keeps."""
    out: dict = {}
    for path in sorted(records.glob("*/*.json")):
        record = json.loads(path.read_text())
        if record.get("row") not in ROWS:
            raise SystemExit(f"{path}: row {record.get('row')!r} is not one of the ablation's rows ({', '.join(ROWS)})")
        out.setdefault(record["sweep"], {}).setdefault(record["row"], {})[record["seed"]] = record
    return {sweep: {row: by_row[row] for row in sorted(by_row, key=list(ROWS).index)} for sweep, by_row in out.items()}


def columns_of(record: dict, dataset: str) -> dict:
    """The report's numbers of one run on one dataset (mIoU points; relative as a fraction)."""
    d = record["datasets"][dataset]
    appearance = statistics.fmean(d["per_corruption"][c] for c in APPEARANCE if c in d["per_corruption"])
    cols = {"clean": d["clean"], **{f: d["per_family"].get(f) for f in FAMILY_COLUMNS}, "appearance": appearance, "all": d["mean"]}
    cols["drop"] = d["clean"] - d["mean"]
    cols["appearance_drop"] = d["clean"] - appearance
    cols["relative"] = 100 * d["mean"] / d["clean"]
    for severity, value in d["per_severity"].items():
        cols[f"s{severity}"] = value
    return cols


def mean_std(values: list):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def paired_stats(by_seed: dict, plain: dict, column: str):
    """Mean ± std over seeds of (row − plain) for one column, seeds paired; None where nothing pairs."""
    return mean_std([c[column] - plain[s][column] for s, c in by_seed.items() if s in plain and None not in (c[column], plain[s][column])])


def cell(stat, signed=False) -> str:
    if stat is None:
        return "n/a"
    mean, std, n = stat
    text = f"{mean:+.1f}" if signed else f"{mean:.1f}"
    return text + (f" ± {std:.1f}" if n > 1 else "")


REPORT_COLUMNS = ("clean", *FAMILY_COLUMNS, "appearance", "all", "drop", "appearance_drop", "relative")
COLUMN_TITLES = {"clean": "clean", "noise": "noise", "blur": "blur", "weather": "weather", "digital": "digital",
                 "appearance": "appearance", "all": "**all**", "drop": "drop (clean − all)",
                 "appearance_drop": "appearance drop", "relative": "relative (%)"}  # fmt: skip


def corruption_tables(runs: dict, dataset: str, label: str) -> str:
    """Per row (mean ± std over seeds) and paired against plain, for one dataset of one sweep."""
    head = "| row | " + " | ".join(COLUMN_TITLES[c] for c in REPORT_COLUMNS) + " |"
    rule = "|" + "---|" * (len(REPORT_COLUMNS) + 1)
    per_run = {row: {seed: columns_of(rec, dataset) for seed, rec in by_seed.items()} for row, by_seed in runs.items()}
    seeds = sorted({seed for by_seed in runs.values() for seed in by_seed})
    over = "mean ± std over seeds" if len(seeds) > 1 else f"seed {seeds[0]} alone"
    lines = [f"{label}: mIoU (%) clean and under the corruptions, {over}.", "", head, rule]
    for row, by_seed in per_run.items():
        stats = [mean_std([cols[c] for cols in by_seed.values()]) for c in REPORT_COLUMNS]
        lines.append(f"| {ROWS[row][0]} | " + " | ".join(cell(s) for s in stats) + " |")
    plain = per_run.get("plain")
    if plain:
        lines += ["", f"{label}: row minus plain (same seed), {over}.", "", head, rule]
        for row, by_seed in per_run.items():
            if row == "plain":
                continue
            stats = [paired_stats(by_seed, plain, c) for c in REPORT_COLUMNS]
            lines.append(f"| {ROWS[row][0]} | " + " | ".join(cell(s, signed=True) for s in stats) + " |")
    return "\n".join(lines) + "\n"


def appearance_table(runs: dict, datasets: dict) -> str:
    """The paper's premise one corruption at a time: each row's drop (clean − that corruption's mean over the
    severities) minus plain's, paired by seed, mean ± std over seeds; ``datasets``: name -> label."""
    head = "| dataset | row | " + " | ".join(APPEARANCE) + " |"
    lines = ["Appearance corruptions: row's drop minus plain's drop (same seed), mean ± std over seeds "
             "(points; below zero: loses less than plain).", "", head, "|" + "---|" * (len(APPEARANCE) + 2)]  # fmt: skip

    def drop(d: dict, corruption: str):
        return None if corruption not in d["per_corruption"] else d["clean"] - d["per_corruption"][corruption]

    for dataset, label in datasets.items():
        drops = {
            row: {seed: {c: drop(rec["datasets"][dataset], c) for c in APPEARANCE} for seed, rec in by_seed.items()}
            for row, by_seed in runs.items()
        }  # fmt: skip
        plain = drops.get("plain", {})
        for row, by_seed in drops.items():
            if row != "plain":
                cells = [cell(paired_stats(by_seed, plain, c), signed=True) for c in APPEARANCE]
                lines.append(f"| {label} | {ROWS[row][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# full SRHA minus plain by schedule length, in the tables' column order: targets mean, source val, domain gap,
# the corrupted means on the Cityscapes-format target and on the source
SCHEDULE_DIFFS = (
    lambda r: r["training"]["target_mean"],
    lambda r: r["training"]["miou"][SOURCE],
    lambda r: r["training"]["miou"][SOURCE] - r["training"]["target_mean"],
    lambda r: r["datasets"]["cityscapes"]["mean"],
    lambda r: r["datasets"][SOURCE]["mean"],
)


def schedule_table(all_runs: dict) -> str:
    """Each row's targets mean, source val, domain gap and corrupted means at 200 / 800 / 1600 steps; and
    full minus plain (same seed) at each length."""
    head = ("| row | steps | seeds | targets mean | source val | domain gap (source − targets) | cityscapes clean | "
            "cityscapes corrupted (all) | source corrupted (all) | train time (s) |")  # fmt: skip
    lines = ["Plain and full SRHA by schedule length (mIoU %, mean ± std over seeds).", "", head, "|" + "---|" * 10]
    for sweep in ("ablation", "steps800", "steps1600"):
        for row in ("plain", "full"):
            by_seed = all_runs.get(sweep, {}).get(row)
            if not by_seed:
                continue
            recs = list(by_seed.values())
            stats = [
                mean_std([r["training"]["target_mean"] for r in recs]),
                mean_std([r["training"]["miou"][SOURCE] for r in recs]),
                mean_std([r["training"]["miou"][SOURCE] - r["training"]["target_mean"] for r in recs]),
                mean_std([r["datasets"]["cityscapes"]["clean"] for r in recs]),
                mean_std([r["datasets"]["cityscapes"]["mean"] for r in recs]),
                mean_std([r["datasets"][SOURCE]["mean"] for r in recs]),
                mean_std([r["training"]["train_time_s"] for r in recs]),
            ]
            seeds = ",".join(str(s) for s in sorted(by_seed))
            cells = [cell(s) for s in stats[:-1]] + [f"{stats[-1][0]:.0f}"]
            lines.append(f"| {ROWS[row][0]} | {STEPS[sweep]} | {seeds} | " + " | ".join(cells) + " |")
    lines += ["", "Full SRHA minus plain (same seed) by schedule length.", "",
              "| steps | seeds | targets mean | source val | domain gap | cityscapes corrupted | source corrupted |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for sweep in ("ablation", "steps800", "steps1600"):
        plain, full = all_runs.get(sweep, {}).get("plain", {}), all_runs.get(sweep, {}).get("full", {})
        seeds = sorted(set(plain) & set(full))
        if not seeds:
            continue
        stats = [mean_std([get(full[s]) - get(plain[s]) for s in seeds]) for get in SCHEDULE_DIFFS]
        lines.append(f"| {STEPS[sweep]} | {','.join(map(str, seeds))} | " + " | ".join(cell(s, signed=True) for s in stats) + " |")
    return "\n".join(lines) + "\n"


def seed_trend_table(all_runs: dict, seed: int) -> str:
    """One seed across the schedule lengths, so that a single-seed trend point is read against the same seed
    (not against other seeds' means): plain's and full SRHA's targets mean and full minus plain per column."""
    head = ("| steps | plain targets mean | full targets mean | full − plain: targets mean | source val | domain gap | "
            "cityscapes corrupted | source corrupted |")  # fmt: skip
    lines = [f"Seed {seed} alone by schedule length: full SRHA minus plain.", "", head, "|" + "---|" * 8]
    for sweep in STEPS:
        plain = all_runs.get(sweep, {}).get("plain", {}).get(seed)
        full = all_runs.get(sweep, {}).get("full", {}).get(seed)
        if plain and full:
            targets = SCHEDULE_DIFFS[0]
            cells = [f"{targets(plain):.1f}", f"{targets(full):.1f}"] + [f"{get(full) - get(plain):+.1f}" for get in SCHEDULE_DIFFS]
            lines.append(f"| {STEPS[sweep]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 4 else ""


CHART_GROUPS = ["clean", "noise", "blur", "weather", "digital", "appearance", "all"]
PAIRED_GROUPS = [*CHART_GROUPS, "drop", "appearance_drop"]


def paired_ylim(errors: dict, series: dict) -> tuple:
    """A y range covering every bar and its error bar, and zero, with a point of margin."""
    ends = [v + sign * e for name, values in series.items() for v, e in zip(values, errors[name]) if v == v for sign in (-1, 1)]
    return min(0.0, *ends) - 1.0, max(0.0, *ends) + 1.0


def bars(stats_by_row: dict) -> tuple:
    """(series, errors) for grouped_bar_chart from each row's ``mean_std`` results, keyed by the row's title;
    a group without a value (a family not evaluated) draws no bar."""
    series = {ROWS[row][0]: [float("nan") if s is None else s[0] for s in stats] for row, stats in stats_by_row.items()}
    errors = {ROWS[row][0]: [0.0 if s is None else s[1] for s in stats] for row, stats in stats_by_row.items()}
    return series, errors


def charts(all_runs: dict, out: Path) -> list:
    """Per dataset: every row's mIoU by family (mean ± std over seeds), and each row minus plain (paired by
    seed) by family, with the drops; the ablation's rows in the tables' order."""
    from srha_hf.visualization import grouped_bar_chart

    written = []
    runs = all_runs.get("ablation", {})
    for dataset in DATASETS if runs else ():
        per_run = {row: {seed: columns_of(rec, dataset) for seed, rec in by_seed.items()} for row, by_seed in runs.items()}
        series, errors = bars({row: [mean_std([c[g] for c in by_seed.values()]) for g in CHART_GROUPS] for row, by_seed in per_run.items()})
        path = out / f"corruptions_{dataset}.png"
        title = f"The ablation under common corruptions: {dataset} val (severities 1, 3, 5; mean ± std over seeds)"
        grouped_bar_chart(CHART_GROUPS, series, str(path), title=title, errors=errors, separator_after=0)
        written.append(str(path))
        if "plain" not in per_run or len(per_run) < 2:
            continue
        paired = {row: [paired_stats(by_seed, per_run["plain"], g) for g in PAIRED_GROUPS] for row, by_seed in per_run.items() if row != "plain"}
        series, errors = bars(paired)
        path = out / f"corruptions_{dataset}_minus_plain.png"
        title = f"Each row minus plain, paired by seed: {dataset} val (points; a drop below zero: loses less than plain)"
        groups = [g.replace("_", " ") for g in PAIRED_GROUPS]
        grouped_bar_chart(groups, series, str(path), title=title, errors=errors, separator_after=len(CHART_GROUPS) - 1,
                          ylabel="difference (points)", ylim=paired_ylim(errors, series))  # fmt: skip
        written.append(str(path))
    return written


SCHEDULE_PANELS = (("clean", "mIoU (%)"), ("under the corruptions", "mIoU (%), all cells"))


def schedule_points(all_runs: dict, row: str, value) -> tuple:
    """(steps, means, stds) of ``value(record)`` for one row over the schedule lengths that have records."""
    points = [(STEPS[sw], mean_std([value(r) for r in all_runs[sw][row].values()])) for sw in STEPS if row in all_runs.get(sw, {})]
    return [p[0] for p in points], [p[1][0] for p in points], [p[1][1] for p in points]


def schedule_chart(all_runs: dict, path: Path):
    """Plain and full SRHA against the schedule length: targets mean and source val (left), the corrupted
    means on the target and the source (right); mean ± std over seeds. None with fewer than two lengths."""
    if sum(1 for sw in STEPS if all_runs.get(sw)) < 2:
        return None
    from matplotlib.figure import Figure

    from srha_hf.visualization import save_figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    axes = fig.subplots(1, 2)
    curves = (
        (0, "targets mean", "-", lambda r: r["training"]["target_mean"]),
        (0, "source val", "--", lambda r: r["training"]["miou"][SOURCE]),
        (1, "target", "-", lambda r: r["datasets"]["cityscapes"]["mean"]),
        (1, "source", "--", lambda r: r["datasets"][SOURCE]["mean"]),
    )
    for panel, label, style, value in curves:
        for row, colour in (("plain", "tab:orange"), ("full", "tab:blue")):
            xs, means, stds = schedule_points(all_runs, row, value)
            if xs:
                axes[panel].errorbar(xs, means, yerr=stds, ls=style, marker="o", capsize=3, color=colour, label=f"{ROWS[row][0]}: {label}")
    for ax, (title, ylabel) in zip(axes, SCHEDULE_PANELS):
        ax.set_xscale("log")
        ax.set_xticks(list(STEPS.values()), [str(v) for v in STEPS.values()])
        ax.minorticks_off()
        ax.set_xlabel("training steps (the poly schedule over each length)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Plain and full SRHA by schedule length: {title}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, str(path))


def report(records: Path, out: Path) -> dict:
    all_runs = load_records(records)
    if not all_runs:
        raise SystemExit(f"no record under {records}: run a sweep first")
    parts = []
    if "ablation" in all_runs:
        runs = all_runs["ablation"]
        parts.append(corruption_tables(runs, "cityscapes", "Cityscapes-format target (val, 20 images)"))
        parts.append(corruption_tables(runs, SOURCE, "Source (GTAV-format val, 20 images)"))
        if "plain" in runs and len(runs) > 1:
            parts.append(appearance_table(runs, {"cityscapes": "target", SOURCE: "source"}))
    for sweep in ("steps800", "steps1600"):
        if sweep in all_runs:
            runs = all_runs[sweep]
            parts.append(corruption_tables(runs, "cityscapes", f"{STEPS[sweep]} steps, Cityscapes-format target"))
            parts.append(corruption_tables(runs, SOURCE, f"{STEPS[sweep]} steps, source val"))
    parts.append(schedule_table(all_runs))
    if all_runs.get("steps1600"):
        parts.append(seed_trend_table(all_runs, SWEEPS["steps1600"]["seeds"][0]))
    md = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "table.md", md)
    written = charts(all_runs, out)
    schedule = schedule_chart(all_runs, out / "schedule.png")
    written += [schedule] if schedule else []
    counts = {sweep: sum(len(s) for s in rows.values()) for sweep, rows in all_runs.items()}
    return {"records": counts, "table_md": str(out / "table.md"), "charts": written, "markdown": md}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", nargs="+", choices=list(SWEEPS), default=[], help="the sweeps to train and evaluate, in order")
    parser.add_argument("--rows", default=None, help="comma-separated rows (default: the sweep's)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the sweep's)")
    parser.add_argument("--corruptions", default=None, help="srha_hf.corruptions names or presets (default: all 19)")
    parser.add_argument("--severities", type=int, nargs="+", default=list(SEVERITIES))
    parser.add_argument("--records", default=str(RECORDS), help="folder of the per-run records (default experiments/results/corruptions)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "corruption_sweep"), help="where --report writes table.md and charts")
    parser.add_argument("--report", action="store_true", help="write the tables and charts from the records")
    args = parser.parse_args(argv)
    if not args.sweep and not args.report:
        parser.error("nothing to do: name --sweep ablation|steps800|steps1600 and/or --report")
    from srha_hf.corruptions import resolve_corruptions, resolve_severities

    try:
        corruptions = resolve_corruptions(args.corruptions) if args.corruptions else default_corruptions()
        severities = resolve_severities(args.severities)
    except ValueError as err:
        parser.error(str(err))
    rows = [r for r in args.rows.split(",") if r] if args.rows else None
    seeds = [int(s) for s in args.seeds.split(",") if s] if args.seeds else None
    unknown = [r for r in rows or () if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; expected some of {', '.join(ROWS)}")
    records = Path(args.records)
    for sweep in args.sweep:
        run_sweep(sweep, records, corruptions, severities, rows, seeds)
    if args.report:
        result = report(records, Path(args.out))
        sys.stderr.write(result.pop("markdown"))
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

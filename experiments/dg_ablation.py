"""The paper's ablation in miniature: train on the synthetic GTAV-format source, evaluate on the four
synthetic targets (Cityscapes, BDD-100K, Mapillary, Synthia formats) and on the source's val split.

Rows (each a set of ``model_kwargs`` over ``configs/demo.yaml``, whose own ``model_kwargs`` every row
keeps; everything else is the same recipe):

* ``plain``   DeepLabV3+: CE + aux only, no SRM (batch B), no teacher;
* ``srm``     + SRM (the batch doubles to [original; rearranged]), CE on both halves;
* ``srm_pc``  + SRM + prediction consistency (pc_weight 10);
* ``srm_hac`` + SRM + HAC (GA/RA/LA, weights 0.4/0.6/0.8/1.0, the frozen teacher), no PC;
* ``full``    full SRHA (SRM + HAC + PC), the demo as shipped.

``--init imagenet`` (default) is the demo's recipe as it is: EfficientNet-Lite0 from its packaged
ImageNet weights, student and teacher, the reference's objective. ``--init pretrained`` is the earlier
stand-in, the demo's recipe before 2026-12-06: ShuffleNetV2 from a 300-step pretraining stage on the
source (one per seed, shared by the rows of that seed; srha_hf/training/pretrain.py), 250 steps, one
DataLoader worker, ``pc_stop_gradient: true``. ``--init random``: the demo's backbone from random weights.

Each (row, seed) run is ``python -m experiments.train_trial`` (``scripts/train.py`` with the trial keys) in its
own folder under ``--out``; a finished run (its
``all_results.json``) is read back, an unfinished one resumes from its last checkpoint, so a killed
sweep continues where it stopped. Prints one JSON object, and writes ``results.json``, ``table.md`` (mean
± std over seeds per target, their average, and the source val mIoU) and ``ablation.png`` (grouped bars)
into ``--out``.

A *variant* changes the recipe of every row it runs: ``--set KEY=VALUE`` overrides a training-config
key (``configs/demo.yaml`` / ``TrainConfig``, or a trial key such as ``synthetic_class_pattern``; the value in YAML), ``--model-set KEY=VALUE`` an
``SRHAConfig`` key on top of each row's own ``model_kwargs``; both need ``--variant NAME``, which names the
sweep folder (default ``outputs/dg_ablation/<scale>-<init>-<NAME>``) and is shown beside the rows' names.
Each run folder records its overrides (``dg_ablation_run.json``); reading back a finished run made with
other overrides is an error, so a variant name cannot silently reuse another variant's results.

Usage:
    python -m experiments.dg_ablation --scale demo            # 2 CPU cores: about 70 minutes
    python -m experiments.dg_ablation --scale demo --init random --seeds 304 --rows plain,srm,srm_pc,full
    python -m experiments.dg_ablation --scale gpu             # a GPU machine: more images, larger crops, more steps
    python -m experiments.dg_ablation --seeds 304 --rows full --variant w150 --set pc_warmup_steps=150
    python -m experiments.dg_ablation --seeds 304 --rows full --variant pc1-w150 --set pc_warmup_steps=150 --model-set pc_weight=1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from experiments.common import DEMO_CONFIG, ROOT, SOURCE, TARGETS, machine
from experiments.rows import ABLATION_ROWS as ROWS
from experiments.trial_benchmark import CONFIG_KEYS
from srha_hf.atomic import write_json_atomic, write_text_atomic
from srha_hf.configuration_srha import DEFAULTS as SRHA_DEFAULTS
from srha_hf.training.config import TrainConfig, load_config

__all__ = ["DEMO_CONFIG", "ROOT", "SOURCE", "TARGETS", "ROWS", "SCALES", "RUN_RECORD", "read_run", "row_command", "main"]
# Overrides of configs/demo.yaml per scale. "demo" is the demo recipe itself.
SCALES = {
    "demo": {},
    "gpu": {
        "synthetic_root": "outputs/synthetic_gpu",
        "synthetic_num_train": 1000,
        "synthetic_num_val": 50,
        "synthetic_size": [768, 424],
        "crop_size": 384,
        "class_uniform_tile": 256,
        "batch_size": 8,
        "max_iter": 3000,
        "num_workers": 8,
        "eval_batch_size": 4,
    },
}


# Overrides of the recipe per initialisation (after the scale's), and the model keys they add.
INITS = {
    "imagenet": ({}, {}),
    "pretrained": ({"backbone": "shufflenetv2", "backbone_pretrained": None, "pretrain_steps": 300, "max_iter": 250, "num_workers": 1},
                   {"pc_stop_gradient": True}),
    "random": ({"backbone_pretrained": None, "pretrain_steps": 0}, {}),
}  # fmt: skip
GPU_STAGE_STEPS = 3000  # --scale gpu --init pretrained: the stage's length at that scale


# Keys the sweep sets itself for every run (--set may not change them).
OWN_KEYS = {
    "seed": "--seeds", "output_dir": "--out", "model_kwargs": "--model-set", "val_datasets": None, "eval_steps": None,
    "eval_source": None, "resume_from_checkpoint": None, "report_to": None, "checkpointing_steps": None,
    "checkpoints_total_limit": None,
}  # fmt: skip
RUN_RECORD = "dg_ablation_run.json"


def parse_assignments(items: list, flag: str, allowed: set) -> dict:
    """``["KEY=VALUE", ...]`` (VALUE in YAML) → ``{KEY: value}``; unknown or sweep-owned keys are errors."""
    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} max_iter=600")
        if key not in allowed:
            raise ValueError(f"{flag} {item!r}: unknown key {key!r}")
        if flag == "--set" and key in OWN_KEYS:
            raise ValueError(f"{flag} {item!r}: the sweep sets {key!r} itself" + (f" (use {OWN_KEYS[key]})" if OWN_KEYS[key] else ""))
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{flag} {item!r}: the value is not valid YAML: {exc}") from None
    return out


def train_keys() -> set:
    """What ``--set`` may change: the training-config keys and the trial benchmark's (experiments.train_trial)."""
    return {f.name for f in dataclasses.fields(TrainConfig)} | set(CONFIG_KEYS)


def model_keys() -> set:
    return set(SRHA_DEFAULTS) | {"num_labels"}


def recipe_model_kwargs() -> dict:
    """The ``model_kwargs`` of ``configs/demo.yaml`` (none: the reference's objective): every row keeps them
    under its own keys, so the rows differ from the demo only in the terms they switch."""
    return dict(load_config(DEMO_CONFIG).model_kwargs)


def row_command(row: str, seed: int, init: str, scale: str, out: Path, extra: dict | None = None, model_extra: dict | None = None) -> list:
    """The ``python -m experiments.train_trial`` command of one run (``scripts/train.py`` plus the trial keys):
    ``configs/demo.yaml`` with the scale's overrides, then
    ``extra`` (``--set``), then the sweep's own keys; the model keys are the recipe's ``model_kwargs``, then
    the row's, then ``model_extra`` (``--model-set``)."""
    init_overrides, init_model = INITS[init]
    overrides = {**SCALES[scale], **init_overrides}
    if init == "pretrained" and scale == "gpu":
        overrides.update(pretrain_steps=GPU_STAGE_STEPS, max_iter=SCALES["gpu"]["max_iter"], num_workers=SCALES["gpu"]["num_workers"])
    overrides.update(extra or {})
    overrides.update(
        seed=seed,
        output_dir=str(out),
        model_kwargs={**recipe_model_kwargs(), **init_model, **ROWS[row][1], **(model_extra or {})},
        eval_steps=0,
        eval_source=True,
        val_datasets=list(TARGETS),
        report_to="tensorboard",  # every loss term per step, for diagnosis (logs/ of each run)
        resume_from_checkpoint="latest",
        checkpointing_steps=100,
        checkpoints_total_limit=1,
    )
    cmd = [sys.executable, "-m", "experiments.train_trial", "--config", str(DEMO_CONFIG)]  # run from ROOT
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value)]  # JSON is YAML: the script parses it back exactly
    return cmd


def read_run(folder: Path) -> dict | None:
    path = folder / "all_results.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    res = data["results"]
    miou = {name: res[name]["mean_iou"] * 100 for name in (*TARGETS, SOURCE) if name in res}
    per_class = {name: {k: (v * 100 if v is not None else None) for k, v in res[name]["per_category_iou"].items()} for name in res}
    return {
        "miou": miou,
        "target_mean": statistics.fmean(miou[t] for t in TARGETS),
        "train_time_s": data["training_time_s"],
        "per_class_iou": per_class,
    }


def check_record(out: Path, record: dict) -> None:
    """Write ``record`` (the run's overrides) into ``out``, or check the one already there matches it."""
    path = out / RUN_RECORD
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != record:
            raise SystemExit(f"{path} records {stored}, but this sweep asks for {record}: use another --variant or --out")
    elif not (out / "all_results.json").is_file():  # runs of sweeps older than the record are read back as they are
        write_json_atomic(path, record, indent=1)


def run_one(row: str, seed: int, init: str, scale: str, out: Path, log_dir: Path, extra: dict | None = None, model_extra: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    check_record(out, {"row": row, "seed": seed, "init": init, "scale": scale, "set": extra or {}, "model_set": model_extra or {}})
    done = read_run(out)
    if done is not None:
        return done
    log = log_dir / f"{out.parent.name}_{out.name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.time()
    print(f"[dg_ablation] {row} seed {seed} ({init}) -> {out} (log {log})", file=sys.stderr, flush=True)
    with open(log, "a") as fh:
        proc = subprocess.run(row_command(row, seed, init, scale, out, extra, model_extra), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{row} seed {seed} failed (exit {proc.returncode}); see {log}")
    result = read_run(out)
    if result is None:
        raise SystemExit(f"{row} seed {seed} finished without {out / 'all_results.json'}; see {log}")
    print(f"[dg_ablation] {row} seed {seed}: target mean {result['target_mean']:.2f} ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    return result


def summarise(runs: dict) -> dict:
    """``{row: {column: (mean, std, n)}}`` over seeds; columns are the targets, ``mean`` and ``source``."""
    table = {}
    for row, by_seed in runs.items():
        cols = {}
        for col in (*TARGETS, "mean", "source"):
            values = [
                r["target_mean"] if col == "mean" else r["miou"].get(SOURCE if col == "source" else col)
                for r in by_seed.values()
            ]
            values = [v for v in values if v is not None]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cols[col] = (statistics.fmean(values), std, len(values)) if values else (float("nan"), 0.0, 0)
        table[row] = cols
    return table


def paired_differences(runs: dict) -> dict:
    """``{row: {column: (mean, std, n)}}`` of each row minus the plain row of the same seed, per target,
    for the targets' mean and for the source val (rows other than plain, seeds both have)."""
    plain = runs.get("plain", {})
    out = {}
    for row, by_seed in runs.items():
        if row == "plain" or not plain:
            continue
        cols = {}
        for col in (*TARGETS, "mean", "source"):
            def value(r):
                return r["target_mean"] if col == "mean" else r["miou"].get(SOURCE if col == "source" else col)

            diffs = [value(r) - value(plain[s]) for s, r in by_seed.items() if s in plain and value(r) is not None]
            cols[col] = (statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0, len(diffs)) if diffs else None
        out[row] = cols
    return out


def per_class_targets(runs: dict) -> dict:
    """``{row: {class: mean IoU over seeds and the four targets}}`` (classes absent from a target skipped)."""
    out = {}
    for row, by_seed in runs.items():
        sums: dict = {}
        for r in by_seed.values():
            for target in TARGETS:
                for cls, v in r["per_class_iou"].get(target, {}).items():
                    if v is not None and v == v:
                        sums.setdefault(cls, []).append(v)
        out[row] = {cls: statistics.fmean(v) for cls, v in sums.items()}
    return out


def paired_markdown(paired: dict, per_class: dict) -> str:
    """The paired differences against plain and the per-class picture of the rows as Markdown."""
    if not paired:
        return ""
    lines = ["", "Paired differences against plain (row minus plain, same seed; mean ± std over seeds):", "",
             "| row | " + " | ".join(TARGETS) + " | **targets mean** | source val |", "|" + "---|" * (len(TARGETS) + 3)]  # fmt: skip
    for row, cols in paired.items():
        cells = ["n/a" if cols[c] is None else f"{cols[c][0]:+.1f} ± {cols[c][1]:.1f}" for c in (*TARGETS, "mean", "source")]
        lines.append(f"| {ROWS[row][0]} | " + " | ".join(cells[:-2]) + f" | **{cells[-2]}** | {cells[-1]} |")
    rows = list(per_class)
    classes = list(next(iter(per_class.values())))
    lines += ["", "Per-class IoU on the targets (mean over the four targets and the seeds):", "",
              "| class | " + " | ".join(ROWS[r][0] for r in rows) + " |", "|" + "---|" * (len(rows) + 1)]  # fmt: skip
    for cls in classes:
        lines.append(f"| {cls} | " + " | ".join(f"{per_class[r].get(cls, float('nan')):.1f}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def markdown(table: dict, seeds: list, init: str, scale: str, variant: str | None = None, overrides: str = "") -> str:
    head = "| row | " + " | ".join(TARGETS) + " | **targets mean** | source val (gtav) |"
    tag = f" [{variant}]" if variant else ""
    lines = [
        f"Scale `{scale}`, init `{init}`{f', variant `{variant}` ({overrides})' if variant else ''}, seeds "
        f"{', '.join(map(str, seeds))}: mIoU (%) as mean ± std over seeds.",
        "",
        head,
        "|" + "---|" * (len(TARGETS) + 3),
    ]
    for row, cols in table.items():
        cells = [f"{cols[c][0]:.1f} ± {cols[c][1]:.1f}" for c in TARGETS]
        mean, source = cols["mean"], cols["source"]
        lines.append(
            f"| {ROWS[row][0]}{tag} | " + " | ".join(cells) + f" | **{mean[0]:.1f} ± {mean[1]:.1f}** | {source[0]:.1f} ± {source[1]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def chart(table: dict, path: Path, title: str) -> None:
    """Grouped bars: per target, the targets' mean and source val, one bar (mean ± std over seeds) per row."""
    from srha_hf.visualization import grouped_bar_chart

    cols = (*TARGETS, "mean", "source")
    groups = ["Cityscapes", "BDD-100K", "Mapillary", "Synthia", "targets mean", "source val"]
    series = {ROWS[row][0]: [values[c][0] for c in cols] for row, values in table.items()}
    errors = {ROWS[row][0]: [values[c][1] for c in cols] for row, values in table.items()}
    grouped_bar_chart(groups, series, str(path), title=title, errors=errors, separator_after=len(TARGETS))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    parser.add_argument("--init", choices=sorted(INITS), default="imagenet",
                        help="imagenet: the demo recipe (Lite0 ImageNet); pretrained: the earlier stand-in stage; random")
    parser.add_argument("--seeds", default="304,305,306", help="comma-separated training seeds (default: 304,305,306)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows among {', '.join(ROWS)}")
    parser.add_argument("--out", default=None, help="sweep folder (default outputs/dg_ablation/<scale>-<init>[-<variant>])")
    parser.add_argument("--variant", default=None, help="name of a recipe variant (needed with --set / --model-set)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training-config override of the variant (repeatable)")
    parser.add_argument(
        "--model-set", action="append", default=[], metavar="KEY=VALUE", help="SRHAConfig key over every row's model_kwargs (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        extra = parse_assignments(args.set, "--set", train_keys())
        model_extra = parse_assignments(args.model_set, "--model-set", model_keys())
    except ValueError as exc:
        parser.error(str(exc))
    if (extra or model_extra) and not args.variant:
        parser.error("--set / --model-set change the recipe: name the variant with --variant NAME")
    if args.variant is not None and not args.variant.replace("-", "").replace("_", "").replace(".", "").isalnum():
        parser.error(f"--variant {args.variant!r}: use letters, digits, '-', '_' or '.' (it names a folder)")
    overrides_text = ", ".join([f"{k}={json.dumps(v)}" for k, v in extra.items()] + [f"model.{k}={json.dumps(v)}" for k, v in model_extra.items()])
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; expected some of {', '.join(ROWS)}")
    suffix = f"-{args.variant}" if args.variant else ""
    out = Path(args.out or ROOT / "outputs" / "dg_ablation" / f"{args.scale}-{args.init}{suffix}")
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    runs: dict = {row: {} for row in rows}
    # seeds outermost: the rows of one seed share its pretraining stage, which the first row runs
    for seed in seeds:
        for row in rows:
            runs[row][seed] = run_one(row, seed, args.init, args.scale, out / row / f"seed{seed}", log_dir, extra, model_extra)
    table = summarise(runs)
    paired, per_class_rows = paired_differences(runs), per_class_targets(runs)
    md = markdown(table, seeds, args.init, args.scale, args.variant, overrides_text) + paired_markdown(paired, per_class_rows)
    write_text_atomic(out / "table.md", md)
    title = f"SRHA ablation on the synthetic benchmark ({args.scale} scale, {args.init} init{suffix}, {len(seeds)} seeds)"
    chart(table, out / "ablation.png", title)
    result = {
        "benchmark": "dg_ablation",
        "machine": machine(),
        "scale": args.scale,
        "init": args.init,
        "seeds": seeds,
        "variant": args.variant,
        "set": extra,
        "model_set": model_extra,
        "wall_s": round(time.time() - start, 1),
        "summary": {row: {c: {"mean": round(m, 2), "std": round(s, 2), "n": n} for c, (m, s, n) in cols.items()} for row, cols in table.items()},
        "minus_plain": {row: {c: None if v is None else {"mean": round(v[0], 2), "std": round(v[1], 2), "n": v[2]} for c, v in cols.items()}
                        for row, cols in paired.items()},  # fmt: skip
        "runs": {
            row: {str(seed): {k: v for k, v in r.items() if k != "per_class_iou"} for seed, r in by_seed.items()} for row, by_seed in runs.items()
        },
        "table_md": str(out / "table.md"),
        "chart_png": str(out / "ablation.png"),
    }
    per_class = {row: {str(s): r["per_class_iou"] for s, r in bs.items()} for row, bs in runs.items()}
    write_json_atomic(out / "results.json", {**result, "per_class": per_class}, indent=1, sort_keys=False)
    print(json.dumps(result, indent=1))
    sys.stderr.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

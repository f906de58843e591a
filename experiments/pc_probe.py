"""Why prediction consistency collapses training on the synthetic benchmark: CE on each half of the
SRM-doubled batch, the PC term, and the gradient norms of CE and PC over the decode head, for three
students of one seed of a ``dg_ablation.py`` sweep (on batches of that sweep's own source and recipe): at
the start of SRHA training (the pretraining stage's backbone, random head), and after each row of
``--rows`` (default: plain and full; any row whose run is in the sweep, e.g. ``plain,srm,srm_hac,full``, to
see how well SRM's rearranged half is fitted).

Usage: python -m experiments.pc_probe [--sweep outputs/dg_ablation/demo-pretrained] [--seed 304] [--batches 3] [--rows plain,full]
Prints JSON (means over the batches).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from experiments.common import DEMO_CONFIG, ROOT, machine
from experiments.train_trial import read_run_config
from srha_hf import SRHAForSemanticSegmentation
from srha_hf.data import SRHATrainDataset, SRMCollator, build_train_transform, load_benchmark
from srha_hf.losses import prediction_consistency_loss, segmentation_losses
from srha_hf.training import load_config


def probe(student, batches, pc_weight):
    student.config.srm = True  # the plain row's saved config has SRM off; probe it on the doubled batch
    student.train()
    head = [p for n, p in student.named_parameters() if p.requires_grad and not n.startswith("layer")]
    sums = {}
    for batch in batches:
        out = student(batch["pixel_values"], labels=batch["labels"], srm_weights=batch["srm_weights"], return_loss=False)
        b = batch["labels"].shape[0]
        ce_o, _ = segmentation_losses(out.logits[:b], batch["labels"])
        ce_r, _ = segmentation_losses(out.logits[b:], batch["labels"])
        pc = pc_weight * prediction_consistency_loss(out.logits[:b], out.logits[b:])

        def norm(loss):
            grads = torch.autograd.grad(loss, head, retain_graph=True, allow_unused=True)
            return float(torch.sqrt(sum((g**2).sum() for g in grads if g is not None)))

        values = {"ce_original": ce_o.item(), "ce_rearranged": ce_r.item(), "pc": pc.item(), "grad_ce": norm((ce_o + ce_r) / 2), "grad_pc": norm(pc)}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v / len(batches)
    return {k: round(v, 4) for k, v in sums.items()}


def recipe(run: Path, seed: int):
    """The training config of the sweep's ``run`` folder (its ``train_config.yaml``: a variant's benchmark and
    recipe), or the demo recipe at ``seed`` for a run folder written before that file existed."""
    saved = run / "train_config.yaml"
    return read_run_config(saved)[0] if saved.is_file() else load_config(DEMO_CONFIG, {"seed": seed})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default=str(ROOT / "outputs" / "dg_ablation" / "demo-pretrained"))
    parser.add_argument("--seed", type=int, default=304)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rows", default="plain,full", help="comma-separated rows of the sweep to probe (full is always read: its stage file)")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    models = {row: sweep / row / f"seed{args.seed}" / "model" for row in dict.fromkeys([*rows, "full"])}
    missing = [str(p) for p in models.values() if not (p / "model.safetensors").is_file()]
    if missing:
        raise SystemExit(f"run the sweep first (python -m experiments.dg_ablation): missing {', '.join(missing)}")
    full_config = json.loads((models["full"] / "config.json").read_text())
    stage_file = full_config.get("backbone_pretrained_source")
    if stage_file and not Path(stage_file).is_absolute():  # recorded relative to the run's working folder
        stage_file = str(ROOT / stage_file)
    if not stage_file or not Path(stage_file).is_file():
        raise SystemExit(f"{models['full']}/config.json names no existing pretraining-stage file ({stage_file!r})")
    config = recipe(models["full"].parent, args.seed)
    torch.manual_seed(args.seed)
    source = load_benchmark(config.source_dataset, Path(config.synthetic_root) / config.source_dataset, config.train_split)
    transform = build_train_transform(crop_size=config.crop_size, scale_range=(config.scale_min, config.scale_max))
    dataset = SRHATrainDataset(source, transform, seed=args.seed)
    mc = config.model_config(backbone_pretrained=stage_file)
    collate = SRMCollator(seed=args.seed, concentration=mc.srm_concentration)
    batches = [collate([dataset[(0, config.batch_size * b + i)] for i in range(config.batch_size)]) for b in range(args.batches)]
    result = {
        "benchmark": "pc_probe",
        "machine": machine(),
        "seed": args.seed,
        "start of SRHA (stage backbone, random head)": probe(SRHAForSemanticSegmentation(mc), batches, mc.pc_weight),
    }
    for row in rows:
        name = "full-SRHA" if row == "full" else row
        result[f"after the {name} row"] = probe(SRHAForSemanticSegmentation.from_pretrained(models[row]), batches, mc.pc_weight)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train on a trial benchmark: ``scripts/train.py`` plus the trial keys (experiments/trial_benchmark.py).

    python -m experiments.train_trial --config configs/demo.yaml --synthetic_class_pattern 25 [--key value ...]
    python -m experiments.train_trial --config run/train_config.yaml --appearance run/synthetic_appearance.json

Every training-config key works as in ``scripts/train.py``; ``synthetic_class_colour_spread``,
``synthetic_class_pattern`` (and ``synthetic_random_look``), which left the library's TrainConfig, are read here,
from the command line or the config file, and become the run's :class:`TrialAppearance`, which the trainer
generates the synthetic benchmark with (and keys the pretraining stage's cache on). ``--appearance`` reads the
``synthetic_appearance.json`` a trial run writes beside its ``train_config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from experiments.trial_benchmark import TrialAppearance, split_config_values
from srha_hf.cli.train import run_training
from srha_hf.training.config import ConfigError, load_config, parse_overrides
from srha_hf.training.trainer import APPEARANCE_FILE


def trial_config(config_path=None, overrides=None, appearance_file=None):
    """``(TrainConfig, TrialAppearance or None)`` of a recipe file and command-line ``overrides``, which may
    hold the trial keys; or of ``appearance_file`` (a trial run's record of its look)."""
    rest, look = split_config_values(overrides or {})
    if appearance_file is not None:
        if look is not None:
            raise ValueError(f"--appearance {appearance_file} and the trial keys {sorted(set(overrides) - set(rest))} both set the look")
        look = read_appearance(appearance_file)
    return load_config(config_path, rest), look


def read_appearance(path) -> TrialAppearance:
    """The :class:`TrialAppearance` that a trial run recorded (``synthetic_appearance.json``)."""
    try:
        marker = dict(json.loads(Path(path).read_text())["marker"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a synthetic_appearance.json of a trial run ({exc})") from None
    generic = marker.pop("random_look", False)
    return TrialAppearance(generic, **marker)


def read_run_config(path):
    """``(TrainConfig, TrialAppearance or None)`` of a run's saved ``train_config.yaml``, including the runs made
    while the trial keys were TrainConfig keys (their values become the look; a saved config is fully
    resolved, with no ``_base_``)."""
    loaded = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping of training-config keys")
    rest, look = split_config_values(loaded)
    recorded = Path(path).parent / APPEARANCE_FILE
    if look is None and recorded.is_file():
        look = read_appearance(recorded)
    return load_config(None, rest), look


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a recipe YAML file (configs/*.yaml, or a run's train_config.yaml)")
    parser.add_argument("--appearance", help="a trial run's synthetic_appearance.json")
    args, rest = parser.parse_known_args(argv)
    try:
        config, look = trial_config(args.config, parse_overrides(rest), args.appearance)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_training(config, args.config, appearance=look)


if __name__ == "__main__":
    sys.exit(main())

"""Train SRHA: ``accelerate launch scripts/train.py --config configs/r50_gtav.yaml [--key value ...]``.

Also runs as plain ``python scripts/train.py ...`` (one process) or under ``torchrun``. Every key of
the config (see ``srha_hf/training/config.py`` and the README) can be overridden on the command line,
e.g. ``--gtav_root /data/GTAV --max_iter 1000 --output_dir outputs/try``; an unknown key is an error.
"""

import argparse
import sys
from pathlib import Path

from srha_hf.cli import ArgumentParser, UsageError, check_output, fail
from srha_hf.training.config import ConfigError, TrainConfig, load_config, parse_overrides


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=True)
    parser.add_argument("--config", help="a recipe YAML file (configs/*.yaml)")
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        check_model_keys(overrides)
        config = load_config(args.config, overrides)
    except (ConfigError, UsageError) as exc:
        return fail(exc)

    return run_training(config, args.config)


def check_model_keys(overrides: dict) -> None:
    """A model setting given as its own option (``--decode_head mask2former``) is refused, saying that
    such keys go in ``--model_kwargs``."""
    from srha_hf.configuration_srha import DEFAULTS

    for key, value in overrides.items():
        if key not in TrainConfig.__dataclass_fields__ and key in DEFAULTS:
            raise UsageError(f"--{key} is a model setting, not a training-config key: pass it as --model_kwargs '{{{key}: {value}}}'")


def check_training_inputs(config: TrainConfig, appearance=None) -> None:
    """What a run needs from its config, checked before anything is generated or written (a
    :class:`UsageError` or ConfigError naming the key otherwise): the model settings (backbone,
    decode_head, ... as ``SRHAConfig`` validates them), the checkpoint to resume, the data roots and the
    folders the run writes."""
    from srha_hf.training.checkpoint import resolve_checkpoint
    from srha_hf.training.trainer import resolve_data

    try:
        config.model_config()
    except ValueError as exc:
        raise UsageError(f"model setting (--backbone / --model_kwargs): {exc}") from None
    if config.resume_from_checkpoint not in (None, "latest"):
        try:
            resolve_checkpoint(config.output_dir, config.resume_from_checkpoint)
        except FileNotFoundError as exc:
            raise UsageError(exc) from None
    check_output(config.output_dir, "output_dir", folder=True)
    if config.synthetic_data:
        check_output(config.synthetic_root, "synthetic_root", folder=True)
    else:  # the trainer's own check of every root the run needs; it touches the accelerator for synthetic data only
        resolve_data(config, None, appearance)


def run_training(config, config_path=None, appearance=None) -> int:
    """Train ``config`` (the recipe named after ``config_path``'s file) and turn the outcome into an exit
    status: 0 completed or interrupted (a checkpoint was saved), 2 a config error, 1 a non-finite loss.
    ``appearance``: a trial benchmark's hook (``experiments/train_trial.py``)."""
    from srha_hf.training.trainer import NonFiniteLossError, train

    recipe = Path(config_path).stem if config_path else "custom"
    try:
        check_training_inputs(config, appearance)
        outcome = train(config, recipe=recipe, appearance=appearance)
    except (ConfigError, UsageError) as exc:
        return fail(exc)
    except NonFiniteLossError as exc:
        return fail(exc, status=1)
    return 0 if outcome["status"] in ("completed", "interrupted") else 1


if __name__ == "__main__":
    sys.exit(main())

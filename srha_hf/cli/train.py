"""Train SRHA: ``accelerate launch scripts/train.py --config configs/r50_gtav.yaml [--key value ...]``.

Also runs as plain ``python scripts/train.py ...`` (one process) or under ``torchrun``. Every key of
the config (see ``srha_hf/training/config.py`` and the README) can be overridden on the command line,
e.g. ``--gtav_root /data/GTAV --max_iter 1000 --output_dir outputs/try``; an unknown key is an error.
"""

import argparse
import sys
from pathlib import Path

from srha_hf.training.config import ConfigError, load_config, parse_overrides


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=True
    )
    parser.add_argument("--config", help="a recipe YAML file (configs/*.yaml)")
    args, rest = parser.parse_known_args(argv)
    try:
        config = load_config(args.config, parse_overrides(rest))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    return run_training(config, args.config)


def run_training(config, config_path=None, appearance=None) -> int:
    """Train ``config`` (the recipe named after ``config_path``'s file) and turn the outcome into an exit
    status: 0 completed or interrupted (a checkpoint was saved), 2 a config error, 1 a non-finite loss.
    ``appearance``: a trial benchmark's hook (``experiments/train_trial.py``)."""
    from srha_hf.training.trainer import NonFiniteLossError, train

    recipe = Path(config_path).stem if config_path else "custom"
    try:
        outcome = train(config, recipe=recipe, appearance=appearance)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if outcome["status"] in ("completed", "interrupted") else 1


if __name__ == "__main__":
    sys.exit(main())

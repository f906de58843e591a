"""Training: the config dataclass and its YAML/CLI loading, SGD + poly schedule, atomic checkpoints,
and the Accelerate loop (``train``)."""

from .checkpoint import list_checkpoints, resolve_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, load_config, parse_overrides
from .optim import build_optimizer, parameter_groups, poly_factor, set_poly_lr

__all__ = [
    "ConfigError",
    "TrainConfig",
    "build_optimizer",
    "list_checkpoints",
    "load_config",
    "parameter_groups",
    "parse_overrides",
    "poly_factor",
    "resolve_checkpoint",
    "save_checkpoint",
    "set_poly_lr",
]

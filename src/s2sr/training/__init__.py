"""Training: configuration, schedule, the loop and data-parallel helpers."""

from s2sr.training.config import TrainConfig, load_config
from s2sr.training.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_config", "train"]

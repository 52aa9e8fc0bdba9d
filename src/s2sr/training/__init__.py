"""Training on PyTorch Lightning: configuration, the Lightning module and data module, the run
folder (checkpoints, metrics) and the study's Table 1."""

from s2sr.training.config import load_config
from s2sr.training.schema import TrainConfig
from s2sr.training.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_config", "train"]

"""Paired datasets: pair building, degradation (Wald pairs), storage and the Dataset."""

from s2sr.data.dataset import PairDataset
from s2sr.data.options import BuildOptions, DegradeOptions
from s2sr.data.pair_builder import build_pair
from s2sr.data.store import PairStore
from s2sr.data.validation import Thresholds
from s2sr.data.wald import degrade_scene

__all__ = ["BuildOptions", "DegradeOptions", "PairDataset", "PairStore", "Thresholds",
           "build_pair", "degrade_scene"]

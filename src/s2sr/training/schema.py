"""The experiment configuration as dataclasses: one per section of the YAML file.

Defaults here are the defaults of the file; :mod:`s2sr.training.config` reads a YAML file
into these classes, checking every key and value (:func:`~s2sr.training.config.load_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from s2sr.core.bands import DEFAULT_BANDS
from s2sr.core.errors import UsageError
from s2sr.data.synthetic import HAZE_GAIN, DegradationRange

#: The parts of the network a stage can freeze.
PARTS = ("head", "body", "upsample", "tail")


@dataclass
class ModelConfig:
    """The network: a registered name, its bands and scale, builder options."""

    name: str = "edsr"
    scale: int = 2
    bands: list[str] = field(default_factory=lambda: list(DEFAULT_BANDS))
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceConfig:
    """A real high-resolution image that synthetic pairs are cut from.

    ``path`` is a raster (bands found by description, or picked by ``bands``: 1-based
    indexes in the model's band order) or a folder of per-band files; ``files`` lists one
    single-band file per model band instead. ``gain``/``offset`` map DN to reflectance,
    ``DN * gain + offset``; with ``gain`` ``None``, what the file says (its GDAL
    scale/offset, else DN x 1e-4 for integers and the values as they are for floats) plus
    ``offset``; ``match`` rescales each band
    to the typical Sentinel-2 reflectance mean and spread of that band (for other sensors
    and stretched images); ``weight`` scales how often it is drawn (per pixel).
    """

    path: str = ""
    files: list[str] | None = None
    bands: list[int] | None = None
    gain: float | None = None
    offset: float = 0.0
    nodata: float | None = None
    match: bool = False
    weight: float = 1.0


@dataclass
class DegradationConfig:
    """Range of the per-patch degradation (see :mod:`s2sr.data.synthetic`)."""

    mtf: list[float] = field(default_factory=lambda: [0.15, 0.6])
    block_only: float = 0.2
    shift: float = 0.25
    noise: list[float] = field(default_factory=lambda: [0.0, 0.002])
    quantize: float = 1e-4
    haze: float = 0.0
    haze_gain: list[float] = field(default_factory=lambda: list(HAZE_GAIN))

    def as_range(self) -> DegradationRange:
        """The :class:`s2sr.data.synthetic.DegradationRange` (which checks every value)."""
        if len(self.mtf) != 2 or len(self.noise) != 2 or len(self.haze_gain) != 2:
            raise UsageError("data.synthetic.degradation.mtf, .noise and .haze_gain are "
                             "[low, high] pairs")
        return DegradationRange((self.mtf[0], self.mtf[1]), self.block_only, self.shift,
                                (self.noise[0], self.noise[1]), self.quantize, self.haze,
                                (self.haze_gain[0], self.haze_gain[1]))


@dataclass
class SyntheticConfig:
    """Training pairs made on the fly from real images (instead of ``datasets``).

    Validation cycles through the robustness panel's fixed degradations (block mean; MTF
    0.2, 0.3, 0.45, 0.6) on the ``val`` images, so a model is never selected on the
    degradation it was trained with.
    """

    root: str = "."
    train: list[SourceConfig] = field(default_factory=list)
    val: list[SourceConfig] = field(default_factory=list)
    samples_per_epoch: int = 2048
    val_samples: int = 250
    degradation: DegradationConfig = field(default_factory=DegradationConfig)


@dataclass
class DataConfig:
    """Datasets made by ``s2sr pairs`` and which of their patches to use.

    ``norm_from_data`` replaces the model's input normalisation by the training patches'
    per-band mean and standard deviation (when training from scratch).
    """

    datasets: list[str] = field(default_factory=list)
    synthetic: SyntheticConfig | None = None
    kind: list[str] | None = None
    train_split: str = "train"
    val_split: str = "val"
    site: list[str] | None = None
    augment: bool = True
    workers: int = 0
    norm_from_data: bool = True
    max_val_patches: int | None = 256


@dataclass
class LossConfig:
    """Loss = pixel x L1 + sum(feature[layer] x L1(VGG features)) + style_weight x
    sum(style[layer] x L1(Gram matrices)). ``vgg_weights``: a torchvision-format VGG16
    state dict, path or URL (default: ``$S2SR_VGG16_WEIGHTS`` when set, else torchvision's
    ImageNet weights, downloaded once and cached by torch.hub)."""

    pixel: float = 1.0
    pixel_kind: str = "l1"
    feature: dict[str, float] = field(default_factory=dict)
    style: dict[str, float] = field(default_factory=dict)
    style_weight: float = 0.0
    vgg_weights: str | None = None
    rgb_bands: list[str] = field(default_factory=lambda: ["B04", "B03", "B02"])
    rgb_scale: float = 0.3


@dataclass
class OptimizerConfig:
    """Adam(W) settings; the learning rate comes from each stage's one-cycle."""

    name: str = "adam"
    weight_decay: float = 0.0
    #: ``betas[0]`` is the top of the one-cycle's momentum range (it cycles betas[0] ->
    #: betas[0] - 0.1 -> betas[0]); ``betas[1]`` Adam's second-moment decay
    betas: list[float] = field(default_factory=lambda: [0.95, 0.99])
    #: clip the gradient norm to this value (``None``: no clipping); keeps the study's
    #: high one-cycle learning rates (5e-3) stable with the feature and style terms
    clip_grad_norm: float | None = None


@dataclass
class StageConfig:
    """One stage: its own one-cycle over ``epochs`` up to ``lr``.

    ``patch``: random crop of the input in pixels (progressive resizing; ``None``: whole
    patches). ``freeze``: parts kept fixed (head, body, upsample, tail).
    ``pct_start``: share of the cycle spent warming up.
    """

    epochs: int = 1
    lr: float = 1e-3
    patch: int | None = None
    freeze: list[str] = field(default_factory=list)
    batch_size: int | None = None
    pct_start: float = 0.3


@dataclass
class TrainConfig:
    """A whole experiment."""

    name: str = "experiment"
    seed: int = 0
    device: str = "auto"
    #: fp32 | bf16 | fp16 (or Lightning's names 32-true | bf16-mixed | 16-mixed)
    precision: str = "fp32"
    #: data-parallel processes per node (one per GPU, or CPU processes with gloo) and nodes;
    #: under torchrun its own layout is used
    devices: int = 1
    num_nodes: int = 1
    batch_size: int = 16
    init_from: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    source: str = ""

    def scaled(self, factor: float) -> TrainConfig:
        """A copy with every stage's epochs multiplied by ``factor`` (at least 1)."""
        copy = dataclasses.replace(self, stages=[
            dataclasses.replace(s, epochs=max(1, round(s.epochs * factor))) for s in self.stages])
        return copy

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for the run folder's config.yaml)."""
        return dataclasses.asdict(self)

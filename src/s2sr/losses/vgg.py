"""The VGG16 trunk of the perceptual losses, its weights and its input mapping.

The network is a plain-PyTorch copy of torchvision's ``vgg16().features`` (same module
indices, so torchvision state dicts load unchanged); torchvision itself is not needed.
Weights are read without unpickling arbitrary objects (``weights_only=True``); URLs are
downloaded once and cached by ``torch.hub``.

Band rule: VGG16 was trained on RGB photographs, so only the red, green and blue bands are
shown to it (:func:`reflectance_to_vgg`): reflectance is divided by ``scale`` (0.3 by
default, so reflectance 0.3 maps to 1.0; no clamping, to keep gradients) and normalised
with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse
from urllib.request import url2pathname

import torch
from torch import Tensor, nn

from s2sr.core.errors import BandError, InputNotFoundError, UsageError, WeightsError

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's configuration "D": conv output channels, "M" = 2x2 max pool.
# fmt: off
_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
# fmt: on

#: Index in ``features`` of each named ReLU output.
VGG16_LAYERS: dict[str, int] = {
    "relu1_1": 1,
    "relu1_2": 3,
    "relu2_1": 6,
    "relu2_2": 8,
    "relu3_1": 11,
    "relu3_2": 13,
    "relu3_3": 15,
    "relu4_1": 18,
    "relu4_2": 20,
    "relu4_3": 22,
    "relu5_1": 25,
    "relu5_2": 27,
    "relu5_3": 29,
}

_EXPECTED_HINT = (
    "expected a torchvision vgg16 state dict (features.0.weight ... features.28.bias); "
    f"download {VGG16_URL} or pass that URL"
)

#: Where the weights come from, for every message about missing or unreachable ones: the
#: environment variable, the config key and the file shipped beside the project.
LOCAL_WEIGHTS_HINT = (
    "point the environment variable S2SR_VGG16_WEIGHTS or the config key loss.vgg_weights "
    "at a local torchvision VGG16 state dict (e.g. "
    "S2SR_VGG16_WEIGHTS=../shared/weights/vgg16_hed_features.pth)"
)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor in ``VGG16Features().state_dict()``, in order."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, in_ch = 0, 3
    for v in _CFG:
        if v == "M":
            index += 1
            continue
        out_ch = int(v)
        shapes[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
        shapes[f"features.{index}.bias"] = (out_ch,)
        index, in_ch = index + 2, out_ch
    return shapes


_EXPECTED_SHAPES = _expected_shapes()


class VGG16Features(nn.Module):
    """Frozen VGG16 convolutional trunk, identical in layout to torchvision's ``features``.

    ``features`` holds 31 modules (13 conv3x3 + ReLU pairs and 5 max pools) at the same
    indices as torchvision, so keys ``features.0.weight`` ... ``features.28.bias`` load
    directly. Parameters never require gradients and the module always stays in eval mode.
    The weights are random until a state dict is loaded (see :func:`load_vgg16_state`).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU()]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """Keep eval mode whatever ``mode`` is (the network is a fixed feature extractor).

        Args:
            mode: ignored.

        Returns:
            ``self``.
        """
        return super().train(False)

    def forward(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Run the network only as deep as the deepest requested layer.

        Args:
            x: ``(B, 3, H, W)`` ImageNet-normalised RGB (see :func:`reflectance_to_vgg`).
            layers: names from :data:`VGG16_LAYERS`, e.g. ``("relu2_2", "relu3_3")``.

        Returns:
            ``{name: (B, C_l, H_l, W_l)}`` for each requested layer, in the requested order;
            empty when ``layers`` is empty.

        Raises:
            UsageError: unknown layer name.
            BandError: ``x`` is not ``(B, 3, H, W)``.
        """
        indices = [layer_index(name) for name in layers]
        if not indices:
            return {}
        if x.ndim != 4 or x.shape[1] != 3:
            raise BandError(
                f"VGG16 needs a (B, 3, H, W) RGB tensor, got shape {tuple(x.shape)}: "
                "convert reflectance with reflectance_to_vgg"
            )
        wanted = set(indices)
        last = max(indices)
        found: dict[int, Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                found[i] = x
            if i == last:
                break
        return {name: found[i] for name, i in zip(layers, indices, strict=True)}


def layer_index(name: str) -> int:
    """Index in ``VGG16Features.features`` of a named layer.

    Args:
        name: e.g. ``"relu3_3"``.

    Returns:
        The module index (e.g. 15).

    Raises:
        UsageError: unknown name.
    """
    try:
        return VGG16_LAYERS[name]
    except KeyError:
        raise UsageError(
            f"unknown VGG16 layer {name!r}: choose from {', '.join(VGG16_LAYERS)}"
        ) from None


def _is_url(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is an http(s) or file URL rather than a local path."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://", "file://"))


def load_vgg16_state(source: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read VGG16 feature weights from a URL or a local file, without unpickling objects.

    URLs (``http://``, ``https://``, ``file://``) go through
    ``torch.hub.load_state_dict_from_url`` (downloaded once, then cached in
    ``torch.hub.get_dir()/checkpoints``); local paths through ``torch.load``. Both use
    ``weights_only=True``. Full torchvision ``vgg16`` dicts (``classifier.*`` is dropped) and
    dicts of ``features`` without the ``features.`` prefix are accepted.

    Args:
        source: URL or path of a ``.pth`` state dict.

    Returns:
        ``{"features.0.weight": (64, 3, 3, 3), ..., "features.28.bias": (512,)}`` as float32
        CPU tensors, ready for ``VGG16Features.load_state_dict``.

    Raises:
        InputNotFoundError: the local file does not exist.
        WeightsError: the file cannot be read or downloaded, or is not VGG16 features.
    """
    if _is_url(source):
        url = str(source)
        if url.lower().startswith("file://"):
            local = Path(url2pathname(urlparse(url).path))
            if not local.exists():
                raise InputNotFoundError(
                    f"VGG16 weights file {local} (from {url}) does not exist: check the path, "
                    f"or {LOCAL_WEIGHTS_HINT}"
                )
        try:
            state: Any = torch.hub.load_state_dict_from_url(
                url, map_location="cpu", weights_only=True, progress=False
            )
        except Exception as err:  # URLError, HTTPError, unpickling errors, ...
            raise WeightsError(
                f"could not load VGG16 weights from {url} ({type(err).__name__}: {err}): "
                f"to train offline, {LOCAL_WEIGHTS_HINT}; or check the network connection "
                f"and delete a broken copy in {Path(torch.hub.get_dir()) / 'checkpoints'}"
            ) from None
        return _normalise_state(state, url)

    path = Path(source)
    if not path.exists():
        raise InputNotFoundError(
            f"VGG16 weights file {path} does not exist: check the path, or "
            f"{LOCAL_WEIGHTS_HINT}"
        )
    if not path.is_file():
        raise WeightsError(f"VGG16 weights path {path} is not a file: pass the .pth file itself")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsError(
            f"VGG16 weights file {path} is unreadable or not a plain state dict "
            f"({type(err).__name__}: {err}); {_EXPECTED_HINT}"
        ) from None
    return _normalise_state(state, str(path))


def _normalise_state(state: Any, where: str) -> dict[str, Tensor]:
    """Keep the ``features.*`` tensors of a VGG16 state dict and check their shapes.

    Args:
        state: what ``torch.load`` returned.
        where: path or URL, for messages.

    Returns:
        ``{"features.0.weight": ..., ...}`` float32 tensors in ``VGG16Features`` order.

    Raises:
        WeightsError: not a mapping of tensors, keys missing or unexpected, wrong shapes.
    """
    if not isinstance(state, Mapping):
        raise WeightsError(f"{where} holds a {type(state).__name__}, not a dict: {_EXPECTED_HINT}")
    keys = [k for k in state if isinstance(k, str)]
    if len(keys) != len(state):
        raise WeightsError(f"{where} has non-string keys: {_EXPECTED_HINT}")
    if any(k.startswith("features.") for k in keys):
        items = {k: state[k] for k in keys if k.startswith("features.")}
    else:
        items = {f"features.{k}": state[k] for k in keys}
    missing = [k for k in _EXPECTED_SHAPES if k not in items]
    unexpected = [k for k in items if k not in _EXPECTED_SHAPES]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            more = " ..." if len(unexpected) > 3 else ""
            detail.append(f"unexpected {', '.join(unexpected[:3])}{more}")
        raise WeightsError(f"{where}: {'; '.join(detail)}: {_EXPECTED_HINT}")
    out: dict[str, Tensor] = {}
    for key, shape in _EXPECTED_SHAPES.items():
        value = items[key]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise WeightsError(f"{where}: {key} is not a float tensor: {_EXPECTED_HINT}")
        if tuple(value.shape) != shape:
            raise WeightsError(
                f"{where}: {key} has shape {tuple(value.shape)}, VGG16 needs {shape}: "
                f"{_EXPECTED_HINT}"
            )
        out[key] = value.detach().to(device="cpu", dtype=torch.float32)
    return out


def reflectance_to_vgg(
    refl: Tensor, rgb_index: Sequence[int] = (2, 1, 0), scale: float = 0.3
) -> Tensor:
    """Map Sentinel-2 reflectance to ImageNet-normalised RGB for VGG16.

    ``rgb = refl[:, rgb_index] / scale`` (reflectance ``scale`` maps to 1.0; no clamping, so
    gradients flow everywhere), then ``(rgb - mean) / std`` with the ImageNet statistics.
    Bands not in ``rgb_index`` (NIR by default) are ignored here.

    Args:
        refl: ``(B, C, H, W)`` reflectance (0..1 scale), e.g. bands ``B02, B03, B04, B08``.
        rgb_index: indexes of the red, green and blue bands in ``C``.
        scale: reflectance mapped to 1.0.

    Returns:
        ``(B, 3, H, W)`` tensor, same dtype and device as ``refl``.

    Raises:
        BandError: ``refl`` is not 4-D or an index is out of range.
        UsageError: ``rgb_index`` does not have three entries or ``scale`` is not positive.
    """
    index = [int(i) for i in rgb_index]
    if len(index) != 3:
        raise UsageError(f"rgb_index needs 3 band indexes (red, green, blue), got {index}")
    if not scale > 0:
        raise UsageError(f"rgb scale must be positive, got {scale}")
    if refl.ndim != 4:
        raise BandError(
            f"expected a (B, C, H, W) reflectance tensor, got shape {tuple(refl.shape)}"
        )
    channels = refl.shape[1]
    if any(not 0 <= i < channels for i in index):
        raise BandError(
            f"rgb_index {index} does not fit a tensor with {channels} bands: set rgb_index to "
            "the positions of the red, green and blue bands"
        )
    rgb = refl[:, index] / scale
    mean = torch.tensor(IMAGENET_MEAN, dtype=refl.dtype, device=refl.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=refl.dtype, device=refl.device).view(1, 3, 1, 1)
    return (rgb - mean) / std

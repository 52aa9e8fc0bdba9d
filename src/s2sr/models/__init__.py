"""Networks, the model registry and the weights file format."""

from s2sr.models.edsr import EDSR, icnr_
from s2sr.models.pretrained import list_pretrained, pretrained_path
from s2sr.models.registry import (
    ModelSpec,
    build_model,
    check_spec,
    get_spec,
    list_models,
    register_model,
)
from s2sr.models.weights import file_sha256, load_model, read_metadata, save_model

__all__ = [
    "EDSR",
    "ModelSpec",
    "build_model",
    "check_spec",
    "file_sha256",
    "get_spec",
    "icnr_",
    "list_models",
    "list_pretrained",
    "load_model",
    "pretrained_path",
    "read_metadata",
    "register_model",
    "save_model",
]

"""Whole-scene inference: tiling, blending and the predict orchestrator."""

from s2sr.inference.predict import predict, super_resolve

__all__ = ["predict", "super_resolve"]

"""Encoders, decoders, heads and multi-task architectures."""

from mtl.models.encoders import Encoder, TimmEncoder, UNetEncoder
from mtl.models.multitask import MultiTaskNet

__all__ = ["Encoder", "MultiTaskNet", "TimmEncoder", "UNetEncoder"]

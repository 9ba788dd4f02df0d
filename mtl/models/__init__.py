"""Encoders, decoders, heads and multi-task architectures."""

from mtl.models.architectures import (
    MTAN,
    CrossStitch,
    HardParameterSharing,
    MultiTaskNet,
    SingleTaskNets,
)
from mtl.models.decoders import DeepLabV3PlusDecoder, DenseHead, FPNDecoder, UNetDecoder
from mtl.models.encoders import Encoder, TimmEncoder, UNetEncoder

__all__ = [
    "MTAN",
    "CrossStitch",
    "DeepLabV3PlusDecoder",
    "DenseHead",
    "Encoder",
    "FPNDecoder",
    "HardParameterSharing",
    "MultiTaskNet",
    "SingleTaskNets",
    "TimmEncoder",
    "UNetDecoder",
    "UNetEncoder",
]

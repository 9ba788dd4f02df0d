"""Multi-task architectures (`model=`): what is shared between tasks and what is not."""

from mtl.models.architectures.base import MultiTaskNet, build_heads
from mtl.models.architectures.cross_stitch import CrossStitch, CrossStitchUnit
from mtl.models.architectures.hps import HardParameterSharing
from mtl.models.architectures.mtan import MTAN, TaskAttention
from mtl.models.architectures.stl import SingleTaskNets

__all__ = [
    "MTAN",
    "CrossStitch",
    "CrossStitchUnit",
    "HardParameterSharing",
    "MultiTaskNet",
    "SingleTaskNets",
    "TaskAttention",
    "build_heads",
]

"""MTL weighting methods (`conf/weighting/`): loss weightings and gradient aggregators."""

from mtl.weighting.aligned_mtl import AlignedMTL
from mtl.weighting.base import (
    EqualWeighting,
    GradientWeighting,
    GramianWeighting,
    LossWeighting,
    SolverError,
    Weighting,
)
from mtl.weighting.cagrad import CAGrad
from mtl.weighting.db_mtl import DBMTL
from mtl.weighting.dwa import DynamicWeightAverage
from mtl.weighting.famo import FAMO
from mtl.weighting.fixed import FixedWeighting
from mtl.weighting.gls import GeometricLossStrategy
from mtl.weighting.graddrop import GradDrop
from mtl.weighting.gradnorm import GradNorm
from mtl.weighting.gradvac import GradVac
from mtl.weighting.imtl import IMTL
from mtl.weighting.mgda import MGDA
from mtl.weighting.nash_mtl import NashMTL
from mtl.weighting.pcgrad import PCGrad
from mtl.weighting.rlw import RandomLossWeighting
from mtl.weighting.uncertainty import UncertaintyWeighting
from mtl.weighting.upgrad import UPGrad

__all__ = [
    "DBMTL",
    "FAMO",
    "IMTL",
    "MGDA",
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "EqualWeighting",
    "FixedWeighting",
    "GeometricLossStrategy",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientWeighting",
    "GramianWeighting",
    "LossWeighting",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "SolverError",
    "UPGrad",
    "UncertaintyWeighting",
    "Weighting",
]

"""MTL weighting methods (`conf/weighting/`)."""

from mtl.weighting.base import EqualWeighting, LossWeighting, Weighting
from mtl.weighting.fixed import FixedWeighting

__all__ = ["EqualWeighting", "FixedWeighting", "LossWeighting", "Weighting"]

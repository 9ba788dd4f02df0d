"""mtl: multi-task learning for computer vision and medical imaging (Lightning + Hydra)."""

__version__ = "0.1.0"

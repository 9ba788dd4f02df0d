"""Predict new images: `python predict.py ckpt_path=<run>/checkpoints/best.ckpt input=<file or
folder>` (NIfTI, PNG, a DICOM file or a DICOM series folder; see README "Predict")."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> dict[str, Any]:
    from mtl.inference.run import predict

    return predict(cfg)


if __name__ == "__main__":
    main()

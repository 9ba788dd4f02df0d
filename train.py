"""Train a multi-task model: `python train.py [overrides]` (see README and conf/train.yaml)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the optimized metric so Hydra sweepers (Optuna) can use it."""
    from mtl.training.run import train

    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    value = metrics.get(f"best_{metric}", metrics.get(metric)) if metric else None
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()

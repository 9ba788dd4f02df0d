"""Train a multi-task model: `python train.py [overrides]` (see README and conf/train.yaml)."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the optimized metric so Hydra sweepers (Optuna) can use it."""
    from mtl.training.preemption import EXIT_PREEMPTED, Preempted
    from mtl.training.run import train

    try:
        metrics = train(cfg)
    except Preempted as stop:
        log.warning("%s", stop)
        sys.exit(EXIT_PREEMPTED)
    metric = cfg.get("optimized_metric")
    value = metrics.get(f"best_{metric}", metrics.get(metric)) if metric else None
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()

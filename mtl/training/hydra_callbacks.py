"""Hydra callbacks (`hydra.callbacks`): things to do around a whole run or sweep."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class MakeDirs(Callback):
    """Create folders before the sweeper starts: SQLite (the Optuna study's storage) opens
    a database file but never creates its folder."""

    def __init__(self, dirs: Sequence[str]) -> None:
        self.dirs = [Path(d) for d in dirs]

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        for folder in self.dirs:
            folder.mkdir(parents=True, exist_ok=True)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self.on_multirun_start(config)

"""`ModelCheckpoint` that keeps its best-so-far when a run resumes into a new folder.

Every `python train.py ckpt_path=<old run>` starts in a fresh Hydra folder. Lightning's
`ModelCheckpoint` then drops the best score and path it restored (they point into the old
folder), so the resumed run would pick its "best" among the epochs after the restart only and
test a different checkpoint than the uninterrupted run. This subclass copies the old folder's
tracked checkpoints into the new one and keeps their scores.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from mtl.data.atomic_io import write_atomic

log = logging.getLogger(__name__)

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def _copy_atomic(source: Path, target: Path) -> None:
    """Ranks copying the same file at once cannot clash (atomic rename)."""
    with open(source, "rb") as original:
        write_atomic(target, lambda handle: shutil.copyfileobj(original, handle))


class ResumableModelCheckpoint(ModelCheckpoint):
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and Path(old).resolve() != Path(self.dirpath).resolve():
            state_dict = self._carried_over(dict(state_dict), Path(self.dirpath))
        super().load_state_dict(state_dict)

    def _carried_over(self, state: dict[str, Any], new_dir: Path) -> dict[str, Any]:
        moved: dict[str, str] = {}

        def move(path: str) -> str:
            if not path:
                return path
            if path not in moved:
                source, target = Path(path), new_dir / Path(path).name
                if source.is_file():
                    _copy_atomic(source, target)
                    log.info("resumed run: carried %s over to %s", source, target)
                moved[path] = str(target)
            return moved[path]

        for key in PATH_KEYS:
            if state.get(key):
                state[key] = move(state[key])
        if state.get("best_k_models"):
            state["best_k_models"] = {move(p): v for p, v in state["best_k_models"].items()}
        state["dirpath"] = str(new_dir)
        return state

"""Checkpoints written atomically and read with errors that name the file.

Lightning's own save goes through an fsspec transaction whose temporary file lives in the
system temp dir: on clusters that is another file system, so the final move is a copy and a
kill in the middle leaves half a checkpoint. Here the temporary file sits beside the target
and `os.replace` swaps it in: a reader sees the old checkpoint or the new one, never half.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mtl.data.atomic_io import write_atomic


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names the file and what to use."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into `.<name>.tmp` beside the target, fsync, then rename over it."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomic(path, lambda handle: torch.save(checkpoint, handle))

    def load_checkpoint(self, path: str | os.PathLike, *args: Any, **kwargs: Any) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint '{path}' not found; pass ckpt_path=<run dir> (uses "
                f"<run dir>/checkpoints/last.ckpt) or the path of an existing .ckpt file"
            )
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except Exception as err:
            raise unreadable_checkpoint(path, err) from err


def unreadable_checkpoint(path: Path, err: BaseException) -> CheckpointError:
    """The error for a checkpoint torch cannot read, listing the run's other checkpoints."""
    others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
    hint = f"; other checkpoints there: {', '.join(others)}" if others else ""
    return CheckpointError(
        f"checkpoint '{path}' is unreadable ({type(err).__name__}: {err}); it is truncated or "
        f"not a PyTorch Lightning checkpoint. Use another checkpoint{hint}"
    )

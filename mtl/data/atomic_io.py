"""Writes that never leave half a file: through a temporary file in the same folder and a
rename, so a crash keeps the old file (or none) and concurrent writers (DDP ranks) of the
same file are harmless. The one mechanism behind every cache, report, result and checkpoint
file mtl writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def write_json_atomic(path: Path, payload: Any) -> None:
    write_atomic(path, lambda handle: handle.write(json.dumps(payload, indent=2).encode()))


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, np.ascontiguousarray(array)))


def write_atomic(path: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """`write(binary handle)` into `.<name>.*.tmp` beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Writes that never leave half a file: through a temporary file in the same folder and a
rename, so a crash keeps the old file (or none) and concurrent writers (DDP ranks) of the
same file are harmless. Used by the caches and reports of `mtl.data`."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def write_json_atomic(path: Path, payload: Any) -> None:
    _atomic(path, lambda handle: handle.write(json.dumps(payload, indent=2).encode()))


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    _atomic(path, lambda handle: np.save(handle, np.ascontiguousarray(array)))


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Writing and showing run results."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mtl.data.atomic_io import write_atomic


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats from tensors/numbers (NaN kept as NaN), sorted by name."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return dict(sorted(out.items()))


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Readers never see half a file (`mtl.data.atomic_io`); NaN kept, keys sorted."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))
    return Path(path)


def print_metrics_table(metrics: Mapping[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, "nan" if math.isnan(value) else f"{value:.4f}")
    Console().print(table)

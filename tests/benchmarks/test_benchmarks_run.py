"""Every benchmark script runs with its tiniest settings and prints its table and its
`ratio:` line. Smoke tests only: no timing is asserted (timings are the scripts' output)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_NET = "--override=encoder.channels=[8,16,32]"
SCRIPTS = {
    "overhead": [
        *("--steps", "1", "--warmup", "1", "--rounds", "1", "--image-size", "32"),
        *("--micro-repeats", "1", "--threads", "1", TINY_NET),
    ],
    "data_path": [
        *("--data", "ct", "nnunet", "--rounds", "1", "--batches", "1", "--steps", "1"),
        *("--num-train", "32", "--image-size", "32", "--num-workers", "0", "--batch-size", "4"),
        *("--nnunet-cases", "4", "--nnunet-shape", "32", "32", "6", "--threads", "1", TINY_NET),
    ],
    "weighting_overhead": [
        *("--methods", "ew", "pcgrad", "--tasks", "2", "--image-size", "32"),
        *("--warmup", "1", "--steps", "1", "--rounds", "1", "--threads", "1", TINY_NET),
    ],
    "memory": [
        *("--methods", "ew", "--models", "hps", "--image-size", "32", "--batch-size", "4"),
        *("--steps", "1", "--threads", "1", TINY_NET),
    ],
    "precision": [
        *("--image-size", "32", "--batch-size", "2", "--warmup", "0", "--steps", "1"),
        *("--threads", "1", TINY_NET),
    ],
    "architectures": [
        *("--models", "hps", "--encoders", "unet", "--image-size", "32", "--batch-size", "2"),
        *("--warmup", "0", "--steps", "1", "--threads", "1", TINY_NET),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_prints_table_and_ratio(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    command = [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *SCRIPTS[script]]
    command += ["--out", str(tmp_path)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("|---") for line in lines), result.stdout
    assert lines[-1].startswith("ratio: "), result.stdout
    float(lines[-1].removeprefix("ratio: "))

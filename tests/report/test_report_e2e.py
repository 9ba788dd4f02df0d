"""A real tiny sweep (EW and UW x 2 seeds, plus 2 STL seeds) through `train.py -m`, then
`python -m mtl.report` on it: rows, seeds, delta_m recomputed by hand from runs.csv."""

from __future__ import annotations

import csv
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY_SWEEP = [
    "data.num_train=16",
    "data.num_val=8",
    "data.num_test=16",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.phantom.image_size=32",
    "encoder.channels=[8,16,32]",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
    "extras.print_metrics=false",
    "logger=csv",
    "callbacks.prediction_images.every_n_epochs=0",
    "callbacks.gradient_conflicts.every_n_steps=0",
]
METRICS = ["seg/pixel_acc", "cls/auroc"]
HIGHER_IS_BETTER = {"seg/pixel_acc": True, "cls/auroc": True}


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_tiny_sweep_then_report(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "MTL_ROOT": str(tmp_path)}
    sweeps = tmp_path / "sweeps"
    train = str(ROOT / "train.py")
    _run(
        [
            train,
            "-m",
            "seed=0,1",
            "weighting=ew,uw",
            f"hydra.sweep.dir={sweeps / 'mtl'}",
            *TINY_SWEEP,
        ],
        tmp_path,
        env,
    )
    _run(
        [train, "-m", "seed=0,1", "model=stl", f"hydra.sweep.dir={sweeps / 'stl'}", *TINY_SWEEP],
        tmp_path,
        env,
    )
    result = _run(
        ["-m", "mtl.report", str(sweeps), "--metrics", ",".join(METRICS)],
        ROOT,
        {**env, "PYTHONPATH": str(ROOT)},
    )
    out = sweeps / "report"
    table = (out / "table.md").read_text()
    assert result.stdout.strip() == table.strip()
    assert "| weighting | n | seg/pixel_acc ↑ | cls/auroc ↑ |" in table
    for label in ("STL", "ew", "uw"):
        assert f"| {label} | 2 |" in table
    assert "seeds 0, 1" in table and "python train.py -m seed=0,1 weighting=ew,uw" in table
    assert "Runs not in the table" not in table
    assert (out / "table.tex").read_text().count(r"\pm") >= 6
    assert (out / "bars_seg_pixel_acc.png").is_file()
    assert (out / "curves_val_seg_pixel_acc.png").is_file()
    assert (out / "curves_train_loss.png").is_file()

    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == 6 and {r["status"] for r in runs} == {"ok"}
    base = {
        m: statistics.fmean(float(r[f"test/{m}"]) for r in runs if r["baseline"] == "True")
        for m in METRICS
    }
    if not all(math.isfinite(b) and b != 0 for b in base.values()):
        assert "delta_m not available" in table  # a zero baseline: said, not hidden
        return
    for run in runs:
        relative = []
        for metric in METRICS:
            change = (float(run[f"test/{metric}"]) - base[metric]) / base[metric]
            relative.append(-change if HIGHER_IS_BETTER[metric] else change)
        # one metric per task: both forms are the same mean
        expected = 100 * statistics.fmean(relative)
        assert float(run["report/delta_m/per_metric"]) == pytest.approx(expected)
        assert float(run["report/delta_m/per_task"]) == pytest.approx(expected)

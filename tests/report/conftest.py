"""A fake sweep shared by the report tests: STL, EW and UW over two seeds, a failed and an
unfinished PCGrad run; tasks seg (higher is better) and depth (abs_err: lower is better)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.sweeps import make_run, write_multirun

# (weighting, model, seed) -> (seg/miou, seg/pixel_acc, depth/abs_err)
VALUES = {
    ("ew", "stl", 0): (0.50, 0.80, 0.40),
    ("ew", "stl", 1): (0.60, 0.90, 0.60),
    ("ew", "hps", 0): (0.55, 0.85, 0.45),
    ("ew", "hps", 1): (0.65, 0.85, 0.55),
    ("uw", "hps", 0): (0.50, 0.80, 0.30),
    ("uw", "hps", 1): (0.52, 0.90, 0.34),
}


def metrics_of(miou: float, pixel_acc: float, abs_err: float) -> dict[str, float]:
    return {
        "test/seg/miou": miou,
        "test/seg/pixel_acc": pixel_acc,
        "test/seg/dice": miou,
        "test/seg/dice_liver": 0.9,  # per class: not a default column
        "test/seg/loss": 1.0,
        "test/depth/abs_err": abs_err,
        "test/depth/rmse": abs_err * 2,
        "test/loss": 2.0,
        "best_val/seg/dice": miou,
        "model/params/total": 1000.0,
    }


def curves_of(seed: int) -> list[dict[str, float]]:
    rows = []
    for epoch in range(3):
        rows.append({"epoch": epoch, "step": epoch * 2 + 1, "val/seg/miou": 0.1 * epoch + seed})
        rows.append({"epoch": epoch, "step": epoch * 2 + 1, "train/loss_epoch": 3.0 - epoch})
    return rows


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """`<tmp>/sweeps` with two multiruns: `stl/` (2 seeds) and `mtl/` (EW, UW, PCGrad x 2
    seeds; PCGrad seed 0 failed, seed 1 never finished)."""
    root = tmp_path / "sweeps"
    write_multirun(root / "stl", ["seed=0,1", "model=stl"])
    write_multirun(root / "mtl", ["seed=0,1", "weighting=ew,uw,pcgrad"])
    jobs = {"stl": 0, "mtl": 0}
    for (weighting, model, seed), values in VALUES.items():
        sweep_name = "stl" if model == "stl" else "mtl"
        job = jobs[sweep_name]
        jobs[sweep_name] += 1
        overrides = [f"seed={seed}", "model=stl" if model == "stl" else f"weighting={weighting}"]
        make_run(
            root / sweep_name / str(job),
            seed=seed,
            choices={"weighting": weighting, "model": model, "encoder": "unet"},
            metrics=metrics_of(*values),
            overrides=overrides,
            job=job,
            curves=curves_of(seed),
        )
    pcgrad = {"weighting": "pcgrad", "model": "hps", "encoder": "unet"}
    make_run(
        root / "mtl" / "4",
        seed=0,
        choices=pcgrad,
        failure={"error_type": "ValueError", "message": "boom\nsecond line", "traceback": "..."},
        overrides=["seed=0", "weighting=pcgrad"],
        job=4,
    )
    make_run(
        root / "mtl" / "5", seed=1, choices=pcgrad, overrides=["seed=1", "weighting=pcgrad"], job=5
    )
    return root

"""Ablations as declarative specs, turned into resumable Hydra multiruns (experiments/run.py)."""

from mtl.sweeps.commands import plan_ablation, report_command, shell_line
from mtl.sweeps.spec import AblationSpec, SpecError, Sweep
from mtl.sweeps.status import sweep_status

__all__ = [
    "AblationSpec",
    "SpecError",
    "Sweep",
    "plan_ablation",
    "report_command",
    "shell_line",
    "sweep_status",
]

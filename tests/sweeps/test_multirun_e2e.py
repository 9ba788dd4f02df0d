"""Multiruns through the command line: failures, W&B, DDP, Optuna, a whole ablation."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from mtl.sweeps.spec import override_key

ROOT = Path(__file__).resolve().parents[2]
TINY_CLI = [o for o in TINY if not o.startswith("logger=")]


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """A command in `cwd`, logs and data under it (MTL_ROOT), this checkout's `mtl` first."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "WANDB_MODE": "offline", "MTL_ROOT": str(cwd), "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _train_multirun(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`train.py -m`, each job in `sweep/<the swept overrides>/` (as experiments/run.py)."""
    fixed = [*TINY_CLI, *(o for o in overrides if "," not in o.split("=", 1)[1])]
    sweep = [
        "hydra.sweep.dir=sweep",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(map(override_key, fixed))}]",
    ]
    return _run([str(ROOT / "train.py"), "-m", *TINY_CLI, *overrides, *sweep], cwd)


def _folders(cwd: Path) -> set[str]:
    """Every folder that holds a Hydra job record or a metrics file, relative to cwd."""
    marks = [*cwd.rglob(".hydra"), *cwd.rglob("metrics.json")]
    return {str(p.parent.relative_to(cwd)) for p in marks}


def test_a_failing_job_does_not_stop_the_others_and_wandb_runs_are_labelled(tmp_path):
    """lr=-1 makes the optimizer raise inside the first job; the second still trains, and
    the sweep exits non-zero at the end. Each job has its own offline W&B run."""
    result = _train_multirun(
        tmp_path,
        "optimizer.lr=-1.0,0.003",
        "logger=wandb",
        "group=abl-quick",
        "job_type=baseline",
        "tags=abl",
    )
    assert result.returncode != 0
    assert "Invalid learning rate: -1.0" in result.stderr
    failed, done = tmp_path / "sweep/optimizer.lr=-1.0", tmp_path / "sweep/optimizer.lr=0.003"
    assert not (failed / "metrics.json").exists()
    assert "Invalid learning rate" in (failed / "failure.json").read_text()
    assert (done / "metrics.json").is_file()
    assert _folders(tmp_path) == {"sweep/optimizer.lr=-1.0", "sweep/optimizer.lr=0.003"}

    runs = list((done / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "one offline W&B run per job, inside the job's folder"
    record = runs[0].read_bytes()
    for text in ("abl-quick", "baseline", "method:ew", "architecture:hps", "seed:42", "abl"):
        assert text.encode() in record, f"{text} not in the W&B run"
    assert list((failed / "wandb").glob("offline-run-*")), "the failed job's run was closed too"


@pytest.mark.slow
def test_ddp_inside_a_multirun(tmp_path):
    """Two jobs, one per DDP launcher: `ddp` re-runs train.py per extra rank (it must run
    that job only, in that job's folder), `ddp_spawn` forks. No stray folders, no hang."""
    result = _train_multirun(
        tmp_path, "trainer=ddp_cpu", "trainer.strategy=ddp,ddp_spawn", "logger=none"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {"sweep/trainer.strategy=ddp", "sweep/trainer.strategy=ddp_spawn"}
    assert _folders(tmp_path) == jobs
    assert all((tmp_path / job / "metrics.json").is_file() for job in jobs)
    assert (tmp_path / "sweep/trainer.strategy=ddp/train_ddp_process_1.log").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "sweep"]


@pytest.mark.slow
def test_optuna_search_is_stored_in_sqlite_and_resumes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    search = ["hparams_search=optuna", "hydra.sweeper.study_name=tiny", "logger=none"]
    first = _run([str(ROOT / "train.py"), *search, "hydra.sweeper.n_trials=2", *TINY_CLI], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    db = tmp_path / "logs/optuna/optuna.db"
    query = "select t.state, count(*) from trials t join studies s using (study_id) "
    query += "where s.study_name = 'tiny' group by t.state"
    with sqlite3.connect(db) as con:
        assert dict(con.execute(query).fetchall()) == {"COMPLETE": 2}

    again = _run([str(ROOT / "train.py"), *search, "hydra.sweeper.n_trials=1", *TINY_CLI], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    with sqlite3.connect(db) as con:
        assert dict(con.execute(query).fetchall()) == {"COMPLETE": 3}  # added, not restarted
    assert len(list((tmp_path / "logs/optuna/tiny").glob("*/*/metrics.json"))) == 3


@pytest.mark.slow
def test_quick_ablation_end_to_end_and_resume(tmp_path):
    """`experiments/run.py weighting_ct` at its smallest: STL baseline + 2 methods, then the
    report; the same command again trains nothing."""
    args = [str(ROOT / "experiments/run.py"), "weighting_ct", "--log-dir", str(tmp_path / "logs")]
    args += ["weighting=ew,uw", "seed=0", *TINY_CLI, "logger=csv"]
    first = _run(args, tmp_path)
    out = tmp_path / "logs/ablations/weighting_ct/quick"
    jobs = ["baseline_stl/seed=0", "runs/seed=0,weighting=ew", "runs/seed=0,weighting=uw"]
    assert all((out / job / "metrics.json").is_file() for job in jobs), first.stdout[-3000:]
    assert "baseline_stl: 1/1 jobs done" in first.stdout
    assert "runs: 2/2 jobs done" in first.stdout
    if importlib.util.find_spec("mtl.report") is None:
        assert first.returncode == 1
        assert "mtl.report is not available" in first.stderr
    else:
        assert first.returncode == 0, first.stderr[-3000:]
        assert any((out / "report").iterdir())

    ckpt = out / "runs/seed=0,weighting=uw/checkpoints/best.ckpt"
    mtime = ckpt.stat().st_mtime_ns
    again = _run(args, tmp_path)
    assert again.returncode == first.returncode
    assert (again.stdout + again.stderr).count("Skipping") == 3
    assert ckpt.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_submitit_launcher_runs_the_sweep_in_its_own_processes(tmp_path):
    """The SLURM launcher's machinery (submitit pickles the Hydra job, a fresh process runs
    it, results come back) through submitit's local executor: the path a cluster job takes,
    short of sbatch. Each job lands in its own folder with its metrics."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = _train_multirun(
        tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=0,1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {"sweep/seed=0", "sweep/seed=1"}
    assert _folders(tmp_path) == jobs
    metrics = [(tmp_path / job / "metrics.json").read_text() for job in sorted(jobs)]
    assert all('"test/seg/dice"' in m for m in metrics)
    assert metrics[0] != metrics[1], "the two seeds trained different models"
    assert list((tmp_path / "sweep/.submitit").rglob("*_result.pkl")), "submitit ran the jobs"

"""Skipping finished jobs, the DDP command line of a multirun job, W&B labels, sweeper and
launcher configs (through the compose API; one tiny training run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, TINY, compose_config
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from mtl.training import sweep_job
from mtl.training.run import METRICS_FILE, RUN_CONFIG, train


def _hydra_cfg(tmp_path: Path, overrides: list[str], job_overrides: list[str] | None = None):
    """A config with its `hydra` node, registered as the running app's (as in a real run)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        if job_overrides is not None:
            cfg.hydra.overrides.task = job_overrides
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def no_hydra_app():
    yield
    HydraConfig.instance().cfg = None


def test_same_run_config_ignores_logging_and_paths(tmp_path):
    cfg = compose_config(tmp_path, TINY)
    other = compose_config(tmp_path / "b", [*TINY, "logger=csv", "tags=[x]", "group=g"])
    assert sweep_job.same_run_config(cfg, other)
    changed = compose_config(tmp_path, [*TINY, "optimizer.lr=0.1"])
    assert not sweep_job.same_run_config(cfg, changed)
    saved = tmp_path / "config.yaml"
    OmegaConf.save(OmegaConf.to_container(cfg, resolve=True), saved)
    assert sweep_job.same_run_config(OmegaConf.load(saved), cfg)  # after a YAML round trip


def test_finished_job_is_skipped_and_a_changed_one_trains_again(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, "skip_finished=true"])
    first = train(cfg)
    run = Path(cfg.paths.output_dir)
    best = run / "checkpoints" / "best.ckpt"
    mtime = best.stat().st_mtime_ns

    again = train(cfg)
    assert again == pytest.approx(first, nan_ok=True)
    assert best.stat().st_mtime_ns == mtime  # not retrained

    changed = compose_config(tmp_path, [*TINY, "skip_finished=true", "optimizer.lr=0.01"])
    (run / METRICS_FILE).write_text(json.dumps({"marker": 1.0}))
    train(changed)
    assert json.loads((run / "metrics.json.stale").read_text()) == {"marker": 1.0}
    assert (run / "checkpoints.stale" / "best.ckpt").stat().st_mtime_ns == mtime  # not resumed
    assert "marker" not in json.loads((run / METRICS_FILE).read_text())
    assert best.stat().st_mtime_ns != mtime


def test_without_skip_finished_nothing_is_reused(tmp_path):
    cfg = compose_config(tmp_path, TINY)
    run = Path(cfg.paths.output_dir)
    run.mkdir(parents=True)
    (run / METRICS_FILE).write_text("{}")
    OmegaConf.save(OmegaConf.to_container(cfg, resolve=True), run / RUN_CONFIG)
    assert sweep_job.finished_metrics(cfg, run) is None
    with open_dict(cfg):
        cfg.skip_finished = True
    assert sweep_job.finished_metrics(cfg, run) == {}


def test_flags_keep_options_and_drop_overrides_and_multirun():
    argv = ["-m", "a=1,2", "--config-name", "train", "-cd", "conf", "--config-path=x", "b=[1]"]
    assert sweep_job._flags(argv) == ["--config-name", "train", "-cd", "conf", "--config-path=x"]


def test_multirun_job_gets_its_own_command_line(tmp_path, monkeypatch, no_hydra_app):
    job = ["seed=3", "weighting=uw", "ckpt_path=last"]
    cfg = _hydra_cfg(tmp_path, [*job, "hydra.mode=MULTIRUN"], job_overrides=job)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "seed=1,3", "weighting=ew,uw"])
    monkeypatch.setattr(sweep_job, "_original_argv", None)
    monkeypatch.setenv("LOCAL_RANK", "0")  # as a previous job's DDP launcher leaves it
    monkeypatch.setattr(sweep_job, "_original_env", {"LOCAL_RANK": None})
    assert sweep_job.start_job(cfg, tmp_path / "run") is None
    # ranks re-launched as single runs must not take `last` from a sibling job's folder
    assert sys.argv == ["train.py", "seed=3", "weighting=uw", "ckpt_path=null"]
    assert HydraConfig.get().run.dir == str(tmp_path / "run")
    assert "LOCAL_RANK" not in __import__("os").environ

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    sweep_job.start_job(cfg, tmp_path / "run")
    assert sys.argv == ["train.py", "seed=3", "weighting=uw", f"ckpt_path={last}"]


def test_single_runs_keep_their_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "seed=1"])
    cfg = compose_config(tmp_path, TINY)
    assert sweep_job.start_job(cfg, tmp_path / "run") is None
    assert sys.argv == ["train.py", "seed=1"]


def test_wandb_logger_gets_group_job_type_and_labels(tmp_path, no_hydra_app):
    choices = ["logger=wandb", "weighting=pcgrad", "model=mtan", "seed=2"]
    labels = ["group=abl-quick", "job_type=baseline", "tags=[abl,quick]"]
    cfg = _hydra_cfg(tmp_path, [*choices, *labels, "logger.wandb.offline=true"])
    logger = instantiate(cfg.logger.wandb)
    init = logger._wandb_init
    assert init["group"] == "abl-quick"
    assert init["job_type"] == "baseline"
    assert init["tags"] == [
        "abl",
        "quick",
        "method:pcgrad",
        "architecture:mtan",
        "data:ct",
        "encoder:unet",
        "seed:2",
    ]
    assert init["config"] == {
        "method": "pcgrad",
        "architecture": "mtan",
        "data": "ct",
        "encoder": "unet",
        "seed": "2",
    }
    assert logger._offline
    assert init["dir"] == str(tmp_path / "run")  # offline runs land in the run folder


def test_optuna_search_config(tmp_path, no_hydra_app):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = _hydra_cfg(tmp_path, ["hparams_search=optuna", "paths.log_dir=/x/logs"])
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize"  # from optimized_mode: max
    assert sweeper.storage == "sqlite:////x/logs/optuna/optuna.db"
    assert sweeper.study_name == "train_ct"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    searched = {"optimizer.lr", "optimizer.weight_decay", "weighting.weights.cls"}
    assert set(sweeper.params) == searched
    assert cfg.hydra.sweep.dir.startswith("/x/logs/optuna/train_ct/")
    cfg = _hydra_cfg(tmp_path, ["hparams_search=optuna", "optimized_mode=min"])
    assert cfg.hydra.sweeper.direction == "minimize"


def test_slurm_launcher_follows_the_trainer(tmp_path, no_hydra_app):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"]
    cfg = _hydra_cfg(tmp_path, [*overrides, "trainer.devices=4", "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu"
    assert launcher["submitit_folder"].endswith("/.submitit/%j")
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm

"""`train.py` / `eval.py` end to end, through Hydra's compose API and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_config

from mtl.training.builders import ConfigError, build_datamodule, build_module, build_trainer
from mtl.training.run import METRICS_FILE, evaluate, train

ROOT = Path(__file__).resolve().parents[2]


def _test_keys(metrics: dict) -> set[str]:
    return {k for k in metrics if k.startswith("test/")}


def test_train_writes_config_checkpoints_metrics(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, "logger=csv"])
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "csv" / "metrics.csv").is_file()
    assert (run / "predictions" / "epoch_000.png").stat().st_size > 10_000  # overlays drawn
    saved = json.loads((run / METRICS_FILE).read_text())
    assert saved == pytest.approx(metrics, nan_ok=True)
    expected = {f"test/seg/{m}" for m in ("dice", "miou", "pixel_acc", "dice_lesion")}
    expected |= {f"test/cls/{m}" for m in ("acc", "balanced_acc", "f1", "auroc")}
    assert expected <= _test_keys(saved)
    assert "best_val/seg/dice" in saved
    assert all(isinstance(v, float) for v in saved.values())


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_fast_dev_run(tmp_path, trainer):
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            f"trainer={trainer}",
            "trainer.fast_dev_run=true",
            "trainer.enable_progress_bar=false",
        ],
    )
    metrics = train(cfg)
    assert {"test/seg/dice", "test/cls/balanced_acc"} <= _test_keys(metrics)


@pytest.mark.parametrize(
    "loggers,expected",
    [
        ("csv", ["csv/metrics.csv"]),
        ("wandb", ["wandb"]),
        ("tensorboard", ["tensorboard"]),
        ("[csv,wandb,tensorboard]", ["csv/metrics.csv", "wandb", "tensorboard"]),
    ],
)
def test_each_logger_writes_its_files(tmp_path, monkeypatch, loggers, expected):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config(tmp_path, [*TINY, f"logger={loggers}"])
    train(cfg)
    run = Path(cfg.paths.output_dir)
    for item in expected:
        assert (run / item).exists(), f"{item} missing for logger={loggers}"
    if "wandb" in expected:
        offline_runs = list((run / "wandb").glob("offline-run-*"))
        assert offline_runs, "W&B must run offline without an account"
        import wandb

        assert wandb.run is None  # finished, so the next job starts its own run
    if "tensorboard" in expected:
        assert list((run / "tensorboard").rglob("events.out.tfevents*"))


@pytest.mark.parametrize("tasks", ["[seg]", "[cls]", "[seg,cls]"])
def test_stl(tmp_path, tasks):
    cfg = compose_config(
        tmp_path,
        [*TINY, "model=stl", f"tasks={tasks}", "optimized_metric=val/loss", "optimized_mode=min"],
    )
    metrics = train(cfg)
    names = tasks.strip("[]").split(",")
    assert {k.split("/")[1] for k in _test_keys(metrics)} == {*names, "loss"}


def test_fixed_weighting_and_timm_encoder_run(tmp_path):
    tiny = [o for o in TINY if not o.startswith("encoder.")]
    cfg = compose_config(
        tmp_path,
        [
            *tiny,
            "weighting=fixed",
            "weighting.weights.cls=0.5",
            "encoder=timm",
            "encoder.name=resnet18",
            "trainer.fast_dev_run=true",
        ],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    assert module.weighting.alpha.tolist() == [1.0, 0.5]
    assert "test/seg/dice" in train(cfg)


@pytest.mark.parametrize(
    "override,message",
    [
        ("tasks.seg.num_classes=4", "num_classes=4 but the data's target 'seg' has 5 classes"),
        ("tasks.cls.target=organ", "needs target 'organ', which data"),
        ("optimized_metric=val/seg/dcie", "not logged by this run; choose one of"),
        ("optimized_mode=min", "better when higher, but optimized_mode=min"),
        ("tasks.cls.class_weights=[1,2]", "2 entries but the target has 3 classes"),
        ("weighting=fixed +weighting.weights.depth=1", "names tasks ['depth']"),
    ],
)
def test_bad_config_fails_before_training_with_a_clear_message(tmp_path, override, message):
    cfg = compose_config(tmp_path, [*TINY, *override.split()])
    with pytest.raises((ConfigError, ValueError)) as err:
        train(cfg)
    assert message in str(err.value)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def _cli(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "MTL_ROOT": str(cwd)}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_train_then_eval_reproduces_test_metrics(tmp_path):
    tiny = [o for o in TINY if not o.startswith("logger=")]
    result = _cli(
        "train.py",
        *tiny,
        "trainer.max_epochs=2",
        "logger=csv",
        "hydra.run.dir=" + str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    trained = json.loads((run / METRICS_FILE).read_text())
    assert (run / ".hydra" / "config.yaml").is_file()
    result = _cli(
        "eval.py",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "trainer.accelerator=cpu",
        "logger=none",
        "extras.print_metrics=false",
        "hydra.run.dir=" + str(tmp_path / "eval"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / METRICS_FILE).read_text())
    assert set(evaluated) == _test_keys(trained)
    for key, value in evaluated.items():
        assert value == pytest.approx(trained[key], rel=1e-5, abs=1e-6, nan_ok=True), key


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])  # ddp_cpu spawns: the callback pickles
def test_weight_averaging_is_what_training_tests_and_eval_reproduces(tmp_path, trainer):
    """callbacks=ema: the best checkpoint holds the averaged weights, and the test after
    training scores those, as eval.py does (not the raw weights the callback keeps aside)."""
    cfg = compose_config(
        tmp_path / "train",
        [
            *TINY,
            f"trainer={trainer}",
            "data.num_train=48",  # >= 3 steps an epoch per rank: the average != the weights
            "trainer.max_epochs=2",
            "logger=csv",
            "callbacks=ema",
            "callbacks.ema.decay=0.5",
        ],
    )
    trained = train(cfg)
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    saved = torch.load(best, weights_only=False)
    averaged, raw = saved["state_dict"], saved["current_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)  # they do differ

    ev = compose_config(
        tmp_path / "eval",
        [
            f"ckpt_path={best}",
            "logger=none",
            "trainer.accelerator=cpu",
            "extras.print_metrics=false",
        ],
        config_name="eval",
    )
    evaluated = evaluate(ev)
    assert set(evaluated) == _test_keys(trained)
    for key, value in evaluated.items():
        if trainer == "ddp_cpu" and key.endswith("loss"):
            # Dice and class-weighted CE are batch-level means: two ranks batch the test
            # split differently from one process. The metrics' states are synced exactly.
            continue
        assert value == pytest.approx(trained[key], rel=1e-5, abs=1e-6, nan_ok=True), key


def test_eval_without_checkpoint_names_the_fix(tmp_path):
    result = _cli(
        "eval.py",
        f"ckpt_path={tmp_path / 'nope.ckpt'}",
        "hydra.run.dir=" + str(tmp_path / "eval"),
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "not found; pass ckpt_path=" in result.stderr


@pytest.mark.slow
def test_short_training_learns(tmp_path):
    """Validation Dice rises clearly above the untrained model's (the model learns)."""
    cfg = compose_config(
        tmp_path,
        [
            "data.num_train=384",
            "data.num_val=64",
            "data.num_test=16",
            "data.batch_size=16",
            "data.phantom.image_size=64",
            "encoder.channels=[8,16,32,64,128]",
            "trainer.max_epochs=8",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "logger=none",
            "extras.print_config=false",
            "extras.print_metrics=false",
            "callbacks=none",
        ],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    before = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    trainer.fit(module, datamodule=datamodule)
    after = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    assert after["val/seg/dice"] > before["val/seg/dice"] + 0.3, (before, after)
    assert after["val/loss"] < before["val/loss"]


def test_same_seed_same_numbers(tmp_path):
    """Reproducibility: two runs with one seed and deterministic=true agree exactly."""
    runs = []
    for name in ("a", "b"):
        cfg = compose_config(tmp_path / name, [*TINY, "trainer.deterministic=true", "seed=7"])
        runs.append(train(cfg))
    assert runs[0] == runs[1]
    other = train(compose_config(tmp_path / "c", [*TINY, "trainer.deterministic=true", "seed=8"]))
    assert other != runs[0]


def test_eval_applies_dotted_overrides_on_top_of_the_run_config(tmp_path):
    from omegaconf import OmegaConf

    from mtl.training.run import RUN_CONFIG, with_run_config

    run = compose_config(tmp_path, [*TINY, "encoder.channels=[4,8,16]"])
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    OmegaConf.save(run, ckpt.parent.parent / RUN_CONFIG)
    ev = compose_config(tmp_path / "eval", ["ckpt_path=x", "trainer=cpu"], config_name="eval")
    merged = with_run_config(ev, ckpt, ["data.num_test=7", "logger=none", "ckpt_path=x"])
    assert merged.data.num_test == 7  # the override
    assert list(merged.encoder.channels) == [4, 8, 16]  # the run's model, not eval.yaml's
    assert merged.trainer.accelerator == "cpu"  # the evaluation's trainer
    with pytest.raises(ConfigError, match="use_run_config=false"):
        with_run_config(ev, tmp_path / "elsewhere" / "x.ckpt", [])


def test_mean_of_last_epochs_is_reported_beside_the_best_checkpoint(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, "trainer.max_epochs=3", "test_last_epochs=2"])
    metrics = train(cfg)
    saved = sorted((Path(cfg.paths.output_dir) / "checkpoints" / "last_epochs").glob("*.ckpt"))
    assert [p.name for p in saved] == ["epoch_001.ckpt", "epoch_002.ckpt"]
    # each saved epoch tested on its own: the reported value is their mean
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    dice = []
    for path in saved:
        trainer.test(module, datamodule=datamodule, ckpt_path=str(path), verbose=False)
        dice.append(float(trainer.callback_metrics["test/seg/dice"]))
    assert metrics["test_last2/seg/dice"] == pytest.approx(sum(dice) / 2, rel=1e-5)
    assert metrics["test_last2_std/seg/dice"] == pytest.approx(abs(dice[0] - dice[1]) / 2, abs=1e-6)
    assert "test/seg/dice" in metrics  # the best-validation checkpoint is still the headline


def test_csv_log_survives_ddp_spawn(tmp_path):
    """The launching process and spawned rank 0 both write `metrics.csv`; every column of
    both must end up in one readable file."""
    import csv

    cfg = compose_config(tmp_path, [*TINY, "trainer=ddp_cpu", "logger=csv"])
    train(cfg)
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0])
    assert {"model/params/total", "val/seg/dice", "test/seg/dice"} <= columns
    assert any(row["test/seg/dice"] for row in rows)


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_default_experiment_trains_with_balanced_batches_and_a_guided_cls_head(tmp_path, trainer):
    """`make train` runs experiment=ct_default: the weighted sampler, no cls class weights, a
    cls head pooling under segmentation's lesion probability, and augmentation of half the
    slices."""
    makefile = (ROOT / "Makefile").read_text()
    assert "train.py experiment=ct_default $(ARGS)" in makefile
    overrides = [*TINY, "experiment=ct_default"]
    cfg = compose_config(tmp_path, [*overrides, f"trainer={trainer}", "trainer.fast_dev_run=true"])
    assert cfg.sampler.weight_target == "cls" and cfg.tasks.cls.class_weights is None
    datamodule = build_datamodule(cfg)
    assert (datamodule.augment.spatial_p, datamodule.augment.intensity_p) == (0.5, 0.3)
    net = build_module(cfg, datamodule).net
    head = net.heads["cls"]
    assert head.guided and head.stages == [-3, -2, -1]
    assert net.guides["cls"].source == "seg"
    assert net.guides["cls"].channel == datamodule.target_specs["seg"].class_names.index("lesion")
    metrics = train(cfg)
    assert {"test/seg/dice", "test/cls/balanced_acc"} <= _test_keys(metrics)

"""SIGTERM / SIGUSR1 save a checkpoint and stop cleanly; the run resumes from it; checkpoints
are written atomically and a corrupt one is named in the error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_config

from mtl.training.checkpoint_io import AtomicCheckpointIO, CheckpointError
from mtl.training.preemption import EXIT_PREEMPTED, Preempted
from mtl.training.run import train

ROOT = Path(__file__).resolve().parents[2]
# 24 training slices, batch 8: 3 steps an epoch
EPOCHS3 = [*TINY, "trainer.max_epochs=3"]


def _signal_at(batch: int, name: str) -> list[str]:
    return [
        "+callbacks.fault._target_=fixtures.faults.SignalAt",
        f"+callbacks.fault.batch={batch}",
        f"+callbacks.fault.signal_name={name}",
    ]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1"])
def test_signal_saves_last_checkpoint_mid_epoch_and_stops(tmp_path, signal_name):
    cfg = compose_config(tmp_path, [*EPOCHS3, *_signal_at(4, signal_name)])
    with pytest.raises(Preempted, match="preempted at step 5") as stop:
        train(cfg)
    run = Path(cfg.paths.output_dir)
    assert stop.value.checkpoint == run / "checkpoints" / "last.ckpt"
    saved = torch.load(stop.value.checkpoint, weights_only=False)
    assert saved["global_step"] == 5  # batch 4 finished, nothing after it
    assert not (run / "metrics.json").exists()  # not finished: no results pretended
    assert not (run / "failure.json").exists()  # and not failed either


def test_preempted_run_resumes_from_its_folder_and_finishes(tmp_path):
    first = compose_config(tmp_path / "a", [*EPOCHS3, *_signal_at(4, "SIGTERM")])
    with pytest.raises(Preempted):
        train(first)
    resumed = compose_config(tmp_path / "b", [*EPOCHS3, f"ckpt_path={first.paths.output_dir}"])
    metrics = train(resumed)
    last = torch.load(
        Path(resumed.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert last["global_step"] == 9  # 3 epochs x 3 steps in all, not 5 + 9
    assert "test/seg/dice" in metrics


def test_train_py_exits_143_on_sigterm(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *EPOCHS3,
            *_signal_at(1, "SIGTERM"),
            f"hydra.run.dir={run_dir}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_PREEMPTED, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "preempted at step 2" in result.stderr + result.stdout
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_truncated_checkpoint_is_named_with_the_alternatives(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.zeros(1000)}, tmp_path / "best.ckpt")
    data = (tmp_path / "best.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.ckpt' is unreadable.*best\.ckpt"):
        io.load_checkpoint(tmp_path / "last.ckpt")


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    """The saved weights; under weight averaging the averaged ones and the raw ones."""
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    raw = {f"raw.{k}": v for k, v in saved.get("current_model_state", {}).items()}
    return {**saved["state_dict"], **raw}


@pytest.mark.parametrize(
    "weighting,extra",
    [
        ("ew", []),
        ("rlw", []),  # random weights every step
        ("ew", ["callbacks=ema", "callbacks.ema.decay=0.5"]),  # the average resumes too
    ],
    ids=["ew", "rlw", "ew-ema"],
)
def test_stopped_and_resumed_equals_uninterrupted(tmp_path, weighting, extra):
    """Deterministic CPU run, preempted mid-epoch (augmentation and dropout on): resuming
    ends with the same weights and test metrics as never stopping."""
    common = [*EPOCHS3, "trainer.deterministic=true", f"weighting={weighting}", *extra]
    straight = compose_config(tmp_path / "straight", common)
    expected = train(straight)

    stopped = compose_config(tmp_path / "stopped", [*common, *_signal_at(4, "SIGUSR1")])
    with pytest.raises(Preempted):
        train(stopped)
    resumed = compose_config(
        tmp_path / "resumed", [*common, f"ckpt_path={stopped.paths.output_dir}"]
    )
    metrics = train(resumed)

    want, got = (
        _final_state(Path(straight.paths.output_dir)),
        _final_state(Path(resumed.paths.output_dir)),
    )
    assert want.keys() == got.keys()
    assert any(k.startswith("raw.") for k in want) == bool(extra)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
    tested = {k: v for k, v in expected.items() if k.startswith("test/")}
    assert {k: metrics[k] for k in tested} == pytest.approx(tested, nan_ok=True, rel=0, abs=0)


def test_ddp_ranks_stop_together_when_one_rank_is_signalled(tmp_path):
    """SIGUSR1 on rank 0 only: every rank stops after the same batch (none waits forever in
    an all-reduce) and the checkpoint is written once."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *EPOCHS3,
            "trainer=ddp_cpu",
            "trainer.strategy=ddp",  # one process per rank, as on a cluster
            *_signal_at(1, "SIGUSR1"),
            "+callbacks.fault.rank=0",
            f"hydra.run.dir={run_dir}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == EXIT_PREEMPTED, result.stderr[-3000:]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2


def test_kill_9_loses_at_most_the_work_since_the_last_checkpoint(tmp_path):
    """SIGKILL cannot be handled: whatever was written must still be whole, and the run must
    resume from it."""
    import signal
    import time

    run_dir = tmp_path / "run"
    many_epochs = [*TINY, "trainer.max_epochs=200"]
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *many_epochs,
            f"hydra.run.dir={run_dir}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not last.is_file():
            time.sleep(0.2)
        assert last.is_file(), "no checkpoint within 4 minutes"
        time.sleep(1.5)  # let it train on, and likely be writing the next one
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    saved = torch.load(last, weights_only=False)  # whole, not half-written
    assert saved["global_step"] >= 3
    # a kill during a save may leave a `.last.ckpt.*.tmp` beside it; never a broken last.ckpt
    resumed = compose_config(
        tmp_path / "resumed",
        [*TINY, f"trainer.max_epochs={saved['epoch'] + 2}", f"ckpt_path={run_dir}"],
    )
    metrics = train(resumed)
    assert "test/seg/dice" in metrics

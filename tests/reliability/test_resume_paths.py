"""`ckpt_path` accepts a file, a run folder or `last`, and says what to pass when it is wrong."""

from __future__ import annotations

import os
import time

import pytest

from mtl.training.checkpoint_io import CheckpointError
from mtl.training.resume import resolve_ckpt_path


def _run(root, name, mtime=None):
    ckpt = root / name / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    if mtime is not None:
        os.utime(ckpt, (mtime, mtime))
    return ckpt


def test_file_and_run_folder(tmp_path):
    ckpt = _run(tmp_path, "old")
    assert resolve_ckpt_path(str(ckpt), tmp_path / "new", tmp_path) == str(ckpt)
    assert resolve_ckpt_path(str(tmp_path / "old"), tmp_path / "new", tmp_path) == str(ckpt)
    assert resolve_ckpt_path(None, tmp_path / "new", tmp_path) is None


def test_last_prefers_own_folder_then_newest_run(tmp_path):
    now = time.time()
    _run(tmp_path, "a", now - 100)
    newest = _run(tmp_path, "b", now - 10)
    own = tmp_path / "c"
    assert resolve_ckpt_path("last", own, tmp_path) == str(newest)
    own_ckpt = _run(tmp_path, "c", now - 1000)
    assert resolve_ckpt_path("last", own, tmp_path) == str(own_ckpt)


def test_last_inside_a_sweep_starts_fresh_without_a_checkpoint(tmp_path):
    _run(tmp_path, "0")  # a sibling job's checkpoint is not this job's
    assert resolve_ckpt_path("last", tmp_path / "1", None) is None


@pytest.mark.parametrize(
    "value,message",
    [
        ("missing.ckpt", "does not exist; pass a run folder"),
        ("last", "no last.ckpt in this run's folder"),
    ],
)
def test_errors_say_what_to_pass(tmp_path, value, message):
    with pytest.raises(CheckpointError, match=message):
        resolve_ckpt_path(
            str(tmp_path / value) if value != "last" else value, tmp_path / "r", tmp_path
        )


def test_folder_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"folder without checkpoints/last\.ckpt"):
        resolve_ckpt_path(str(tmp_path / "run"), tmp_path / "new", tmp_path)

"""DDP is exact: 2 processes (gloo, `trainer=ddp_cpu`) with batch b each take the same steps
as 1 process on the concatenated batch 2b, for loss-based and gradient-based methods.

Per-sample normalisation (GroupNorm, LayerNorm), per-sample Dice, no dropout, no
augmentation and a fixed data order make the two runs see the same numbers; SGD keeps
the comparison free of Adam's amplification of round-off in near-zero gradients, and float64
keeps reduction-order round-off (gloo vs one batch) far below the 1e-5 tolerance.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import TINY, compose_config

from mtl.training.builders import build_datamodule, build_module, build_trainer

STEPS = 5
PER_RANK_BATCH = 4

EXACT = [
    *TINY,
    "data.num_train=48",
    "data.augment=null",
    "data.shuffle_train=false",
    "encoder.norm=group",
    "tasks.seg.batch_dice=false",
    "tasks.cls.dropout=0.0",
    "tasks.cls.class_weights=null",  # a class-weighted mean is not the mean of rank means
    "optimizer=sgd",
    "optimizer.lr=0.001",
    "optimizer.momentum=0.9",
    "scheduler=none",
    "trainer.precision=64-true",  # round-off far below the tolerance
    f"trainer.max_steps={STEPS}",
    "trainer.max_epochs=-1",
    "trainer.limit_val_batches=0",
    "trainer.enable_checkpointing=false",
    "trainer.enable_model_summary=false",
    "module.diagnostics_every=0",
]


class SaveFinalWeights(L.Callback):
    """Rank 0 saves the trained weights as they are in the training process (ddp_spawn's
    copy back to the parent would cast float64 weights into the parent's float32 model)."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            state = {k: v.detach().cpu() for k, v in pl_module.net.state_dict().items()}
            torch.save({"net": state, "steps": int(pl_module.weighting.num_steps)}, self.path)


def _fit(tmp_path, overrides: list[str]) -> tuple[dict, dict]:
    cfg = compose_config(tmp_path, [*EXACT, *overrides])
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    initial = {k: v.detach().clone().double() for k, v in module.net.state_dict().items()}
    saved = tmp_path / "final.pt"
    trainer = build_trainer(cfg, callbacks=[SaveFinalWeights(saved)], loggers=[])
    trainer.fit(module, datamodule=datamodule)
    final = torch.load(saved)
    assert final["steps"] == cfg.trainer.max_steps
    return initial, final["net"]


def _relative_errors(initial, single, other) -> tuple[float, float]:
    """(max over tensors of |p - p_ref| / |p_ref|, same for the change from the start)."""
    param_err = update_err = 0.0
    for key, ref in single.items():
        if not ref.is_floating_point():
            continue
        diff = (other[key] - ref).norm()
        param_err = max(param_err, float(diff / ref.norm().clamp_min(1e-12)))
        change = (ref - initial[key]).norm()
        if change > 1e-8:
            update_err = max(update_err, float(diff / change))
    return param_err, update_err


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ew", "uw", "pcgrad", "mgda", "nash_mtl", "famo"])
def test_ddp_step_equals_single_process_on_union_batch(tmp_path, method):
    initial, single = _fit(
        tmp_path / "single",
        [f"weighting={method}", "trainer=cpu", f"data.batch_size={2 * PER_RANK_BATCH}"],
    )
    initial_ddp, ddp = _fit(
        tmp_path / "ddp",
        [f"weighting={method}", "trainer=ddp_cpu", f"data.batch_size={PER_RANK_BATCH}"],
    )
    for key, value in initial.items():
        assert torch.equal(value, initial_ddp[key])
    param_err, update_err = _relative_errors(initial, single, ddp)
    assert param_err < 1e-5, f"{method}: parameters differ by {param_err:.2e} (relative)"
    assert update_err < 1e-7, f"{method}: updates differ by {update_err:.2e} (relative)"


@pytest.mark.slow
def test_equivalence_check_detects_a_different_batch(tmp_path):
    """Negative control: training on half of each batch is clearly not the same step."""
    initial, single = _fit(
        tmp_path / "single", ["weighting=mgda", "trainer=cpu", f"data.batch_size={8}"]
    )
    _, half = _fit(tmp_path / "half", ["weighting=mgda", "trainer=cpu", f"data.batch_size={4}"])
    _, update_err = _relative_errors(initial, single, half)
    assert update_err > 1e-2

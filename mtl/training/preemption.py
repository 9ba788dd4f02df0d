"""Preemption: SIGTERM or SIGUSR1 saves a checkpoint at the next batch boundary and stops.

Lightning turns SIGTERM into `SIGTERMException` after the running batch (all DDP ranks
together); on SLURM with auto-requeue it also saves an `hpc_ckpt` and requeues on SIGUSR1.
This callback makes both signals do the same thing everywhere: write `last.ckpt` (atomically,
through the trainer's checkpoint IO) so `ckpt_path=<run dir>` resumes from the last finished
batch, then let the run end with `Preempted`, which `train.py` turns into exit status 143.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Preempted(RuntimeError):
    """Training stopped on a signal after saving `checkpoint`; resume with `ckpt_path`."""

    def __init__(self, checkpoint: Path | None, step: int, epoch: int) -> None:
        self.checkpoint = checkpoint
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no checkpoint saved"
        resume = f"; resume with ckpt_path={checkpoint.parent.parent}" if checkpoint else ""
        super().__init__(f"preempted at step {step} (epoch {epoch}): {where}{resume}")


_active: PreemptionCheckpoint | None = None


def _dispatch(signum: int, frame: FrameType | None) -> None:
    """One process-wide handler: the fitting callback takes the signal; outside a fit it does
    what the signal would have done without us (Lightning restores handlers in its own order,
    so a handler bound to an old callback must never be left behind)."""
    if _active is not None:
        _active.notify(signum)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class PreemptionCheckpoint(L.Callback):
    """`dirpath/filename`: where the preemption checkpoint goes (the run's `last.ckpt`)."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt", signals: tuple = ("SIGUSR1",)):
        super().__init__()
        self.path = Path(dirpath) / filename
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self._received: int | None = None
        self.saved: Path | None = None

    def notify(self, signum: int) -> None:
        name = signal.Signals(signum).name
        log.warning("received %s: saving a checkpoint after this batch", name)
        self._received = signum

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        global _active
        _active = self
        # only signals nobody else handles: Lightning's SLURM requeue owns SIGUSR1 when active
        for signum in self.signals:
            if signal.getsignal(signum) in (signal.SIG_DFL, None, _dispatch):
                signal.signal(signum, _dispatch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._release()

    def _release(self) -> None:
        global _active
        if _active is self:
            _active = None
        for signum in self.signals:
            if signal.getsignal(signum) is _dispatch:
                signal.signal(signum, signal.SIG_DFL)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # before the next batch, so the last one counts as done; all DDP ranks decide together
        # (one scalar all-reduce): a rank that stopped alone would leave the others waiting
        stop = self._received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            raise SIGTERMException()  # Lightning's own stop path, handled in on_exception

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._release()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self.path)
        self.saved = self.path
        log.warning(
            "preempted at step %d (epoch %d): checkpoint saved to %s",
            trainer.global_step,
            trainer.current_epoch,
            self.path,
        )

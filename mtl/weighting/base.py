"""How T task losses become one update (DESIGN.md §1).

Two families share one interface so the training loop never special-cases a method:

- `LossWeighting`: total = sum_i w_i L_i (+ regularisers, e.g. UW's log sigma); one backward.
- `GradientWeighting`: needs the per-task gradients G (T x D) of the shared part (parameters
  or the shared features, `grad_source`) and returns the update direction
  `aggregate(G)`. `GramianWeighting` is the sub-family whose direction is a weighted sum of
  the task gradients with weights that depend on G only through the Gramian G G^T: those
  expose `weights_from_gramian` and run exactly under DDP by reducing the Gramian or the
  gradients once, then doing one weighted backward.

All state (loss histories, EMAs, learned weights, step counters) lives in buffers,
parameters or `get_extra_state`, so it is saved in checkpoints and resuming continues the
same trajectory. Randomness comes from `step_generator()`, seeded by (seed, step): every
DDP rank draws the same numbers, and a resumed run draws what the uninterrupted run drew.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

GRAD_SOURCES = ("params", "features")


class SolverError(RuntimeError):
    """A method's inner solver failed and `on_failure='raise'` was asked for."""


class Weighting(nn.Module):
    """Base of all MTL weighting methods.

    Hooks the training loop calls, in order, once per optimizer step:
    `transform_losses` (per micro-batch), `observe_losses(global_losses)`, then the
    family-specific call (`forward` or `aggregate`/`weights_from_gramian`), then
    `after_step(losses_before, losses_after)` if `needs_losses_after_step`, then
    `step_done()`.
    """

    needs_task_gradients: ClassVar[bool] = False
    # FAMO: the loop re-evaluates the batch after the optimizer step and calls `after_step`
    needs_losses_after_step: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("a weighting needs at least one task")
        self.task_names = list(task_names)
        self.seed = int(seed)
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        # `num_steps` as a Python int, with the buffer object and its in-place version counter
        # it was read from: the loop reads `step` every batch, and `int()` of a GPU tensor
        # waits for the GPU. Holding the object keeps its identity from being reused.
        self._step_cache: tuple[Tensor, int, int] | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def step(self) -> int:
        """Optimizer steps done (the `num_steps` buffer, read without a device sync)."""
        buffer, cache = self.num_steps, self._step_cache
        version = _version(buffer)
        if cache is not None and cache[0] is buffer and cache[1] == version:
            return cache[2]
        value = int(buffer)
        self._step_cache = None if version is None else (buffer, version, value)
        return value

    def step_generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator seeded by (seed, step): identical on every rank and after a resume."""
        generator = torch.Generator(device=device)
        generator.manual_seed(self.seed * 1_000_003 + self.step)
        return generator

    # -- hooks (no-ops unless a method needs them) -------------------------------------------
    def transform_losses(self, losses: Tensor) -> Tensor:
        """Applied to the (T,) loss vector before anything else (DB-MTL takes the log)."""
        return losses

    def observe_losses(self, losses: Tensor) -> None:
        """Detached (T,) losses of this step, averaged over DDP ranks (and micro-batches)."""

    def after_step(self, losses_before: Tensor, losses_after: Tensor) -> None:
        """Detached (T,) losses of one batch before and after the optimizer step (FAMO)."""

    def on_train_epoch_end(self) -> None:
        """Epoch boundary (DWA's loss history)."""

    def step_done(self) -> None:
        step = self.step
        self.num_steps += 1
        version = _version(self.num_steps)
        self._step_cache = None if version is None else (self.num_steps, version, step + 1)

    def extra_metrics(self) -> dict[str, Tensor]:
        """Method-specific scalars worth logging each step (e.g. UW's sigma)."""
        return {}


def _version(tensor: Tensor) -> int | None:
    """The in-place version counter of a tensor (bumped by `+=`, `copy_`, `fill_`, a
    checkpoint load); None where versions are not tracked (inference tensors)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


class LossWeighting(Weighting):
    """Combines the loss vector linearly: one backward per step.

    Weights that depend on the losses (GLS, FAMO, DWA) are computed from `reference`: the
    detached losses averaged over DDP ranks, so every rank applies the same weights and the
    DDP step equals the single-process step on the union of the batches.
    """

    def weights(self, losses: Tensor) -> Tensor:
        """(T,) weights from detached reference losses (may carry a graph to the method's own
        parameters, as UW's exp(-s) does)."""
        raise NotImplementedError

    def regularizer(self) -> Tensor | float:
        """Added to the total (UW's sum of log-variances); 0 for most methods."""
        return 0.0

    def forward(self, losses: Tensor, reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns (total loss to backpropagate, detached weights w with d total / d L = w)."""
        weights = self.weights(losses.detach() if reference is None else reference.detach())
        return (weights * losses).sum() + self.regularizer(), weights.detach()


class EqualWeighting(LossWeighting):
    """EW: the plain sum of task losses (LibMTL's EW, all weights 1)."""

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)


class GradientWeighting(Weighting):
    """A method that needs per-task gradients (T x D) and returns the (D,) update direction.

    `grad_source`: `params` (gradients of all shared parameters; exact) or `features`
    (gradients w.r.t. the shared representation, MGDA-UB style; cheaper). Subclasses list
    the sources their paper supports in `grad_sources` and say why in `source_note`.
    `update_every`: recompute the weights every N optimizer steps and reuse them in between
    (Nash-MTL's speed trick); only Gramian methods, whose update is a weighted sum, can.
    `on_failure`: what an inner-solver failure does: `warn` (logged with the step, counted in
    `solver_failures`, the step uses the method's documented fallback) or `raise`.
    """

    needs_task_gradients: ClassVar[bool] = True
    grad_sources: ClassVar[tuple[str, ...]] = GRAD_SOURCES
    source_note: ClassVar[str] = ""

    def __init__(
        self,
        task_names: Sequence[str],
        grad_source: str = "params",
        update_every: int = 1,
        on_failure: str = "warn",
        seed: int = 0,
    ) -> None:
        super().__init__(task_names, seed=seed)
        name = type(self).__name__
        if grad_source not in GRAD_SOURCES:
            raise ValueError(f"grad_source must be one of {GRAD_SOURCES}, got '{grad_source}'")
        if grad_source not in self.grad_sources:
            raise ValueError(
                f"{name} does not support grad_source='{grad_source}': {self.source_note} "
                f"Use grad_source={self.grad_sources[0]}."
            )
        if int(update_every) < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every}")
        if int(update_every) > 1 and not isinstance(self, GramianWeighting):
            raise ValueError(
                f"{name} does not support update_every > 1: its update is not a weighted sum "
                f"of task gradients, so there are no weights to reuse."
            )
        if on_failure not in ("warn", "raise"):
            raise ValueError(f"on_failure must be 'warn' or 'raise', got '{on_failure}'")
        self.grad_source = grad_source
        self.update_every = int(update_every)
        self.on_failure = on_failure
        self.register_buffer("solver_failures", torch.zeros((), dtype=torch.long))

    def needs_new_weights(self) -> bool:
        """Whether this step computes task gradients (else it reuses `last_weights`)."""
        return self.step % self.update_every == 0

    def aggregate(self, grads: Tensor) -> Tensor:
        """(T, D) per-task gradients -> (D,) update direction."""
        raise NotImplementedError

    def aggregate_batched(self, grads: Tensor, inputs: Tensor | None = None) -> Tensor:
        """(T, B, F) per-sample feature gradients (and the (B, F) features) -> (B, F): the
        gradient to send into the encoder (`grad_source=features`, non-Gramian methods)."""
        return self.aggregate(grads.reshape(grads.shape[0], -1)).reshape(grads.shape[1:])

    def report_failure(self, message: str) -> None:
        """Solver failures are loud: logged with the step and counted, or raised."""
        self.solver_failures += 1
        text = f"{type(self).__name__} solver failed at step {self.step}: {message}"
        if self.on_failure == "raise":
            raise SolverError(text)
        log.warning("%s (failure #%d)", text, int(self.solver_failures))

    def extra_metrics(self) -> dict[str, Tensor]:
        return {"solver_failures": self.solver_failures.float()}


class GramianWeighting(GradientWeighting):
    """Direction = w^T G with w = `weights_from_gramian(G G^T)`: depends on G only through
    the Gramian, so DDP ranks can reduce k x k numbers (features) or the gradients once
    (params), solve once, and finish with one weighted backward under normal DDP sync."""

    def __init__(self, task_names: Sequence[str], **kwargs) -> None:
        super().__init__(task_names, **kwargs)
        self.register_buffer("last_weights", torch.ones(self.num_tasks))

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        """(T, T) Gramian -> (T,) weights. May update the method's state (one call a step)."""
        raise NotImplementedError

    def compute_weights(self, gram: Tensor) -> Tensor:
        """Weights for this step, remembered for `update_every` reuse."""
        # solvers get the Gramian in float64: it is k x k, and ill-conditioned ones need it
        weights = self.weights_from_gramian(gram.double()).to(self.last_weights)
        self.last_weights.copy_(weights.detach())
        return weights

    def aggregate(self, grads: Tensor) -> Tensor:
        wide = grads.double()
        return (self.weights_from_gramian(wide @ wide.T) @ wide).to(grads.dtype)

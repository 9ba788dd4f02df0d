"""`MultiTaskModule`: forward, per-task losses, weighting, metrics and logging.

Nothing in here knows a task kind: tasks, model, weighting, optimizer and scheduler all come
from config, and metrics are named `{stage}/{task}/{metric}`.

Training uses Lightning's manual optimisation so every weighting method, loss-based or
gradient-based, runs through one step (DESIGN.md §1, §3):

- *linear* steps (loss weightings; Gramian methods on steps that reuse their weights):
  weights from the DDP-averaged losses, one `manual_backward` of sum_i w_i L_i;
- *params* steps: per-task gradients of every trainable parameter, accumulated over
  micro-batches, averaged over ranks once, aggregated, written into `.grad`;
- *features* steps: per-task gradients w.r.t. the shared representation; ranks average the
  k x k Gramian, solve once, and finish with one weighted `manual_backward` under DDP sync.

AMP: backwards run on scaled losses; per-task gradients are unscaled before any aggregation,
updates are written back scaled so GradScaler unscales, skips non-finite steps and adapts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl.dtypes import at_least_fp32
from mtl.models.architectures import MultiTaskNet
from mtl.tasks import Task
from mtl.training.nonfinite import (
    NONFINITE_POLICIES,
    NonFiniteLossError,
    describe,
    grads_finite,
    nonfinite_tasks,
    tensors_finite,
)
from mtl.training.schedule import LRSchedule
from mtl.training.task_gradients import (
    all_reduce_mean,
    cosine_matrix,
    frozen_batchnorm_stats,
    own_sizes,
    per_task_gradients,
    scale_blocks,
    task_gradients,
    world_size,
    write_grads,
)
from mtl.weighting import GradientWeighting, GramianWeighting, LossWeighting, Weighting

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
CLIP_ALGORITHMS = ("norm", "value")


class MultiTaskModule(L.LightningModule):
    """Wraps a `MultiTaskNet`; `weighting` turns the task losses (or gradients) into the update.

    `optimizer` is a partial (Hydra `_partial_: true`) taking the parameters.
    `accumulate_grad_batches`, `gradient_clip_val` and `gradient_clip_algorithm` come from
    the trainer config (Lightning does not apply them under manual optimisation; we do).
    `diagnostics_every`: every N optimizer steps, log per-task gradient norms and pairwise
    cosines of the shared-parameter gradients (free for gradient methods on steps that
    compute them; k extra backwards otherwise); 0 turns it off.
    `nonfinite`: what a NaN/Inf task loss or gradient does, `skip` the optimizer step
    (counted in `train/nonfinite_skipped`) or `stop` with `NonFiniteLossError`;
    `max_nonfinite_skips` consecutive skips stop the run too (it has diverged).
    `compile`: `torch.compile` the network's forward in place (`true`, or a dict of
    `torch.compile` options such as `{mode: max-autotune}`); parameter names and checkpoints
    stay those of the plain network. `grad_source=features` steps call `encode`/`decode`
    directly and run uncompiled.
    """

    def __init__(
        self,
        net: MultiTaskNet,
        tasks: Mapping[str, Task],
        weighting: Weighting,
        optimizer: Callable[..., torch.optim.Optimizer],
        schedule: LRSchedule | None = None,
        train_metrics: bool = False,
        channels_last: bool = False,
        diagnostics_every: int = 50,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        nonfinite: str = "skip",
        max_nonfinite_skips: int = 20,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        super().__init__()
        if list(tasks) != net.task_names or list(tasks) != weighting.task_names:
            raise ValueError("net, tasks and weighting must list the same tasks in one order")
        if not isinstance(weighting, LossWeighting | GradientWeighting):
            raise TypeError(f"{type(weighting).__name__} is neither a loss nor a gradient method")
        if isinstance(weighting, GradientWeighting) and not net.has_shared_parameters:
            raise ValueError(
                f"{type(weighting).__name__} combines gradients of shared parameters, and "
                f"{type(net).__name__} shares none; use a loss weighting (weighting=ew) with it"
            )
        if (
            isinstance(weighting, GradientWeighting)
            and weighting.grad_source == "features"
            and not net.shared_representation
        ):
            raise ValueError(
                f"grad_source=features differentiates the losses w.r.t. a representation all "
                f"tasks share; {type(net).__name__} has none ({net.representation}). Use "
                f"weighting.grad_source=params."
            )
        if int(accumulate_grad_batches) < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        if (
            isinstance(weighting, GradientWeighting)
            and weighting.grad_source == "features"
            and int(accumulate_grad_batches) > 1
        ):
            raise ValueError(
                "grad_source=features with accumulate_grad_batches > 1 is not supported: each "
                "micro-batch has its own features, so the exact update would need every "
                "micro-batch's graph at once. Use grad_source=params (accumulates the per-task "
                "gradients exactly) or a larger batch."
            )
        if gradient_clip_algorithm not in CLIP_ALGORITHMS:
            raise ValueError(
                f"gradient_clip_algorithm must be one of {CLIP_ALGORITHMS}, "
                f"got {gradient_clip_algorithm!r}"
            )
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"module.nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}"
            )
        self.automatic_optimization = False
        self.nonfinite = nonfinite
        self.max_nonfinite_skips = int(max_nonfinite_skips)
        self.nonfinite_skipped = 0  # optimizer steps skipped so far (saved in checkpoints)
        self._consecutive_skips = 0
        self.net = net
        self.has_shared = net.has_shared_parameters
        self.tasks = nn.ModuleDict(dict(tasks))
        if isinstance(weighting, GradientWeighting):
            self._check_parameter_partition()
        self.weighting = weighting
        self.optimizer_factory = optimizer
        self.schedule = schedule
        self.train_metrics = train_metrics
        self.diagnostics_every = int(diagnostics_every)
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        # NHWC memory layout: ~1.8x faster convolutions on CPU (oneDNN) and tensor cores
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile(**(dict(compile) if isinstance(compile, Mapping) else {}))
        stages = STAGES if train_metrics else STAGES[1:]
        # one MetricCollection per task per stage; ModuleDict keys cannot contain '/'
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": task.build_metrics().clone(prefix=f"{stage}/{name}/")
                for stage in stages
                for name, task in self.tasks.items()
            }
        )
        self._window: dict[str, Any] = {}
        # the last Gramian of the shared-parameter task gradients (for the conflict heat map)
        self.last_gradient_gram: Tensor | None = None
        self.last_gradient_step = -1
        self._pending_diagnostics: dict[str, Tensor] = {}

    # -- forward and losses ----------------------------------------------------------------
    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.net(image.contiguous(memory_format=self.memory_format))

    def task_losses(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> Tensor:
        """(T,) vector of task losses, in task order; samples without a target are skipped."""
        return torch.stack(self.task_loss_list(outputs, batch))

    def task_loss_list(
        self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]
    ) -> list[Tensor]:
        """The task losses as separate graphs: a per-task backward from one of them must not
        walk every other head with zero gradients, as it would from an element of a stack."""
        has_target = batch.get("has_target", {})
        return [
            at_least_fp32(
                task.masked_loss(
                    outputs[name], batch["targets"][task.target], has_target.get(task.target)
                )
            )
            for name, task in self.tasks.items()
        ]

    def _update_metrics(self, stage: str, outputs: Mapping[str, Tensor], batch: Mapping) -> None:
        has_target = batch.get("has_target", {})
        for name, task in self.tasks.items():
            task.update_metrics(
                self.metrics[f"{stage}_{name}"],
                outputs[name],
                batch["targets"][task.target],
                has_target.get(task.target),
            )

    def _log_losses(self, stage: str, losses: Tensor, total: Tensor, batch_size: int) -> None:
        logged = {f"{stage}/{name}/loss": losses[i] for i, name in enumerate(self.tasks)}
        logged[f"{stage}/loss"] = total
        on_step = stage == "train"
        self.log_dict(
            logged, on_step=on_step, on_epoch=True, batch_size=batch_size, sync_dist=not on_step
        )

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> None:
        outputs = self(batch["image"])
        losses = self.task_losses(outputs, batch)
        if isinstance(self.weighting, LossWeighting):
            total, _ = self.weighting(losses, losses.detach())
        else:  # the weights a gradient method used last (ones before its first step)
            total = (self._linear_weights() * losses).sum()
        self._update_metrics(stage, outputs, batch)
        self._log_losses(stage, losses, total, batch["image"].shape[0])

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # -- training: one micro-batch -----------------------------------------------------------
    def _linear_weights(self) -> Tensor:
        if isinstance(self.weighting, GramianWeighting):
            return self.weighting.last_weights
        return torch.ones(len(self.tasks), device=self.device)

    def _step_mode(self) -> str:
        w = self.weighting
        if isinstance(w, LossWeighting):
            return "linear"
        if isinstance(w, GramianWeighting) and not self._window["new_weights"]:
            return "linear"
        return w.grad_source

    def _loss_scale(self) -> float:
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None:
            return 1.0
        # `scale()` also creates the scale tensor on first use, as a scaled backward would
        return float(scaler.scale(torch.ones((), device=self.device)))

    def _shared_params(self) -> list[nn.Parameter]:
        return [p for p in self.net.shared_parameters() if p.requires_grad]

    def _task_blocks(self) -> list[list[nn.Parameter]]:
        """Each task's own trainable parameters (`task_parameters`, shared ones excluded), in
        task order: only that task's loss reaches them, so gradient methods keep one block
        of gradients per task there instead of a mostly-zero (T, params) matrix."""
        shared = {id(p) for p in self._shared_params()}
        return [
            [p for p in self.net.task_parameters(t) if p.requires_grad and id(p) not in shared]
            for t in self.tasks
        ]

    def _other_params(self) -> list[nn.Parameter]:
        return [p for block in self._task_blocks() for p in block]

    def _check_parameter_partition(self) -> None:
        """Shared and per-task parameters must hold every trainable parameter exactly once
        (the `MultiTaskNet` contract) for per-task gradients in block form to be exact."""
        listed = [id(p) for p in [*self._shared_params(), *self._other_params()]]
        trainable = {id(p) for p in self.net.parameters() if p.requires_grad}
        if len(listed) != len(set(listed)) or set(listed) != trainable:
            raise ValueError(
                f"{type(self.net).__name__}: shared_parameters() and task_parameters(t) must "
                f"list every trainable parameter exactly once (a task's parameters reached by "
                f"its own loss only); gradient weightings rely on it"
            )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        acc = self.accumulate_grad_batches
        # a run resumed mid-window (preempted there) starts a new window
        first = batch_idx % acc == 0 or not self._window
        last = (batch_idx + 1) % acc == 0 or batch_idx + 1 == self.trainer.num_training_batches
        opt = self.optimizers()
        if first:
            opt.zero_grad(set_to_none=True)
            new_weights = not isinstance(self.weighting, GramianWeighting) or (
                self.weighting.needs_new_weights()
            )
            self._window = {"new_weights": new_weights, "loss_sum": None, "count": 0}
            # a skipped step must not keep what its NaN batches did to BatchNorm statistics
            self._window["norm_stats"] = [b.clone() for b in self._norm_buffers()]
        mode = self._step_mode()
        image = batch["image"].contiguous(memory_format=self.memory_format)
        features: list[Tensor] = []
        representation: list[Tensor] = []
        if mode == "features":
            # cut the graph at the representation z: per-task gradients w.r.t. z then cost
            # head backwards only, and the encoder is differentiated once, by `backward(z)`
            features = self.net.encode(image)
            representation = [f.detach().requires_grad_() for f in features]
            outputs = self.net.decode(representation)
        else:
            outputs = self.net(image)
        raw = self.task_loss_list(outputs, batch)
        # transformed one by one (elementwise, e.g. DB-MTL's log) to keep the graphs apart
        separate = [self.weighting.transform_losses(loss.reshape(1))[0] for loss in raw]
        raw_losses = torch.stack(raw).detach()
        losses = torch.stack(separate)
        global_losses = all_reduce_mean(losses.detach())
        window = self._window
        if window.get("skip") or self._nonfinite_losses(global_losses, batch_idx):
            # every rank sees the same averaged losses, so all of them skip together
            window["skip"] = True
            if last:
                self._skip_step(opt, batch["image"].shape[0])
            return None
        window["loss_sum"] = global_losses if first else window["loss_sum"] + global_losses
        window["count"] += 1
        window["last_global_losses"] = global_losses
        if self.train_metrics:
            self._update_metrics("train", outputs, batch)

        diagnose = (
            last
            and self.diagnostics_every > 0
            and self.weighting.step % self.diagnostics_every == 0
            and self.has_shared  # STL: no shared parameters to compare gradients on
        )
        if mode == "linear":
            if diagnose:
                self._record_gram(self._diagnostic_gram(separate))
            total = self._linear_backward(losses, global_losses, last)
        elif mode == "params":
            total = self._params_accumulate(separate, first)
        else:
            total = self._features_step(separate, features, representation)

        if last:
            self._finish_step(opt, batch)
        self._log_losses("train", raw_losses, total.detach(), image.shape[0])
        return total.detach()

    def _linear_backward(self, losses: Tensor, global_losses: Tensor, last: bool) -> Tensor:
        if isinstance(self.weighting, LossWeighting):
            total, weights = self.weighting(losses, global_losses)
        else:
            weights = self.weighting.last_weights
            total = (weights * losses).sum()
        self._window["weights"] = weights.detach()
        # all-reduce once per optimizer step, on the last micro-batch
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        sync = nullcontext() if last or block is None else block()
        with sync:
            self.manual_backward(total / self.accumulate_grad_batches)
        return total

    def _params_accumulate(self, losses: list[Tensor], first: bool) -> Tensor:
        shared, blocks = self._shared_params(), self._task_blocks()
        grads = task_gradients(losses, shared, blocks, self._loss_scale())
        if self.accumulate_grad_batches > 1:
            grads = tuple(g / self.accumulate_grad_batches for g in grads)
        if not first:
            grads = tuple(a + b for a, b in zip(self._window["grads"], grads, strict=True))
        self._window["grads"] = grads  # (T, shared) matrix, per-task blocks
        return torch.stack(losses).detach().sum()

    def _features_step(
        self, losses: list[Tensor], features: list[Tensor], representation: list[Tensor]
    ) -> Tensor:
        """k head backwards (gradients w.r.t. z and the heads) + one encoder backward."""
        weighting = self.weighting
        scale = self._loss_scale()
        blocks = self._task_blocks()
        g_z, own = task_gradients(losses, representation, blocks, scale)
        # z is per sample: the Gramian of the global batch is the sum over ranks of the local
        # Gramians of 1/N-scaled gradients (the global loss is the mean of the rank losses)
        gram = all_reduce_mean(g_z @ g_z.T) / world_size()
        self._record_gram(gram)  # diagnostics here are w.r.t. the shared features
        weighting.observe_losses(self._window["loss_sum"] / self._window["count"])
        values = torch.stack(losses).detach()
        combined = self._combine(g_z, own, gram, own_sizes(blocks))
        if combined is not None:
            direction, rest = combined
            total = (self._window.get("weights", torch.ones_like(values)) * values).sum()
        else:  # GradDrop: (T, B, F) per-sample gradients, stage after stage in the rows
            batch = features[0].shape[0]
            sizes = [z.numel() for z in representation]
            per_sample = torch.cat(
                [g.reshape(g.shape[0], batch, -1) for g in g_z.split(sizes, dim=1)], dim=2
            )
            inputs = torch.cat([at_least_fp32(z.detach()).reshape(batch, -1) for z in features], 1)
            per_sample = weighting.aggregate_batched(per_sample, inputs)
            widths = [n // batch for n in sizes]
            direction = torch.cat([d.reshape(-1) for d in per_sample.split(widths, dim=1)])
            rest = own
            total = values.sum()
        # the encoder: one backward from z with the combined gradient (scaled for AMP)
        pieces = direction.mul(scale).split([z.numel() for z in representation])
        torch.autograd.backward(
            features,
            [p.view(f.shape).to(f.dtype) for p, f in zip(pieces, features, strict=True)],
        )
        write_grads([p for block in blocks for p in block], rest * scale)
        self._all_reduce_grads()
        return total

    def _combine(
        self, g_shared: Tensor, own: Tensor, gram: Tensor, sizes: list[int]
    ) -> tuple[Tensor, Tensor] | None:
        """(shared direction, task-specific update) for a non-finite step (plain sums, for
        GradScaler to detect and skip) or a Gramian method (w^T G); None otherwise. `own`:
        the per-task blocks of task-specific gradients (`sizes` entries each)."""
        if not tensors_finite(g_shared, own):
            self._window["nonfinite"] = True
            return g_shared.sum(0), own
        if isinstance(self.weighting, GramianWeighting):
            weights = self.weighting.compute_weights(gram).to(g_shared)
            self._window["weights"] = weights
            return weights @ g_shared, scale_blocks(own, sizes, weights)
        return None

    def _all_reduce_grads(self) -> None:
        """One all-reduce of every gradient (what DDP would have done), for steps that
        bypass DDP's reducer."""
        if world_size() == 1:
            return
        params = [p for p in self.net.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        write_grads(params, all_reduce_mean(flat))

    def _diagnostic_gram(self, losses: list[Tensor]) -> Tensor:
        shared = self._shared_params()
        grads = per_task_gradients(losses, shared, self._loss_scale())
        return all_reduce_mean(grads @ grads.T)

    # -- training: end of an optimizer step ----------------------------------------------------
    def _apply_params_update(self) -> None:
        """Aggregate the accumulated, rank-averaged per-task gradients and write `.grad`."""
        weighting = self.weighting
        shared, blocks = self._shared_params(), self._task_blocks()
        g_shared, own = (all_reduce_mean(g) for g in self._window.pop("grads"))
        weighting.observe_losses(self._window["loss_sum"] / self._window["count"])
        gram = g_shared @ g_shared.T
        combined = self._combine(g_shared, own, gram, own_sizes(blocks))
        if combined is not None:
            direction, rest = combined
        else:  # task-specific parameters: each task's own gradient (the sum over tasks)
            direction, rest = weighting.aggregate(g_shared), own
        self._record_gram(gram)
        scale = self._loss_scale()  # GradScaler will divide by it, and check for inf/NaN
        write_grads(shared, direction * scale)
        write_grads([p for block in blocks for p in block], rest * scale)

    def _finish_step(self, opt: Any, batch: Mapping[str, Any]) -> None:
        weighting = self.weighting
        window = self._window
        mean_losses = window["loss_sum"] / window["count"]
        if "grads" in window:
            self._apply_params_update()
        elif self._step_mode() == "linear":
            weighting.observe_losses(mean_losses)
        if self._loss_scale() == 1.0 and (
            window.get("nonfinite", False) or not grads_finite(self.parameters())
        ):  # without a GradScaler nobody else would stop a NaN update
            self._nonfinite_event(f"non-finite gradients at step {self.global_step}")
            self._skip_step(opt, batch["image"].shape[0])
            return
        self._consecutive_skips = 0
        opt.step()  # clipping in `on_before_optimizer_step`; GradScaler skips inf/NaN
        if weighting.needs_losses_after_step and not window.get("nonfinite", False):
            with torch.no_grad(), frozen_batchnorm_stats(self.net):
                after = self.task_losses(self(batch["image"]), batch)
            after = all_reduce_mean(self.weighting.transform_losses(after))
            weighting.after_step(window["last_global_losses"], after)
        weighting.step_done()
        self._step_schedulers("step")
        self._log_step(batch["image"].shape[0])

    def _nonfinite_losses(self, global_losses: Tensor, batch_idx: int) -> bool:
        bad = nonfinite_tasks(list(self.tasks), global_losses)
        if bad:
            self._nonfinite_event(
                f"non-finite loss in task(s) {', '.join(bad)} at step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}): "
                f"{describe(list(self.tasks), global_losses)}"
            )
        return bool(bad)

    def _nonfinite_event(self, what: str) -> None:
        """Apply the `nonfinite` policy to one bad optimizer step."""
        fix = (
            "check the inputs of that batch (NaN pixels?), lower the learning rate, or use "
            "gradient clipping (trainer.gradient_clip_val=1.0)"
        )
        if self.nonfinite == "stop":
            raise NonFiniteLossError(f"{what}; stopped (module.nonfinite=stop): {fix}")
        if self._consecutive_skips + 1 > self.max_nonfinite_skips:
            raise NonFiniteLossError(
                f"{what}; {self._consecutive_skips} steps in a row were already skipped, "
                f"more than module.max_nonfinite_skips={self.max_nonfinite_skips}: the run "
                f"diverged; {fix}"
            )
        log.warning("%s; optimizer step skipped (module.nonfinite=skip)", what)

    def _norm_buffers(self) -> list[Tensor]:
        """Floating-point buffers of the network (BatchNorm running statistics)."""
        return [b for b in self.net.buffers() if b.is_floating_point()]

    def _skip_step(self, opt: Any, batch_size: int) -> None:
        """Drop the accumulated update and restore the norm statistics of the window;
        schedules, weighting and step count stay put."""
        opt.zero_grad(set_to_none=True)
        self._window.pop("grads", None)
        saved = self._window.get("norm_stats")
        if saved is not None:
            with torch.no_grad():
                for buffer, value in zip(self._norm_buffers(), saved, strict=True):
                    buffer.copy_(value)
        self.nonfinite_skipped += 1
        self._consecutive_skips += 1
        self.log(
            "train/nonfinite_skipped",
            float(self.nonfinite_skipped),
            on_step=True,
            on_epoch=False,
            batch_size=batch_size,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mtl_nonfinite_skipped"] = self.nonfinite_skipped

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_skipped = int(checkpoint.get("mtl_nonfinite_skipped", 0))

    def _record_gram(self, gram: Tensor) -> None:
        self.last_gradient_gram = gram.detach().float().cpu()
        self.last_gradient_step = self.global_step

    def _log_step(self, batch_size: int) -> None:
        names = list(self.tasks)
        if self.last_gradient_step == self.global_step - 1 and self.last_gradient_gram is not None:
            # kept until a step that reaches the loggers: diagnostics every N steps and
            # logging every M steps rarely fall on the same step
            self._pending_diagnostics = self._diagnostic_metrics(names)
        if not self._logs_this_step():
            return  # Lightning would drop this step's on-step values: skip the `self.log` cost
        logged: dict[str, Any] = dict(self._pending_diagnostics)
        self._pending_diagnostics = {}
        weights = self._window.get("weights")
        if weights is not None:
            logged.update({f"train/weight/{n}": weights[i] for i, n in enumerate(names)})
        for key, value in self.weighting.extra_metrics().items():
            logged[f"train/weighting/{key}"] = value
        logged["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log_dict(
            {k: torch.as_tensor(v, dtype=torch.float32) for k, v in logged.items()},
            on_step=True,
            on_epoch=False,
            batch_size=batch_size,
        )

    def _diagnostic_metrics(self, names: list[str]) -> dict[str, Tensor]:
        """Per-task gradient norms and pairwise cosines from the last recorded Gramian."""
        gram = self.last_gradient_gram
        assert gram is not None
        cos = cosine_matrix(gram)
        out: dict[str, Tensor] = {}
        for i, a in enumerate(names):
            out[f"train/grad_norm/{a}"] = gram[i, i].clamp_min(0).sqrt()
            for j in range(i + 1, len(names)):
                out[f"train/grad_cos/{a}~{names[j]}"] = cos[i, j]
        return out

    def _logs_this_step(self) -> bool:
        """Whether Lightning hands this step's on-step values to the loggers (every
        `trainer.log_every_n_steps` steps, and on the last); on other steps they are dropped."""
        trainer = self.trainer
        connector = getattr(trainer, "_logger_connector", None)
        if connector is None:
            return True
        return bool(connector.should_update_logs or trainer.fast_dev_run)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # gradients are unscaled here (Lightning unscales before this hook under 16-mixed)
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )

    def _step_schedulers(self, interval: str) -> None:
        if self.schedule is None or self.schedule.interval != interval:
            return
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    # -- metrics at epoch end ----------------------------------------------------------------
    def _log_epoch_metrics(self, stage: str) -> None:
        for name in self.tasks:
            collection: MetricCollection = self.metrics[f"{stage}_{name}"]
            self.log_dict(collection.compute(), sync_dist=False)

    def _reset_metrics(self, stage: str) -> None:
        # states are (re)created in the current grad mode: a `validate()` under inference mode
        # must not leave inference tensors for a later `fit()` to update in place
        for name in self.tasks:
            self.metrics[f"{stage}_{name}"].reset()

    def on_train_epoch_start(self) -> None:
        if self.train_metrics:
            self._reset_metrics("train")

    def on_validation_epoch_start(self) -> None:
        self._reset_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._reset_metrics("test")

    def on_train_epoch_end(self) -> None:
        if self.train_metrics:
            self._log_epoch_metrics("train")
        self.weighting.on_train_epoch_end()
        self._step_schedulers("epoch")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # a method's own parameters (UW's log-variances) must not be decayed towards 0
        own = [p for p in self.weighting.parameters() if p.requires_grad]
        owned = {id(p) for p in own}
        groups = [{"params": [p for p in self.parameters() if id(p) not in owned]}]
        if own:
            groups.append({"params": own, "weight_decay": 0.0})
        optimizer = self.optimizer_factory(params=groups)
        scheduler = None
        if self.schedule is not None and self.schedule.scheduler is not None:
            scheduler = self.schedule.build(optimizer, self._total_optimizer_steps())
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _total_optimizer_steps(self) -> int:
        """Optimizer steps of the run: ceil(batches / accumulation) per epoch, capped by
        max_steps (the trainer itself accumulates nothing under manual optimisation)."""
        trainer = self.trainer
        total = int(trainer.estimated_stepping_batches)  # batches (or max_steps, if smaller)
        per_epoch = trainer.num_training_batches
        if per_epoch != float("inf") and trainer.max_epochs and trainer.max_epochs > 0:
            total = -(-int(per_epoch) // self.accumulate_grad_batches) * trainer.max_epochs
        if trainer.max_steps is not None and trainer.max_steps > 0:
            total = min(total, trainer.max_steps)
        return max(total, 1)

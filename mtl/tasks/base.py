"""The `Task`: the unit a user adds by config.

A task owns everything that is specific to one prediction problem (its head, loss, metrics and
the direction of each metric), so the model, the training loop and the reports never
special-case a task kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl.losses.class_weights import FREQUENCY_MODES, class_weights_from_frequencies


@dataclass(frozen=True)
class TargetSpec:
    """What a data module provides for one target, so tasks can be checked against it."""

    kind: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    ignore_index: int | None = None
    # share of each class in the training split (for `class_weights: inverse|median`)
    class_frequencies: tuple[float, ...] | None = None


class TaskConfigError(ValueError):
    """A task's configuration does not fit the data or itself."""


class Task(nn.Module, ABC):
    """Head factory, loss and metrics for one target.

    `name` is the key in model outputs and metric names (`{stage}/{name}/{metric}`); `target`
    is the key in the batch's `targets` (defaults to `name`).
    """

    kind: str = ""
    # whether `bind` needs the training split's class frequencies in the spec (the builders
    # then ask the data module for them)
    needs_class_frequencies: bool = False

    def __init__(self, name: str, target: str | None = None) -> None:
        super().__init__()
        if not name or "/" in name:
            raise TaskConfigError(f"task name must be a non-empty string without '/', got {name!r}")
        self.name = name
        self.target = target or name

    # -- binding to the data ---------------------------------------------------------------
    def bind(self, spec: TargetSpec) -> None:
        """Adopt what the data says about the target; fail early on a mismatch."""
        if spec.kind != self.kind:
            raise TaskConfigError(
                f"task '{self.name}' is a {self.kind} task but the data's target '{self.target}' "
                f"is of kind '{spec.kind}'; point the task at a {self.kind} target "
                f"(tasks.{self.name}.target=...) or choose a matching task config."
            )

    # -- model -----------------------------------------------------------------------------
    @abstractmethod
    def build_head(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder: Callable[..., nn.Module] | None = None,
    ) -> nn.Module:
        """A head mapping the encoder's feature pyramid to this task's output; dense tasks
        build it on `decoder` (the model's `decoder=` choice) unless they set their own."""

    @property
    def guide(self) -> tuple[str, str] | None:
        """(task, class) whose predicted probability this task's head pools under
        (`mtl.models.guides`), or None. Tasks that take a guide build their head with
        `build_head(..., guided=True)` when the architecture provides one."""
        return None

    # -- loss ------------------------------------------------------------------------------
    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Scalar loss on samples that all have a target."""

    def masked_loss(self, output: Tensor, target: Tensor, has_target: Tensor | None) -> Tensor:
        """Loss over the samples that carry this target (partial labels).

        A batch with no such sample returns a zero that keeps the head in the graph, so DDP
        sees every parameter used.
        """
        if has_target is None or bool(has_target.all()):
            return self.loss(output, target)
        if not bool(has_target.any()):
            return output.sum() * 0.0
        return self.loss(output[has_target], target[has_target])

    # -- metrics ---------------------------------------------------------------------------
    @abstractmethod
    def build_metrics(self) -> MetricCollection:
        """A fresh metric collection (one per stage)."""

    @abstractmethod
    def metric_input(self, output: Tensor) -> Tensor:
        """What the metrics consume (labels or probabilities) from the raw head output."""

    @property
    @abstractmethod
    def higher_is_better(self) -> Mapping[str, bool]:
        """Direction of every metric this task reports (used by delta_m and checkpointing)."""

    @property
    @abstractmethod
    def primary_metric(self) -> str:
        """The metric that best summarises the task."""

    def update_metrics(
        self, metrics: MetricCollection, output: Tensor, target: Tensor, has_target: Tensor | None
    ) -> None:
        output = output.detach()
        if has_target is not None and not bool(has_target.all()):
            if not bool(has_target.any()):
                return
            output, target = output[has_target], target[has_target]
        metrics.update(self.metric_input(output), target)


class ClassLabelTask(Task):
    """A task whose targets are class ids (segmentation, classification): class count and
    names come from the data; a count in the config is checked against it."""

    min_classes: int = 1

    def __init__(
        self,
        name: str,
        target: str | None,
        num_classes: int | None,
        class_weights: Sequence[float] | str | None = None,
    ) -> None:
        super().__init__(name, target)
        if isinstance(class_weights, str) and class_weights not in FREQUENCY_MODES:
            raise TaskConfigError(
                f"tasks.{name}.class_weights={class_weights!r} is not a mode; choose inverse, "
                f"median (from the training split's class frequencies), a list of one weight "
                f"per class, or null"
            )
        self.class_weights_option = class_weights
        self.num_classes = num_classes
        self.class_names: tuple[str, ...] | None = None
        self._bound = False

    def bind(self, spec: TargetSpec) -> None:
        super().bind(spec)
        if spec.num_classes is None or spec.num_classes < self.min_classes:
            raise TaskConfigError(
                f"data target '{self.target}' must report >= {self.min_classes} classes, "
                f"got {spec.num_classes}"
            )
        if self.num_classes is not None and self.num_classes != spec.num_classes:
            raise TaskConfigError(
                f"task '{self.name}' is configured with num_classes={self.num_classes} but the "
                f"data's target '{self.target}' has {spec.num_classes} classes "
                f"{list(spec.class_names or [])}; set tasks.{self.name}.num_classes="
                f"{spec.num_classes} or null (null takes it from the data)."
            )
        self.num_classes = spec.num_classes
        self.class_names = spec.class_names or tuple(f"class{i}" for i in range(spec.num_classes))
        self._bound = True

    @property
    def needs_class_frequencies(self) -> bool:  # type: ignore[override]
        return isinstance(self.class_weights_option, str)

    def _require_bound(self) -> int:
        if not self._bound or self.num_classes is None:
            raise RuntimeError(f"task '{self.name}' must be bound to the data first (bind)")
        return self.num_classes


def build_pooled_head(task: Task, channels: Sequence[int], num_outputs: int, **args) -> nn.Module:
    """An image-level `PooledHead`; a bad head setting (stages the encoder lacks, an unknown
    pool) is refused naming the task whose config holds it."""
    from mtl.models.heads import PooledHead

    try:
        return PooledHead(channels, num_outputs, **args)
    except ValueError as err:
        raise TaskConfigError(f"tasks.{task.name}.{err}") from err


def as_weight_tensor(
    weights: Sequence[float] | str | None, spec: TargetSpec, what: str
) -> Tensor | None:
    """Per-class weights from config: a list, `inverse` (`balanced`) or `median` from the
    training split's class frequencies (`mtl.losses.class_weights`), or null."""
    if weights is None:
        return None
    num_classes = spec.num_classes or 0
    if isinstance(weights, str):
        if weights not in FREQUENCY_MODES:
            raise TaskConfigError(
                f"{what} must be inverse, median, a list of numbers or null, got {weights!r}"
            )
        if spec.class_frequencies is None:
            raise TaskConfigError(
                f"{what}={weights} needs class frequencies, which this data does not report; "
                f"give one weight per class instead"
            )
        try:
            return class_weights_from_frequencies(spec.class_frequencies, weights)
        except ValueError as err:
            raise TaskConfigError(f"{what}={weights}: {err}") from err
    tensor = torch.as_tensor(list(weights), dtype=torch.float32)
    if tensor.numel() != num_classes:
        raise TaskConfigError(
            f"{what} has {tensor.numel()} entries but the target has {num_classes} classes; "
            f"give one weight per class, inverse, median or null."
        )
    if (tensor < 0).any() or not torch.isfinite(tensor).all():
        raise TaskConfigError(f"{what} must be finite and non-negative, got {list(weights)}")
    return tensor


def loss_class_weights(
    task: ClassLabelTask, spec: TargetSpec, focal_alpha: float | None, pixel_term: str | None
) -> Tensor | None:
    """The CE / focal class weights of a task: its `class_weights`, or focal's scalar alpha
    (Lin et al.'s binary form: class 0, background or negative, weighs 1 - alpha, every
    other class alpha)."""
    what = f"tasks.{task.name}"
    if focal_alpha is None:
        return as_weight_tensor(task.class_weights_option, spec, f"{what}.class_weights")
    if pixel_term != "focal":
        raise TaskConfigError(f"{what}.focal_alpha is set but the task's loss has no focal term")
    if task.class_weights_option is not None:
        raise TaskConfigError(
            f"{what}.focal_alpha and {what}.class_weights both weigh classes; set one of them"
        )
    if not 0.0 < focal_alpha < 1.0:
        raise TaskConfigError(f"{what}.focal_alpha must be in (0, 1), got {focal_alpha}")
    weights = torch.full((spec.num_classes or 0,), float(focal_alpha))
    weights[0] = 1.0 - focal_alpha
    return weights


def build_dense_head(
    task: Task,
    own_decoder: Callable[..., nn.Module] | None,
    model_decoder: Callable[..., nn.Module] | None,
    channels: Sequence[int],
    reductions: Sequence[int],
    out_channels: int,
) -> nn.Module:
    """A decoder (the task's own `tasks.<name>.decoder`, else the model's `decoder=`) and a
    1x1 projection to `out_channels`, upsampled to input resolution."""
    from mtl.models.decoders import DenseHead

    factory = own_decoder or model_decoder
    if factory is None:
        raise TaskConfigError(
            f"task '{task.name}' needs a decoder: choose one with decoder=unet|deeplabv3plus|fpn "
            f"or set tasks.{task.name}.decoder"
        )
    return DenseHead(factory(channels=list(channels), reductions=list(reductions)), out_channels)

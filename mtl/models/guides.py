"""Cross-task guides: one task's head reads another task's prediction.

A guided head (e.g. slice classification) pools the shared features under a guide map, the
probability of one class of a segmentation task (e.g. `lesion`). The head then sees where
the lesion is and how large it is, which the segmentation loss has taught the network long
before a slice label alone could (the classification signal is one label per image).

The guide map is detached: the guided task's loss never reaches the guiding head, so every
task's parameters `b_t` stay its own and gradient-based weighting methods see the same
per-task gradients as without guides. A guide applies only when both tasks are heads of one
network; `model=stl` (single-task baselines) and runs without the guiding task pool unguided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from mtl.dtypes import at_least_fp32
from mtl.tasks import Task, TaskConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Guide:
    """`source`'s probability of class `channel` guides a head."""

    source: str
    channel: int


def resolve_guides(tasks: Mapping[str, Task]) -> dict[str, Guide]:
    """The guide of every task whose configured guide task is among `tasks`; fails early
    when that task is not a segmentation task or lacks the class."""
    guides: dict[str, Guide] = {}
    for name, task in tasks.items():
        wanted = task.guide
        if wanted is None:
            continue
        source, cls = wanted
        if source not in tasks:
            log.info(
                "task '%s': guide task '%s' is not in this run (%s); it pools unguided",
                name, source, list(tasks),
            )  # fmt: skip
            continue
        guide_task = tasks[source]
        names = getattr(guide_task, "class_names", None)
        if source == name or guide_task.kind != "segmentation" or not names:
            raise TaskConfigError(
                f"tasks.{name}.guide_task={source!r} must name another segmentation task of "
                f"the run (tasks: {list(tasks)}); set it to one, or tasks.{name}.guide_task=null "
                f"tasks.{name}.guide_class=null to pool unguided"
            )
        if cls not in names:
            raise TaskConfigError(
                f"tasks.{name}.guide_class={cls!r} is not a class of task '{source}' "
                f"{list(names)}; choose one of them"
            )
        guides[name] = Guide(source, names.index(cls))
    return guides


def guide_map(output: Tensor, guide: Guide) -> Tensor:
    """The guide class's softmax probability (batch, 1, H, W), detached, in >= fp32."""
    probs = at_least_fp32(output.detach()).softmax(dim=1)
    return probs[:, guide.channel : guide.channel + 1]


def run_heads(
    heads: nn.ModuleDict,
    task_names: Sequence[str],
    guides: Mapping[str, Guide],
    inputs: Callable[[str], Sequence[Tensor]],
) -> dict[str, Tensor]:
    """Every task's output, guiding heads first; `inputs(name)` is the representation the
    architecture gives task `name`'s head. Outputs keep the order of `task_names`."""
    outputs: dict[str, Tensor] = {}
    for name in task_names:
        if name not in guides:
            outputs[name] = heads[name](inputs(name))
    for name, guide in guides.items():
        outputs[name] = heads[name](inputs(name), guide=guide_map(outputs[guide.source], guide))
    return {name: outputs[name] for name in task_names}

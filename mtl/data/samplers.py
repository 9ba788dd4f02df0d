"""Training samplers against class imbalance (`conf/sampler/`): which samples each rank sees.

Every epoch one global sequence of `num_samples` indices is drawn from a generator seeded by
(seed, epoch); rank r of W takes positions r, r + W, r + 2W, ... of it. Ranks thus see
disjoint shares of one draw and agree without communicating, and a run repeats exactly for
a given seed. What is drawn (`Sampling`):

- **base**: uniform (a fresh permutation per epoch, repeated if `num_samples` exceeds the
  split), or with `weight_target` weighted with replacement: sample i is drawn with weight
  freq(label_i)^-power, so power 1 draws every class equally often, 0.5 softens the
  correction and 0 is uniform. Samples without a label keep their natural share (they get
  the mean weight of the labelled ones).
- **forced foreground** (`foreground_target`, nnU-Net's oversampling): the first
  ceil(foreground_fraction * batch_size) positions of every batch of every rank hold a sample
  with foreground: a class is drawn uniformly among the foreground classes present in the
  split, then a sample containing it, uniformly; the other positions follow the base.
  nnU-Net forces B - round(B (1 - p)) samples of a batch of B (5 of 16 at p = 0.33); we
  force ceil(p B) (6 of 16), so that *at least* the stated share of every batch holds
  foreground.

Samples' classes come from the dataset without loading images (`mtl.data.sample_metadata`).
The samplers subclass `DistributedSampler` so that Lightning leaves them in place under DDP
(it wraps any other sampler in a distributed one of its own) and calls their `set_epoch`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DistributedSampler

from mtl.data.resumable import SkipsOnResume
from mtl.data.sample_metadata import MISSING, MetadataError, labels_of, presence_of
from mtl.tasks import TargetSpec

log = logging.getLogger(__name__)
# tolerance when turning a share of the batch into a count (0.33 * 100 is 33.000000000000004)
ROUND_EPS = 1e-9


class SamplerConfigError(ValueError):
    """The sampler's configuration does not fit the data or itself."""


def inverse_frequency_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-sample draw probabilities proportional to freq(label)^-power; unlabelled samples
    (`MISSING`) get the mean weight of the labelled ones, keeping their natural share."""
    labelled = labels != MISSING
    if not labelled.any():
        raise SamplerConfigError("no training sample has a class label to weight by")
    counts = np.bincount(labels[labelled])
    weights = np.empty(len(labels), dtype=np.float64)
    weights[labelled] = counts[labels[labelled]].astype(np.float64) ** -power
    weights[~labelled] = weights[labelled].mean()
    return weights / weights.sum()


def forced_count(fraction: float, batch_size: int) -> int:
    """Samples of a batch forced to hold foreground: ceil(fraction * batch_size)."""
    return min(batch_size, math.ceil(fraction * batch_size - ROUND_EPS))


@dataclass(frozen=True)
class EpochDraw:
    """The global draw of one epoch, as a (positions per rank) x (ranks) array of indices.

    `probabilities` (None = uniform permutations) is the base; `pools[j]` holds the samples
    containing foreground class `classes[j]`, and the first `forced` positions of every batch
    of `batch_size` are drawn from them.
    """

    size: int
    probabilities: np.ndarray | None = None
    pools: tuple[np.ndarray, ...] = ()
    classes: tuple[int, ...] = ()
    forced: int = 0
    batch_size: int = 1

    def __call__(self, rng: np.random.Generator, per_rank: int, world_size: int) -> np.ndarray:
        out = np.empty((per_rank, world_size), dtype=np.int64)
        forced_rows = (np.arange(per_rank) % self.batch_size) < self.forced
        if self.pools:
            out[forced_rows] = self._foreground(rng, int(forced_rows.sum()) * world_size).reshape(
                -1, world_size
            )
        else:
            forced_rows[:] = False
        free = int((~forced_rows).sum()) * world_size
        out[~forced_rows] = self._base(rng, free).reshape(-1, world_size)
        return out

    def _base(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.probabilities is not None:
            return rng.choice(self.size, size=n, replace=True, p=self.probabilities)
        rounds = -(-n // self.size) if n else 0
        return np.concatenate([rng.permutation(self.size) for _ in range(rounds)] or [[]])[
            :n
        ].astype(np.int64)

    def _foreground(self, rng: np.random.Generator, n: int) -> np.ndarray:
        which = rng.integers(len(self.pools), size=n)
        out = np.empty(n, dtype=np.int64)
        for j, pool in enumerate(self.pools):
            slots = np.flatnonzero(which == j)
            out[slots] = pool[rng.integers(len(pool), size=len(slots))]
        return out


class EpochSampler(SkipsOnResume, DistributedSampler):
    """Rank `rank`'s share of `draw`'s global sequence for the current epoch (`set_epoch`).

    `num_samples` (global, over all ranks) is rounded up to a multiple of `world_size`, as
    `DistributedSampler` pads; `len()` is this rank's count.
    """

    def __init__(
        self,
        draw: EpochDraw,
        num_samples: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        # explicit rank and world size: needs no process group (unit tests, set-up time)
        super().__init__(range(draw.size), num_replicas=world_size, rank=rank, seed=seed)
        self.draw = draw
        self.per_rank = math.ceil(num_samples / world_size)
        self.num_samples = self.per_rank
        self.total_size = self.per_rank * world_size

    def global_draw(self, epoch: int | None = None) -> np.ndarray:
        """(positions per rank) x (ranks) indices of `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        return self.draw(rng, self.per_rank, self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self._after_resume(self.global_draw()[:, self.rank].tolist()))

    def __len__(self) -> int:
        return self.per_rank


class Sampling:
    """`sampler=none|weighted|foreground|weighted_foreground`: how training batches are drawn
    (see the module docstring). Builds one `EpochSampler` per training loader.

    `weight_target`: a classification target whose inverse class frequency weighs samples
    (null = uniform); `power`: the exponent. `foreground_target`: a segmentation target whose
    foreground is forced into `foreground_fraction` of every batch (null = none); `background`:
    the class id that is not foreground (null = every class is). `num_samples`: draws per
    epoch over all ranks (null = the split's size). `seed`: with the epoch, seeds each draw
    (null = 0: ranks must agree, so there is no random default).
    """

    def __init__(
        self,
        weight_target: str | None = None,
        power: float = 1.0,
        foreground_target: str | None = None,
        foreground_fraction: float = 0.33,
        background: int | None = 0,
        num_samples: int | None = None,
        seed: int | None = 0,
    ) -> None:
        if not math.isfinite(power) or power < 0:
            raise SamplerConfigError(f"sampler.power must be >= 0, got {power}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise SamplerConfigError(
                f"sampler.foreground_fraction must be in [0, 1], got {foreground_fraction}"
            )
        if num_samples is not None and num_samples < 1:
            raise SamplerConfigError(f"sampler.num_samples must be >= 1 or null, got {num_samples}")
        if seed is not None and seed < 0:
            raise SamplerConfigError(f"sampler.seed must be >= 0 or null, got {seed}")
        self.weight_target = weight_target
        self.power = float(power)
        self.foreground_target = foreground_target
        self.foreground_fraction = float(foreground_fraction)
        self.background = background
        self.num_samples = num_samples
        self.seed = int(seed or 0)

    @property
    def rebalances(self) -> bool:
        """Whether it changes what is drawn (otherwise it is a plain per-epoch shuffle)."""
        return self.weight_target is not None or self.foreground_target is not None

    def __repr__(self) -> str:
        parts = []
        if self.weight_target is not None:
            parts.append(f"weighted by '{self.weight_target}' (power {self.power:g})")
        if self.foreground_target is not None:
            parts.append(
                f"foreground of '{self.foreground_target}' in >= {self.foreground_fraction:g} "
                f"of each batch"
            )
        return f"Sampling({', '.join(parts) or 'uniform'})"

    # -- before any data is read ---------------------------------------------------------
    def check(self, specs: Mapping[str, TargetSpec]) -> None:
        """Fail early, naming the fix, when a target is missing or of the wrong kind."""
        wanted = (
            ("weight_target", self.weight_target, "classification", "weighted"),
            ("foreground_target", self.foreground_target, "segmentation", "foreground"),
        )
        for key, target, kind, name in wanted:
            if target is None:
                continue
            spec = specs.get(target)
            if spec is None or spec.kind != kind:
                have = sorted(t for t, s in specs.items() if s.kind == kind)
                found = "missing" if spec is None else f"of kind '{spec.kind}'"
                raise SamplerConfigError(
                    f"the {name} sampler needs a {kind} target, but sampler.{key}='{target}' "
                    f"is {found} in this data; its {kind} targets: {have or 'none'} (set "
                    f"sampler.{key} to one of them, or choose another sampler, e.g. "
                    f"sampler=none)"
                )
        if self.foreground_target is not None and self.background is not None:
            classes = specs[self.foreground_target].num_classes or 0
            if not 0 <= self.background < classes:
                raise SamplerConfigError(
                    f"sampler.background={self.background} is not a class of "
                    f"'{self.foreground_target}' (0..{classes - 1}); null = no background"
                )

    # -- per training loader -------------------------------------------------------------
    def build(
        self, dataset: Any, *, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> EpochSampler:
        """The sampler of `dataset` (the training split) for rank `rank` of `world_size`."""
        size = len(dataset)
        if size == 0:
            raise SamplerConfigError("the training split is empty: nothing to sample")
        try:
            draw = EpochDraw(
                size=size,
                probabilities=self._probabilities(dataset, report=rank == 0),
                batch_size=int(batch_size),
                **self._foreground(dataset, int(batch_size)),
            )
        except MetadataError as err:
            raise SamplerConfigError(f"{self}: {err}") from err
        sampler = EpochSampler(draw, self.num_samples or size, self.seed, rank, world_size)
        if rank == 0:
            log.info(
                "%s: %d draws per epoch over %d training samples", self, sampler.total_size, size
            )
        return sampler

    def _probabilities(self, dataset: Any, report: bool) -> np.ndarray | None:
        if self.weight_target is None:
            return None
        labels = labels_of(dataset, self.weight_target)
        probabilities = inverse_frequency_weights(labels, self.power)
        if not report:
            return probabilities
        labelled = labels != MISSING
        natural = np.bincount(labels[labelled]) / labelled.sum()
        drawn = np.bincount(labels[labelled], weights=probabilities[labelled])
        log.info(
            "weighted sampler on '%s': class shares %s in the split, %s expected in batches",
            self.weight_target,
            np.round(natural, 3).tolist(),
            np.round(drawn / drawn.sum(), 3).tolist(),
        )
        return probabilities

    def _foreground(self, dataset: Any, batch_size: int) -> dict[str, Any]:
        if self.foreground_target is None:
            return {}
        presence = presence_of(dataset, self.foreground_target)
        classes = tuple(
            c for c in range(presence.shape[1]) if c != self.background and presence[:, c].any()
        )
        if not classes:
            raise SamplerConfigError(
                f"no training sample contains foreground of '{self.foreground_target}' "
                f"(background = class {self.background}): nothing to oversample; use "
                f"sampler=none or sampler=weighted"
            )
        return {
            "pools": tuple(np.flatnonzero(presence[:, c]) for c in classes),
            "classes": classes,
            "forced": forced_count(self.foreground_fraction, batch_size),
        }

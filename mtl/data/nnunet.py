"""nnU-Net raw datasets (`DatasetXXX_Name/`) as 2D / 2.5D axial slices for multi-task training.

Targets: `seg` (the masks; classes from `dataset.json` `labels`, 255 = ignore) and, when
configured, `cls` (a class per slice, from a CSV or a rule on the mask; see `nnunet_cls`).

Splits are by case, never by slice (neighbouring slices are near copies: splitting them would
leak the validation set into training). `val` is a seeded `val_fraction` of the `imagesTr`
cases; `test` is `imagesTs` when `labelsTs/` holds masks, else a seeded `test_fraction` of
`imagesTr` (then `imagesTs` is not used). Fractions round half up, at least one case each.

Preprocessing (once per case, cached beside the data; see `nnunet_cache`): in-plane
resampling to `target_spacing` (null = the median in-plane spacing of all `imagesTr` cases,
as nnU-Net picks it), images linearly, masks by nearest neighbour; the slice axis is kept.
Normalisation happens per slice when served (`nnunet_slices`): CT channels with nnU-Net's
fingerprint of the *training split's* foreground (cached, and saved in checkpoints so
evaluation uses the training numbers), other channels per image.

Partial labels: a case without a mask trains `cls` only (`has_target["seg"]` False), a slice
without a class label trains `seg` only; losses and metrics skip the missing targets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mtl.data.augment import BatchAugment
from mtl.data.bad_data import add_skip_hint, check_split_left, skipped_entry
from mtl.data.base import MultiTaskDataModule
from mtl.data.input_spec import InputSpec
from mtl.data.nnunet_cache import (
    CaseCache,
    CaseEntry,
    fingerprint_path,
    load_or_compute_fingerprints,
)
from mtl.data.nnunet_cls import CLS_LEVELS, MISSING, ClsRule, CsvLabels, read_cls_csv
from mtl.data.nnunet_io import read_header
from mtl.data.nnunet_layout import (
    IMAGES_TR,
    IMAGES_TS,
    LABELS_TR,
    LABELS_TS,
    Case,
    DatasetInfo,
    NnUNetDataError,
    NnUNetMissingError,
    check_num_training,
    find_cases,
    read_dataset_json,
)
from mtl.data.nnunet_preprocess import in_plane_spacing, preprocess_case
from mtl.data.nnunet_slices import NnUNetSlices, Normalizer, ct_channels
from mtl.data.normalization import CTFingerprint
from mtl.data.targets import IGNORE_INDEX
from mtl.tasks import TargetSpec

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
DEFAULT_CACHE = "mtl_cache"  # under data.root when data.cache_dir is null


class NnUNetDataModule(MultiTaskDataModule):
    """`data=nnunet data.root=/path/DatasetXXX_Name`: see the module docstring and
    `conf/data/nnunet.yaml` for the options."""

    def __init__(
        self,
        root: str,
        cache_dir: str | None = None,
        seed: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        target_spacing: Sequence[float] | None = None,
        patch_size: Sequence[int] | None = None,
        context: int = 0,
        percentiles: Sequence[float] = (0.5, 99.5),
        foreground_samples: int = 10_000,
        affine_tolerance: float = 1e-3,
        cls_csv: str | None = None,
        cls_classes: Sequence[str] | None = None,
        cls_rule: Mapping[str, Any] | None = None,
        cls_level: str = "slice",
        augment: BatchAugment | None = None,
        skip_bad: bool = False,
        **loader: Any,
    ) -> None:
        super().__init__(augment, **loader)
        self.root = _check_root(Path(root).expanduser())
        self.skip_bad = bool(skip_bad)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.root / DEFAULT_CACHE
        self.seed = int(seed)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.target_spacing = _pair("target_spacing", target_spacing, float)
        self.patch_size = _pair("patch_size", patch_size, int)
        self.context = int(context)
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.foreground_samples = int(foreground_samples)
        self.affine_tolerance = float(affine_tolerance)
        _check_options(
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            context=self.context,
            percentiles=self.percentiles,
            foreground_samples=self.foreground_samples,
            affine_tolerance=self.affine_tolerance,
        )

        self.info: DatasetInfo = read_dataset_json(self.root)
        self.train_cases = find_cases(self.root / IMAGES_TR, self.root / LABELS_TR, self.info)
        check_num_training(self.info, self.train_cases, self.root / IMAGES_TR)
        ts_cases = find_cases(
            self.root / IMAGES_TS, self.root / LABELS_TS, self.info, required=False
        )
        # imagesTs is the test split only when it is labelled; otherwise test comes from imagesTr
        self.test_cases = ts_cases if any(c.label is not None for c in ts_cases) else []
        if ts_cases and not self.test_cases:
            log.info("%s has no labelsTs/: test = a share of imagesTr", self.root / IMAGES_TS)
        self.in_channels = self.info.num_channels * (2 * self.context + 1)

        all_cases = [c.name for c in (*self.train_cases, *ts_cases)]
        self.cls_rule, self.cls_csv, self.cls_classes = _cls_config(
            cls_csv, cls_classes, cls_rule, cls_level, self.info.class_names, all_cases
        )
        self.has_seg = any(c.label is not None for c in self.train_cases)
        if not self.has_seg and self.cls_classes is None:
            raise NnUNetMissingError(
                f"{self.root / LABELS_TR} holds no masks and no classification labels are "
                f"configured: nothing to train; add masks or set data.cls_csv",
                self.root / LABELS_TR,
            )

        self.entries: dict[str, list[CaseEntry]] = {}
        self.fingerprints: dict[int, CTFingerprint] = {}
        self._restored_fingerprints: dict[int, CTFingerprint] | None = None
        self.resolved_spacing: tuple[float, float] | None = None
        self.slice_size: tuple[int, int] | None = None
        self.cls_labels: dict[str, list[np.ndarray]] = {}
        self.cache: CaseCache | None = None
        self._specs: dict[str, TargetSpec] | None = None

    # -- what the model is built from ---------------------------------------------------------
    @property
    def target_specs(self) -> dict[str, TargetSpec]:  # type: ignore[override]
        """`seg` from dataset.json; `cls` with the training split's class shares (so the first
        access preprocesses the data, which every later step needs anyway)."""
        if self._specs is None:
            specs = {}
            if self.has_seg:
                names = self.info.class_names
                specs["seg"] = TargetSpec("segmentation", len(names), names, IGNORE_INDEX)
            if self.cls_classes is not None:
                names = self.cls_classes
                specs["cls"] = TargetSpec(
                    "classification", len(names), names, class_frequencies=self._cls_frequencies()
                )
            self._specs = specs
        return self._specs

    @property
    def input_shape(self) -> tuple[int, int, int]:
        self._prepare()
        assert self.slice_size is not None
        return (self.in_channels, *self.slice_size)

    # -- splits ------------------------------------------------------------------------------
    def split_cases(self) -> dict[str, list[Case]]:
        """Cases per split, by a permutation fixed by `data.seed`."""
        n = len(self.train_cases)
        n_test = 0 if self.test_cases else _share(self.test_fraction, n)
        n_val = _share(self.val_fraction, n)
        if n - n_test - n_val < 1:
            raise NnUNetDataError(
                f"{self.root / IMAGES_TR} holds {n} cases; data.val_fraction="
                f"{self.val_fraction} and data.test_fraction={self.test_fraction} take {n_val} "
                f"and {n_test} (at least one each), leaving none to train: add cases, lower "
                f"the fractions or provide imagesTs/ + labelsTs/"
            )
        order = np.random.default_rng(self.seed).permutation(n)

        def pick(rows: np.ndarray) -> list[Case]:
            return sorted((self.train_cases[i] for i in rows), key=lambda c: c.name)

        return {
            "train": pick(order[n_test + n_val :]),
            "val": pick(order[n_test : n_test + n_val]),
            "test": self.test_cases or pick(order[:n_test]),
        }

    # -- preprocessing -----------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._prepare()

    def setup(self, stage: str | None = None) -> None:
        self._prepare()

    def _prepare(self) -> None:
        """Preprocess (or load from the cache) every case of every split, so a broken test
        file fails before training; then fingerprint, slice size and class labels."""
        if self.entries:
            return
        splits = self.split_cases()
        spacing = self.target_spacing or self._median_spacing()
        self.resolved_spacing = spacing
        config = {
            # DatasetXXX_Name: datasets sharing one data.cache_dir keep apart
            "dataset": self.root.resolve().name,
            "target_spacing": list(spacing),
            "channel_names": list(self.info.channel_names),
            "class_names": list(self.info.class_names),
            "ignore_id": self.info.ignore_id,
            "file_ending": self.info.file_ending,
            "affine_tolerance": self.affine_tolerance,
            "foreground_samples": self.foreground_samples,
        }
        build = partial(
            preprocess_case,
            info=self.info,
            target_spacing=spacing,
            affine_tolerance=self.affine_tolerance,
            foreground_samples=self.foreground_samples,
        )
        self.cache = CaseCache(self.cache_dir, config, self.root, build)
        self.bad_data = []
        entries = {split: self._preprocess(split, cases) for split, cases in splits.items()}
        log.info(
            "nnU-Net cache %s: %d cases preprocessed, %d reused; slices at %s mm",
            self.cache.folder,
            len(self.cache.built),
            len(self.cache.reused),
            spacing,
        )
        self.fingerprints = self._fingerprints(entries["train"])
        self.slice_size = self.patch_size or _largest(
            [e for split in entries.values() for e in split]
        )
        self.cls_labels = {split: self._case_cls(cases) for split, cases in entries.items()}
        self.entries = entries
        for split in SPLITS:
            n_slices = sum(e.num_slices for e in entries[split])
            unlabelled = sum(not e.has_mask for e in entries[split])
            log.info(
                "%s: %d cases (%d without mask), %d slices", split, len(entries[split]),
                unlabelled, n_slices,
            )  # fmt: skip

    def _preprocess(self, split: str, cases: list[Case]) -> list[CaseEntry]:
        """The cached cases of a split; a bad case fails setup, or with `skip_bad` is left out
        (and listed in `bad_data`). Nothing is cached for a bad case, and its cache key holds
        its files' size and mtime, so a repaired file is read again."""
        assert self.cache is not None
        kept = []
        for case in cases:
            try:
                kept.append(self.cache.get(case))
            except NnUNetDataError as err:
                what = f"case {case.name!r}"
                if not self.skip_bad:
                    add_skip_hint(err, what)
                    raise
                self.bad_data.append(skipped_entry(split, err, case.images[0], what))
        check_split_left(split, len(kept), self.bad_data, NnUNetDataError, unit="cases")
        return kept

    def _median_spacing(self) -> tuple[float, float]:
        """nnU-Net's default target: the median spacing over the training cases (headers).
        With `skip_bad`, unreadable headers are left out here and reported when preprocessed."""
        spacings, errors = [], []
        for case in self.train_cases:
            try:
                spacings.append(in_plane_spacing(read_header(case.images[0])))
            except NnUNetDataError as err:
                if not self.skip_bad:
                    add_skip_hint(err, f"case {case.name!r}")
                    raise
                errors.append(err)
        if not spacings:
            raise NnUNetDataError(
                f"no case in {self.root / IMAGES_TR} has a readable header, so there is "
                f"nothing to train on (data.skip_bad=true); the first: {errors[0]}",
                errors[0].path,
            )
        median = np.median(np.asarray(spacings), axis=0)
        return float(median[0]), float(median[1])

    def _fingerprints(self, train: list[CaseEntry]) -> dict[int, CTFingerprint]:
        channels = ct_channels(self.info.channel_names)
        if not channels:
            return {}
        if self._restored_fingerprints is not None:
            return self._restored_fingerprints
        assert self.cache is not None
        settings = {"channels": channels, "percentiles": list(self.percentiles)}
        path = fingerprint_path(self.cache.folder, train, settings)
        return load_or_compute_fingerprints(path, train, channels, self.percentiles)

    def _case_cls(self, entries: list[CaseEntry]) -> list[np.ndarray]:
        if self.cls_rule is not None:
            return [self.cls_rule.labels(e.label_counts, e.num_slices) for e in entries]
        if self.cls_csv is not None:
            return [self.cls_csv.labels(e.name, e.num_slices) for e in entries]
        return [np.full(e.num_slices, MISSING, dtype=np.int64) for e in entries]

    def _cls_frequencies(self) -> tuple[float, ...] | None:
        """Share of each class among the labelled training slices."""
        self._prepare()
        assert self.cls_classes is not None
        labels = np.concatenate(self.cls_labels["train"])
        labels = labels[labels != MISSING]
        if labels.size == 0:
            log.warning("no training slice has a cls label: cls class frequencies unknown")
            return None
        counts = np.bincount(labels, minlength=len(self.cls_classes))
        return tuple(float(c) / labels.size for c in counts)

    # -- serving -----------------------------------------------------------------------------
    def dataset(self, split: str) -> NnUNetSlices:
        """The slices of the `train`, `val` or `test` cases as batch items."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self._prepare()
        assert self.slice_size is not None
        return NnUNetSlices(
            self.entries[split],
            Normalizer(self.info.channel_names, self.fingerprints),
            self.slice_size,
            context=self.context,
            targets=tuple(self.target_specs),
            cls_labels=self.cls_labels[split],
        )

    # -- checkpointed state: the normalisation and geometry used in training -----------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super().state_dict(),
            "fingerprints": {str(c): fp.to_dict() for c, fp in self.fingerprints.items()},
            "target_spacing": list(self.resolved_spacing) if self.resolved_spacing else None,
            "slice_size": list(self.slice_size) if self.slice_size else None,
        }
        if self.entries:
            state["input_spec"] = self.input_spec().to_dict()  # for predict.py
        return state

    def input_spec(self) -> InputSpec:
        """Channels, CT fingerprint, spacing, 2.5D context, slice size and targets."""
        self._prepare()
        assert self.slice_size is not None and self.resolved_spacing is not None
        return InputSpec(
            self.info.channel_names,
            self.context,
            self.slice_size,
            self.resolved_spacing,
            self.fingerprints,
            self.target_specs,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        restored = {
            int(c): CTFingerprint.from_dict(d) for c, d in state_dict["fingerprints"].items()
        }
        self._restored_fingerprints = restored or None
        if restored:
            self.fingerprints = restored
        trained = state_dict.get("target_spacing")
        if trained and self.resolved_spacing and not np.allclose(trained, self.resolved_spacing):
            log.warning(
                "the checkpoint was trained at %s mm slices but data.target_spacing resolves to "
                "%s mm here; set data.target_spacing=%s to evaluate like training",
                trained, list(self.resolved_spacing), trained,
            )  # fmt: skip


# -- options ---------------------------------------------------------------------------------
def _check_root(root: Path) -> Path:
    if not root.is_dir():
        raise NnUNetMissingError(
            f"data.root={root} does not exist; mtl never downloads data: point data.root at an "
            f"nnU-Net raw dataset folder (DatasetXXX_Name with dataset.json and imagesTr/)",
            root,
        )
    return root


def _pair(name: str, value: Sequence[Any] | None, kind: type) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if len(value) != 2 or any(kind(v) <= 0 for v in value):
        raise ValueError(f"data.{name} must be [H, W] with positive values or null, got {value}")
    return kind(value[0]), kind(value[1])


def _share(fraction: float, n: int) -> int:
    return max(1, math.floor(fraction * n + 0.5)) if fraction > 0 else 0


def _largest(entries: list[CaseEntry]) -> tuple[int, int]:
    return max(e.height for e in entries), max(e.width for e in entries)


def _check_options(
    *,
    val_fraction: float,
    test_fraction: float,
    context: int,
    percentiles: tuple[float, float],
    foreground_samples: int,
    affine_tolerance: float,
) -> None:
    """Fail on a bad option before any file is touched, naming the key to change."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
    if context < 0:
        raise ValueError(f"data.context must be >= 0 neighbouring slices per side, got {context}")
    if not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise ValueError(f"data.percentiles must be [low, high] in [0, 100], got {percentiles}")
    if foreground_samples < 1:
        raise ValueError(f"data.foreground_samples must be >= 1, got {foreground_samples}")
    if affine_tolerance < 0:
        raise ValueError(f"data.affine_tolerance must be >= 0 mm, got {affine_tolerance}")


def _cls_config(
    csv_path: str | None,
    classes: Sequence[str] | None,
    rule: Mapping[str, Any] | None,
    level: str,
    seg_classes: Sequence[str],
    cases: Sequence[str],
) -> tuple[ClsRule | None, CsvLabels | None, tuple[str, ...] | None]:
    """The `cls` target's source and class names, or (None, None, None) without one."""
    if level not in CLS_LEVELS:
        raise ValueError(f"data.cls_level must be one of {CLS_LEVELS}, got {level!r}")
    if csv_path and rule:
        raise ValueError("data.cls_csv and data.cls_rule are alternatives: set one of them")
    if rule:
        parsed = ClsRule.from_config(rule, seg_classes, level)
        names = tuple(classes) if classes else parsed.class_names
        if len(names) != 2:
            raise ValueError(f"data.cls_classes for a cls_rule needs 2 names, got {list(names)}")
        return parsed, None, names
    if csv_path:
        if not classes or len(classes) < 2:
            raise ValueError(
                "data.cls_csv needs data.cls_classes: the class names, id = position (at least 2)"
            )
        names = tuple(str(c) for c in classes)
        return None, read_cls_csv(Path(csv_path).expanduser(), names, set(cases)), names
    if classes:
        raise ValueError("data.cls_classes is set but neither data.cls_csv nor data.cls_rule is")
    return None, None, None

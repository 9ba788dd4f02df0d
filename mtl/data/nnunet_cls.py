"""Classification labels for nnU-Net cases: from a CSV, or derived from the mask by a rule.

Both give one label per slice (`-1` = none: the sample trains only its other tasks):

- CSV (`data.cls_csv`), header `case,label` and optionally `slice`: a row without `slice`
  labels every slice of the case, a row with it one slice (and wins over the case row).
  Labels are ids or names of `data.cls_classes`. Cases not in the file have no label.
- Rule (`data.cls_rule`), binary, from the voxel counts per slice of the *original* mask
  (before resampling, so the rule does not change with `target_spacing`):
  `{kind: has_label, label: lesion}` (at least one voxel) or
  `{kind: min_voxels, label: lesion, threshold: 100}` (at least `threshold` voxels), counted
  per slice (`cls_level: slice`) or over the whole case (`cls_level: case`). Cases without a
  mask have no label.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl.data.nnunet_layout import NnUNetDataError
from mtl.data.sample_metadata import MISSING

CLS_LEVELS = ("slice", "case")
RULE_KINDS = ("has_label", "min_voxels")


@dataclass(frozen=True)
class ClsRule:
    """A binary class derived from the mask: 1 when `label` covers at least `threshold`
    voxels of the slice (or case)."""

    kind: str
    label_id: int
    label_name: str
    threshold: int
    level: str

    @classmethod
    def from_config(
        cls, rule: Mapping[str, Any], seg_classes: Sequence[str], level: str
    ) -> ClsRule:
        if level not in CLS_LEVELS:
            raise ValueError(f"data.cls_level must be one of {CLS_LEVELS}, got {level!r}")
        kind = rule.get("kind")
        if kind not in RULE_KINDS:
            raise ValueError(f"data.cls_rule.kind must be one of {RULE_KINDS}, got {kind!r}")
        unknown = sorted(set(rule) - {"kind", "label", "threshold"})
        if unknown:
            raise ValueError(
                f"data.cls_rule has unknown keys {unknown}; it takes kind, label, threshold"
            )
        label = rule.get("label")
        if label not in seg_classes or label == seg_classes[0]:
            raise ValueError(
                f"data.cls_rule.label={label!r} must name a foreground label of dataset.json: "
                f"{list(seg_classes[1:])}"
            )
        if kind == "has_label":
            if rule.get("threshold") not in (None, 1):
                raise ValueError(
                    "data.cls_rule.threshold is for kind min_voxels; has_label means >= 1 voxel"
                )
            threshold = 1
        else:
            threshold = rule.get("threshold")
            if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
                raise ValueError(
                    f"data.cls_rule.threshold must be a voxel count >= 1 for kind min_voxels, "
                    f"got {threshold!r}"
                )
        return cls(kind, seg_classes.index(label), str(label), threshold, level)

    @property
    def class_names(self) -> tuple[str, str]:
        return (f"no_{self.label_name}", self.label_name)

    def labels(self, counts: np.ndarray | None, num_slices: int) -> np.ndarray:
        """Per-slice labels from per-slice voxel counts (`Z x classes`); all missing for a
        case without a mask."""
        if counts is None:
            return np.full(num_slices, MISSING, dtype=np.int64)
        voxels = counts[:, self.label_id]
        if self.level == "case":
            voxels = np.full_like(voxels, voxels.sum())
        return (voxels >= self.threshold).astype(np.int64)


@dataclass(frozen=True)
class CsvLabels:
    """Labels read from `data.cls_csv`: per case and per (case, slice)."""

    path: Path
    case_labels: dict[str, int] = field(default_factory=dict)
    slice_labels: dict[str, dict[int, int]] = field(default_factory=dict)

    def labels(self, case: str, num_slices: int) -> np.ndarray:
        out = np.full(num_slices, self.case_labels.get(case, MISSING), dtype=np.int64)
        for index, label in self.slice_labels.get(case, {}).items():
            if not 0 <= index < num_slices:
                raise NnUNetDataError(
                    f"{self.path}: case {case!r} has a label for slice {index} but only "
                    f"{num_slices} slices (0 .. {num_slices - 1}); fix the slice column"
                )
            out[index] = label
        return out


def read_cls_csv(path: Path, class_names: Sequence[str], cases: Collection[str]) -> CsvLabels:
    """Parse and check the CSV; every case it names must exist."""
    if not path.is_file():
        raise FileNotFoundError(f"data.cls_csv={path} does not exist; give the labels CSV's path")
    out = CsvLabels(path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "case" not in columns or "label" not in columns:
                raise NnUNetDataError(
                    f"{path} must have a header with columns case,label (and optionally slice), "
                    f"got {columns}"
                )
            for line, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                _add_row(out, path, line, row, class_names, cases)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise NnUNetDataError(f"cannot read {path} ({err}); fix the CSV") from err
    return out


def _add_row(
    out: CsvLabels,
    path: Path,
    line: int,
    row: dict[str, str],
    class_names: Sequence[str],
    cases: Collection[str],
) -> None:
    case, text = row["case"], row["label"]
    if case not in cases:
        raise NnUNetDataError(
            f"{path} line {line}: case {case!r} is not in the dataset (imagesTr/imagesTs); "
            f"fix the name or remove the row"
        )
    if text == "":
        return  # an empty label cell = no label for that case
    label = _parse_label(path, line, text, class_names)
    where = row.get("slice", "")
    if where == "":
        if case in out.case_labels:
            raise NnUNetDataError(f"{path} line {line}: case {case!r} is labelled twice")
        out.case_labels[case] = label
        return
    try:
        index = int(where)
    except ValueError:
        raise NnUNetDataError(
            f"{path} line {line}: slice {where!r} is not a slice index (0, 1, ...)"
        ) from None
    slices = out.slice_labels.setdefault(case, {})
    if index in slices:
        raise NnUNetDataError(f"{path} line {line}: slice {index} of {case!r} is labelled twice")
    slices[index] = label


def _parse_label(path: Path, line: int, text: str, class_names: Sequence[str]) -> int:
    if text in class_names:
        return list(class_names).index(text)
    try:
        label = int(text)
    except ValueError:
        label = None
    if label is None or not 0 <= label < len(class_names):
        raise NnUNetDataError(
            f"{path} line {line}: label {text!r} is neither a class of data.cls_classes "
            f"{list(class_names)} nor an id 0 .. {len(class_names) - 1}"
        )
    return label

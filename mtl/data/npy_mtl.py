"""NYUv2 and Cityscapes in the preprocessed `.npy` layout of MTAN, LibMTL, Nash-MTL and FAMO.

Splits. The published archives hold `train/` and `val/`; the papers report their `val` as the
test set. So here: `test` = their `val`; `train` and `val` = a seeded split of their `train`
(`val_fraction` held out), so checkpoint selection and early stopping never see the test set.
`val_fraction: 0` with `val_from_test: true` reproduces the papers' setting (validation on the
test split) and warns loudly, because choosing a checkpoint on it reports an optimistic number.

Targets are declared from what is on disk: `seg`, `boundary` (derived from the labels) and
`objects` (class presence, multi-label) need the label folder, `depth` the depth folder,
`normals` the normal folder. `targets: [...]` restricts them (and the files read per step).
Nothing is ever downloaded: see `docs/fragments/npy_datasets.md` for getting the files.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from mtl.data.augment import BatchAugment
from mtl.data.bad_data import add_skip_hint, check_split_left, skipped_entry
from mtl.data.base import MultiTaskDataModule
from mtl.data.dense_resize import DEPTH_MODES
from mtl.data.npy_check import CheckedFiles, check_split_values
from mtl.data.npy_layout import (
    NpyDataError,
    NpyMissingError,
    SplitLayout,
    check_header,
    find_modality_folders,
    load_array,
    require_same_folders,
    scan_split,
)
from mtl.data.npy_sample import TARGET_SOURCES, NpySampleReader, SampleConverter
from mtl.data.targets import IGNORE_INDEX
from mtl.tasks import TargetSpec

log = logging.getLogger(__name__)

# ImageNet statistics, as timm's pretrained backbones expect; the files hold [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the archives' folders: their `val` is the test split the papers report
DISK_TRAIN, DISK_TEST = "train", "val"
DEFAULT_CACHE = "mtl_cache"  # under data.root when data.cache_dir is null

# NYUv2 13-class labels (Couprie et al. 2013; the class13 list of ankurhanda/nyuv2-meta-data,
# which MTAN cites) shifted to id = position; -1 = unknown
NYUV2_CLASSES = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
# Cityscapes categories (catId 1..7 of cityscapesScripts, shifted to 0..6); -1 = void
CITYSCAPES_CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")


class NpySamples(Dataset):
    """The samples `indices` of one disk split, as batch items."""

    def __init__(
        self, reader: NpySampleReader, indices: np.ndarray, converter: SampleConverter
    ) -> None:
        self.reader = reader
        self.indices = np.asarray(indices, dtype=np.int64)
        self.converter = converter

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = int(self.indices[i])
        item = self.converter(self.reader.read(index))
        item["index"] = index  # the file number in its disk split
        return item


class NpyMultiTaskDataModule(MultiTaskDataModule):
    """`root/{train,val}/{image,label,depth,normal}/{i}.npy` as a multi-task DataModule.

    `class_names` fixes the label ids (id = position). Subclasses set the dataset's defaults
    (`default_class_names`, `label_dir_candidates`, `download_hint`).
    """

    in_channels = 3
    dataset_name: ClassVar[str] = "an .npy dataset"
    default_class_names: ClassVar[tuple[str, ...]] = ()
    label_dir_candidates: ClassVar[tuple[str, ...]] = ("label",)
    download_hint: ClassVar[str] = "see docs/fragments/npy_datasets.md"

    def __init__(
        self,
        root: str,
        targets: Sequence[str] | None = None,
        val_fraction: float = 0.1,
        val_from_test: bool = False,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        label_dir: str | None = None,
        resize: Sequence[int] | None = None,
        depth_resize: str = "nearest",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        boundary_width: int = 1,
        objects_min_pixels: int = 1,
        in_memory: bool = False,
        check_values: bool = True,
        scan_values: bool = True,
        skip_bad: bool = False,
        cache_dir: str | None = None,
        augment: BatchAugment | None = None,
        **loader: Any,
    ) -> None:
        super().__init__(augment, **loader)
        self.root = Path(root).expanduser()
        self.class_names = tuple(class_names or self.default_class_names)
        self.val_fraction = float(val_fraction)
        self.val_from_test = bool(val_from_test)
        self.seed = int(seed)
        self.resize = _check_resize(resize)
        _check_options(
            class_names=self.class_names,
            val_fraction=self.val_fraction,
            val_from_test=self.val_from_test,
            depth_resize=depth_resize,
            mean=mean,
            std=std,
            boundary_width=boundary_width,
            objects_min_pixels=objects_min_pixels,
            channels=self.in_channels,
            skip_bad=skip_bad,
            scans_values=check_values and scan_values,
        )
        self.in_memory = bool(in_memory)
        self.check_values = bool(check_values)
        self.scan_values = bool(scan_values)
        self.skip_bad = bool(skip_bad)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.root / DEFAULT_CACHE
        if self.val_from_test:
            _warn_test_as_val(type(self).__name__, self.root / DISK_TEST)

        self.folders = self._find_folders(label_dir)
        self.target_specs = self._target_specs(targets)
        self._check_test_folders(label_dir)
        self.converter = SampleConverter(
            targets=tuple(self.target_specs),
            num_classes=len(self.class_names),
            mean=mean,
            std=std,
            resize=self.resize,
            depth_resize=depth_resize,
            boundary_width=boundary_width,
            objects_min_pixels=objects_min_pixels,
        )
        self.layouts: dict[str, SplitLayout] = {}
        self._splits: dict[str, np.ndarray] = {}
        self.readers: dict[str, NpySampleReader] = {}

    # -- what is on disk ---------------------------------------------------------------------
    def _find_folders(self, label_dir: str | None) -> dict[str, str]:
        if not self.root.is_dir():
            raise NpyMissingError(
                f"data.root={self.root} does not exist. mtl never downloads data: get "
                f"{self.dataset_name} in the MTAN/LibMTL .npy layout yourself "
                f"({self.download_hint}), unpack it and pass data.root=/path/to/folder (the one "
                f"holding train/ and val/)",
                self.root,
            )
        if not (self.root / DISK_TRAIN).is_dir():
            nested = [p for p in self.root.iterdir() if (p / DISK_TRAIN).is_dir()]
            hint = f"; did you mean data.root={nested[0]}?" if nested else ""
            raise NpyMissingError(
                f"{self.root / DISK_TRAIN} is missing: data.root must be the folder holding "
                f"train/ and val/{hint}",
                self.root / DISK_TRAIN,
            )
        return find_modality_folders(self.root / DISK_TRAIN, self.label_dir_candidates, label_dir)

    def _check_test_folders(self, label_dir: str | None) -> None:
        """The test split must hold the folders of the chosen targets, as train does."""
        test_dir = self.root / DISK_TEST
        test = find_modality_folders(test_dir, self.label_dir_candidates, label_dir)
        require_same_folders({m: self.folders[m] for m in self.modalities}, test_dir, test)

    def _target_specs(self, wanted: Sequence[str] | None) -> dict[str, TargetSpec]:
        names, classes = self.class_names, len(self.class_names)
        all_specs = {
            "seg": TargetSpec("segmentation", classes, names, ignore_index=IGNORE_INDEX),
            "boundary": TargetSpec("boundary", ignore_index=IGNORE_INDEX),
            "objects": TargetSpec("multilabel", classes, names),
            "depth": TargetSpec("depth"),
            "normals": TargetSpec("normals"),
        }
        available = {t: s for t, s in all_specs.items() if TARGET_SOURCES[t] in self.folders}
        if wanted is None:
            if not available:
                raise NpyMissingError(
                    f"{self.root / DISK_TRAIN} holds no target folder (label, depth, normal); "
                    f"re-extract the dataset",
                    self.root / DISK_TRAIN,
                )
            return available
        unknown = [t for t in wanted if t not in all_specs]
        missing = [t for t in wanted if t in all_specs and t not in available]
        problems = [f"unknown {unknown} (known: {list(all_specs)})"] if unknown else []
        if missing:
            folders = sorted({TARGET_SOURCES[t] for t in missing})
            problems.append(f"{missing} need folders {folders} that {self.root / DISK_TRAIN} lacks")
        if problems or not wanted:
            raise ValueError(
                f"data.targets={list(wanted)}: {'; '.join(problems) or 'empty'}; available "
                f"here: {list(available)} (null = all of them)"
            )
        return {t: available[t] for t in wanted}

    @property
    def modalities(self) -> tuple[str, ...]:
        """The folders read per sample: the image and the sources of the chosen targets."""
        sources = {TARGET_SOURCES[t] for t in self.target_specs}
        return ("image", *(m for m in ("label", "depth", "normal") if m in sources))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of a training image: `resize` or the stored size."""
        if self.resize is not None:
            return (self.in_channels, *self.resize)
        if DISK_TRAIN in self.layouts:
            layout = self.layouts[DISK_TRAIN]
            return (self.in_channels, layout.height, layout.width)
        path = self.root / DISK_TRAIN / self.folders["image"] / "0.npy"
        return (self.in_channels, *check_header("image", path, load_array(path)))

    # -- splits ------------------------------------------------------------------------------
    def _scan(self) -> None:
        """Check both disk splits' files once, headers then values (`scan_values`), so a
        broken file, in the test split too, fails (or with `skip_bad` is left out) before
        training rather than during or after it."""
        if self.layouts:
            return
        folders = {m: self.folders[m] for m in self.modalities}
        bad: dict[str, dict[int, NpyDataError]] = {DISK_TRAIN: {}, DISK_TEST: {}}
        layouts = {
            split: scan_split(self.root / split, folders, partial(self._on_bad, bad[split]))
            for split in (DISK_TRAIN, DISK_TEST)
        }
        if self.scan_values and self.check_values:
            checked = CheckedFiles(self.cache_dir, self.root, len(self.class_names))
            for split, layout in layouts.items():
                on_bad = partial(self._on_bad, bad[split])
                check_split_values(
                    layout, self.modalities, len(self.class_names), checked, on_bad, bad[split]
                )
        splits = self._drop_bad(self._all_split_indices(layouts), bad, layouts)
        train, test = layouts[DISK_TRAIN], layouts[DISK_TEST]
        if self.resize is None and (train.height, train.width) != (test.height, test.width):
            raise NpyDataError(
                f"{train.split_dir} holds {train.height} x {train.width} samples but "
                f"{test.split_dir} holds {test.height} x {test.width}; both splits must share "
                f"one size (or set data.resize=[H, W])"
            )
        self._splits = splits
        self.layouts = layouts

    def _on_bad(self, found: dict[int, NpyDataError], index: int, error: NpyDataError) -> None:
        if not self.skip_bad:
            add_skip_hint(error, f"sample {index}")
            raise error
        found.setdefault(index, error)

    def _drop_bad(
        self,
        splits: dict[str, np.ndarray],
        bad: dict[str, dict[int, NpyDataError]],
        layouts: dict[str, SplitLayout],
    ) -> dict[str, np.ndarray]:
        """Each split without its bad samples, each of which is warned about and listed in
        `bad_data` (a test sample used for validation too is listed under both)."""
        self.bad_data = []
        kept = {}
        for split, indices in splits.items():
            disk = self._disk_split(split)
            errors = bad[disk]
            for index in indices:
                if int(index) in errors:
                    fallback = layouts[disk].path("image", int(index))
                    what = f"sample {int(index)} of {layouts[disk].split_dir}"
                    self.bad_data.append(skipped_entry(split, errors[int(index)], fallback, what))
            kept[split] = np.asarray([i for i in indices if int(i) not in errors], dtype=np.int64)
            check_split_left(split, len(kept[split]), self.bad_data, NpyDataError)
        return kept

    def _all_split_indices(self, layouts: dict[str, SplitLayout]) -> dict[str, np.ndarray]:
        """File numbers per split before bad samples are dropped (so dropping one never
        moves another sample between train and val)."""
        n_train, n_test = layouts[DISK_TRAIN].count, layouts[DISK_TEST].count
        if self.val_from_test:
            return {
                "train": np.arange(n_train),
                "val": np.arange(n_test),
                "test": np.arange(n_test),
            }
        n_val = math.floor(self.val_fraction * n_train + 0.5)  # half up: 79.5 -> 80
        if not 1 <= n_val < n_train:
            raise NpyDataError(
                f"data.val_fraction={self.val_fraction} of the {n_train} samples in "
                f"{layouts[DISK_TRAIN].split_dir} gives {n_val} for validation, leaving a "
                f"split empty; choose a fraction that leaves both splits non-empty"
            )
        order = np.random.default_rng(self.seed).permutation(n_train)
        return {
            "train": np.sort(order[n_val:]),
            "val": np.sort(order[:n_val]),
            "test": np.arange(n_test),
        }

    def split_indices(self) -> dict[str, np.ndarray]:
        """File numbers per split: `train`/`val` from their train (seeded), `test` = their
        val; bad samples left out when `skip_bad`."""
        self._scan()
        return {split: indices.copy() for split, indices in self._splits.items()}

    def _disk_split(self, split: str) -> str:
        if split == "test" or (split == "val" and self.val_from_test):
            return DISK_TEST
        return DISK_TRAIN

    # -- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Once per node before the ranks' `setup`: the value pass records what it checked,
        so the other ranks only compare sizes and modification times."""
        self._scan()

    def setup(self, stage: str | None = None) -> None:
        self._scan()

    def _reader(self, disk_split: str) -> NpySampleReader:
        if disk_split not in self.readers:
            self._scan()
            used = [self._splits[s] for s in self._splits if self._disk_split(s) == disk_split]
            self.readers[disk_split] = NpySampleReader(
                self.layouts[disk_split],
                self.modalities,
                num_classes=len(self.class_names),
                check=self.check_values,
                in_memory=self.in_memory,
                indices=np.unique(np.concatenate(used)),
            )
        return self.readers[disk_split]

    def dataset(self, split: str) -> NpySamples:
        """The `train`, `val` or `test` samples as batch items."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        indices = self.split_indices()[split]
        return NpySamples(self._reader(self._disk_split(split)), indices, self.converter)


def _check_options(
    *,
    class_names: Sequence[str],
    val_fraction: float,
    val_from_test: bool,
    depth_resize: str,
    mean: Sequence[float],
    std: Sequence[float],
    boundary_width: int,
    objects_min_pixels: int,
    channels: int,
    skip_bad: bool,
    scans_values: bool,
) -> None:
    """Fail on a bad option before any file is touched, saying which key to change."""
    if skip_bad and not scans_values:
        raise ValueError(
            "data.skip_bad=true leaves bad samples out before training, so it needs the value "
            "pass at setup: set data.scan_values=true and data.check_values=true"
        )
    if not class_names:
        raise ValueError("data.class_names is required: one name per label id (0, 1, ...)")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 and not val_from_test:
        raise ValueError(
            "data.val_fraction=0 leaves no validation split; hold out part of train "
            "(e.g. data.val_fraction=0.1) or, to reproduce the papers' protocol, set "
            "data.val_from_test=true (checkpoint selection then sees the test set)"
        )
    if val_fraction > 0 and val_from_test:
        raise ValueError(
            f"data.val_from_test=true validates on the test split and needs "
            f"data.val_fraction=0 (got {val_fraction}): set one of them"
        )
    if depth_resize not in DEPTH_MODES:
        raise ValueError(f"data.depth_resize must be one of {DEPTH_MODES}, got {depth_resize!r}")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ValueError(f"data.{name} needs {channels} values, got {list(values)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"data.std must be positive, got {list(std)}")
    if boundary_width < 1:
        raise ValueError(f"data.boundary_width must be >= 1 pixel, got {boundary_width}")
    if objects_min_pixels < 1:
        raise ValueError(f"data.objects_min_pixels must be >= 1, got {objects_min_pixels}")


def _warn_test_as_val(owner: str, test_dir: Path) -> None:
    message = (
        f"{owner}: data.val_from_test=true validates on the TEST split ({test_dir}); "
        f"checkpoint selection and early stopping see the test set, so test numbers are "
        f"optimistic. Use data.val_fraction>0 for results you report."
    )
    log.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def _check_resize(resize: Sequence[int] | None) -> tuple[int, int] | None:
    if resize is None:
        return None
    if len(resize) != 2 or any(int(s) < 1 for s in resize):
        raise ValueError(f"data.resize must be [H, W] with positive sizes or null, got {resize}")
    return int(resize[0]), int(resize[1])


class NYUv2DataModule(NpyMultiTaskDataModule):
    """`data=nyuv2`: 13-class seg, depth (metres) and normals at 288 x 384; 795 train / 654
    test (their `val`)."""

    dataset_name = "NYUv2"
    default_class_names = NYUV2_CLASSES
    download_hint = (
        "the 'pre-processed NYUv2' link in the README of github.com/lorenmt/mtan; "
        "see docs/fragments/npy_datasets.md"
    )


class CityscapesDataModule(NpyMultiTaskDataModule):
    """`data=cityscapes`: 7-category seg and (inverse) depth at 128 x 256, no normals; 2975
    train / 500 test (their `val`). The MTAN archive names the labels `label_7` (alongside
    `label_2`, `label_19`), LibMTL's copy `label`; the first present is used."""

    dataset_name = "Cityscapes"
    default_class_names = CITYSCAPES_CLASSES
    label_dir_candidates = ("label", "label_7")
    download_hint = (
        "the 'CityScapes [128x256]' link in the README of github.com/lorenmt/mtan; "
        "see docs/fragments/npy_datasets.md"
    )

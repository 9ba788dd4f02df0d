"""The nnU-Net raw format on disk: `dataset.json` and which files make up each case.

    DatasetXXX_Name/
        dataset.json                  channel_names, labels, numTraining, file_ending
        imagesTr/{case}_{XXXX}{ending}  one file per input channel XXXX = 0000, 0001, ...
        labelsTr/{case}{ending}         the mask (optional per case: partial labels)
        imagesTs/, labelsTs/            optional test cases, same naming

Only names and folders are checked here (cheap, at construction), so a wrong `data.root`, a
missing `dataset.json` or an empty folder fails before any image is read. Every error names
the file or folder, the problem and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl.data.bad_data import BadDataError
from mtl.data.targets import IGNORE_INDEX

DATASET_JSON = "dataset.json"
IMAGES_TR, LABELS_TR = "imagesTr", "labelsTr"
IMAGES_TS, LABELS_TS = "imagesTs", "labelsTs"
# nnU-Net v2 names its ignore label "ignore"; it must hold the highest id
IGNORE_LABEL_NAME = "ignore"
SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".png")
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class NnUNetDataError(BadDataError):
    """A file or folder of an nnU-Net raw dataset is missing, unreadable or inconsistent."""


class NnUNetMissingError(NnUNetDataError, FileNotFoundError):
    """The dataset folder, `dataset.json`, `imagesTr/` or a listed file is not there."""


@dataclass(frozen=True)
class DatasetInfo:
    """What `dataset.json` declares."""

    path: Path
    channel_names: tuple[str, ...]  # per channel, in file order: "CT", "T2", "noNorm", ...
    class_names: tuple[str, ...]  # segmentation classes, id = position (0 = background)
    ignore_id: int | None  # the id of the "ignore" label, if declared
    file_ending: str
    num_training: int

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def is_png(self) -> bool:
        return self.file_ending == ".png"


@dataclass(frozen=True)
class Case:
    """One case: its channel files (in channel order) and its mask, if it has one."""

    name: str
    images: tuple[Path, ...]
    label: Path | None

    @property
    def sources(self) -> tuple[Path, ...]:
        return (*self.images, self.label) if self.label is not None else self.images


# -- dataset.json ----------------------------------------------------------------------------
def read_dataset_json(root: Path) -> DatasetInfo:
    """Parse and check `root/dataset.json`."""
    path = root / DATASET_JSON
    if not path.is_file():
        raise NnUNetMissingError(
            f"{path} is missing: an nnU-Net raw dataset needs dataset.json beside imagesTr/ "
            f"(channel_names, labels, numTraining, file_ending); point data.root at the "
            f"DatasetXXX_Name folder",
            path,
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NnUNetDataError(f"cannot parse {path} ({err}); fix the JSON") from err
    if not isinstance(data, dict):
        raise NnUNetDataError(f"{path} must hold a JSON object, got {type(data).__name__}")
    missing = [
        k for k in ("channel_names", "labels", "numTraining", "file_ending") if k not in data
    ]
    if missing:
        hint = " (nnU-Net v1's 'modality' is 'channel_names' in v2)" if "modality" in data else ""
        raise NnUNetDataError(f"{path} lacks the keys {missing}{hint}; add them")
    class_names, ignore_id = _labels(path, data["labels"])
    ending = data["file_ending"]
    if ending not in SUPPORTED_ENDINGS:
        raise NnUNetDataError(
            f"{path}: file_ending {ending!r} is not supported; use one of {SUPPORTED_ENDINGS}"
        )
    num_training = data["numTraining"]
    if not isinstance(num_training, int) or num_training < 1:
        raise NnUNetDataError(f"{path}: numTraining must be a positive integer, got {num_training}")
    return DatasetInfo(
        path=path,
        channel_names=_channels(path, data["channel_names"]),
        class_names=class_names,
        ignore_id=ignore_id,
        file_ending=ending,
        num_training=num_training,
    )


def _channels(path: Path, channels: Any) -> tuple[str, ...]:
    if not isinstance(channels, Mapping) or not channels:
        raise NnUNetDataError(
            f'{path}: channel_names must map channel index to a name, e.g. {{"0": "CT"}}'
        )
    try:
        indices = sorted(int(k) for k in channels)
    except ValueError as err:
        raise NnUNetDataError(
            f"{path}: channel_names keys must be channel indices '0', '1', ...; got "
            f"{list(channels)}"
        ) from err
    if indices != list(range(len(indices))):
        raise NnUNetDataError(
            f"{path}: channel_names keys must be 0 .. n-1 without gaps, got {indices}"
        )
    return tuple(str(channels[str(i)]) for i in indices)


def _labels(path: Path, labels: Any) -> tuple[tuple[str, ...], int | None]:
    """Class names by id; background 0 and consecutive ids, as nnU-Net requires."""
    if not isinstance(labels, Mapping) or not labels:
        raise NnUNetDataError(
            f'{path}: labels must map names to ids, e.g. {{"background": 0, "organ": 1}}'
        )
    by_id: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise NnUNetDataError(
                f"{path}: label {name!r} is a region ({value}); region-based labels are not "
                f"supported, give every class one id"
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise NnUNetDataError(f"{path}: label {name!r} must be an id >= 0, got {value!r}")
        if value in by_id:
            raise NnUNetDataError(f"{path}: labels {by_id[value]!r} and {name!r} share id {value}")
        by_id[value] = str(name)
    ignore_id = next((i for i, n in by_id.items() if n == IGNORE_LABEL_NAME), None)
    if ignore_id is not None:
        if ignore_id != max(by_id):
            raise NnUNetDataError(
                f"{path}: the 'ignore' label must have the highest id, got {ignore_id}"
            )
        del by_id[ignore_id]
    ids = sorted(by_id)
    if ids != list(range(len(ids))) or len(ids) < 2:
        raise NnUNetDataError(
            f"{path}: label ids must be 0 (background), 1, 2, ... without gaps, got {ids}; "
            f"renumber the masks and dataset.json"
        )
    if len(ids) >= IGNORE_INDEX:
        raise NnUNetDataError(
            f"{path} declares {len(ids)} labels; at most {IGNORE_INDEX - 1} fit the uint8 "
            f"masks (id {IGNORE_INDEX} means ignore)"
        )
    return tuple(by_id[i] for i in ids), ignore_id


# -- cases -----------------------------------------------------------------------------------
def find_cases(
    images_dir: Path, labels_dir: Path | None, info: DatasetInfo, required: bool = True
) -> list[Case]:
    """The cases in `images_dir` with their masks from `labels_dir` (None: no masks).

    Channel files must be `{case}_0000 .. _{n-1}`; a PNG may carry RGB channels in one file,
    so PNG cases may have fewer files (the channel count is checked when read).
    """
    if not images_dir.is_dir():
        if not required:
            return []
        raise NnUNetMissingError(
            f"{images_dir} is missing: the raw format keeps training images in "
            f"{IMAGES_TR}/{{case}}_0000{info.file_ending}; point data.root at the "
            f"DatasetXXX_Name folder",
            images_dir,
        )
    channels: dict[str, dict[int, Path]] = {}
    for path in sorted(_data_files(images_dir)):
        stem = _stem(path, info.file_ending)
        match = CHANNEL_FILE.match(stem)
        if match is None:
            raise NnUNetDataError(
                f"unexpected file {path}: images must be named {{case}}_{{XXXX}}"
                f"{info.file_ending} with a 4-digit channel index (e.g. case_001_0000"
                f"{info.file_ending}); rename or move it"
            )
        channels.setdefault(match["case"], {})[int(match["channel"])] = path
    if not channels and not required:
        return []  # an empty optional folder (imagesTs) is no dataset error
    if not channels:
        raise NnUNetDataError(
            f"{images_dir} holds no {{case}}_0000{info.file_ending} images: the split is empty; "
            f"copy the dataset there or check file_ending in {info.path}",
            images_dir,
        )
    labels = _find_labels(labels_dir, info, set(channels)) if labels_dir is not None else {}
    cases = []
    for name, files in sorted(channels.items()):
        indices = sorted(files)
        _check_channel_files(images_dir, name, indices, info)
        cases.append(Case(name, tuple(files[i] for i in indices), labels.get(name)))
    return cases


def _check_channel_files(
    images_dir: Path, case: str, indices: list[int], info: DatasetInfo
) -> None:
    """Channels `_0000 .. _{n-1}` as dataset.json declares (a PNG may hold RGB in fewer)."""
    expected = list(range(info.num_channels))
    if indices == expected or (info.is_png and indices == expected[: len(indices)]):
        return
    declared = f"{info.path} declares {info.num_channels} channel(s) {list(info.channel_names)}"
    extra = [i for i in indices if i not in expected]
    if extra:
        path = images_dir / f"{case}_{extra[0]:04d}{info.file_ending}"
        raise NnUNetDataError(
            f"unexpected channel file {path}: {declared}, case {case!r} has channels "
            f"{indices}; remove the file or add the channel to channel_names",
            path,
        )
    missing = next(i for i in expected if i not in indices)
    path = images_dir / f"{case}_{missing:04d}{info.file_ending}"
    raise NnUNetMissingError(
        f"{path} is missing: {declared}, case {case!r} has channels {indices}; restore it",
        path,
    )


def _find_labels(labels_dir: Path, info: DatasetInfo, cases: set[str]) -> dict[str, Path]:
    if not labels_dir.is_dir():
        return {}
    labels = {}
    for path in sorted(_data_files(labels_dir)):
        case = _stem(path, info.file_ending)
        if case not in cases:
            raise NnUNetDataError(
                f"mask {path} has no image {case}_0000{info.file_ending} in "
                f"{labels_dir.parent / labels_dir.name.replace('labels', 'images')}; masks are "
                f"named like their case: restore the image or remove the mask",
                path,
            )
        labels[case] = path
    return labels


def _data_files(folder: Path) -> list[Path]:
    """Files of a folder that belong to the dataset (hidden files like .DS_Store do not)."""
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def _stem(path: Path, ending: str) -> str:
    if not path.name.endswith(ending):
        raise NnUNetDataError(
            f"unexpected file {path}: dataset.json says file_ending {ending!r}; convert or move it"
        )
    return path.name[: -len(ending)]


def check_num_training(info: DatasetInfo, cases: list[Case], images_dir: Path) -> None:
    """nnU-Net refuses a dataset whose numTraining disagrees with imagesTr; so do we, since it
    usually means files went missing while copying."""
    if info.num_training != len(cases):
        raise NnUNetDataError(
            f"{info.path} says numTraining={info.num_training} but {images_dir} holds "
            f"{len(cases)} cases; restore the missing cases or correct numTraining"
        )

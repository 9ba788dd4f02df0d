"""The on-disk `.npy` layout of MTAN, LibMTL, Nash-MTL and FAMO, and what a valid file is.

    root/{train,val}/{image,label,depth,normal}/{i}.npy      i = 0 .. n-1

stored channels-last: image H x W x 3 float in [0, 1], label H x W class ids (float) with -1 =
ignore, depth H x W x 1 with 0 = invalid, normal H x W x 3 (unit vectors; 0 = invalid). The
Cityscapes archive of the MTAN authors names its 7-class labels `label_7` (LibMTL's copy:
`label`), so the label folder is looked up among candidates.

Shapes, dtypes, counts and indices are checked at setup from every file's header (`np.load`
with `mmap_mode` reads the header and maps the data without reading it, which also catches a
truncated file); values by `check_values`, at setup (`mtl.data.npy_check`) and as samples are
read. Every error names the file or folder, the problem and the fix. A bad sample is reported
through `on_bad(index, error)`, which raises, or with `data.skip_bad` records it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl.data.bad_data import BadDataError

MODALITIES = ("image", "label", "depth", "normal")
# trailing channel count per modality; None = no channel axis (H x W)
CHANNELS: dict[str, int | None] = {"image": 3, "label": None, "depth": 1, "normal": 3}
# dtype kinds accepted per modality (f: float, i/u: integer)
DTYPE_KINDS = {"image": "f", "label": "fiu", "depth": "f", "normal": "f"}
IGNORE_LABEL = -1
# slack on the [0, 1] image range for float rounding in the authors' preprocessing
IMAGE_RANGE_SLACK = 1e-4
FILE_PATTERN = re.compile(r"^(\d+)\.npy$")
# the fix for NaN / infinity, per modality: where the layout has an "invalid" value, use it
NONFINITE_FIX = {
    "image": "images must be finite: re-download/re-extract the file",
    "label": "unlabelled pixels are -1 in this layout: replace NaN with -1 (or re-extract)",
    "depth": "invalid depth is 0 in this layout: replace NaN/inf with 0 "
    "(np.nan_to_num(d, nan=0.0, posinf=0.0)) or re-extract",
    "normal": "invalid normals are 0 vectors in this layout: replace NaN/inf with 0 "
    "(np.nan_to_num) or re-extract",
}


class NpyDataError(BadDataError):
    """A file or folder of an `.npy` dataset is not in the published layout."""


class NpyMissingError(NpyDataError, FileNotFoundError):
    """`data.root`, a split or modality folder, or a listed file is not there."""


# what a scan does with a bad sample: raise the error, or record the index and go on
OnBad = Callable[[int, NpyDataError], None]


def raise_bad(index: int, error: NpyDataError) -> None:
    raise error


@dataclass(frozen=True)
class SplitLayout:
    """One split folder on disk (`train` or `val`): where each modality lives, its size and the
    common image size of its samples."""

    split_dir: Path
    folders: Mapping[str, str]  # modality -> folder name (e.g. label -> label_7)
    count: int
    height: int
    width: int

    def path(self, modality: str, index: int) -> Path:
        return self.split_dir / self.folders[modality] / f"{index}.npy"


# -- folders ---------------------------------------------------------------------------------
def find_modality_folders(
    split_dir: Path, label_candidates: Sequence[str], label_dir: str | None = None
) -> dict[str, str]:
    """Modality -> folder name for the modalities present in `split_dir`.

    `label_dir` (explicit) must exist; otherwise the first existing of `label_candidates`.
    """
    if not split_dir.is_dir():
        raise NpyMissingError(
            f"split folder {split_dir} is missing; the layout is root/{{train,val}}/"
            f"{{image,label,depth,normal}}/{{i}}.npy: point data.root at the folder holding "
            f"train/ and val/",
            split_dir,
        )
    folders: dict[str, str] = {}
    for modality in MODALITIES:
        if modality == "label":
            name = _label_folder(split_dir, label_candidates, label_dir)
            if name is not None:
                folders["label"] = name
        elif (split_dir / modality).is_dir():
            folders[modality] = modality
    if "image" not in folders:
        raise NpyMissingError(
            f"{split_dir / 'image'} is missing: every split needs image/{{i}}.npy; check that "
            f"data.root points at the unpacked dataset (the folder holding train/ and val/)",
            split_dir / "image",
        )
    return folders


def _label_folder(split_dir: Path, candidates: Sequence[str], explicit: str | None) -> str | None:
    if explicit is not None:
        if not (split_dir / explicit).is_dir():
            present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
            raise NpyMissingError(
                f"label folder {split_dir / explicit} (data.label_dir={explicit}) is missing; "
                f"{split_dir} holds {present}: set data.label_dir to one of them or null",
                split_dir / explicit,
            )
        return explicit
    return next((name for name in candidates if (split_dir / name).is_dir()), None)


def require_same_folders(
    reference: Mapping[str, str], other_dir: Path, other: Mapping[str, str]
) -> None:
    """The test split must hold every modality the training split has (and the same names)."""
    for modality, name in reference.items():
        if other.get(modality) != name:
            raise NpyMissingError(
                f"{other_dir / name} is missing but the training split has {name}/; both splits "
                f"need the same modality folders (restore it, or drop the target with "
                f"data.targets=[...])",
                other_dir / name,
            )


# -- indices and headers ---------------------------------------------------------------------
def list_indices(folder: Path) -> list[int]:
    """The sample indices in a modality folder; they must be 0 .. n-1 with no gaps."""
    indices = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix != ".npy":
            continue  # hidden files (.DS_Store) and non-arrays are not part of the layout
        match = FILE_PATTERN.match(path.name)
        if match is None:
            raise NpyDataError(
                f"unexpected file {path}: files must be named {{i}}.npy with i = 0, 1, 2, ...; "
                f"rename or move it"
            )
        indices.append(int(match.group(1)))
    if not indices:
        raise NpyDataError(
            f"{folder} holds no {{i}}.npy files: the split is empty; re-extract the dataset there",
            folder,
        )
    indices.sort()
    for expected, found in zip(range(len(indices)), indices, strict=False):
        if expected != found:
            raise NpyMissingError(
                f"{folder / f'{expected}.npy'} is missing: indices in {folder} must be 0 .. n-1 "
                f"without gaps (found {len(indices)} files up to {indices[-1]}.npy); "
                f"re-extract the dataset",
                folder / f"{expected}.npy",
            )
    return indices


def load_array(path: Path, mmap: bool = True) -> np.ndarray:
    """`np.load` that names the file when it cannot be read (truncated, corrupt, missing)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise NpyMissingError(
            f"{path} is missing (it was listed at setup); restore it or re-extract the dataset",
            path,
        ) from None
    except (ValueError, OSError, EOFError) as err:
        raise NpyDataError(f"cannot load {path}: {_load_problem(err)}", path) from err


def _load_problem(err: BaseException) -> str:
    """numpy's reason in the user's terms, with the fix (never "allow pickle": these files
    are plain arrays, and unpickling a file from the internet runs its code)."""
    if "object" in str(err) or "pickle" in str(err):
        return (
            f"it holds Python objects or is not an .npy file at all ({type(err).__name__}); "
            f"the file is corrupt or from other software: re-download/re-extract it"
        )
    return (
        f"{type(err).__name__}: {err}; the file is truncated or not an .npy array: "
        f"re-download/re-extract it"
    )


def check_header(modality: str, path: Path, array: np.ndarray) -> tuple[int, int]:
    """Shape and dtype of one file against the layout; returns its (H, W)."""
    channels = CHANNELS[modality]
    expected = "H x W" if channels is None else f"H x W x {channels}"
    ndim = 2 if channels is None else 3
    if array.ndim != ndim or (channels is not None and array.shape[-1] != channels):
        raise NpyDataError(
            f"{path} has shape {tuple(array.shape)} but {modality} files must be {expected} "
            f"(channels last); the file is not from the published preprocessing",
            path,
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise NpyDataError(f"{path} has shape {tuple(array.shape)}: no pixels; re-extract", path)
    if array.dtype.kind not in DTYPE_KINDS[modality]:
        raise NpyDataError(
            f"{path} has dtype {array.dtype} but {modality} files must be "
            f"{'float' if DTYPE_KINDS[modality] == 'f' else 'numeric'}"
            f"{' in [0, 1]' if modality == 'image' else ''}; convert it",
            path,
        )
    return int(array.shape[0]), int(array.shape[1])


def scan_split(
    split_dir: Path, folders: Mapping[str, str], on_bad: OnBad = raise_bad
) -> SplitLayout:
    """Counts, indices and every file's header of one split.

    Missing or misnumbered files always raise (the layout is broken, not one sample). A sample
    with an unreadable file, a wrong shape or dtype, or a size other than the split's most
    common one goes to `on_bad`.
    """
    counts = {m: len(list_indices(split_dir / name)) for m, name in folders.items()}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{folders[m]}/: {n}" for m, n in counts.items())
        short = min(counts, key=counts.__getitem__)
        missing = split_dir / folders[short] / f"{counts[short]}.npy"
        raise NpyMissingError(
            f"file counts differ between the modality folders of {split_dir} ({listing}): "
            f"{missing} and later are missing; every sample needs one file per modality: "
            f"re-extract the dataset",
            missing,
        )
    count = counts["image"]
    sizes: dict[int, dict[Path, tuple[int, int]]] = {}
    for index in range(count):
        try:
            sizes[index] = {
                path: check_header(modality, path, load_array(path))
                for modality, path in _sample_paths(split_dir, folders, index)
            }
        except NpyDataError as err:
            on_bad(index, err)
    common = Counter(hw for files in sizes.values() for hw in files.values()).most_common(1)
    if not common:
        return SplitLayout(split_dir, dict(folders), count, 0, 0)  # every sample was bad
    size = common[0][0]
    for index, files in sizes.items():
        for path, hw in files.items():
            if hw != size:
                on_bad(
                    index,
                    NpyDataError(
                        f"{path} is {hw[0]} x {hw[1]} but the samples of {split_dir} are "
                        f"{size[0]} x {size[1]} (the most common size); all files of a split "
                        f"must share one size: re-extract or resize it",
                        path,
                    ),
                )
                break
    return SplitLayout(split_dir, dict(folders), count, *size)


def _sample_paths(
    split_dir: Path, folders: Mapping[str, str], index: int
) -> list[tuple[str, Path]]:
    return [(m, split_dir / name / f"{index}.npy") for m, name in folders.items()]


# -- values (checked per sample when read) ---------------------------------------------------
def check_values(modality: str, path: Path, array: np.ndarray, num_classes: int) -> None:
    """Value ranges of one loaded file: image in [0, 1], labels integer ids in [-1, C), depth
    finite and >= 0, normals finite. Invalid depth and normals are 0 in this layout, never NaN
    (a NaN reaching a loss makes it NaN), so NaN is an error in every modality."""
    finite = np.isfinite(array)
    if not finite.all():
        raise NpyDataError(
            f"{path} holds {finite.size - int(finite.sum())} NaN or infinite values; "
            f"{NONFINITE_FIX[modality]}",
            path,
        )
    if modality == "image":
        low, high = float(array.min()), float(array.max())
        if low < -IMAGE_RANGE_SLACK or high > 1 + IMAGE_RANGE_SLACK:
            raise NpyDataError(
                f"{path} has values in [{low:g}, {high:g}] but images must be floats in [0, 1] "
                f"(the published preprocessing divides by 255); convert the file",
                path,
            )
    elif modality == "label":
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise NpyDataError(
                f"{path} holds non-integer class ids; labels must be resized with nearest "
                f"neighbour, never interpolated",
                path,
            )
        low, high = int(array.min()), int(array.max())
        if low < IGNORE_LABEL or high >= num_classes:
            raise NpyDataError(
                f"{path} has class ids in [{low}, {high}] but this dataset has {num_classes} "
                f"classes: ids must be in [-1, {num_classes}) with -1 = ignore; check "
                f"data.label_dir / data.class_names",
                path,
            )
    elif modality == "depth" and float(array.min()) < 0:
        raise NpyDataError(
            f"{path} has negative depth ({float(array.min()):g}); depth must be >= 0 with "
            f"0 = invalid",
            path,
        )

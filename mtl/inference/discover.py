"""What `input=<file or folder>` holds: a list of inputs, each one image to predict.

- a file: NIfTI (`.nii`, `.nii.gz`), PNG, or DICOM (`.dcm`/`.dicom`/`.ima`, or no suffix with
  the DICOM marker);
- a folder whose files are DICOM: one series;
- any other folder: each NIfTI / PNG file in it, each DICOM file in it as one series, and each
  subfolder holding DICOM files as one series (one level deep).

For a model with several channels, files named as nnU-Net's `imagesTs` (`{case}_0000.nii.gz`,
`{case}_0001.nii.gz`, ...) make up one input per case (how many channels they hold is checked
once read: an RGB PNG holds three); with one channel every file is its own input and a `_0000`
suffix is dropped from the output name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mtl.data.nnunet_layout import CHANNEL_FILE
from mtl.inference.dicom import looks_like_dicom

log = logging.getLogger(__name__)

NIFTI, PNG, DICOM = "nifti", "png", "dicom"
IMAGE_ENDINGS = {".nii.gz": NIFTI, ".nii": NIFTI, ".png": PNG}
SUPPORTED = "NIfTI (.nii, .nii.gz), PNG (.png) or DICOM (.dcm, or a DICOM series folder)"
# names that are never inputs (DICOM index files, OS clutter)
IGNORED_NAMES = ("DICOMDIR", "Thumbs.db", ".DS_Store")


class InputError(ValueError):
    """The `input=` path does not hold anything predict can read; the message says why."""


@dataclass(frozen=True)
class InputSource:
    """One input: `kind` (nifti, png, dicom), the name its outputs get, and its files (the
    channel files in channel order, or the DICOM files of one series in any order)."""

    kind: str
    name: str
    paths: tuple[Path, ...]

    @property
    def location(self) -> Path:
        """The path a user would name: the file, or the DICOM series folder."""
        if self.kind == DICOM and len(self.paths) > 1:
            return self.paths[0].parent
        return self.paths[0]


def discover_inputs(path: str | Path, num_channels: int = 1) -> list[InputSource]:
    """The inputs under `path`, in name order; fails if there are none."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"input={root} not found; pass a {SUPPORTED} file, or a folder of them"
        )
    if root.is_file():
        return [_single_file(root, num_channels)]
    files = sorted(p for p in root.iterdir() if p.is_file() and not _ignored(p))
    dicom = [p for p in files if looks_like_dicom(p)]
    images = [p for p in files if _image_kind(p) is not None]
    others = [p for p in files if p not in dicom and p not in images]
    sources: list[InputSource] = []
    if dicom:
        sources.append(InputSource(DICOM, root.name, tuple(dicom)))
    sources.extend(_image_sources(images, num_channels))
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _ignored(p)):
        series = sorted(p for p in folder.iterdir() if p.is_file() and looks_like_dicom(p))
        if series:
            sources.append(InputSource(DICOM, folder.name, tuple(series)))
    if others:
        log.warning(
            "skipping %d file(s) in %s that are not %s: %s",
            len(others), root, SUPPORTED, ", ".join(p.name for p in others[:5]),
        )  # fmt: skip
    if not sources:
        raise InputError(
            f"input={root} holds no {SUPPORTED} files (nor subfolders of DICOM series); "
            f"point input= at the image file or the folder that holds them"
        )
    _check_unique_names(sources)
    return sources


def _ignored(path: Path) -> bool:
    return path.name in IGNORED_NAMES or path.name.startswith(".")


def _image_kind(path: Path) -> str | None:
    name = path.name.lower()
    for ending, kind in IMAGE_ENDINGS.items():
        if name.endswith(ending):
            return kind
    return None


def _split_name(path: Path) -> tuple[str, str]:
    """`case_0001.nii.gz` -> (`case_0001`, `.nii.gz`)."""
    name = path.name
    for ending in IMAGE_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)], name[-len(ending) :]
    return path.stem, path.suffix


def _single_file(path: Path, num_channels: int) -> InputSource:
    kind = _image_kind(path)
    if kind is None:
        if looks_like_dicom(path):
            return InputSource(DICOM, path.stem if path.suffix else path.name, (path,))
        raise InputError(
            f"input={path}: unsupported file type '{''.join(path.suffixes) or path.name}'; "
            f"predict reads {SUPPORTED}"
        )
    stem, _ = _split_name(path)
    match = CHANNEL_FILE.match(stem)
    if num_channels > 1 and match:
        # the other channels of this case lie beside it, as in nnU-Net's imagesTs
        siblings = [p for p in sorted(path.parent.iterdir()) if p.is_file()]
        group = _image_sources([p for p in siblings if _image_kind(p) == kind], num_channels)
        for source in group:
            if path in source.paths:
                return source
    return _image_sources([path], num_channels)[0]


def _image_sources(paths: Iterable[Path], num_channels: int) -> list[InputSource]:
    """NIfTI / PNG files as inputs: grouped by case into channels when the model has several."""
    singles: list[InputSource] = []
    cases: dict[tuple[str, str], dict[int, Path]] = {}
    for path in paths:
        kind = _image_kind(path)
        assert kind is not None
        stem, ending = _split_name(path)
        match = CHANNEL_FILE.match(stem)
        if match is None:
            singles.append(InputSource(kind, stem, (path,)))
        elif num_channels == 1:
            # one channel: `{case}_0000` names the case; other numbers are part of the name
            name = match["case"] if match["channel"] == "0000" else stem
            singles.append(InputSource(kind, name, (path,)))
        else:
            cases.setdefault((match["case"], ending), {})[int(match["channel"])] = path
    grouped = []
    for (case, _), channels in cases.items():
        # the channel count is checked once read (an RGB PNG holds three channels)
        expected = list(range(len(channels)))
        if sorted(channels) != expected:
            example = next(iter(channels.values()))
            missing = sorted(set(range(max(channels) + 1)) - set(channels))
            raise InputError(
                f"case '{case}' in {example.parent} has channel files "
                f"{[f'{c:04d}' for c in sorted(channels)]} but lacks "
                f"{[f'{c:04d}' for c in missing]}; channel files must be numbered 0000, 0001, "
                f"... without gaps (the model takes {num_channels} channels)"
            )
        kind = _image_kind(channels[0])
        assert kind is not None
        grouped.append(InputSource(kind, case, tuple(channels[c] for c in expected)))
    return sorted([*singles, *grouped], key=lambda s: s.name)


def _check_unique_names(sources: list[InputSource]) -> None:
    seen: dict[str, InputSource] = {}
    for source in sources:
        if source.name in seen:
            raise InputError(
                f"{seen[source.name].location} and {source.location} would both write outputs "
                f"named '{source.name}'; rename one of them or predict them separately"
            )
        seen[source.name] = source

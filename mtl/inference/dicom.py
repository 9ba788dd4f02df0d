"""DICOM images (one file, or a series folder) as a volume in Hounsfield units with its affine.

A series is sorted by position along the slice normal (ImagePositionPatient projected on
row x column direction), never by file name or InstanceNumber, which tools number freely.
Intensities go through the modality LUT (RescaleSlope / RescaleIntercept, as pydicom's
`apply_modality_lut`), so CT comes out in HU whatever the stored integers are.

The affine maps voxel (column, row, slice) to RAS+ world millimetres (DICOM's patient
coordinates are LPS+, so x and y change sign), as NIfTI converters such as dcm2niix do.
Multi-frame (enhanced) and colour DICOM are refused with the fix; every error names a file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl.data.nnunet_io import ImageReadError

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
DICOM_MAGIC_OFFSET = 128
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# slice gaps differing from their median by more than this share are reported
GAP_TOLERANCE = 0.1
# two slices closer than this (mm) along the normal are the same position
SAME_POSITION_MM = 1e-3
# direction cosines of two files of one series may differ by rounding only
ORIENTATION_TOLERANCE = 1e-4


class MixedSeriesError(ImageReadError):
    """A folder holds files of more than one DICOM series."""


@dataclass(frozen=True)
class DicomVolume:
    """`stored`: X x Y x Z float32 HU, X along columns, Y along rows, Z the sorted slices;
    `affine`: that voxel order -> RAS+ mm; `files`: the file of each slice, in Z order."""

    stored: np.ndarray
    affine: np.ndarray
    files: tuple[Path, ...]
    series_uid: str | None


def looks_like_dicom(path: Path) -> bool:
    """A DICOM suffix, or the 'DICM' marker after the 128-byte preamble (extension-less
    files, as scanners and PACS exports name them)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix or path.name == "DICOMDIR":
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(paths: Sequence[Path]) -> DicomVolume:
    """One DICOM file, or the files of one series, as a volume in HU."""
    if not paths:
        raise ImageReadError("no DICOM files given")
    headers = [(Path(p), _header(Path(p))) for p in paths]
    _check_one_series(headers)
    for path, ds in headers:
        _check_image(path, ds)
    if len(headers) > 1:
        _check_same_grid(headers)
        headers = _sorted_by_position(headers)
    reference = headers[0][1]
    columns = [_hounsfield(path) for path, _ in headers]
    stored = np.stack([c.T for c in columns], axis=-1)  # X (columns) x Y (rows) x Z
    affine = _affine([ds for _, ds in headers], headers[0][0])
    uid = getattr(reference, "SeriesInstanceUID", None)
    return DicomVolume(stored, affine, tuple(p for p, _ in headers), str(uid) if uid else None)


# -- reading ---------------------------------------------------------------------------------
def _header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} disappeared after the input was listed") from None
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise ImageReadError(
            f"cannot read {path} as DICOM ({type(err).__name__}: {err}); the file is corrupt, "
            f"truncated or not DICOM: export it again, or move it out of the input folder"
        ) from err


def _hounsfield(path: Path) -> np.ndarray:
    """Rows x columns float32 after the modality LUT (HU for CT)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for broken or compressed pixel data
        raise ImageReadError(
            f"cannot decode the pixels of {path} ({type(err).__name__}: {err}); the pixel data "
            f"is truncated or compressed with a codec no installed handler decodes (JPEG: pip "
            f"install pylibjpeg pylibjpeg-libjpeg; JPEG 2000: pylibjpeg-openjpeg); or convert "
            f"the series to NIfTI (dcm2niix) and predict on that"
        ) from err
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: pixel array of shape {pixels.shape}, not rows x columns")
    if "ModalityLUTSequence" in ds:
        return np.asarray(_apply_modality_lut()(pixels, ds), dtype=np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return (pixels.astype(np.float64) * slope + intercept).astype(np.float32)


def _apply_modality_lut() -> Any:
    """pydicom's modality LUT (moved from `pixel_data_handlers.util` to `pixels` in 3.0)."""
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    return apply_modality_lut


# -- checks ----------------------------------------------------------------------------------
def _check_one_series(headers: list[tuple[Path, Any]]) -> None:
    series: dict[str, list[Path]] = {}
    for path, ds in headers:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "unknown")), []).append(path)
    if len(series) > 1:
        listing = "; ".join(
            f"{uid}: {len(files)} file(s), e.g. {files[0]}" for uid, files in series.items()
        )
        raise MixedSeriesError(
            f"{headers[0][0].parent} mixes {len(series)} DICOM series ({listing}); a series "
            f"folder must hold one series: put each series in its own folder and pass "
            f"input=<that folder> (or a parent folder of series folders)"
        )


def _check_image(path: Path, ds: Any) -> None:
    if "Rows" not in ds or "Columns" not in ds:
        kind = getattr(ds, "Modality", "unknown")
        raise ImageReadError(
            f"{path} is a DICOM file without an image (modality {kind}, no Rows/Columns); "
            f"remove it from the input folder"
        )
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(
            f"{path} is a multi-frame (enhanced) DICOM with {ds.NumberOfFrames} frames, which "
            f"predict does not read; convert it to NIfTI (dcm2niix) and pass the .nii.gz"
        )
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise ImageReadError(
            f"{path} is a colour DICOM ({ds.SamplesPerPixel} samples per pixel); predict "
            f"reads grayscale DICOM (CT, MR); export the image as PNG instead"
        )


def _check_same_grid(headers: list[tuple[Path, Any]]) -> None:
    first_path, first = headers[0]
    for path, ds in headers:
        for key in ("ImagePositionPatient", "ImageOrientationPatient"):
            if key not in ds:
                raise ImageReadError(
                    f"{path} has no {key}, so the slices of its series cannot be ordered in "
                    f"space; pass the files one by one, or convert the series with dcm2niix"
                )
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise ImageReadError(
                f"{path} is {ds.Rows}x{ds.Columns} pixels but {first_path} is "
                f"{first.Rows}x{first.Columns}: not one series (a scout or a reformat mixed in); "
                f"remove the odd file from the folder"
            )
        if not np.allclose(
            _floats(ds.ImageOrientationPatient),
            _floats(first.ImageOrientationPatient),
            atol=ORIENTATION_TOLERANCE,
        ):
            raise ImageReadError(
                f"{path} has ImageOrientationPatient {_floats(ds.ImageOrientationPatient)} but "
                f"{first_path} has {_floats(first.ImageOrientationPatient)}: the slices are not "
                f"parallel; remove the odd file from the folder"
            )
        if not np.allclose(_pixel_spacing(ds), _pixel_spacing(first), rtol=1e-4):
            raise ImageReadError(
                f"{path} has PixelSpacing {_pixel_spacing(ds)} but {first_path} has "
                f"{_pixel_spacing(first)}: not one series; remove the odd file from the folder"
            )


def _sorted_by_position(headers: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    normal = _normal(headers[0][1])
    positions = [float(np.dot(_floats(ds.ImagePositionPatient), normal)) for _, ds in headers]
    order = np.argsort(positions, kind="stable")
    headers = [headers[i] for i in order]
    ordered = np.asarray(positions)[order]
    gaps = np.diff(ordered)
    for i, gap in enumerate(gaps):
        if gap < SAME_POSITION_MM:
            raise ImageReadError(
                f"{headers[i][0]} and {headers[i + 1][0]} lie at the same position "
                f"({ordered[i]:.3f} mm along the slice normal): duplicate files or two "
                f"acquisitions in one folder; keep one of them"
            )
    median = float(np.median(gaps))
    if np.any(np.abs(gaps - median) > GAP_TOLERANCE * median):
        log.warning(
            "%s: slice gaps vary from %.3g to %.3g mm (missing slices?); the mask's affine "
            "assumes an even %.3g mm spacing (per-slice masks are unaffected)",
            headers[0][0].parent, gaps.min(), gaps.max(), (ordered[-1] - ordered[0]) / len(gaps),
        )  # fmt: skip
    return headers


# -- geometry --------------------------------------------------------------------------------
def _floats(values: Any) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=np.float64)


def _pixel_spacing(ds: Any) -> np.ndarray:
    """(between rows, between columns) mm; 1 mm when the file does not say."""
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        if key in ds and ds.get(key):
            return _floats(ds.get(key))
    return np.ones(2)


def _orientation(ds: Any) -> np.ndarray:
    if "ImageOrientationPatient" in ds and ds.ImageOrientationPatient:
        return _floats(ds.ImageOrientationPatient)
    return np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def _normal(ds: Any) -> np.ndarray:
    cosines = _orientation(ds)
    normal = np.cross(cosines[:3], cosines[3:])
    return normal / max(float(np.linalg.norm(normal)), 1e-12)


def _affine(datasets: Sequence[Any], first_path: Path) -> np.ndarray:
    """Voxel (column, row, slice) -> RAS+ mm."""
    first = datasets[0]
    cosines = _orientation(first)
    row_spacing, column_spacing = _pixel_spacing(first)
    if "ImagePositionPatient" in first and first.ImagePositionPatient:
        origin = _floats(first.ImagePositionPatient)
    else:
        log.warning("%s has no ImagePositionPatient: the mask's origin is set to 0", first_path)
        origin = np.zeros(3)
    if len(datasets) > 1:
        last = _floats(datasets[-1].ImagePositionPatient)
        step = (last - origin) / (len(datasets) - 1)
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0
        step = _normal(first) * float(thickness)
    lps = np.eye(4)
    lps[:3, 0] = cosines[:3] * column_spacing  # along a row: the next column
    lps[:3, 1] = cosines[3:] * row_spacing  # down a column: the next row
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps

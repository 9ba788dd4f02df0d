"""Reading one image or mask file (NIfTI via nibabel, 2D PNG via Pillow) in one orientation.

Volumes come back as `X x Y x Z` arrays in the closest canonical (RAS+) orientation, so axis 2
is the axial axis whatever order the file stores (the slices we serve are axial). A 2D PNG is a
one-slice volume with spacing 1 mm and an identity affine (nnU-Net's convention for natural
images); RGB PNGs carry three channels (`X x Y x 1 x 3`). Every failure names the file.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, io_orientation
from PIL import Image, UnidentifiedImageError

from mtl.data.nnunet_layout import NnUNetDataError, NnUNetMissingError

PNG_SPACING = (1.0, 1.0, 1.0)
# Pillow modes holding one channel of integers (L: 8 bit, I;16: 16 bit, I: 32 bit, P: palette
# indices, 1: bit) and those holding RGB
PNG_GRAY_MODES = ("L", "I;16", "I;16B", "I;16L", "I", "P", "1")
PNG_RGB_MODES = ("RGB",)
# numpy dtype kinds of real voxels: bool, signed and unsigned integers, floats
REAL_KINDS = "biuf"


class ImageReadError(NnUNetDataError):
    """A file cannot be read (truncated, corrupt, wrong format)."""


@dataclass(frozen=True)
class Header:
    """Geometry of a file before its data is read: canonical shape and spacing, and the file's
    own affine (compared between a case's files)."""

    path: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    stored_shape: tuple[int, ...]


def read_header(path: Path) -> Header:
    """Shape, spacing and affine without reading the voxels; a header no volume can have
    (wrong dimensionality, empty axis, spacing <= 0, complex voxels) fails here."""
    if path.name.endswith(".png"):
        return _png_header(path)
    image = _nifti(path)
    header = image.header
    stored = _spatial_shape(tuple(int(s) for s in image.shape))
    if len(stored) != 3:
        raise ImageReadError(
            f"{path} has shape {stored}; images must be 3D volumes (one file per channel: "
            f"{{case}}_0000, {{case}}_0001, ...) and masks 3D label maps",
            path,
        )
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    zooms = (*zooms, 1.0, 1.0)[:3]
    _check_geometry(path, stored, zooms, np.asarray(image.affine))
    _check_dtype(path, header.get_data_dtype())
    axes = _canonical_axes(image.affine)
    shape, spacing = [0, 0, 0], [0.0, 0.0, 0.0]
    for axis, target in enumerate(axes):
        shape[target], spacing[target] = stored[axis], zooms[axis]
    return Header(path, tuple(shape), tuple(spacing), np.asarray(image.affine), stored)


def _check_geometry(
    path: Path, shape: tuple[int, ...], zooms: tuple[float, ...], affine: np.ndarray
) -> None:
    if any(n < 1 for n in shape):
        raise ImageReadError(
            f"{path} has shape {shape} with an empty axis: it holds no voxels; re-export it",
            path,
        )
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        raise ImageReadError(
            f"{path} has voxel spacing {zooms} mm; spacings must be positive numbers: fix "
            f"pixdim in the header or re-export the file",
            path,
        )
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) == 0:
        raise ImageReadError(
            f"{path} has a degenerate affine (not finite, or axes that do not span 3D space):"
            f"\n{affine}\nfix the header's sform/qform or re-export the file",
            path,
        )


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    """Voxels must be real numbers (NIfTI also stores complex and RGB records)."""
    if dtype.kind not in REAL_KINDS:
        raise ImageReadError(
            f"{path} stores voxels as {dtype}; images and masks must hold real numbers (int "
            f"or float): convert the file (e.g. keep the magnitude of complex data)",
            path,
        )


def read_volume(path: Path, integer: bool = False) -> np.ndarray:
    """Voxels in canonical orientation: `X x Y x Z` (float32, or int64 when `integer`), or
    `X x Y x 1 x 3` for an RGB PNG."""
    if path.name.endswith(".png"):
        return _read_png(path, integer)
    image = _nifti(path)
    try:
        data = np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise ImageReadError(
            f"cannot read the voxels of {path} ({type(err).__name__}: {err}); the file is "
            f"truncated or corrupt: copy it again or re-export it",
            path,
        ) from err
    _check_dtype(path, data.dtype)
    data = data.reshape(_spatial_shape(data.shape))
    data = apply_orientation(data, io_orientation(image.affine))
    return _as_labels(path, data) if integer else _finite(path, data)


def _finite(path: Path, data: np.ndarray) -> np.ndarray:
    """float32 intensities; NaN or infinity (also from float64 beyond float32's range) would
    turn every statistic and loss they touch into NaN, so they fail here, naming the file."""
    out = np.asarray(data, dtype=np.float32)
    bad = out.size - int(np.isfinite(out).sum())
    if bad:
        raise ImageReadError(
            f"{path} holds {bad} NaN or infinite voxels (of {out.size}); images must be "
            f"finite: replace them (e.g. with the background intensity) and save the file again",
            path,
        )
    return out


def _nifti(path: Path) -> nib.Nifti1Image:
    """The image object; nibabel reads only the header until the voxels are asked for."""
    try:
        return nib.load(path)
    except FileNotFoundError:
        raise NnUNetMissingError(
            f"{path} is missing (it was listed at setup); restore it", path
        ) from None
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise ImageReadError(
            f"cannot read {path} ({type(err).__name__}: {err}); the file is truncated or not "
            f"a NIfTI image: copy it again or re-export it",
            path,
        ) from err


def _spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A 2D image as one slice, trailing singleton axes (X x Y x Z x 1) dropped; anything
    else is returned as is (and rejected by the caller)."""
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        return shape[:3]
    return shape


def _canonical_axes(affine: np.ndarray) -> list[int]:
    """For each stored axis, the canonical axis (0 = x, 1 = y, 2 = z) it becomes."""
    return [int(a) for a in io_orientation(affine)[:, 0]]


def _as_labels(path: Path, data: np.ndarray) -> np.ndarray:
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise ImageReadError(
                f"{path} holds NaN or infinite label values; masks must hold class ids: "
                f"re-export the mask",
                path,
            )
        if not np.array_equal(data, np.round(data)):
            raise ImageReadError(
                f"{path} holds non-integer label values; masks must hold class ids (resample "
                f"masks with nearest neighbour, never interpolate)",
                path,
            )
    return np.asarray(data, dtype=np.int64)


# -- PNG -------------------------------------------------------------------------------------
@contextmanager
def _reading_png(path: Path, problem: str) -> Iterator[None]:
    """Turn PIL's errors into ours, naming the file and what to do."""
    try:
        yield
    except FileNotFoundError:
        raise NnUNetMissingError(
            f"{path} is missing (it was listed at setup); restore it", path
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"cannot read {path} ({type(err).__name__}: {err}); {problem}: copy it again or "
            f"re-export it",
            path,
        ) from err


def _open_png(path: Path) -> Image.Image:
    """The image with its pixels loaded (a truncated file fails here, not later)."""
    with _reading_png(path, "the file is truncated or not a PNG"):
        image = Image.open(path)
        image.load()
    return image


def _png_header(path: Path) -> Header:
    with _reading_png(path, "the file is not a PNG"), Image.open(path) as image:
        width, height, mode = image.width, image.height, image.mode
    if width < 1 or height < 1:
        raise ImageReadError(f"{path} is {width} x {height} pixels: it holds no image", path)
    stored = (height, width, 3) if mode in PNG_RGB_MODES else (height, width)
    return Header(path, (width, height, 1), PNG_SPACING, np.eye(4), stored)


def _read_png(path: Path, integer: bool) -> np.ndarray:
    image = _open_png(path)
    if image.mode not in PNG_GRAY_MODES + PNG_RGB_MODES:
        raise ImageReadError(
            f"{path} is a {image.mode} PNG; images must be grayscale (one file per channel) or "
            f"RGB, masks grayscale: save it without alpha",
            path,
        )
    if integer and image.mode in PNG_RGB_MODES:
        raise ImageReadError(
            f"{path} is an RGB PNG but masks must be single-channel (class ids as gray values); "
            f"convert it to mode L",
            path,
        )
    pixels = np.asarray(image)  # rows = y, columns = x
    data = np.swapaxes(pixels, 0, 1)[:, :, None]  # X x Y x 1 (x 3)
    return _as_labels(path, data) if integer else data.astype(np.float32)

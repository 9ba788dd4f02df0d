"""Read one input into the slices training would have served, plus its geometry.

NIfTI and PNG go through the very functions the nnU-Net data module reads with
(`mtl.data.nnunet_io`), so orientation, axes and intensities match training. DICOM is read by
`mtl.inference.dicom` into HU with a RAS+ affine and then put in the same canonical order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation

from mtl.data.nnunet_io import ImageReadError, read_header, read_volume
from mtl.data.nnunet_preprocess import in_plane_spacing
from mtl.inference.dicom import read_dicom
from mtl.inference.discover import DICOM, NIFTI, PNG, InputSource
from mtl.inference.geometry import canonical_spacing, to_canonical, volume_to_slices

# what training assumed for PNG (nnU-Net's convention for natural images): 1 mm pixels
PNG_SPACING = (1.0, 1.0)
# image and channel files of one case may differ by rounding only (mm)
AFFINE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class InputImage:
    """`slices`: Z x C x H x W float32 in canonical axial order (as training served slices,
    before resampling); `spacing`: (row, column) mm of a slice; `affine`, `stored_shape`:
    the file's geometry, which masks are written back in; for DICOM, `stored_files`: the file
    of each stored slice (sorted along the normal) and `slice_files`: of each canonical slice
    (None where a canonical slice mixes files, e.g. of a sagittal series)."""

    source: InputSource
    slices: np.ndarray
    spacing: tuple[float, float]
    affine: np.ndarray
    stored_shape: tuple[int, ...]
    nifti_header: Any | None = None
    slice_files: tuple[Path | None, ...] | None = None
    stored_files: tuple[Path, ...] | None = None

    @property
    def num_channels(self) -> int:
        return int(self.slices.shape[1])


def read_input(source: InputSource, png_spacing: Sequence[float] = PNG_SPACING) -> InputImage:
    """Read `source`; every failure names the file and the fix."""
    if source.kind == NIFTI:
        return _read_nifti(source)
    if source.kind == PNG:
        return _read_png(source, (float(png_spacing[0]), float(png_spacing[1])))
    if source.kind == DICOM:
        return _read_dicom(source)
    raise ValueError(f"unknown input kind {source.kind!r}")


def _read_nifti(source: InputSource) -> InputImage:
    headers = [read_header(path) for path in source.paths]
    reference = headers[0]
    for header in headers[1:]:
        if header.shape != reference.shape or not np.allclose(
            header.affine, reference.affine, atol=AFFINE_TOLERANCE, rtol=0
        ):
            raise ImageReadError(
                f"{header.path} (shape {header.stored_shape}) and {reference.path} (shape "
                f"{reference.stored_shape}) are channels of case '{source.name}' but do not "
                f"share one voxel grid; resample the channels onto one grid"
            )
    channels = [read_volume(path) for path in source.paths]  # canonical X x Y x Z each
    slices = volume_to_slices(np.stack(channels, axis=-1))
    original = nib.load(source.paths[0])
    return InputImage(
        source=source,
        slices=slices,
        spacing=in_plane_spacing(reference),
        affine=np.asarray(original.affine),
        stored_shape=tuple(int(s) for s in original.shape),
        nifti_header=original.header,
    )


def _read_png(source: InputSource, spacing: tuple[float, float]) -> InputImage:
    channels = []
    for path in source.paths:
        data = read_volume(path)  # X x Y x 1, or X x Y x 1 x 3 for RGB
        channels.extend([data] if data.ndim == 3 else [data[..., i] for i in range(3)])
    shapes = {c.shape for c in channels}
    if len(shapes) > 1:
        raise ImageReadError(
            f"the channel files of case '{source.name}' ({', '.join(map(str, source.paths))}) "
            f"differ in size; every channel must have the same width and height"
        )
    slices = volume_to_slices(np.stack(channels, axis=-1))  # 1 x C x rows x columns
    return InputImage(
        source=source,
        slices=slices,
        spacing=spacing,
        affine=np.eye(4),
        stored_shape=tuple(int(s) for s in slices.shape[-2:]),
    )


def _read_dicom(source: InputSource) -> InputImage:
    volume = read_dicom(source.paths)
    canonical = to_canonical(volume.stored, volume.affine)
    spacing = canonical_spacing(volume.affine)
    slices = volume_to_slices(canonical[..., None])
    return InputImage(
        source=source,
        slices=slices,
        spacing=(spacing[1], spacing[0]),
        affine=volume.affine,
        stored_shape=tuple(int(s) for s in volume.stored.shape),
        slice_files=_canonical_slice_files(volume.files, volume.affine, len(slices)),
        stored_files=volume.files,
    )


def _canonical_slice_files(
    files: tuple[Path, ...], affine: np.ndarray, num_slices: int
) -> tuple[Path | None, ...]:
    """The file of each canonical axial slice: the stored slice axis is canonical z, possibly
    reversed; a series cut along another axis mixes files in every axial slice (None)."""
    axis, direction = io_orientation(affine)[2]
    if int(axis) != 2:
        return (None,) * num_slices
    return files if direction > 0 else tuple(reversed(files))

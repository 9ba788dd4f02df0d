"""Voxel order conventions: the stored array of a file vs the canonical one training used.

Training (`mtl.data.nnunet_io`) turns every volume into the closest canonical (RAS+) axis
order, `X x Y x Z`, and serves axial slices `Z x C x H x W` with rows along y and columns
along x. Prediction reads the same way and writes masks back in the file's own voxel order,
so a mask lies on its image's grid under the image's affine.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

# canonical orientation: axis i runs along world axis i, increasing (RAS+)
CANONICAL = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def to_canonical(stored: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """`X x Y x Z (x ...)` in the file's voxel order -> closest canonical (RAS+) order."""
    return apply_orientation(stored, io_orientation(affine))


def from_canonical(canonical: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of `to_canonical`: back to the voxel order `affine` describes."""
    return apply_orientation(canonical, ornt_transform(CANONICAL, io_orientation(affine)))


def canonical_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along canonical x, y, z: the lengths of the affine's columns."""
    sizes = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    out = [0.0, 0.0, 0.0]
    for axis, target in enumerate(io_orientation(affine)[:, 0].astype(int)):
        out[target] = float(sizes[axis])
    return out[0], out[1], out[2]


def volume_to_slices(canonical: np.ndarray) -> np.ndarray:
    """Canonical `X x Y x Z x C` -> `Z x C x H x W` (rows along y, columns along x)."""
    return np.ascontiguousarray(canonical.transpose(2, 3, 1, 0))


def slices_to_volume(labels: np.ndarray) -> np.ndarray:
    """`Z x H x W` labels -> canonical `X x Y x Z`."""
    return np.ascontiguousarray(labels.transpose(2, 1, 0))


def radiological_view(slice_hw: np.ndarray) -> np.ndarray:
    """A canonical axial slice (rows: y, posterior to anterior; columns: x, the patient's
    left to right) as radiologists view it: anterior at the top, the patient's right on the
    viewer's left (for a standard axial DICOM, its pixel array as stored)."""
    return np.ascontiguousarray(slice_hw[::-1, ::-1])

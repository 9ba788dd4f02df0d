"""Write predictions in the input's format and geometry, a CSV and overlay images.

- NIfTI input -> NIfTI mask with the input's affine, header and shape (voxel order as stored).
- DICOM input -> NIfTI mask with the affine derived from the DICOM geometry (DICOM SEG is not
  written), and optionally one PNG mask per slice, rows x columns as the DICOM pixel array.
- PNG input -> PNG mask of the same size (8-bit, gray value = class id, as nnU-Net's labels).
- `predictions.csv`: one row per slice: class probabilities of image-level tasks, pixel count
  per class of segmentation tasks.
- overlays: the input slice with the predicted classes coloured (radiological view).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from mtl.inference.discover import DICOM, NIFTI, PNG
from mtl.inference.geometry import from_canonical, radiological_view, slices_to_volume
from mtl.inference.readers import InputImage
from mtl.training.callbacks import overlay

OVERLAY_CHOICES = ("all", "foreground", "none")


def write_mask(image: InputImage, labels: np.ndarray, folder: Path, dicom_png: bool) -> list[Path]:
    """`labels`: Z x H x W class ids on the input's canonical slices; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    name = image.source.name
    if image.source.kind == PNG:
        path = folder / f"{name}.png"
        Image.fromarray(labels[0].astype(np.uint8)).save(path)
        return [path]
    stored = from_canonical(slices_to_volume(labels.astype(np.uint8)), image.affine)
    if image.source.kind == NIFTI:
        ending = ".nii" if image.source.paths[0].name.lower().endswith(".nii") else ".nii.gz"
        path = folder / f"{name}{ending}"
        stored = stored.reshape(image.stored_shape)  # restores trailing singleton axes
        _save_nifti(path, stored, image.affine, image.nifti_header)
        return [path]
    assert image.source.kind == DICOM
    path = folder / f"{name}.nii.gz"
    _save_nifti(path, stored, image.affine, None)
    written = [path]
    if dicom_png:
        slice_folder = folder / name
        slice_folder.mkdir(exist_ok=True)
        for k, source in enumerate(image.stored_files or ()):
            png = slice_folder / f"{k:04d}_{source.stem}.png"
            Image.fromarray(np.ascontiguousarray(stored[:, :, k].T)).save(png)
            written.append(png)
    return written


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, header) -> None:
    header = header.copy() if header is not None else None
    mask = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.uint8), affine, header)
    mask.set_data_dtype(np.uint8)
    mask.header.set_slope_inter(1.0, 0.0)
    if header is not None:
        # the input's qform/sform codes: viewers place the mask exactly where the image is
        mask.set_qform(affine, int(header["qform_code"]))
        mask.set_sform(affine, int(header["sform_code"]))
    nib.save(mask, str(path))


def write_overlays(
    image: InputImage, labels: np.ndarray, folder: Path, task: str, which: str, many_tasks: bool
) -> list[Path]:
    """PNG per slice (or one for a single-slice input) of the first channel with `labels`."""
    if which == "none":
        return []
    if which not in OVERLAY_CHOICES:
        raise ValueError(f"overlays must be one of {OVERLAY_CHOICES}, got {which!r}")
    view = (lambda a: a) if image.source.kind == PNG else radiological_view
    prefix = f"{task}_" if many_tasks else ""
    written = []
    for z in range(labels.shape[0]):
        if which == "foreground" and not np.any((labels[z] > 0) & (labels[z] != 255)):
            continue
        rgb = overlay(view(image.slices[z, 0]), view(labels[z]))
        if labels.shape[0] == 1:
            path = folder / f"{image.source.name}{'_' + task if many_tasks else ''}.png"
        else:
            path = folder / image.source.name / f"{prefix}slice_{z:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(path)
        written.append(path)
    return written


class PredictionTable:
    """`predictions.csv`, written row by row: input, case, slice, source file, then per
    classification task the predicted class and one probability column per class, and per
    segmentation task the pixel count of each class (in the input's own resolution)."""

    def __init__(
        self,
        path: Path,
        classes: Mapping[str, Sequence[str]],
        segmentation: Mapping[str, Sequence[str]],
    ) -> None:
        self.path = path
        self.classes = {k: list(v) for k, v in classes.items()}
        self.segmentation = {k: list(v) for k, v in segmentation.items()}
        header = ["input", "case", "slice", "file"]
        for task, names in self.classes.items():
            header += [task, *(f"{task}_p_{n}" for n in names)]
        for task, names in self.segmentation.items():
            header += [f"{task}_pixels_{n}" for n in names]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("w", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(header)
        self.rows = 0

    def add(
        self,
        image: InputImage,
        z: int,
        probabilities: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray],
    ) -> None:
        files = image.slice_files
        source = files[z] if files is not None else image.source.paths[0]
        row: list[object] = [image.source.location, image.source.name, z, source or ""]
        for task, names in self.classes.items():
            probs = probabilities[task]
            row += [names[int(np.argmax(probs))], *(f"{float(p):.6f}" for p in probs)]
        for task, names in self.segmentation.items():
            counts = np.bincount(labels[task].ravel(), minlength=len(names))[: len(names)]
            row += [int(c) for c in counts]
        self._writer.writerow(row)
        self.rows += 1

    def close(self) -> None:
        self._handle.close()

"""DICOM reading on pydicom's real CT slice and series written from it: HU, geometry, order,
and errors that name the file."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from fixtures.dicom import CT_SMALL, STEP_VALUE, apply_modality_lut, save_dicom, write_ct_series

from mtl.data.nnunet_io import ImageReadError
from mtl.inference.dicom import MixedSeriesError, looks_like_dicom, read_dicom


def test_single_ct_file_is_in_hounsfield_units_with_its_geometry():
    ds = pydicom.dcmread(CT_SMALL)
    volume = read_dicom([CT_SMALL])
    assert volume.stored.shape == (ds.Columns, ds.Rows, 1)  # X = columns, Y = rows
    expected_hu = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(volume.stored[:, :, 0].T, expected_hu)
    # the intercept was applied: stored 128..2191 are HU -896..1167 (air in the lungs < -800)
    assert float(ds.RescaleIntercept) == -1024
    assert volume.stored.min() == ds.pixel_array.min() - 1024

    # voxel (column, row, slice) -> RAS+ mm: DICOM's LPS with x and y negated
    s = float(ds.PixelSpacing[0])
    x0, y0, z0 = (float(v) for v in ds.ImagePositionPatient)
    expected = np.array(
        [[-s, 0, 0, -x0], [0, -s, 0, -y0], [0, 0, float(ds.SliceThickness), z0], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(volume.affine, expected, atol=1e-6)


def test_series_is_sorted_by_position_not_by_name_or_instance_number(tmp_path):
    files = write_ct_series(tmp_path / "series", num_slices=5, spacing=2.5, columns=100)
    shuffled = sorted(files, key=lambda p: p.name)  # names are a random permutation
    assert shuffled != files
    volume = read_dicom(shuffled)
    assert volume.files == tuple(files)
    ds = pydicom.dcmread(CT_SMALL)
    base = apply_modality_lut(ds.pixel_array, ds)[:, :100]
    assert volume.stored.shape == (100, 128, 5)
    for k in range(5):
        np.testing.assert_allclose(volume.stored[:, :, k].T, base + STEP_VALUE * k)
    np.testing.assert_allclose(volume.affine[:3, 2], [0, 0, 2.5], atol=1e-6)


def test_mixed_series_fail_naming_a_file_of_each(tmp_path):
    files = write_ct_series(tmp_path / "a", num_slices=3)
    other = write_ct_series(tmp_path / "b", num_slices=2, seed=1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in (*files, *other):
        shutil.copy(path, mixed / f"{path.parent.name}_{path.name}")
    with pytest.raises(MixedSeriesError, match=r"mixes 2 DICOM series.*a_IM.*b_IM"):
        read_dicom(sorted(mixed.iterdir()))


def test_duplicate_positions_and_odd_sizes_fail_naming_files(tmp_path):
    files = write_ct_series(tmp_path / "s", num_slices=3)
    ds = pydicom.dcmread(files[0])
    duplicate = tmp_path / "s" / "copy.dcm"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    save_dicom(ds, duplicate)
    with pytest.raises(ImageReadError, match=r"same position.*copy\.dcm|copy\.dcm.*same position"):
        read_dicom([*files, duplicate])


def test_corrupt_and_truncated_dicom_fail_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ImageReadError, match=r"garbage\.dcm.*corrupt"):
        read_dicom([garbage])

    truncated = tmp_path / "truncated.dcm"
    data = CT_SMALL.read_bytes()
    truncated.write_bytes(data[: len(data) - 5000])  # header intact, pixel data cut short
    with pytest.raises(ImageReadError, match=r"truncated\.dcm"):
        read_dicom([truncated])


def test_dicom_detection_by_suffix_or_marker(tmp_path):
    plain = tmp_path / "IM0001"
    plain.write_bytes(CT_SMALL.read_bytes())
    text = tmp_path / "notes"
    text.write_text("hello")
    assert looks_like_dicom(CT_SMALL)
    assert looks_like_dicom(plain)
    assert not looks_like_dicom(text)

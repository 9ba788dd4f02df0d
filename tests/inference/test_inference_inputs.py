"""Which inputs a path holds, reading them like training did, and orientation round trips."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from fixtures.dicom import write_ct_series
from fixtures.nnunet import affine_for, save_nifti
from PIL import Image

from mtl.data.nnunet_io import ImageReadError, read_volume
from mtl.inference.discover import DICOM, NIFTI, PNG, InputError, discover_inputs
from mtl.inference.geometry import canonical_spacing, from_canonical, to_canonical
from mtl.inference.readers import read_input


def _reoriented_affines() -> list[np.ndarray]:
    """RAS, LPS-like (x, y flipped) and a permuted (sagittal-like) voxel order."""
    flipped = np.diag([-0.7, -0.8, 2.5, 1.0])
    permuted = np.zeros((4, 4))
    permuted[2, 0], permuted[0, 1], permuted[1, 2], permuted[3, 3] = 2.5, -0.7, 0.8, 1.0
    return [affine_for((0.7, 0.8, 2.5)), flipped, permuted]


@pytest.mark.parametrize("affine", _reoriented_affines())
def test_canonical_order_round_trips(affine):
    stored = np.random.default_rng(0).normal(size=(5, 6, 7))
    canonical = to_canonical(stored, affine)
    np.testing.assert_array_equal(from_canonical(canonical, affine), stored)
    spacing = canonical_spacing(affine)
    assert sorted(spacing) == sorted(np.linalg.norm(affine[:3, :3], axis=0).tolist())


def test_nifti_is_read_as_training_reads_it(tmp_path):
    affine = _reoriented_affines()[2]
    data = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    save_nifti(path, data, affine)
    [source] = discover_inputs(path)
    image = read_input(source)
    canonical = read_volume(path)  # what the nnU-Net data module reads
    np.testing.assert_array_equal(image.slices[:, 0], canonical.transpose(2, 1, 0))
    assert image.stored_shape == (5, 6, 7)
    np.testing.assert_array_equal(image.affine, nib.load(path).affine)


def test_truncated_nifti_fails_naming_the_file(tmp_path):
    path = tmp_path / "scan.nii.gz"
    save_nifti(path, np.zeros((16, 16, 8), np.int16), affine_for((1, 1, 1)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    [source] = discover_inputs(path)
    with pytest.raises(ImageReadError, match=r"scan\.nii\.gz.*truncated"):
        read_input(source)


def test_folder_inputs_group_channels_and_find_series(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for case in ("a", "b"):
        for channel in (0, 1):
            save_nifti(folder / f"{case}_{channel:04d}.nii.gz", np.zeros((4, 4, 2)), np.eye(4))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "photo.png")
    write_ct_series(folder / "series1", num_slices=2)
    (folder / "readme.txt").write_text("skipped")

    sources = discover_inputs(folder, num_channels=2)
    by_name = {s.name: s for s in sources}
    assert set(by_name) == {"a", "b", "photo", "series1"}
    assert [p.name for p in by_name["a"].paths] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert by_name["a"].kind == NIFTI and by_name["photo"].kind == PNG
    assert by_name["series1"].kind == DICOM and len(by_name["series1"].paths) == 2

    # one channel: every file is an input, `_0000` dropped from the name
    single = {s.name for s in discover_inputs(folder, num_channels=1)}
    assert {"a", "a_0001", "b", "b_0001"} <= single


def test_input_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"input=.*nowhere.*not found"):
        discover_inputs(tmp_path / "nowhere")
    odd = tmp_path / "scan.mha"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match=r"unsupported file type '\.mha'.*NIfTI"):
        discover_inputs(odd)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no"):
        discover_inputs(empty)
    folder = tmp_path / "partial"
    folder.mkdir()
    for channel in (0, 2):
        save_nifti(folder / f"a_{channel:04d}.nii.gz", np.zeros((4, 4, 2)), np.eye(4))
    with pytest.raises(InputError, match=r"case 'a'.*lacks \['0001'\]"):
        discover_inputs(folder, num_channels=3)

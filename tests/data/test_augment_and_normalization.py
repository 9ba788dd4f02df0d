import numpy as np
import pytest
import torch

from mtl.data.augment import BatchAugment
from mtl.data.normalization import CTFingerprint


def _batch():
    image = torch.zeros(4, 1, 32, 32)
    mask = torch.zeros(4, 32, 32, dtype=torch.long)
    for i in range(4):  # a bright square labelled 1, at a different place per sample
        r, c = 4 + 3 * i, 6 + 2 * i
        image[i, 0, r : r + 10, c : c + 8] = 5.0
        mask[i, r : r + 10, c : c + 8] = 1
    return {"image": image, "targets": {"seg": mask, "cls": torch.arange(4)}}


def test_augment_moves_image_and_mask_together():
    torch.manual_seed(0)
    aug = BatchAugment(hflip_p=0.5, rotate_deg=30, scale=(0.8, 1.2), spatial_p=1.0, intensity_p=0.0)
    before = _batch()
    out = aug(_batch(), {"seg": "segmentation", "cls": "classification"})
    assert not torch.equal(out["image"], before["image"])  # something moved
    bright = out["image"][:, 0] > 2.5
    labelled = out["targets"]["seg"] == 1
    agreement = (bright == labelled).float().mean().item()
    assert agreement > 0.97  # only interpolation at the square's edge may differ
    assert torch.equal(out["targets"]["cls"], torch.arange(4))  # image-level untouched
    assert out["targets"]["seg"].dtype == torch.long


def test_augment_off_is_identity_and_bad_probability_rejected():
    aug = BatchAugment(hflip_p=0.0, spatial_p=0.0, intensity_p=0.0)
    before = _batch()
    out = aug(_batch(), {"seg": "segmentation"})
    assert torch.allclose(out["image"], before["image"], atol=1e-5)
    assert torch.equal(out["targets"]["seg"], before["targets"]["seg"])
    with pytest.raises(ValueError, match="hflip_p"):
        BatchAugment(hflip_p=1.5)


def test_fingerprint_uses_foreground_percentiles_and_zscore(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(50, 10, (64, 64)).astype(np.float32)
    image[:8] = -1000  # background air: must not enter the statistics
    mask = np.ones((64, 64), dtype=np.uint8)
    mask[:8] = 0
    fp = CTFingerprint.from_images([(image, mask)], (0.5, 99.5))
    fg = image[8:]
    lo, hi = np.percentile(fg, [0.5, 99.5])
    assert fp.lower == pytest.approx(lo) and fp.upper == pytest.approx(hi)
    assert fp.mean == pytest.approx(np.clip(fg, lo, hi).mean(), rel=1e-6)
    out = fp.normalize(image)
    assert out[:8].max() == pytest.approx((lo - fp.mean) / fp.std, rel=1e-5)  # clipped air
    assert abs(out[8:].mean()) < 0.05 and abs(out[8:].std() - 1) < 0.05
    path = tmp_path / "fp.json"
    fp.save(path)
    assert CTFingerprint.load(path) == fp
    path.write_text("{broken")
    with pytest.raises(ValueError, match=r"corrupt .* delete it"):
        CTFingerprint.load(path)


@pytest.mark.parametrize("height,width", [(48, 48), (48, 64)])
def test_normals_and_depth_follow_the_geometry(height, width):
    """A linear field f = a x + b y warped like the image has gradient direction equal to the
    warped normals' in-plane part; depth is divided by the zoom."""
    torch.manual_seed(0)
    aug = BatchAugment(
        hflip_p=0.5, vflip_p=0.5, rotate_deg=40, scale=(1.0, 1.4), spatial_p=1.0, intensity_p=0
    )
    n = 16
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    a, b = 0.6, -0.8  # unit in-plane normal (0.6, -0.8, 0): gradient of f
    field = (a * xs + b * ys).expand(n, 1, height, width).float().contiguous()
    normals = torch.zeros(n, 3, height, width)
    normals[:, 0], normals[:, 1] = a, b
    depth = torch.full((n, 1, height, width), 2.0)
    batch = {
        "image": field,
        "targets": {"normals": normals, "depth": depth},
        "has_target": {},
    }
    out = aug(batch, {"normals": "normals", "depth": "depth"})
    warped = out["image"][:, 0]
    cy, cx = height // 2, width // 2
    gx = (warped[:, cy, cx + 2] - warped[:, cy, cx - 2]) / 4
    gy = (warped[:, cy + 2, cx] - warped[:, cy - 2, cx]) / 4
    grad = torch.nn.functional.normalize(torch.stack([gx, gy], 1), dim=1)
    moved = out["targets"]["normals"][:, :2, cy, cx]
    torch.testing.assert_close(moved, grad, atol=2e-3, rtol=0)
    # zooming in by s magnifies the content (the field's slope becomes 1/s) and brings the
    # scene s times closer (depth / s)
    slope = torch.stack([gx, gy], 1).norm(dim=1)
    torch.testing.assert_close(
        out["targets"]["depth"][:, 0, cy, cx], 2.0 * slope, atol=2e-3, rtol=0
    )
    assert slope.max() <= 1.0 + 1e-3 and slope.min() < 0.95


def test_invalid_depth_is_not_blended():
    aug = BatchAugment(hflip_p=0, rotate_deg=30, scale=(1.0, 1.3), spatial_p=1.0, intensity_p=0)
    depth = torch.rand(4, 1, 32, 32) + 1.0
    depth[:, :, ::3] = 0.0
    batch = {"image": torch.randn(4, 3, 32, 32), "targets": {"depth": depth}, "has_target": {}}
    out = aug(batch, {"depth": "depth"})["targets"]["depth"]
    assert ((out == 0) | (out > 1.0 / 1.3 - 1e-6)).all()  # 0 stays 0, no in-between values

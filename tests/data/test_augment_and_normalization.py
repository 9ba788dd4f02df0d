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

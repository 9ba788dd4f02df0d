"""Gaussian sliding windows: tiles cover the image, and a model whose output at a pixel
depends only on that pixel gives the same result tiled as in one pass."""

from __future__ import annotations

import itertools

import pytest
import torch

from mtl.inference.sliding_window import (
    gaussian_weights,
    pad_to_patch,
    predict_windows,
    tile_starts,
)


@pytest.mark.parametrize(("size", "patch"), [(32, 32), (33, 32), (100, 32), (64, 16), (7, 16)])
def test_tiles_cover_the_image_with_at_most_half_a_patch_between_them(size, patch):
    starts = tile_starts(size, patch, step=0.5)
    assert starts[0] == 0
    if size > patch:
        assert starts[-1] + patch == size
        assert all(0 < b - a <= patch // 2 for a, b in itertools.pairwise(starts))


def test_gaussian_weights_peak_in_the_centre_and_stay_positive():
    weights = gaussian_weights((16, 20), 0.125)
    assert weights.shape == (16, 20)
    assert float(weights.max()) == pytest.approx(1.0)
    assert float(weights.min()) > 0
    assert weights[8, 10] > weights[0, 0]


def test_padding_uses_each_channel_minimum_and_keeps_the_image_centred():
    image = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    padded, (top, left) = pad_to_patch(image, (6, 6))
    assert padded.shape == (1, 2, 6, 6)
    assert torch.equal(padded[..., top : top + 3, left : left + 4], image)
    assert float(padded[0, 0, 0, 0]) == 0.0 and float(padded[0, 1, 0, 0]) == 12.0


def _pixelwise(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dense logits from each pixel alone, and an image-level mean."""
    dense = torch.cat([images.sum(1, keepdim=True), -images.sum(1, keepdim=True)], dim=1)
    return {"seg": dense, "cls": images.mean(dim=(2, 3))}


def test_tiling_matches_one_pass_for_a_pixelwise_model():
    images = torch.randn(2, 3, 50, 37)
    calls = []

    def forward(x):
        calls.append(tuple(x.shape[-2:]))
        return _pixelwise(x)

    out = predict_windows(forward, images, (16, 16), step=0.5, batch_size=5)
    assert out.num_tiles == len(tile_starts(50, 16)) * len(tile_starts(37, 16)) > 1
    assert (16, 16) in calls  # tiles were used for the dense output
    torch.testing.assert_close(out.dense["seg"], _pixelwise(images)["seg"])
    # whole: the image-level output comes from one pass over the whole image
    torch.testing.assert_close(out.image["cls"], images.mean(dim=(2, 3)))


def test_small_images_are_padded_like_training_and_cropped_back():
    images = torch.randn(3, 1, 10, 12)
    out = predict_windows(_pixelwise, images, (16, 16))
    assert out.num_tiles == 1
    assert out.dense["seg"].shape == (3, 2, 10, 12)
    torch.testing.assert_close(out.dense["seg"], _pixelwise(images)["seg"])


def test_tile_mode_averages_tile_logits():
    images = torch.zeros(1, 1, 32, 32)
    images[..., :16, :16] = 4.0  # only the first tile sees it entirely
    out = predict_windows(_pixelwise, images, (16, 16), step=1.0, image_level="tiles")
    assert out.num_tiles == 4
    # mean over 4 tiles of the tile means (4, 0, 0, 0)
    assert float(out.image["cls"][0, 0]) == pytest.approx(1.0)

"""Synthetic CT phantom: determinism, HU ranges, anatomy, lesion/label consistency, prior."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

import mtl.data.ct_phantom as ct_phantom
from mtl.data.ct_phantom import (
    CLS_CLASSES,
    SEG_CLASSES,
    TISSUES,
    CTSlice,
    PhantomConfig,
    PhantomDebug,
    generate_slice,
    generate_slice_debug,
    lesion_malignancy,
)

LIVER, KIDNEY, BONE, LESION = (SEG_CLASSES.index(c) for c in ("liver", "kidney", "bone", "lesion"))
HOST_TISSUES = {
    "liver": (TISSUES.index("liver"), TISSUES.index("liver_vessel")),
    "kidney": (TISSUES.index("kidney"),),
}
N_PRIOR = 600


@pytest.fixture(scope="module")
def pool() -> list[CTSlice]:
    """Slices 0..N_PRIOR-1 of seed 7 at the default config (shared by several tests)."""
    return [generate_slice(7, i) for i in range(N_PRIOR)]


@pytest.fixture(scope="module")
def debug_pool() -> list[tuple[CTSlice, PhantomDebug]]:
    """Slices with their tissue maps, noiseless images and per-lesion masks."""
    return [generate_slice_debug(11, i) for i in range(160)]


def _tissue(name: str) -> int:
    return TISSUES.index(name)


def _worst(ct: CTSlice) -> int:
    flags = [
        lesion_malignancy(le.radius_at_128, le.irregularity, le.heterogeneity) for le in ct.lesions
    ]
    return max((2 if f else 1 for f in flags), default=0)


# -- determinism ------------------------------------------------------------------------------
def test_same_seed_and_index_is_bit_identical() -> None:
    a = generate_slice(3, 17)
    ct_phantom._bases.cache_clear()  # a fresh grid cache must not change anything
    b = generate_slice(3, 17, PhantomConfig())
    assert a.image.tobytes() == b.image.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    assert (a.label, a.level, a.enhanced, a.noise_sigma, a.lesions) == (
        b.label,
        b.level,
        b.enhanced,
        b.noise_sigma,
        b.lesions,
    )


def test_different_index_or_seed_gives_a_different_slice() -> None:
    base = generate_slice(3, 17)
    for other in (generate_slice(3, 18), generate_slice(4, 17)):
        assert not np.array_equal(base.image, other.image)
        assert not np.array_equal(base.mask, other.mask)


def test_debug_variant_returns_the_same_slice() -> None:
    for index in range(5):
        plain = generate_slice(5, index)
        ct, dbg = generate_slice_debug(5, index)
        assert np.array_equal(plain.image, ct.image) and np.array_equal(plain.mask, ct.mask)
        assert plain.lesions == ct.lesions and plain.label == ct.label
        assert dbg.tissue.shape == dbg.noiseless.shape == ct.image.shape
        assert len(dbg.lesion_masks) == len(ct.lesions)


def test_output_types_and_value_domains(pool: list[CTSlice]) -> None:
    for ct in pool[:50]:
        assert ct.image.shape == ct.mask.shape == (128, 128)
        assert ct.image.dtype == np.float32 and ct.mask.dtype == np.uint8
        assert np.isfinite(ct.image).all()
        assert ct.mask.max() < len(SEG_CLASSES) and 0 <= ct.label < len(CLS_CLASSES)
        assert 0.0 <= ct.level <= 1.0 and 10.0 <= ct.noise_sigma <= 25.0


# -- Hounsfield units -------------------------------------------------------------------------
def _pooled_median(debug_pool, select) -> float:
    values = [ct.image[select(ct, dbg)] for ct, dbg in debug_pool]
    return float(np.median(np.concatenate(values)))


def test_tissue_hu_medians_over_many_slices(debug_pool) -> None:
    def organ(label, enhanced):
        return lambda ct, dbg: (ct.mask == label) & (ct.enhanced == enhanced)

    assert 45 <= _pooled_median(debug_pool, organ(LIVER, False)) <= 75
    assert 85 <= _pooled_median(debug_pool, organ(LIVER, True)) <= 120
    assert 20 <= _pooled_median(debug_pool, organ(KIDNEY, False)) <= 45
    assert 120 <= _pooled_median(debug_pool, organ(KIDNEY, True)) <= 180
    assert _pooled_median(debug_pool, lambda ct, dbg: ct.mask == BONE) > 300
    air = _tissue("air")
    assert _pooled_median(debug_pool, lambda ct, dbg: dbg.tissue == air) < -950
    lung = _tissue("lung")
    assert -850 <= _pooled_median(debug_pool, lambda ct, dbg: dbg.tissue == lung) <= -700
    fat = _tissue("fat")
    assert -125 <= _pooled_median(debug_pool, lambda ct, dbg: dbg.tissue == fat) <= -80
    muscle = _tissue("muscle")
    assert 20 <= _pooled_median(debug_pool, lambda ct, dbg: dbg.tissue == muscle) <= 65


def test_noiseless_organ_intensities_follow_the_contrast_phase(debug_pool) -> None:
    # per-slice medians of the organ core; ranges are the HU facts plus texture on small organs
    liver, kidney = _tissue("liver"), _tissue("kidney")
    for ct, dbg in debug_pool:
        core = ndimage.binary_erosion(dbg.tissue == liver, iterations=2)
        if core.sum() > 50:
            median = float(np.median(dbg.noiseless[core & (ct.mask == LIVER)]))
            assert (80 <= median <= 128) if ct.enhanced else (42 <= median <= 76)
        core = ndimage.binary_erosion(dbg.tissue == kidney, iterations=2)
        if core.sum() > 30:
            median = float(np.median(dbg.noiseless[core & (ct.mask == KIDNEY)]))
            assert (125 <= median <= 185) if ct.enhanced else (18 <= median <= 48)


def test_noise_has_the_drawn_sigma(debug_pool) -> None:
    for ct, dbg in debug_pool[:20]:
        residual = ct.image - dbg.noiseless
        assert abs(float(residual.std()) - ct.noise_sigma) < 0.02 * ct.noise_sigma
        # slightly correlated: neighbouring pixels are positively correlated
        corr = np.corrcoef(residual[:, 1:].ravel(), residual[:, :-1].ravel())[0, 1]
        assert 0.1 < corr < 0.9


def test_zero_noise_config_gives_the_noiseless_image() -> None:
    ct, dbg = generate_slice_debug(2, 3, PhantomConfig(noise_sigma=(0.0, 0.0)))
    assert ct.noise_sigma == 0.0 and np.array_equal(ct.image, dbg.noiseless)


# -- anatomy ----------------------------------------------------------------------------------
def test_anatomy_depends_on_level_and_sits_where_radiologists_expect(debug_pool) -> None:
    lung, aorta = _tissue("lung"), _tissue("aorta")
    lung_seen_low = 0
    for ct, dbg in debug_pool:
        n = ct.image.shape[0]
        has_lung = bool((dbg.tissue == lung).any())
        if ct.level >= 0.32:
            assert not has_lung
        lung_seen_low += has_lung and ct.level < 0.2
        kidney_area = int((dbg.tissue == _tissue("kidney")).sum())
        if ct.level < 0.3:
            assert kidney_area == 0
        if ct.level > 0.6:
            assert kidney_area > 100
        body = dbg.tissue != _tissue("air")
        body_row, _ = ndimage.center_of_mass(body)
        vertebra = dbg.tissue == _tissue("cancellous")
        spine_row, spine_col = ndimage.center_of_mass(vertebra)
        assert spine_row > body_row + 0.05 * n and abs(spine_col - n / 2) < 0.08 * n
        liver = np.isin(dbg.tissue, HOST_TISSUES["liver"])
        if liver.sum() > 200:
            assert ndimage.center_of_mass(liver)[1] < n / 2  # image left = patient right
        aorta_row, aorta_col = ndimage.center_of_mass(dbg.tissue == aorta)
        assert aorta_row < spine_row and aorta_col > spine_col  # anterior-left of the spine
        if kidney_area > 100:
            kid = ndimage.label(dbg.tissue == _tissue("kidney"))[0]
            sides = {
                np.sign(ndimage.center_of_mass(kid == k)[1] - spine_col)
                for k in range(1, kid.max() + 1)
            }
            assert sides == {-1.0, 1.0}
        # air only outside the body ellipse (apart from lungs and bowel gas)
        assert not (ct.mask[~body] != 0).any()
    assert lung_seen_low >= 10


def test_liver_is_larger_on_upper_than_on_lowest_slices(pool: list[CTSlice]) -> None:
    upper = [int((ct.mask == LIVER).sum()) for ct in pool if 0.15 < ct.level < 0.45]
    lowest = [int((ct.mask == LIVER).sum()) for ct in pool if ct.level > 0.9]
    assert np.mean(upper) > 2.5 * np.mean(lowest)


def test_shapes_sizes_and_positions_vary(pool: list[CTSlice]) -> None:
    mid = [ct for ct in pool if 0.15 < ct.level < 0.45][:80]
    liver_area = np.array([(ct.mask == LIVER).sum() for ct in mid], dtype=float)
    centroids = np.array([ndimage.center_of_mass(ct.mask == LIVER) for ct in mid])
    body_area = np.array([(ct.image > -500).sum() for ct in mid], dtype=float)
    bone_area = np.array([(ct.mask == BONE).sum() for ct in mid], dtype=float)
    assert liver_area.std() > 0.1 * liver_area.mean()
    assert centroids[:, 0].std() > 2.0 and centroids[:, 1].std() > 2.0
    assert body_area.std() > 0.05 * body_area.mean()
    assert bone_area.std() > 0.04 * bone_area.mean()
    levels = np.array([ct.level for ct in pool])
    assert levels.min() < 0.05 and levels.max() > 0.95
    assert 0.4 < np.mean([ct.enhanced for ct in pool]) < 0.6
    sigmas = np.array([ct.noise_sigma for ct in pool])
    assert sigmas.min() < 12 and sigmas.max() > 23


# -- lesions and labels -----------------------------------------------------------------------
def test_malignancy_rule() -> None:
    assert lesion_malignancy(4.0, 0.3, 0.0)  # small but lobulated
    assert lesion_malignancy(12.0, 0.05, 0.8)  # large, smooth, heterogeneous
    assert not lesion_malignancy(12.0, 0.05, 0.2)  # large homogeneous cyst
    assert not lesion_malignancy(6.0, 0.05, 0.9)  # small heterogeneous, smooth
    assert not lesion_malignancy(2.0, 0.0, 0.0)


def test_label_matches_lesions_and_the_rule(pool: list[CTSlice]) -> None:
    lo, hi = PhantomConfig().lesion_radius
    clo, chi = PhantomConfig().lesion_contrast
    for ct in pool:
        lesion_pixels = int((ct.mask == LESION).sum())
        if ct.label == 0:
            assert not ct.lesions and lesion_pixels == 0
            continue
        assert ct.lesions and lesion_pixels > 0
        assert ct.label == _worst(ct)
        flags = [le.malignant for le in ct.lesions]
        if ct.label == 1:
            assert 1 <= len(ct.lesions) <= 3 and not any(flags)
        else:
            assert sum(flags) == 1 and len(ct.lesions) <= 3
        for le in ct.lesions:
            assert le.malignant == lesion_malignancy(
                le.radius_at_128, le.irregularity, le.heterogeneity
            )
            assert le.organ in ("liver", "kidney")
            assert lo <= le.radius_at_128 <= hi and le.radius == pytest.approx(le.radius_at_128)
            assert clo <= abs(le.contrast) <= chi
            assert le.irregularity >= 0 and le.heterogeneity >= 0
            if not le.malignant:  # benign: smooth and homogeneous by construction
                assert le.irregularity <= 0.15 and le.heterogeneity < 0.5
    organs = [le.organ for ct in pool for le in ct.lesions]
    assert organs.count("liver") > organs.count("kidney") > 0
    signs = [le.contrast > 0 for ct in pool for le in ct.lesions]
    assert 0.15 < np.mean(signs) < 0.6  # both hypo- and hyperdense lesions


def test_lesions_lie_inside_their_organ(debug_pool) -> None:
    checked = 0
    for ct, dbg in debug_pool:
        union = np.zeros(ct.mask.shape, dtype=bool)
        for le, region in zip(ct.lesions, dbg.lesion_masks, strict=True):
            host = np.isin(dbg.tissue, HOST_TISSUES[le.organ])
            assert region.any() and not (region & ~host).any()
            assert not (region & union).any()  # lesions do not overlap
            union |= region
            # clipping keeps most of the lesion (>= half of it, here measured against the disc)
            if le.radius >= 3:
                assert region.sum() >= 0.4 * np.pi * le.radius**2
            row, col = (round(c) for c in le.center)
            assert region[row, col]
            checked += 1
        assert np.array_equal(union, ct.mask == LESION)
    assert checked > 20


def test_lesion_contrast_sign_is_visible(debug_pool) -> None:
    checked = 0
    for ct, dbg in debug_pool:
        for le, region in zip(ct.lesions, dbg.lesion_masks, strict=True):
            core = ndimage.binary_erosion(region, iterations=2)
            organ = np.isin(dbg.tissue, HOST_TISSUES[le.organ]) & (ct.mask != LESION)
            organ = ndimage.binary_erosion(organ, iterations=2)
            if le.radius_at_128 < 6 or abs(le.contrast) < 20 or core.sum() < 10 or organ.sum() < 30:
                continue
            diff = float(ct.image[core].mean() - np.median(ct.image[organ]))
            assert np.sign(diff) == np.sign(le.contrast)
            assert 0.3 * abs(le.contrast) < abs(diff) < 2.2 * abs(le.contrast)
            checked += 1
    assert checked >= 5


def test_label_frequencies_follow_the_prior(pool: list[CTSlice]) -> None:
    freq = np.bincount([ct.label for ct in pool], minlength=3) / len(pool)
    assert np.allclose(freq, (0.7, 0.2, 0.1), atol=0.045), freq


def test_custom_prior_and_lesion_ranges_are_respected() -> None:
    config = PhantomConfig(
        lesion_prior=(0.1, 0.3, 0.6), lesion_radius=(4.0, 9.0), lesion_contrast=(30.0, 40.0)
    )
    slices = [generate_slice(1, i, config) for i in range(200)]
    freq = np.bincount([ct.label for ct in slices], minlength=3) / len(slices)
    assert np.allclose(freq, (0.1, 0.3, 0.6), atol=0.08), freq
    for ct in slices:
        assert ct.label == _worst(ct)
        for le in ct.lesions:
            assert 4.0 <= le.radius_at_128 <= 9.0 and 30.0 <= abs(le.contrast) <= 40.0
    never = PhantomConfig(lesion_prior=(1.0, 0.0, 0.0))
    assert all(generate_slice(1, i, never).label == 0 for i in range(30))


# -- sizes and config -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64, 160])
def test_other_image_sizes(size: int) -> None:
    labels = set()
    for index in range(40):
        ct, dbg = generate_slice_debug(0, index, PhantomConfig(image_size=size))
        assert ct.image.shape == ct.mask.shape == (size, size)
        assert ct.mask.max() <= LESION and ct.label == _worst(ct)
        assert (ct.mask == BONE).any()
        assert (ct.label > 0) == (ct.mask == LESION).any()
        for le, region in zip(ct.lesions, dbg.lesion_masks, strict=True):
            assert le.radius == pytest.approx(le.radius_at_128 * size / 128)
            assert not (region & ~np.isin(dbg.tissue, HOST_TISSUES[le.organ])).any()
        labels.add(ct.label)
    assert labels == {0, 1, 2}


def test_geometry_scales_with_image_size() -> None:
    def mean_fraction(size: int, label: int) -> float:
        config = PhantomConfig(image_size=size)
        return float(
            np.mean([(generate_slice(0, i, config).mask == label).mean() for i in range(30)])
        )

    for label in (LIVER, BONE):
        assert mean_fraction(64, label) == pytest.approx(mean_fraction(160, label), rel=0.2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_size": 16}, "image_size"),
        ({"image_size": 64.5}, "image_size"),
        ({"lesion_prior": (0.5, 0.5, 0.5)}, "lesion_prior"),
        ({"lesion_prior": (0.5, 0.5)}, "lesion_prior"),
        ({"lesion_prior": (1.2, -0.1, -0.1)}, "lesion_prior"),
        ({"noise_sigma": (25.0, 10.0)}, "noise_sigma"),
        ({"noise_sigma": (-1.0, 10.0)}, "noise_sigma"),
        ({"lesion_radius": (0.0, 5.0)}, "lesion_radius"),
        ({"lesion_radius": (2.0, 50.0)}, "lesion_radius"),
        ({"lesion_contrast": (-10.0, 80.0)}, "lesion_contrast"),
        ({"lesion_contrast": "wide"}, "lesion_contrast"),
        ({"enhanced_fraction": 1.5}, "enhanced_fraction"),
        ({"blur_sigma": (0.8, 0.5)}, "blur_sigma"),
        ({"noise_correlation": -1.0}, "noise_correlation"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PhantomConfig(**kwargs)


def test_config_accepts_lists_and_serialises() -> None:
    config = PhantomConfig(
        image_size=64,
        lesion_prior=[0.5, 0.25, 0.25],
        noise_sigma=[5, 10],
        lesion_radius=[2, 10],
        lesion_contrast=[20, 30],
    )
    assert config.lesion_prior == (0.5, 0.25, 0.25) and config.noise_sigma == (5.0, 10.0)
    assert isinstance(config.lesion_radius, tuple)
    json.dumps(dataclasses.asdict(config))
    assert hash(config) == hash(PhantomConfig(**dataclasses.asdict(config)))

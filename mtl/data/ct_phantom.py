"""Deterministic synthetic 2D axial CT slices (Hounsfield units) with organ/lesion labels.

Why: the CT task needs thousands of labelled abdominal slices with realistic intensities,
anatomy and lesion appearance, reproducible bit for bit and with no files to download.
Slice `index` of stream `seed` comes from its own RNG, `SeedSequence([seed, index])`, so any
subset can be generated in any order, in parallel, and always gives the same pixels.

Anatomy (rows run anterior -> posterior, image left = patient right). A craniocaudal level
z in [0, 1] (0 = lung bases / upper abdomen, 1 = lower kidneys) decides what is visible:
lungs (z < 0.32, posterior costophrenic recesses with vessel dots), ribs (z < ~0.85, fewer and
more posterior lower down), liver (large right lobe on image left, left lobe across the
midline on upper slices, shrinking to the inferior tip at z = 1), spleen and stomach (upper,
image right), gallbladder (mid), kidneys with perirenal and sinus fat (z > ~0.3), psoas (lower).
Always present: body ellipse with skin, a subcutaneous fat layer of varying thickness, the
muscle wall, visceral fat and bowel, the vertebra (cancellous body, cortical rim, canal,
posterior elements) posterior-central, aorta anterior-left and IVC anterior-right of the spine.
Organ outlines are polar shapes r(θ) = r0·(1 + Σ a_k cos(kθ + φ_k)) with random low-order
harmonics, offsets, sizes and rotations. A slice's contrast phase (non-contrast or
portal-venous) sets the organ intensities; tissues carry mild smooth texture. The noiseless
image gets a partial-volume gaussian blur (sigma 0.5-0.8 px at 128 px), then slightly
correlated gaussian noise with a per-slice sigma (10-25 HU by default).

HU values (source: the design notes, shared/DESIGN.md "Medical segmentation", Hounsfield units:
air -1000, lung -850..-700, fat -120..-90, water 0, soft tissue 20..60, liver 50..70 (enhanced
~100), kidney ~30 (enhanced ~150), bone 300..1900), drawn per slice inside these ranges:
air -1000; lung -840..-760; fat -115..-90; muscle 40..55 (enhanced 48..62); bowel 30..45
(enhanced 50..75); fluid/CSF 0..15; liver 52..66 (enhanced 90..115); kidney 26..36 (enhanced
140..170); spleen 42..52 (enhanced 100..120); aorta 35..48 (enhanced 150..250); IVC 35..45
(enhanced 100..140); cancellous bone 200..350; cortical bone 750..1150.

Lesions (liver mostly, kidney sometimes) are polar shapes clipped to their host organ, with a
signed contrast against the organ (hypo- or hyperdense), a margin `irregularity` (sum of the
relative amplitudes of harmonics 3..6; 0 = perfect ellipse) and an interior `heterogeneity`
(0 = homogeneous; high values add a necrotic core to hypodense lesions or an enhancing rim to
hyperdense ones, plus texture). The malignancy rule (`lesion_malignancy`), in words: a lesion
is malignant when its margin is irregular/lobulated (irregularity > 0.15), or when it is
large (radius >= 10 px at 128x128, i.e. >= ~3 cm across) with a heterogeneous interior
(heterogeneity >= 0.5); otherwise benign. The slice class is drawn from the prior first, then
lesions are drawn so that the rule gives that class: benign slices get 1-3 small-to-medium,
smooth, homogeneous lesions (cyst-like hypodense or hemangioma-like hyperdense); malignant
slices get one lesion the rule calls malignant plus 0-2 benign ones. The label is the worst
lesion, always recomputed with the rule.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

SEG_CLASSES = ("background", "liver", "kidney", "bone", "lesion")
CLS_CLASSES = ("no_lesion", "benign", "malignant")

# The malignancy rule's thresholds (see `lesion_malignancy`).
MALIGNANT_IRREGULARITY = 0.15
MALIGNANT_RADIUS_AT_128 = 10.0
MALIGNANT_HETEROGENEITY = 0.5

# Tissue ids of the pre-lesion tissue map (`PhantomDebug.tissue`).
TISSUES = (
    "air",
    "fat",
    "muscle",
    "visceral_fat",
    "bowel",
    "gas",
    "fluid",
    "liver",
    "liver_vessel",
    "kidney",
    "spleen",
    "aorta",
    "ivc",
    "cancellous",
    "cortical",
    "lung",
    "lung_vessel",
)
(
    AIR,
    FAT,
    MUSCLE,
    VFAT,
    BOWEL,
    GAS,
    FLUID,
    LIVER,
    LIVER_VESSEL,
    KIDNEY,
    SPLEEN,
    AORTA,
    IVC,
    CANCELLOUS,
    CORTICAL,
    LUNG,
    LUNG_VESSEL,
) = range(len(TISSUES))
_SEG_OF_TISSUE = np.zeros(len(TISSUES), dtype=np.uint8)
_SEG_OF_TISSUE[[LIVER, LIVER_VESSEL]] = 1
_SEG_OF_TISSUE[KIDNEY] = 2
_SEG_OF_TISSUE[[CANCELLOUS, CORTICAL]] = 3
LESION_SEG = 4
# Texture amplitude (HU per unit of the smooth texture field) of each tissue.
_TEXTURE_HU = np.zeros(len(TISSUES), dtype=np.float32)
for _tissue, _amp in (
    (FAT, 4),
    (MUSCLE, 5),
    (VFAT, 6),
    (BOWEL, 10),
    (FLUID, 2),
    (LIVER, 5),
    (KIDNEY, 6),
    (SPLEEN, 4),
    (AORTA, 3),
    (IVC, 3),
    (CANCELLOUS, 35),
    (CORTICAL, 70),
    (LUNG, 25),
    (LUNG_VESSEL, 40),
    (LIVER_VESSEL, 5),
):
    _TEXTURE_HU[_tissue] = _amp
del _tissue, _amp


def _pair(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A validated (lo, hi) range with low <= lo <= hi <= high."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"PhantomConfig.{name} must be a pair (lo, hi) of numbers, got {value!r}"
        ) from None
    if not (low <= lo <= hi <= high) or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"PhantomConfig.{name} must satisfy {low} <= lo <= hi <= {high}, got {value!r}"
        )
    return lo, hi


@dataclass(frozen=True)
class PhantomConfig:
    """Generation parameters; a slice is fixed by (seed, index, config).

    Sequences (e.g. lists from Hydra) are converted to float tuples; every field is
    validated so that a bad override fails at construction with the field's name.
    """

    image_size: int = 128
    lesion_prior: tuple[float, float, float] = (0.7, 0.2, 0.1)
    noise_sigma: tuple[float, float] = (10.0, 25.0)  # HU, drawn uniformly per slice
    lesion_radius: tuple[float, float] = (2.0, 20.0)  # px at 128x128, scaled with image_size
    lesion_contrast: tuple[float, float] = (10.0, 80.0)  # |HU| against the host organ
    enhanced_fraction: float = 0.5  # share of portal-venous slices
    blur_sigma: tuple[float, float] = (0.5, 0.8)  # partial-volume blur, px at 128x128
    noise_correlation: float = 0.6  # px at 128x128; gaussian filter of the white noise

    def __post_init__(self) -> None:
        try:
            size = operator.index(self.image_size)
        except TypeError:
            raise ValueError(
                f"PhantomConfig.image_size must be an integer, got {self.image_size!r}"
            ) from None
        if isinstance(self.image_size, bool) or not 32 <= size <= 2048:
            raise ValueError(
                f"PhantomConfig.image_size must be an integer in [32, 2048], "
                f"got {self.image_size!r}"
            )
        object.__setattr__(self, "image_size", int(size))
        try:
            prior = tuple(float(p) for p in self.lesion_prior)
        except (TypeError, ValueError):
            prior = ()
        if (
            len(prior) != 3
            or not all(math.isfinite(p) and p >= 0 for p in prior)
            or abs(sum(prior) - 1.0) > 1e-6
        ):
            raise ValueError(
                "PhantomConfig.lesion_prior must be 3 non-negative probabilities "
                f"(no_lesion, benign, malignant) summing to 1, got {self.lesion_prior!r}"
            )
        object.__setattr__(self, "lesion_prior", prior)
        for name, low, high in (
            ("noise_sigma", 0.0, 1000.0),
            ("lesion_radius", 1.0, 30.0),
            ("lesion_contrast", 0.0, 1000.0),
            ("blur_sigma", 0.0, 5.0),
        ):
            object.__setattr__(self, name, _pair(name, getattr(self, name), low, high))
        for name, low, high in (("enhanced_fraction", 0.0, 1.0), ("noise_correlation", 0.0, 5.0)):
            value = getattr(self, name)
            try:
                ok = not isinstance(value, bool) and low <= float(value) <= high
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"PhantomConfig.{name} must be in [{low}, {high}], got {value!r}")
            object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class Lesion:
    """One lesion as drawn; `malignant` is `lesion_malignancy` of its properties."""

    organ: str  # "liver" | "kidney"
    center: tuple[float, float]  # (row, col) px
    radius: float  # px in this image
    radius_at_128: float  # px at 128x128 scale
    contrast: float  # HU, signed (negative = hypodense)
    irregularity: float  # margin irregularity (0 = perfect ellipse)
    heterogeneity: float  # interior heterogeneity
    malignant: bool


@dataclass(frozen=True)
class CTSlice:
    """A generated slice: HU image, segmentation mask and slice class with its provenance."""

    image: np.ndarray  # (H, W) float32, Hounsfield units (noise included)
    mask: np.ndarray  # (H, W) uint8, SEG_CLASSES ids
    label: int  # CLS_CLASSES id
    level: float  # craniocaudal level z
    enhanced: bool
    noise_sigma: float
    lesions: tuple[Lesion, ...]


@dataclass(frozen=True)
class PhantomDebug:
    """Intermediate maps of one slice, for tests and inspection (not used in training)."""

    tissue: np.ndarray  # (H, W) uint8 TISSUES ids before lesions were painted
    noiseless: np.ndarray  # (H, W) float32 HU after partial-volume blur, before noise
    lesion_masks: tuple[np.ndarray, ...]  # one bool mask per entry of CTSlice.lesions


def lesion_malignancy(radius_at_128: float, irregularity: float, heterogeneity: float) -> bool:
    """The benign/malignant rule from features a radiologist sees.

    Malignant when the margin is irregular/lobulated (irregularity > 0.15), or when the lesion
    is large (radius >= 10 px at 128x128) with a heterogeneous interior (heterogeneity >= 0.5,
    e.g. necrotic core or enhancing rim); otherwise benign.
    """
    return bool(
        irregularity > MALIGNANT_IRREGULARITY
        or (radius_at_128 >= MALIGNANT_RADIUS_AT_128 and heterogeneity >= MALIGNANT_HETEROGENEITY)
    )


# -- geometry helpers -------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _bases(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian interpolation matrices (n x k) for smooth random fields: coarse and fine.

    Cached per image size; a field is B @ G @ B.T with G a small white-noise matrix, which is
    far cheaper than filtering an n x n noise image.
    """
    out = []
    for k in (7, max(8, n // 6)):
        centers = np.linspace(-0.5 * n / k, n - 1 + 0.5 * n / k, k)
        width = 0.7 * (centers[1] - centers[0])
        pos = np.arange(n)[:, None]
        basis = np.exp(-0.5 * ((pos - centers[None, :]) / width) ** 2).astype(np.float32)
        basis.setflags(write=False)
        out.append(basis)
    return out[0], out[1]


# Rows per matrix product in `_smooth_field`: products of at most ~128k multiply-adds stay on
# one BLAS thread. Multi-threaded BLAS on these tiny products was up to 100x slower on a busy
# machine (and the data module already generates slices in parallel threads).
_GEMM_CHUNK = 1 << 17


def _smooth_field(rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """A smooth random field with unit standard deviation."""
    n, k = basis.shape
    left = basis @ rng.standard_normal((k, k), dtype=np.float32)
    field = np.empty((n, n), dtype=np.float32)
    step = max(1, _GEMM_CHUNK // (n * k))
    for r in range(0, n, step):
        np.matmul(left[r : r + step], basis.T, out=field[r : r + step])
    return field / max(float(field.std()), 1e-6)


def _harmonics(rng: np.random.Generator, amps: Sequence[float]) -> np.ndarray:
    """Complex coefficients c_k = a_k·e^{iφ_k}, a_k ~ U(0, amps[k-1]), random phases."""
    amps_arr = np.asarray(amps, dtype=np.float64)
    mags = rng.uniform(0.0, 1.0, len(amps_arr)) * amps_arr
    return mags * np.exp(1j * rng.uniform(0.0, 2 * np.pi, len(amps_arr)))


def _radius_poly(coeffs: np.ndarray, zu: np.ndarray) -> np.ndarray:
    """1 + Re(Σ c_k z^k) with z = e^{iθ}: the relative boundary radius r(θ)/r0 (Horner)."""
    acc = np.complex64(coeffs[-1]) * zu
    for c in coeffs[-2::-1]:
        acc = (acc + np.complex64(c)) * zu
    return 1.0 + acc.real


@dataclass
class _Shape:
    """A polar shape evaluated on its bounding box: `t` < 1 inside (t = rho / r(θ))."""

    rows: slice
    cols: slice
    t: np.ndarray
    rho: np.ndarray
    zu: np.ndarray | None

    @property
    def inside(self) -> np.ndarray:
        return self.t < 1.0


def _shape(
    n: int,
    cy: float,
    cx: float,
    ry: float,
    rx: float,
    angle: float = 0.0,
    coeffs: np.ndarray | None = None,
    keep_angle: bool = False,
) -> _Shape | None:
    """Evaluate a rotated ellipse with harmonic boundary on its bounding box (None if empty).

    rx/ry are the semi-axes along the rotated x/y axes; angle in radians (image coordinates,
    clockwise on screen). Only the bounding box is computed, which keeps small organs cheap.
    """
    if rx <= 0 or ry <= 0:
        return None
    bound = 1.0 + (float(np.abs(coeffs).sum()) if coeffs is not None else 0.0)
    ext = max(rx, ry) * bound + 1.5
    r0, r1 = max(int(cy - ext), 0), min(int(cy + ext) + 2, n)
    c0, c1 = max(int(cx - ext), 0), min(int(cx + ext) + 2, n)
    if r0 >= r1 or c0 >= c1:
        return None
    dy = (np.arange(r0, r1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(c0, c1, dtype=np.float32) - np.float32(cx))[None, :]
    ca, sa = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u = (dx * ca + dy * sa) * np.float32(1.0 / rx)
    v = (dy * ca - dx * sa) * np.float32(1.0 / ry)
    rho = np.hypot(u, v)
    zu = None
    if coeffs is not None or keep_angle:
        zu = (u + 1j * v) / np.maximum(rho, np.float32(1e-6))
    t = rho / _radius_poly(coeffs, zu) if coeffs is not None else rho
    return _Shape(slice(r0, r1), slice(c0, c1), t, rho, zu)


def _paint(
    tissue: np.ndarray,
    shape: _Shape | None,
    value: int,
    where: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> None:
    """Set `tissue` to `value` inside `shape` (optionally only where `where` is true)."""
    if shape is None:
        return
    sel = shape.inside if inside is None else inside
    if where is not None:
        sel = sel & where[shape.rows, shape.cols]
    tissue[shape.rows, shape.cols][sel] = value


# HU ranges of the tissues that change with the contrast phase: (non-contrast, portal-venous).
# Drawn in this order, one value per tissue per slice.
PHASE_HU: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    MUSCLE: ((40, 55), (48, 62)),
    BOWEL: ((30, 45), (50, 75)),
    LIVER: ((52, 66), (90, 115)),
    KIDNEY: ((26, 36), (140, 170)),
    SPLEEN: ((42, 52), (100, 120)),
    AORTA: ((35, 48), (150, 250)),
    IVC: ((35, 45), (100, 140)),
}


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# -- anatomy ----------------------------------------------------------------------------------
def _tissue_hu(rng: np.random.Generator, enhanced: bool) -> np.ndarray:
    """Per-slice base HU of every tissue (DESIGN.md ranges; contrast phase dependent)."""
    hu = np.zeros(len(TISSUES), dtype=np.float32)
    fat = _u(rng, -115, -90)
    hu[AIR] = hu[GAS] = -1000.0
    hu[FAT] = fat
    hu[VFAT] = fat + _u(rng, 0, 10)
    hu[FLUID] = _u(rng, 0, 15)
    hu[LUNG] = _u(rng, -840, -760)
    hu[CANCELLOUS] = _u(rng, 200, 350)
    hu[CORTICAL] = _u(rng, 750, 1150)
    for tissue, (plain, contrast) in PHASE_HU.items():
        hu[tissue] = _u(rng, *(contrast if enhanced else plain))
    if enhanced:
        hu[LIVER_VESSEL] = hu[LIVER] + _u(rng, 25, 60)
    else:
        hu[LIVER_VESSEL] = hu[LIVER] - _u(rng, 8, 18)
    hu[LUNG_VESSEL] = _u(rng, -150, 0)
    return hu


def _ramp(z: float, z0: float, z1: float) -> float:
    """0 at z0, 1 at z1, clipped (z1 < z0 gives a falling ramp)."""
    return float(np.clip((z - z0) / (z1 - z0), 0.0, 1.0))


def _liver_scale(z: float) -> float:
    """Relative liver size by level: dome at z=0, largest at 0.15-0.45, tip at z=1."""
    if z < 0.15:
        return 0.75 + 0.25 * z / 0.15
    if z <= 0.45:
        return 1.0
    return 1.0 - 0.7 * (z - 0.45) / 0.55


def _render_anatomy(rng: np.random.Generator, n: int, z: float) -> np.ndarray:
    """Paint the tissue map (uint8 TISSUES ids) of one slice at level z, back to front."""
    s = n / 128.0  # geometry is specified at 128 px and scales linearly
    tissue = np.zeros((n, n), dtype=np.uint8)

    # Body outline, skin, subcutaneous fat (varying thickness), muscle wall, cavity.
    cy, cx = n / 2 + _u(rng, -0.03, 0.01) * n, n / 2 + _u(rng, -0.02, 0.02) * n
    bry, brx = _u(rng, 0.27, 0.33) * n, _u(rng, 0.38, 0.46) * n
    body_c = _harmonics(rng, (0.02, 0.04, 0.02, 0.05))
    body = _shape(n, cy, cx, bry, brx, _u(rng, -0.05, 0.05), body_c)
    assert body is not None and body.zu is not None
    r_body = _radius_poly(body_c, body.zu)
    mean_r = math.sqrt(brx * bry)
    fat_f = _u(rng, 0.02, 0.10) * n / mean_r * _radius_poly(_harmonics(rng, (0.4, 0.3)), body.zu)
    r_fat = r_body * (1.0 - fat_f)
    r_cav = r_fat - _u(rng, 0.025, 0.04) * n / mean_r
    in_body = body.rho < r_body
    tissue[body.rows, body.cols][in_body] = FAT
    tissue[body.rows, body.cols][in_body & (body.rho >= r_body - 1.2 * s / mean_r)] = MUSCLE
    in_fat = np.zeros((n, n), dtype=bool)
    in_fat[body.rows, body.cols] = body.rho < r_fat
    tissue[in_fat] = MUSCLE
    cavity = np.zeros((n, n), dtype=bool)
    cavity[body.rows, body.cols] = body.rho < r_cav

    # Spine geometry (drawn first: other organs are placed relative to it).
    vcx = cx + _u(rng, -0.01, 0.01) * n
    vcy = cy + bry * _u(rng, 0.36, 0.46)
    vry, vrx = _u(rng, 0.038, 0.048) * n, _u(rng, 0.045, 0.055) * n
    canal_r = _u(rng, 0.019, 0.025) * n
    canal_y = vcy + vry + canal_r + 0.6 * s

    # Retroperitoneal/posterior block around the spine stays muscle; the rest of the cavity
    # is a mix of bowel and visceral fat (thresholded smooth field).
    block = _shape(n, canal_y, vcx, _u(rng, 0.10, 0.12) * n, _u(rng, 0.14, 0.17) * n)
    assert block is not None
    cavity[block.rows, block.cols] &= ~block.inside
    coarse, fine = _bases(n)
    # Loops: bowel wall where the field is below the fat threshold, fluid lumen deeper down.
    fat_field = _smooth_field(rng, coarse) + 0.7 * _smooth_field(rng, fine)
    visceral = np.where(fat_field > _u(rng, -0.8, 0.2), VFAT, BOWEL).astype(np.uint8)
    lumen = (_smooth_field(rng, fine) < _u(rng, -0.6, 0.0)) & (visceral == BOWEL)
    visceral[lumen] = FLUID
    tissue[cavity] = visceral[cavity]

    # Stomach (upper, image right) with an air-fluid level, bowel gas bubbles.
    s_st = _ramp(z, 0.6, 0.2)
    if s_st > 0:
        st = _shape(
            n,
            cy - _u(rng, 0.04, 0.09) * n,
            cx + _u(rng, 0.12, 0.18) * n,
            _u(rng, 0.05, 0.07) * n * s_st,
            _u(rng, 0.07, 0.09) * n * s_st,
            _u(rng, -0.5, 0.5),
            _harmonics(rng, (0.05, 0.08, 0.04)),
        )
        if st is not None:
            _paint(tissue, st, BOWEL, cavity)
            lumen = st.t < 0.8
            _paint(tissue, st, FLUID, cavity, lumen)
            rows = np.arange(st.rows.start, st.rows.stop)[:, None]
            gas_row = st.rows.start + (st.rows.stop - st.rows.start) * _u(rng, 0.2, 0.55)
            _paint(tissue, st, GAS, cavity, lumen & (rows < gas_row))
    for _ in range(int(rng.integers(0, 4))):
        gy, gx = cy + _u(rng, -0.2, 0.15) * n, cx + _u(rng, -0.25, 0.3) * n
        gr = _u(rng, 0.01, 0.03) * n
        gas = _shape(n, gy, gx, gr * _u(rng, 0.7, 1.0), gr)
        _paint(tissue, gas, GAS, cavity & (tissue == BOWEL))

    # Liver: right lobe on image left, left lobe across the midline on upper slices.
    s_l = _liver_scale(z)
    lcy = cy + (_u(rng, -0.06, 0.02) + 0.05 * z) * n
    lcx = cx - (_u(rng, 0.14, 0.19) + 0.04 * z) * n
    liver = _shape(
        n,
        lcy,
        lcx,
        _u(rng, 0.17, 0.21) * n * s_l,
        _u(rng, 0.18, 0.22) * n * s_l,
        _u(rng, -0.35, 0.35),
        _harmonics(rng, (0.1, 0.1, 0.06)),
    )
    _paint(tissue, liver, LIVER, cavity)
    s_ll = _ramp(z, 0.55, 0.1)
    if s_ll > 0:
        left = _shape(
            n,
            cy - _u(rng, 0.09, 0.15) * n,
            cx + _u(rng, -0.04, 0.06) * n,
            _u(rng, 0.05, 0.07) * n * s_ll,
            _u(rng, 0.11, 0.15) * n * s_ll,
            _u(rng, -0.3, 0.3),
            _harmonics(rng, (0.08, 0.1)),
        )
        _paint(tissue, left, LIVER, cavity)
    if liver is not None:  # hepatic vessels: small ellipses inside the liver
        for _ in range(int(rng.integers(3, 8))):
            a = _u(rng, 0, 2 * np.pi)
            d = _u(rng, 0.1, 0.7)
            vy = lcy + d * math.sin(a) * 0.18 * n * s_l
            vx = lcx + d * math.cos(a) * 0.2 * n * s_l
            vr = _u(rng, 0.6, 1.6) * s
            ves = _shape(n, vy, vx, vr, vr * _u(rng, 1.0, 2.5), _u(rng, 0, np.pi))
            _paint(tissue, ves, LIVER_VESSEL, tissue == LIVER)

    # Spleen (upper, posterolateral image right).
    s_sp = _ramp(z, 0.55, 0.25)
    if s_sp > 0:
        sp = _shape(
            n,
            cy + _u(rng, 0.06, 0.12) * n,
            cx + _u(rng, 0.24, 0.28) * n,
            _u(rng, 0.09, 0.12) * n * s_sp,
            _u(rng, 0.045, 0.06) * n * s_sp,
            _u(rng, -0.8, -0.3),
            _harmonics(rng, (0.05, 0.1, 0.05)),
        )
        _paint(tissue, sp, SPLEEN, cavity)

    # Lungs (lung bases): posterior costophrenic recesses with vessel dots.
    s_lu = _ramp(z, 0.32, 0.0) ** 0.6
    if s_lu > 0:
        lung_region = np.zeros((n, n), dtype=bool)
        lung_region[body.rows, body.cols] = body.rho < r_cav
        for side in (-1, 1):
            lu = _shape(
                n,
                cy + _u(rng, 0.08, 0.16) * n,
                cx + side * _u(rng, 0.22, 0.27) * n,
                _u(rng, 0.13, 0.17) * n * s_lu,
                _u(rng, 0.09, 0.12) * n * s_lu,
                side * _u(rng, 0.0, 0.4),
                _harmonics(rng, (0.08, 0.08, 0.04)),
            )
            _paint(tissue, lu, LUNG, lung_region)
        lung = tissue == LUNG
        pts = np.flatnonzero(lung)
        if pts.size:
            for p in rng.choice(pts, size=min(pts.size, int(rng.integers(4, 12))), replace=False):
                vr = _u(rng, 0.5, 1.1) * s
                dot = _shape(n, p // n, p % n, vr, vr * _u(rng, 1.0, 1.8), _u(rng, 0, np.pi))
                _paint(tissue, dot, LUNG_VESSEL, lung)

    # Paraspinal muscles, psoas (lower slices).
    for side in (-1, 1):
        ps = _shape(
            n,
            canal_y + _u(rng, 0.0, 0.03) * n,
            vcx + side * _u(rng, 0.06, 0.08) * n,
            _u(rng, 0.045, 0.055) * n,
            _u(rng, 0.055, 0.065) * n,
            side * 0.3,
        )
        _paint(tissue, ps, MUSCLE, in_fat)
    s_ps = _ramp(z, 0.45, 0.9)
    if s_ps > 0:
        for side in (-1, 1):
            pr = _u(rng, 0.03, 0.04) * n * s_ps
            pso = _shape(
                n,
                vcy - _u(rng, 0.0, 0.02) * n,
                vcx + side * (vrx + 0.9 * pr),
                pr * 1.15,
                pr,
                side * 0.4,
            )
            _paint(tissue, pso, MUSCLE, in_fat)

    # Kidneys (bean: ellipse minus a medial hilum notch filled with sinus fat).
    for side in (-1, 1):  # -1: image left = patient right kidney, a little lower
        s_k = _ramp(z, 0.3 + (0.06 if side < 0 else 0.0), 0.5 + (0.06 if side < 0 else 0.0))
        if s_k <= 0:
            continue
        ky = vcy + _u(rng, -0.03, 0.02) * n
        kx = vcx + side * _u(rng, 0.16, 0.2) * n
        ka, kb = _u(rng, 0.065, 0.08) * n * s_k, _u(rng, 0.042, 0.052) * n * s_k
        kang = side * _u(rng, 0.4, 0.9)  # hilum faces anteromedially
        # perirenal fat: larger, posterolateral and irregular
        fat_pad = _shape(
            n,
            ky + _u(rng, 0.0, 0.25) * kb,
            kx + side * _u(rng, 0.0, 0.3) * kb,
            ka * _u(rng, 1.2, 1.5) + s,
            kb * _u(rng, 1.3, 1.8) + s,
            kang + _u(rng, -0.3, 0.3),
            _harmonics(rng, (0.1, 0.12, 0.08)),
        )
        _paint(tissue, fat_pad, VFAT, in_fat)
        kid = _shape(n, ky, kx, ka, kb, kang, _harmonics(rng, (0.03, 0.04)))
        _paint(tissue, kid, KIDNEY, in_fat)
        # hilum: on the medial side, slightly anterior
        hx = kx - side * 0.85 * kb * math.cos(kang)
        hy = ky - side * 0.85 * kb * math.sin(kang)
        hilum = _shape(n, hy, hx, 0.4 * ka, 0.45 * kb, kang)
        _paint(tissue, hilum, VFAT, tissue == KIDNEY)

    # Aorta (anterior-left of the spine = image right), IVC (anterior-right = image left).
    ar = _u(rng, 0.022, 0.03) * n
    ao = _shape(n, vcy - vry - ar - _u(rng, 0.3, 1.5) * s, vcx + _u(rng, 0.02, 0.05) * n, ar, ar)
    _paint(tissue, ao, AORTA)
    ivc = _shape(
        n,
        vcy - vry - _u(rng, 0.03, 0.05) * n,
        vcx - _u(rng, 0.05, 0.08) * n,
        _u(rng, 0.015, 0.022) * n,
        _u(rng, 0.025, 0.035) * n,
        _u(rng, -0.4, 0.4),
    )
    _paint(tissue, ivc, IVC)

    # Vertebra: cancellous body with cortical rim, canal (CSF), neural arch, spinous and
    # transverse processes.
    vb = _shape(n, vcy, vcx, vry, vrx, _u(rng, -0.08, 0.08), _harmonics(rng, (0.02, 0.06, 0.03)))
    _paint(tissue, vb, CORTICAL)
    assert vb is not None
    _paint(tissue, vb, CANCELLOUS, inside=vb.t < 1.0 - 1.3 * s / math.sqrt(vrx * vry))
    arch = _shape(n, canal_y, vcx, canal_r + 1.8 * s, canal_r + 1.8 * s)
    assert arch is not None
    rows = np.arange(arch.rows.start, arch.rows.stop, dtype=np.float32)[:, None]
    _paint(tissue, arch, CORTICAL, inside=arch.inside & (rows > canal_y - 0.6 * canal_r))
    sp_len = _u(rng, 0.05, 0.07) * n
    spin = _shape(
        n, canal_y + canal_r + 0.5 * sp_len, vcx, 0.5 * sp_len, 1.4 * s, _u(rng, -0.15, 0.15)
    )
    _paint(tissue, spin, CORTICAL)
    for side in (-1, 1):
        tp_len = _u(rng, 0.05, 0.08) * n
        tp = _shape(
            n,
            canal_y - 0.2 * canal_r + 0.2 * tp_len,
            vcx + side * (canal_r + 0.5 * tp_len),
            1.3 * s,
            0.5 * tp_len,
            side * _u(rng, 0.2, 0.5),
        )
        _paint(tissue, tp, CORTICAL)
    canal = _shape(n, canal_y, vcx, canal_r, canal_r * _u(rng, 1.0, 1.2))
    _paint(tissue, canal, FLUID)

    # Ribs: small cortical rings just inside the fat layer, more and further round on upper
    # slices, only posterolateral on lower ones.
    n_ribs = round(_ramp(z, 0.85, 0.3) * 5 + _u(rng, -0.5, 0.5))
    if n_ribs > 0:
        spread = 0.35 + 0.9 * _ramp(z, 0.7, 0.1)  # angular reach from the posterior side
        rot = _u(rng, -0.05, 0.05)
        for side in (-1, 1):
            for j in range(n_ribs):
                # polar angle from the posterior direction (pi/2 in image coords: +row)
                off = 0.55 + (j + _u(rng, -0.3, 0.3)) * spread / max(n_ribs, 1) * 1.6
                theta = np.pi / 2 - side * off + rot  # side -1: image left
                e = np.complex64(np.exp(1j * theta))
                rb = float(_radius_poly(body_c, np.asarray([e]))[0])
                depth = _u(rng, 0.9, 1.1) * (float(np.mean(fat_f)) * rb) + 2.5 * s / mean_r
                rr = rb - depth
                ry_, rx_ = rr * bry * math.sin(theta), rr * brx * math.cos(theta)
                rib = _shape(
                    n, cy + ry_, cx + rx_, 1.2 * s, 2.4 * s * _u(rng, 0.8, 1.3), theta + np.pi / 2
                )
                _paint(tissue, rib, CORTICAL, in_fat)
                if rib is not None and s >= 0.9:
                    _paint(tissue, rib, CANCELLOUS, in_fat, rib.t < 0.45)

    # Gallbladder (mid levels), over the liver's medial-inferior surface.
    if 0.3 < z < 0.75 and rng.random() < 0.5:
        gb = _shape(
            n,
            cy + _u(rng, -0.06, 0.0) * n,
            cx - _u(rng, 0.05, 0.09) * n,
            _u(rng, 0.02, 0.035) * n,
            _u(rng, 0.03, 0.045) * n,
            _u(rng, -0.6, 0.6),
        )
        _paint(tissue, gb, FLUID, cavity)
    return tissue


# -- lesions ----------------------------------------------------------------------------------
_HOST_TISSUES = {"liver": (LIVER, LIVER_VESSEL), "kidney": (KIDNEY,)}
_MIN_HOST_AREA_128 = {"liver": 400.0, "kidney": 60.0}  # px at 128x128 to host a lesion
_KIDNEY_SHARE = 0.15  # share of lesions put in a kidney when both organs can host one


def _lesion_kinds(rng: np.random.Generator, label: int) -> list[bool]:
    """Malignant flags of the lesions to draw for a slice class (the malignant one first)."""
    if label == 0:
        return []
    extra = int(rng.choice(3, p=(0.5, 0.3, 0.2)))
    return [False] * (extra + 1) if label == 1 else [True] + [False] * extra


def _lesion_props(
    rng: np.random.Generator, malignant: bool, cap_128: float, cfg: PhantomConfig
) -> tuple[float, float, float, float, float]:
    """(radius_at_128, irregularity, heterogeneity, aspect, contrast) the rule classifies as
    `malignant`; the radius is at most `cap_128` (what the host organ can hold) but never
    below the configured minimum."""
    lo, hi = cfg.lesion_radius
    cap = max(lo, min(hi, cap_128))
    if malignant:  # medium-to-large, lobulated or large and heterogeneous
        radius = _u(rng, min(lo + 0.3 * (hi - lo), cap), cap)
        if radius >= MALIGNANT_RADIUS_AT_128 and rng.random() < 0.35:
            irregularity, heterogeneity = _u(rng, 0.02, 0.1), _u(rng, 0.55, 1.0)
        else:
            irregularity, heterogeneity = _u(rng, 0.2, 0.45), _u(rng, 0.3, 1.0)
        aspect, hypo = _u(rng, 1.0, 1.4), rng.random() < 0.7
    else:  # small-to-medium, smooth round/oval, homogeneous
        radius = _u(rng, lo, min(cap, lo + 0.5 * (hi - lo)))
        irregularity, heterogeneity = _u(rng, 0.0, 0.08), _u(rng, 0.0, 0.3)
        aspect, hypo = _u(rng, 1.0, 1.5), rng.random() < 0.65
    contrast = (-1.0 if hypo else 1.0) * _u(rng, *cfg.lesion_contrast)
    return radius, irregularity, heterogeneity, aspect, contrast


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    n0, n1 = mask.shape
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, n0)),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, n1)),
    )


def _place_lesion(
    rng: np.random.Generator,
    malignant: bool,
    host: str,
    avail: np.ndarray,
    cfg: PhantomConfig,
) -> tuple[Lesion, _Shape, np.ndarray] | None:
    """Draw one lesion that fits in `avail` (its host organ minus earlier lesions).

    The radius is capped by the host's largest inscribed circle; the centre is drawn among
    pixels deep enough for the radius; the lesion is clipped to the host and redrawn when
    less than half of it would survive clipping. Returns (lesion, shape, clipped region).
    """
    n = cfg.image_size
    s = n / 128.0
    rows, cols = _bbox(avail, 1)
    depth = ndimage.distance_transform_edt(avail[rows, cols])
    radius_128, irregularity, heterogeneity, aspect, contrast = _lesion_props(
        rng, malignant, float(depth.max()) / 0.8 / s, cfg
    )
    radius = radius_128 * s
    deep = np.flatnonzero(depth >= 0.8 * radius)
    if deep.size == 0:
        deep = np.flatnonzero(depth >= depth.max())
    w = depth.shape[1]
    amps = rng.dirichlet(np.ones(4)) * irregularity
    coeffs = np.zeros(6, dtype=np.complex128)
    coeffs[2:] = amps * np.exp(1j * rng.uniform(0.0, 2 * np.pi, 4))
    ry, rx, angle = radius * math.sqrt(aspect), radius / math.sqrt(aspect), _u(rng, 0, np.pi)
    best: tuple[float, tuple[float, float], _Shape, np.ndarray] | None = None
    for _ in range(6):
        p = int(rng.choice(deep))
        center = (float(rows.start + p // w), float(cols.start + p % w))
        shape = _shape(n, center[0], center[1], ry, rx, angle, coeffs)
        if shape is None:
            continue
        inside = shape.inside
        region = inside & avail[shape.rows, shape.cols]
        frac = float(region.sum()) / max(float(inside.sum()), 1.0)
        if region.any() and (best is None or frac > best[0]):
            best = (frac, center, shape, region)
        if frac >= 0.5:
            break
    if best is None:
        return None
    _, center, shape, region = best
    lesion = Lesion(
        organ=host,
        center=center,
        radius=radius,
        radius_at_128=radius_128,
        contrast=contrast,
        irregularity=irregularity,
        heterogeneity=heterogeneity,
        malignant=lesion_malignancy(radius_128, irregularity, heterogeneity),
    )
    return lesion, shape, region


def _lesion_delta(lesion: Lesion, shape: _Shape, texture: np.ndarray) -> np.ndarray:
    """HU offset of a lesion against its organ on the shape's bounding box.

    Homogeneous lesions are flat; heterogeneous ones get a necrotic core (hypodense) or an
    enhancing rim (hyperdense) plus texture. The factor stays positive, so every pixel keeps
    the sign of `contrast`.
    """
    tn = np.minimum(shape.t, 1.0) ** 2
    h = lesion.heterogeneity
    if lesion.malignant:
        pattern = 0.8 - 1.6 * tn if lesion.contrast < 0 else -0.6 + 1.4 * tn
    else:
        pattern = np.zeros_like(tn)
    factor = 1.0 + h * pattern + 0.4 * h * texture[shape.rows, shape.cols]
    return np.float32(lesion.contrast) * np.clip(factor, 0.15, 2.0)


# -- generation -------------------------------------------------------------------------------
def _generate(
    seed: int, index: int, config: PhantomConfig, debug: bool
) -> tuple[CTSlice, PhantomDebug | None]:
    n = config.image_size
    s = n / 128.0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    # Class first, from the prior, so later choices never change the label frequencies.
    label = int(rng.choice(3, p=config.lesion_prior))
    level = float(rng.random())
    enhanced = bool(rng.random() < config.enhanced_fraction)
    noise_sigma = _u(rng, *config.noise_sigma)
    blur = _u(rng, *config.blur_sigma) * s
    hu = _tissue_hu(rng, enhanced)
    kinds = _lesion_kinds(rng, label)

    for _ in range(8):
        tissue = _render_anatomy(rng, n, level)
        areas = {
            host: float(np.isin(tissue, ids).sum()) / (s * s) for host, ids in _HOST_TISSUES.items()
        }
        if not kinds or any(areas[h] >= _MIN_HOST_AREA_128[h] for h in areas):
            break
        level = _u(rng, 0.1, 0.5)  # little liver and no kidney: a level with a large liver

    fine = _bases(n)[1]
    texture = _smooth_field(rng, fine)
    image = hu[tissue] + _TEXTURE_HU[tissue] * texture
    mask = _SEG_OF_TISSUE[tissue]

    lesions: list[Lesion] = []
    lesion_masks: list[np.ndarray] = []
    if kinds:
        lesion_texture = _smooth_field(rng, fine)
        hosts = {h: np.isin(tissue, ids) for h, ids in _HOST_TISSUES.items()}
        taken = np.zeros((n, n), dtype=bool)
        for malignant in kinds:
            usable = [
                h
                for h in ("liver", "kidney")
                if float((hosts[h] & ~taken).sum()) / (s * s) >= _MIN_HOST_AREA_128[h]
            ]
            if len(usable) == 2:
                order = ["kidney", "liver"] if rng.random() < _KIDNEY_SHARE else usable
            else:
                order = usable + [h for h in ("liver", "kidney") if h not in usable]
            placed = None
            for host in order:
                avail = hosts[host] & ~taken
                if avail.any():
                    placed = _place_lesion(rng, malignant, host, avail, config)
                if placed is not None:
                    break
            if placed is None:
                continue
            lesion, shape, region = placed
            organ = hu[_HOST_TISSUES[lesion.organ][0]]
            values = (
                organ
                + _TEXTURE_HU[_HOST_TISSUES[lesion.organ][0]] * texture[shape.rows, shape.cols]
                + _lesion_delta(lesion, shape, lesion_texture)
            )
            image[shape.rows, shape.cols][region] = values[region]
            mask[shape.rows, shape.cols][region] = LESION_SEG
            taken[shape.rows, shape.cols] |= region
            lesions.append(lesion)
            if debug:
                lm = np.zeros((n, n), dtype=bool)
                lm[shape.rows, shape.cols] = region
                lesion_masks.append(lm)
    label = max((2 if les.malignant else 1 for les in lesions), default=0)

    if blur > 0:  # partial-volume effect of the noiseless image
        image = ndimage.gaussian_filter(image, blur, mode="nearest", truncate=3.0)
    noiseless = image.copy() if debug else None
    if noise_sigma > 0:
        noise = rng.standard_normal((n, n), dtype=np.float32)
        corr = config.noise_correlation * s
        if corr > 0:
            noise = ndimage.gaussian_filter(noise, corr, mode="wrap", truncate=3.0)
        noise *= np.float32(noise_sigma / max(float(noise.std()), 1e-6))
        image += noise
    ct = CTSlice(
        image=image.astype(np.float32, copy=False),
        mask=mask,
        label=label,
        level=level,
        enhanced=enhanced,
        noise_sigma=noise_sigma,
        lesions=tuple(lesions),
    )
    if not debug:
        return ct, None
    assert noiseless is not None
    return ct, PhantomDebug(tissue=tissue, noiseless=noiseless, lesion_masks=tuple(lesion_masks))


def generate_slice(seed: int, index: int, config: PhantomConfig = PhantomConfig()) -> CTSlice:
    """Slice `index` of stream `seed`: bit-identical for the same (seed, index, config).

    seed and index must be non-negative integers (they seed `np.random.SeedSequence`).
    """
    return _generate(seed, index, config, debug=False)[0]


def generate_slice_debug(
    seed: int, index: int, config: PhantomConfig = PhantomConfig()
) -> tuple[CTSlice, PhantomDebug]:
    """`generate_slice` plus its tissue map, noiseless image and per-lesion masks."""
    ct, dbg = _generate(seed, index, config, debug=True)
    assert dbg is not None
    return ct, dbg

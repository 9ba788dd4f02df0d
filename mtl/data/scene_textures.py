"""Procedural surface textures for the synthetic scenes: albedo from surface coordinates.

Why procedural: tiles, wood planks, wallpaper stripes and plaster noise give a network the
texture cues of real rooms (and depth cues through their perspective foreshortening) with no
image files. Every pattern is a closed-form function of (u, v) in metres plus one small random
lattice per scene, so it is vectorised over hit points and deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PATTERNS = ("plain", "checker", "tiles", "planks", "stripes", "noise")

LATTICE_SIZE = 64  # cells of the per-scene noise lattice (a power of two, for wrapping)
FINE_NOISE_PER_M = 24.0  # lattice cells per metre of the fine albedo grain
GROUT_M = 0.012  # width of tile grout and plank gaps
PLANK_LENGTH_M = 1.2  # planks are this long; rows are offset by a random fraction of it
GRAIN_STRETCH = 12.0  # wood grain: features this many times longer along the plank


@dataclass(frozen=True)
class Material:
    """A surface's appearance. Colours are linear RGB albedo in [0, 1]."""

    color: tuple[float, float, float]
    color2: tuple[float, float, float]  # the pattern's second colour (grout, dark wood, ...)
    pattern: str = "plain"
    scale: float = 0.5  # period of the pattern in metres (tile, plank width, stripe pair)
    variation: float = 0.1  # relative amplitude of the fine albedo grain
    specular: float = 0.0  # Blinn-Phong weight (0 = matte)
    shininess: float = 32.0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"Material.pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(
                f"Material.scale must be a positive length in metres, got {self.scale}"
            )


class NoiseLattice:
    """Random values on a wrapping integer lattice: per-cell tints and smooth value noise."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.table = rng.random((LATTICE_SIZE, LATTICE_SIZE), dtype=np.float32)

    def cell(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """A random value in [0, 1) per integer cell (i, j)."""
        mask = LATTICE_SIZE - 1
        return self.table[i.astype(np.int64) & mask, j.astype(np.int64) & mask]

    def value(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Smooth value noise in [0, 1], one lattice cell per unit of (u, v)."""
        fu, fv = np.floor(u), np.floor(v)
        su, sv = u - fu, v - fv
        su = su * su * (3 - 2 * su)
        sv = sv * sv * (3 - 2 * sv)
        a, b = self.cell(fu, fv), self.cell(fu + 1, fv)
        c, d = self.cell(fu, fv + 1), self.cell(fu + 1, fv + 1)
        top = a + (b - a) * su
        return top + (c + (d - c) * su - top) * sv

    def fbm(self, u: np.ndarray, v: np.ndarray, octaves: int = 3) -> np.ndarray:
        """Fractal noise in [0, 1]: octaves of value noise at doubling frequency."""
        total = np.zeros_like(u)
        weight, norm = 1.0, 0.0
        for k in range(octaves):
            f = float(2**k)
            total += weight * self.value(u * f + 17.0 * k, v * f - 31.0 * k)
            norm += weight
            weight *= 0.5
        return total / norm


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _mix_factor(m: Material, u: np.ndarray, v: np.ndarray, noise: NoiseLattice) -> np.ndarray:
    """0 where the surface shows `color`, 1 where it shows `color2` (blends in between)."""
    s = np.float32(m.scale)
    if m.pattern == "plain":
        return np.zeros_like(u)
    if m.pattern == "checker":
        return ((np.floor(u / s) + np.floor(v / s)) % 2).astype(np.float32)
    if m.pattern == "stripes":
        return (0.5 + 0.5 * np.tanh(6.0 * np.sin(2 * np.pi * u / s))).astype(np.float32)
    if m.pattern == "noise":
        return noise.fbm(u / s, v / s)
    if m.pattern == "tiles":
        iu, iv = np.floor(u / s), np.floor(v / s)
        grout = (_frac(u / s) * s < GROUT_M) | (_frac(v / s) * s < GROUT_M)
        tint = 0.25 * noise.cell(iu, iv)  # tiles differ slightly in shade
        return np.where(grout, np.float32(1), tint)
    # planks: boards of width `scale` along v, staggered rows, streaky grain, dark gaps
    row = np.floor(u / s)
    along = v / PLANK_LENGTH_M + noise.cell(row, row * 7 + 3)
    board = np.floor(along)
    grain = noise.fbm(u * (GRAIN_STRETCH / s), along * 2.0 + board * 5.0, octaves=2)
    streak = 0.5 + 0.5 * np.sin(2 * np.pi * (u / s) * 3 + 6.0 * grain)
    tint = noise.cell(row + 11, board)
    factor = 0.55 * streak + 0.45 * tint
    gap = (_frac(u / s) * s < GROUT_M * 0.5) | (_frac(along) * PLANK_LENGTH_M < GROUT_M * 0.5)
    return np.where(gap, np.float32(1.4), factor)


def albedo(m: Material, uv: np.ndarray, noise: NoiseLattice) -> np.ndarray:
    """Linear RGB albedo (3, M) of material `m` at surface coordinates uv (2, M) in metres."""
    u, v = uv[0], uv[1]
    mix = _mix_factor(m, u, v, noise)
    c1 = np.asarray(m.color, np.float32)[:, None]
    c2 = np.asarray(m.color2, np.float32)[:, None]
    out = c1 + (c2 - c1) * mix
    if m.variation > 0:
        grain = noise.value(u * FINE_NOISE_PER_M + 101.0, v * FINE_NOISE_PER_M - 53.0)
        out = out * (1.0 + np.float32(m.variation) * (2.0 * grain - 1.0))
    return np.clip(out, 0.0, 1.0)

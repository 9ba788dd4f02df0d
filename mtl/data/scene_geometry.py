"""Analytic ray-primitive intersections for the synthetic scenes, vectorised over rays.

Why analytic: the closed-form hit that shades a pixel also gives its exact label, depth and
normal, so image and targets agree to the pixel. World frame: x right, y up, z into the room;
every solid stands upright (yaw about y only) with its base at height `y0`.

Rays are struct-of-arrays: origins and directions are (3, N) float32 (origins may be (3, 1)
when shared). Directions need not be unit length: a hit at parameter t is the point o + t·d,
so primary rays with camera-z = 1 give the z-depth directly as t.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

MISS = np.float32(np.inf)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _nearest_root(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, t_min: float
) -> tuple[np.ndarray, np.ndarray]:
    """Both roots of a·t² + 2b·t + c = 0 (inf where none), nearer first."""
    disc = b * b - a * c
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-b - sq) / a
        t2 = (-b + sq) / a
    lo, hi = np.fmin(t1, t2), np.fmax(t1, t2)
    lo = np.where(ok & (lo > t_min), lo, MISS)
    hi = np.where(ok & (hi > t_min), hi, MISS)
    return lo, hi


@dataclass(frozen=True)
class Primitive(ABC):
    """An upright solid: base centre (x, y0, z), yaw about the vertical axis (radians)."""

    x: float
    y0: float
    z: float
    yaw: float

    # -- local frame (rotation about y) ----------------------------------------------------
    def _to_local(self, v: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.stack([c * v[0] - s * v[2], v[1], s * v[0] + c * v[2]])

    def _to_world(self, v: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.stack([c * v[0] + s * v[2], v[1], -s * v[0] + c * v[2]])

    def _local_points(self, p: np.ndarray) -> np.ndarray:
        base = np.array([[self.x], [self.y0], [self.z]], dtype=np.float32)
        return self._to_local(p - base)

    # -- interface -------------------------------------------------------------------------
    @abstractmethod
    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """Centre (3,) and radius of a sphere holding the solid (for culling rays)."""

    @abstractmethod
    def _hit_local(self, o: np.ndarray, d: np.ndarray, t_min: float) -> np.ndarray:
        """t of the first hit beyond t_min (inf on a miss), rays in the local frame."""

    @abstractmethod
    def _normal_local(self, q: np.ndarray) -> np.ndarray:
        """Outward unit normals at local surface points q (3, M)."""

    @abstractmethod
    def footprint_distance(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Horizontal distance from floor points to the solid's footprint (0 inside)."""

    def hit(self, o: np.ndarray, d: np.ndarray, t_min: float = 1e-4) -> np.ndarray:
        """Ray parameter of the first hit beyond t_min, inf on a miss."""
        with np.errstate(invalid="ignore", over="ignore"):  # inf·0 on missed roots
            return self._hit_local(self._local_points(o), self._to_local(d), t_min)

    def normal(self, p: np.ndarray) -> np.ndarray:
        """World-frame outward unit normals at surface points p (3, M)."""
        return self._to_world(self._normal_local(self._local_points(p)))

    def uv(self, p: np.ndarray) -> np.ndarray:
        """Texture coordinates in metres (2, M): planar on the face the normal points along."""
        q = self._local_points(p)
        n = np.abs(self._normal_local(q))
        up = (n[1] >= n[0]) & (n[1] >= n[2])
        side_x = ~up & (n[0] >= n[2])
        u = np.where(up | ~side_x, q[0], q[2])
        v = np.where(up, q[2], q[1])
        return np.stack([u, v])


@dataclass(frozen=True)
class Sphere(Primitive):
    """A ball of `radius` resting on y0 (centre at y0 + radius)."""

    radius: float

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.array([self.x, self.y0 + self.radius, self.z], np.float32), self.radius

    def _hit_local(self, o: np.ndarray, d: np.ndarray, t_min: float) -> np.ndarray:
        oc = o - np.array([[0.0], [self.radius], [0.0]], np.float32)
        near, far = _nearest_root(_dot(d, d), _dot(oc, d), _dot(oc, oc) - self.radius**2, t_min)
        return np.fmin(near, far)

    def _normal_local(self, q: np.ndarray) -> np.ndarray:
        n = q - np.array([[0.0], [self.radius], [0.0]], np.float32)
        return n / np.maximum(np.sqrt(_dot(n, n)), 1e-12)

    def uv(self, p: np.ndarray) -> np.ndarray:
        n = self._normal_local(self._local_points(p))
        r = np.float32(self.radius)
        return np.stack([np.arctan2(n[0], n[2]) * r, np.arccos(np.clip(n[1], -1, 1)) * r])

    def footprint_distance(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.maximum(np.hypot(x - self.x, z - self.z) - self.radius, 0)


@dataclass(frozen=True)
class Box(Primitive):
    """A box of full extents (sx, sy, sz) standing on y0."""

    sx: float
    sy: float
    sz: float

    @property
    def _half(self) -> np.ndarray:
        return np.array([[self.sx / 2], [self.sy / 2], [self.sz / 2]], np.float32)

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        centre = np.array([self.x, self.y0 + self.sy / 2, self.z], np.float32)
        return centre, 0.5 * math.sqrt(self.sx**2 + self.sy**2 + self.sz**2)

    def _hit_local(self, o: np.ndarray, d: np.ndarray, t_min: float) -> np.ndarray:
        h = self._half
        q = o - np.array([[0.0], [self.sy / 2], [0.0]], np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-h - q) / d, (h - q) / d
        near = np.fmax.reduce(np.fmin(t1, t2), axis=0)
        far = np.fmin.reduce(np.fmax(t1, t2), axis=0)
        t = np.where(near > t_min, near, far)
        return np.where((far >= near) & (t > t_min), t, MISS)

    def _normal_local(self, q: np.ndarray) -> np.ndarray:
        q = q - np.array([[0.0], [self.sy / 2], [0.0]], np.float32)
        axis = np.argmax(np.abs(q) / self._half, axis=0)
        n = np.zeros_like(q)
        cols = np.arange(q.shape[1])
        n[axis, cols] = np.sign(q[axis, cols])
        return n

    def footprint_distance(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        dx, dz = x - self.x, z - self.z
        lx = np.maximum(np.abs(c * dx - s * dz) - self.sx / 2, 0)
        lz = np.maximum(np.abs(s * dx + c * dz) - self.sz / 2, 0)
        return np.hypot(lx, lz)


@dataclass(frozen=True)
class Cylinder(Primitive):
    """An upright cylinder (side and top cap) of `radius` and `height` standing on y0."""

    radius: float
    height: float

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        centre = np.array([self.x, self.y0 + self.height / 2, self.z], np.float32)
        return centre, math.hypot(self.radius, self.height / 2)

    def _hit_local(self, o: np.ndarray, d: np.ndarray, t_min: float) -> np.ndarray:
        a = d[0] * d[0] + d[2] * d[2]
        b = o[0] * d[0] + o[2] * d[2]
        c = o[0] * o[0] + o[2] * o[2] - self.radius**2
        near, far = _nearest_root(a, b, c, t_min)
        side = np.full(np.broadcast_shapes(o[0].shape, d[0].shape), MISS)
        for t in (far, near):  # nearer root last, so it wins where both are on the side
            y = o[1] + t * d[1]
            side = np.where((y >= 0) & (y <= self.height), t, side)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (self.height - o[1]) / d[1]
        rx, rz = o[0] + t_cap * d[0], o[2] + t_cap * d[2]
        cap_ok = (t_cap > t_min) & (rx * rx + rz * rz <= self.radius**2)
        return np.fmin(side, np.where(cap_ok, t_cap, MISS))

    def _normal_local(self, q: np.ndarray) -> np.ndarray:
        radial = np.hypot(q[0], q[2])
        on_cap = (self.height - q[1]) < (self.radius - radial)
        inv = 1.0 / np.maximum(radial, 1e-12)
        n = np.stack([q[0] * inv, np.zeros_like(q[1]), q[2] * inv])
        n[:, on_cap] = np.array([[0.0], [1.0], [0.0]], np.float32)
        return n

    def uv(self, p: np.ndarray) -> np.ndarray:
        q = self._local_points(p)
        angle = np.arctan2(q[0], q[2]) * np.float32(self.radius)
        on_cap = (self.height - q[1]) < (self.radius - np.hypot(q[0], q[2]))
        return np.stack([np.where(on_cap, q[0], angle), np.where(on_cap, q[2], q[1])])

    def footprint_distance(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.maximum(np.hypot(x - self.x, z - self.z) - self.radius, 0)


@dataclass(frozen=True)
class Cone(Primitive):
    """An upright cone, base `radius` on y0 and apex `height` above it."""

    radius: float
    height: float

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        centre = np.array([self.x, self.y0 + self.height / 2, self.z], np.float32)
        return centre, math.hypot(self.radius, self.height / 2)

    def _hit_local(self, o: np.ndarray, d: np.ndarray, t_min: float) -> np.ndarray:
        k2 = (self.radius / self.height) ** 2
        oy = o[1] - self.height  # apex at the origin, the solid below it
        a = d[0] * d[0] + d[2] * d[2] - k2 * d[1] * d[1]
        b = o[0] * d[0] + o[2] * d[2] - k2 * oy * d[1]
        c = o[0] * o[0] + o[2] * o[2] - k2 * oy * oy
        near, far = _nearest_root(a, b, c, t_min)
        out = np.full(np.broadcast_shapes(o[0].shape, d[0].shape), MISS)
        for t in (far, near):
            y = oy + t * d[1]
            out = np.where((y <= 0) & (y >= -self.height), t, out)
        return out

    def _normal_local(self, q: np.ndarray) -> np.ndarray:
        k2 = (self.radius / self.height) ** 2
        n = np.stack([q[0], k2 * (self.height - q[1]), q[2]])
        return n / np.maximum(np.sqrt(_dot(n, n)), 1e-12)

    def uv(self, p: np.ndarray) -> np.ndarray:
        q = self._local_points(p)
        return np.stack([np.arctan2(q[0], q[2]) * np.float32(self.radius), q[1]])

    def footprint_distance(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.maximum(np.hypot(x - self.x, z - self.z) - self.radius, 0)


def sphere_cull(
    o: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float, t_max: float | None = None
) -> np.ndarray:
    """Indices of rays that may hit a bounding sphere (within t in (0, t_max) if given).

    Conservative and cheap, so exact intersections run only on the few rays near a solid.
    """
    oc = centre[:, None] - o
    dd = _dot(d, d)
    b = _dot(oc, d)  # = |d| · (distance along the ray to the closest approach)
    cc = _dot(oc, oc)
    r2 = np.float32(radius * radius)
    keep = (cc * dd - b * b <= r2 * dd) & ((b > 0) | (cc <= r2))
    if t_max is not None:
        # closest approach minus the radius must come before the segment's end
        keep &= b - np.float32(radius) * np.sqrt(dd) < np.float32(t_max) * dd
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class RoomHit:
    """Where rays leave the room box: parameter, axis (0 x, 1 y, 2 z) and side (0 low, 1 high)."""

    t: np.ndarray
    axis: np.ndarray
    side: np.ndarray


def room_exit(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> RoomHit:
    """First wall, floor or ceiling hit by rays starting inside the box [lo, hi]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = (hi[:, None] - o) / d
        t_lo = (lo[:, None] - o) / d
    forward = d > 0
    t_axes = np.where(forward, t_hi, np.where(d < 0, t_lo, MISS))
    axis = np.argmin(t_axes, axis=0)
    cols = np.arange(t_axes.shape[1])
    return RoomHit(t_axes[axis, cols], axis, forward[axis, cols].astype(np.uint8))

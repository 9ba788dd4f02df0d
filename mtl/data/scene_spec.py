"""What a synthetic indoor scene is: classes, the config it is drawn from, and its parts.

Why a separate description: a scene is plain data (camera, room, light, objects), so tests and
users can write one by hand and `render_scene` renders it exactly as it renders random ones.
World frame: x right, y up, z into the room (the camera looks roughly along +z).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtl.data.scene_geometry import Box, Cone, Cylinder, Primitive, Sphere
from mtl.data.scene_textures import Material

SEG_CLASSES = ("floor", "wall", "ceiling", "sphere", "box", "cylinder", "cone", "table")
OBJECT_CLASSES = SEG_CLASSES[3:]
FLOOR, WALL, CEILING = 0, 1, 2
FIRST_OBJECT = len(SEG_CLASSES) - len(OBJECT_CLASSES)

# Object shapes at scale 1, full extents in metres (sx, sy, sz) drawn uniformly in these ranges;
# round solids use sx as the diameter.
SHAPE_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "sphere": ((0.35, 0.8),),
    "box": ((0.4, 1.1), (0.35, 1.2), (0.4, 1.0)),
    "cylinder": ((0.25, 0.6), (0.4, 1.1)),
    "cone": ((0.35, 0.7), (0.5, 1.1)),
    "table": ((0.9, 1.6), (0.6, 0.8), (0.6, 1.0)),
}
SUPPORTS = ("box", "table")
TABLE_TOP_M = 0.05  # thickness of a table top
TABLE_LEG_M = 0.06  # width of a table leg


# -- configuration ----------------------------------------------------------------------------
def _number(name: str, value: Any, low: float, high: float, integer: bool = False) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value) if integer else float(value)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"SceneConfig.{name} must be {kind}, got {value!r}") from None
    if not (low <= number <= high):
        raise ValueError(f"SceneConfig.{name} must be in [{low}, {high}], got {value!r}")
    return number


def _pair(name: str, value: Any, low: float, high: float, integer: bool = False) -> tuple:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"SceneConfig.{name} must be a pair [lo, hi], got {value!r}") from None
    lo, hi = _number(name, lo, low, high, integer), _number(name, hi, low, high, integer)
    if lo > hi:
        raise ValueError(f"SceneConfig.{name} must have lo <= hi, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class SceneConfig:
    """Image size and the distribution scenes are drawn from; a sample is fixed by
    (seed, index, config). Ranges are [lo, hi] pairs drawn uniformly per scene; lengths in
    metres, angles in degrees. Every field is validated at construction, naming the field."""

    image_height: int = 96
    image_width: int = 128
    fov_deg: tuple[float, float] = (55.0, 65.0)  # horizontal field of view (NYUv2 Kinect: ~63)
    camera_height: tuple[float, float] = (1.1, 1.7)
    pitch_deg: tuple[float, float] = (5.0, 22.0)  # downward tilt of the optical axis
    yaw_deg: tuple[float, float] = (-15.0, 15.0)  # turn about the vertical axis
    room_width: tuple[float, float] = (4.0, 7.0)
    room_depth: tuple[float, float] = (5.0, 9.0)  # from the camera to the back wall
    room_height: tuple[float, float] = (2.5, 3.2)
    num_objects: tuple[int, int] = (2, 6)
    object_scale: tuple[float, float] = (0.85, 1.35)  # multiplies SHAPE_RANGES
    stack_prob: float = 0.3  # chance that an object stands on a free box or table top
    light_intensity: tuple[float, float] = (1.4, 2.4)
    light_falloff: tuple[float, float] = (2.5, 4.0)  # distance at which irradiance halves
    ambient: tuple[float, float] = (0.2, 0.35)
    ao_strength: float = 0.45  # darkening of ambient light at room edges and object feet
    ao_radius: float = 0.25  # reach of that darkening in metres
    exposure: tuple[float, float] = (0.8, 0.95)  # display value of the bright end (linear)
    gamma: float = 2.2
    vignetting: float = 0.25  # relative darkening at the image corners
    noise_sigma: tuple[float, float] = (0.004, 0.015)  # sensor noise, fraction of full scale
    antialias: bool = True
    min_object_pixels: int = 12  # visible pixels for an object class to count as present

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("image_height", int(_number("image_height", self.image_height, 16, 2048, True)))
        put("image_width", int(_number("image_width", self.image_width, 16, 2048, True)))
        for name, low, high in (
            ("fov_deg", 20.0, 120.0),
            ("camera_height", 0.3, 2.2),
            ("pitch_deg", 0.0, 45.0),
            ("yaw_deg", -30.0, 30.0),
            ("room_width", 2.5, 20.0),
            ("room_depth", 3.0, 20.0),
            ("room_height", 2.4, 5.0),
            ("object_scale", 0.2, 2.0),
            ("light_intensity", 0.0, 100.0),
            ("light_falloff", 0.1, 100.0),
            ("ambient", 0.0, 1.0),
            ("exposure", 0.05, 1.0),
            ("noise_sigma", 0.0, 0.5),
        ):
            put(name, _pair(name, getattr(self, name), low, high))
        lo, hi = _pair("num_objects", self.num_objects, 0, 12, integer=True)
        put("num_objects", (int(lo), int(hi)))
        for name, low, high in (
            ("stack_prob", 0.0, 1.0),
            ("ao_strength", 0.0, 1.0),
            ("ao_radius", 0.01, 2.0),
            ("gamma", 1.0, 3.0),
            ("vignetting", 0.0, 0.9),
        ):
            put(name, float(_number(name, getattr(self, name), low, high)))
        put(
            "min_object_pixels",
            int(_number("min_object_pixels", self.min_object_pixels, 1, 1 << 30, True)),
        )
        if not isinstance(self.antialias, bool):
            raise ValueError(f"SceneConfig.antialias must be true or false, got {self.antialias!r}")
        if self.camera_height[1] >= self.room_height[0] - 0.3:
            raise ValueError(
                "SceneConfig.camera_height must stay 0.3 m below the lowest ceiling "
                f"(room_height lo = {self.room_height[0]}), got {self.camera_height}"
            )


# -- scene description ------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """A pinhole camera at (x, height, z), turned by yaw and tilted down by pitch."""

    x: float
    height: float
    z: float
    yaw_deg: float
    pitch_deg: float
    fov_deg: float  # horizontal

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.height, self.z], np.float32)

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation: columns are the camera's x (right), y (down), z (forward)."""
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        forward = np.array(
            [math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch)]
        )
        right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
        return np.stack([right, np.cross(right, forward), forward], axis=1).astype(np.float32)

    def focal(self, width: int) -> float:
        """Focal length in pixels (square pixels, principal point at the image centre)."""
        return 0.5 * width / math.tan(math.radians(self.fov_deg) / 2)


@dataclass(frozen=True)
class Room:
    """The room box: x in [x_min, x_max], y in [0, height], z in [z_min, z_max]."""

    x_min: float
    x_max: float
    z_min: float
    z_max: float
    height: float
    floor: Material
    wall: Material
    back_wall: Material
    ceiling: Material
    skirting: Material
    skirting_height: float = 0.1

    @property
    def lo(self) -> np.ndarray:
        return np.array([self.x_min, 0.0, self.z_min], np.float32)

    @property
    def hi(self) -> np.ndarray:
        return np.array([self.x_max, self.height, self.z_max], np.float32)

    def contains(self, point: Sequence[float], margin: float = 0.0) -> bool:
        p = np.asarray(point, np.float64)
        return bool(np.all(p > self.lo + margin) and np.all(p < self.hi - margin))


@dataclass(frozen=True)
class Light:
    """A point light plus ambient light; irradiance falls as 1 / (1 + (dist / falloff)^2)."""

    position: tuple[float, float, float]
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 2.0
    falloff: float = 3.0
    ambient: float = 0.25


@dataclass(frozen=True)
class SceneObject:
    """An upright solid of class `kind` with extents (sx, sy, sz) standing at (x, y0, z)."""

    kind: str
    x: float
    z: float
    size: tuple[float, float, float]
    material: Material
    yaw_deg: float = 0.0
    y0: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in OBJECT_CLASSES:
            raise ValueError(f"SceneObject.kind must be one of {OBJECT_CLASSES}, got {self.kind!r}")
        if len(self.size) != 3 or min(self.size) <= 0:
            raise ValueError(f"SceneObject.size must be 3 positive extents, got {self.size!r}")

    @property
    def label(self) -> int:
        return FIRST_OBJECT + OBJECT_CLASSES.index(self.kind)

    @property
    def top(self) -> float:
        return self.y0 + (self.size[0] if self.kind == "sphere" else self.size[1])

    @property
    def footprint_radius(self) -> float:
        sx, _, sz = self.size
        return 0.5 * (math.hypot(sx, sz) if self.kind in SUPPORTS else sx)

    def primitives(self) -> tuple[Primitive, ...]:
        sx, sy, sz = self.size
        yaw = math.radians(self.yaw_deg)
        base = dict(x=self.x, y0=self.y0, z=self.z, yaw=yaw)
        if self.kind == "sphere":
            return (Sphere(**base, radius=sx / 2),)
        if self.kind == "box":
            return (Box(**base, sx=sx, sy=sy, sz=sz),)
        if self.kind == "cylinder":
            return (Cylinder(**base, radius=sx / 2, height=sy),)
        if self.kind == "cone":
            return (Cone(**base, radius=sx / 2, height=sy),)
        # table: a top and four legs inset by half a leg, all turned by the same yaw
        top = Box(
            x=self.x, y0=self.y0 + sy - TABLE_TOP_M, z=self.z, yaw=yaw, sx=sx, sy=TABLE_TOP_M, sz=sz
        )
        c, s = math.cos(yaw), math.sin(yaw)
        legs = []
        for lx in (-1, 1):
            for lz in (-1, 1):
                ox, oz = lx * (sx - TABLE_LEG_M) / 2, lz * (sz - TABLE_LEG_M) / 2
                legs.append(
                    Box(
                        x=self.x + c * ox + s * oz,
                        y0=self.y0,
                        z=self.z - s * ox + c * oz,
                        yaw=yaw,
                        sx=TABLE_LEG_M,
                        sy=sy - TABLE_TOP_M,
                        sz=TABLE_LEG_M,
                    )
                )
        return (top, *legs)

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        height = self.top - self.y0
        centre = np.array([self.x, self.y0 + height / 2, self.z], np.float32)
        return centre, math.hypot(self.footprint_radius, height / 2) * 1.001


@dataclass(frozen=True)
class SceneSpec:
    """Everything a render needs; `render_seed` seeds texture lattice and sensor noise."""

    camera: Camera
    room: Room
    light: Light
    objects: tuple[SceneObject, ...] = ()
    exposure: float = 0.9
    noise_sigma: float = 0.0
    render_seed: int = 0

"""Synthetic indoor scenes: a vectorised ray caster with exact per-pixel targets.

Why: dense multi-task learning (segmentation, depth, surface normals, boundaries) needs images
whose targets are exact and free, at NYUv2's aspect ratio, reproducible bit for bit and with
nothing to download. A scene is a box-shaped room (floor, walls, ceiling, procedurally
textured) seen by a pinhole camera that stands near the front wall, tilted down, plus a few
upright solids (spheres, boxes, cylinders, cones, tables) resting on the floor or on top of a
box or table. One point light with cast shadows, an ambient term with a cheap ambient
occlusion (room edges, object footprints), Blinn-Phong highlights, vignetting, exposure,
gamma and sensor noise make it look like a (simple, CG-ish) photo.

Two steps, so a test or a user can hand-write a scene: `sample_scene(rng, config)` draws a
`SceneSpec`, and `render_scene(spec, config)` ray-casts it. `generate_scene(seed, index)` does
both with the RNG `default_rng([seed, index])`, so any sample can be generated alone.

Targets come from the ray through each pixel centre; the image is antialiased with four more
rays at the pixel corners (shared with the neighbours; tent filter: centre 1/2, corners 1/8
each), so antialiasing costs ~2x the rays instead of 4x.
Conventions (see mtl.data.targets): depth is the z-depth in metres along the optical axis;
normals are unit vectors in the camera frame (x right, y down, z forward: surfaces facing the
camera have z < 0).
"""

from __future__ import annotations

import colorsys
import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtl.data.scene_geometry import (
    Box,
    Cone,
    Cylinder,
    Primitive,
    Sphere,
    room_exit,
    sphere_cull,
)
from mtl.data.scene_textures import Material, NoiseLattice, albedo

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
STACKABLE = ("sphere", "cylinder", "cone", "box")  # small versions may stand on a support
SUPPORTS = ("box", "table")
TABLE_TOP_M = 0.05  # thickness of a table top
TABLE_LEG_M = 0.06  # width of a table leg
SHADOW_BIAS_M = 1e-3  # shadow rays start this far off the surface (no self-shadowing)
PLACE_TRIES = 40
NEAR_BIAS = 1.5  # object distances ~ U**NEAR_BIAS across the visible floor: more near ones
PICK_GAMMA = 2.2  # colours are picked as display values and decoded to linear albedo
EXPOSURE_PERCENTILE = 98.0  # this luminance percentile maps to `SceneSpec.exposure`


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


@dataclass(frozen=True)
class SceneRender:
    """A rendered scene: the photo and its exact targets (channels last, like NYUv2 files)."""

    image: np.ndarray  # (H, W, 3) uint8, sRGB-like (gamma-encoded)
    labels: np.ndarray  # (H, W) uint8, SEG_CLASSES ids
    depth: np.ndarray  # (H, W) float32, z-depth in metres (> 0 everywhere: the room is closed)
    normals: np.ndarray  # (H, W, 3) float32, unit, camera frame (x right, y down, z forward)
    objects: np.ndarray  # (len(OBJECT_CLASSES),) bool, class visible on >= min_object_pixels
    spec: SceneSpec = field(repr=False)


# -- rendering --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Surface:
    label: int
    material: Material
    prim: Primitive | None = None
    axis: int = -1  # room faces: the axis of their normal and low (0) / high (1) side
    side: int = -1


def _room_surfaces(room: Room) -> list[_Surface]:
    """The six room faces, indexed axis * 2 + side (x walls, floor/ceiling, front/back wall)."""
    faces = []
    for axis in range(3):
        for side in range(2):
            if axis == 1:
                label, material = (FLOOR, room.floor) if side == 0 else (CEILING, room.ceiling)
            else:
                label = WALL
                material = room.back_wall if (axis, side) == (2, 1) else room.wall
            faces.append(_Surface(label, material, axis=axis, side=side))
    return faces


@functools.lru_cache(maxsize=8)
def _pixel_offsets(height: int, width: int, antialias: bool) -> np.ndarray:
    """(2, N) image positions (x, y) relative to the centre: pixel centres, then corners."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    points = [np.stack([xs.ravel(), ys.ravel()])]
    if antialias:
        ys, xs = np.mgrid[0 : height + 1, 0 : width + 1].astype(np.float32)
        points.append(np.stack([xs.ravel(), ys.ravel()]))
    out = np.concatenate(points, axis=1) - np.array([[width / 2], [height / 2]], np.float32)
    out.setflags(write=False)
    return out


def camera_rays(camera: Camera, height: int, width: int, antialias: bool) -> np.ndarray:
    """World directions (3, N) with camera-z = 1 (so t is z-depth): centres, then corners."""
    offsets = _pixel_offsets(height, width, antialias) / np.float32(camera.focal(width))
    d_cam = np.concatenate([offsets, np.ones((1, offsets.shape[1]), np.float32)])
    return camera.rotation() @ d_cam


def _trace(
    o: np.ndarray, d: np.ndarray, spec: SceneSpec, prims: list[tuple[int, Primitive]]
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit per ray: t and surface index (primitives first, then the 6 room faces)."""
    room = room_exit(o, d, spec.room.lo, spec.room.hi)
    t = room.t.astype(np.float32)
    surface = len(prims) + room.axis * 2 + room.side
    first = 0
    for obj in spec.objects:
        parts = obj.primitives()
        centre, radius = obj.bounding_sphere()
        idx = sphere_cull(o, d, centre, radius)
        if idx.size:
            o_sub = o if o.shape[1] == 1 else o[:, idx]
            for k, prim in enumerate(parts):
                th = prim.hit(o_sub, d[:, idx])
                closer = th < t[idx]
                t[idx[closer]] = th[closer]
                surface[idx[closer]] = first + k
        first += len(parts)
    return t, surface


def _occluded(origins: np.ndarray, to_light: np.ndarray, spec: SceneSpec) -> np.ndarray:
    """Shadow rays: True where an object blocks the segment from the surface to the light."""
    blocked = np.zeros(origins.shape[1], bool)
    for obj in spec.objects:
        centre, radius = obj.bounding_sphere()
        idx = sphere_cull(origins, to_light, centre, radius, t_max=1.0)
        if not idx.size:
            continue
        o_sub, d_sub = origins[:, idx], to_light[:, idx]
        hit = np.zeros(idx.size, bool)
        for prim in obj.primitives():
            hit |= prim.hit(o_sub, d_sub) < 1.0
        blocked[idx] |= hit
    return blocked


def _ambient_occlusion(
    p: np.ndarray,
    surface: np.ndarray,
    surfaces: list[_Surface],
    spec: SceneSpec,
    config: SceneConfig,
) -> np.ndarray:
    """Cheap ambient occlusion: ambient light fades near room edges and around object feet."""
    ao = np.ones(p.shape[1], np.float32)
    if config.ao_strength == 0:
        return ao
    room = spec.room
    lo, hi = room.lo[:, None], room.hi[:, None]
    gaps = np.minimum(p - lo, hi - p)  # distance to the two planes of each axis
    axis = np.array([s.axis for s in surfaces])[surface]
    on_room = axis >= 0
    gaps[axis[on_room], np.flatnonzero(on_room)] = np.inf  # not the face the point lies on
    near = np.where(on_room, gaps.min(axis=0), np.inf)
    floor = np.flatnonzero(np.array([s.label == FLOOR for s in surfaces])[surface])
    if floor.size:
        x, z = p[0, floor], p[2, floor]
        for obj in spec.objects:
            if obj.y0 > 0:
                continue
            for prim in obj.primitives():
                near[floor] = np.minimum(near[floor], prim.footprint_distance(x, z))
    ao -= np.float32(config.ao_strength) * np.exp(-near / np.float32(config.ao_radius))
    return ao


def _surface_groups(surface: np.ndarray, count: int) -> list[np.ndarray]:
    order = np.argsort(surface, kind="stable")
    bounds = np.searchsorted(surface[order], np.arange(count + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(count)]


def _shade_inputs(
    p: np.ndarray,
    d: np.ndarray,
    surface: np.ndarray,
    surfaces: list[_Surface],
    spec: SceneSpec,
    noise: NoiseLattice,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit normals facing the ray, albedo, specular weight and shininess per hit."""
    n_rays = p.shape[1]
    normal = np.empty((3, n_rays), np.float32)
    color = np.empty((3, n_rays), np.float32)
    specular = np.zeros(n_rays, np.float32)
    shininess = np.ones(n_rays, np.float32)
    room = spec.room
    for k, idx in enumerate(_surface_groups(surface, len(surfaces))):
        if not idx.size:
            continue
        s, q = surfaces[k], p[:, idx]
        if s.prim is not None:
            normal[:, idx] = s.prim.normal(q)
            uv = s.prim.uv(q)
        else:
            n = np.zeros((3, idx.size), np.float32)
            n[s.axis] = 1.0 if s.side == 0 else -1.0  # room faces point inwards
            normal[:, idx] = n
            uv = q[[0, 2]] if s.axis == 1 else (q[[2, 1]] if s.axis == 0 else q[[0, 1]])
        color[:, idx] = albedo(s.material, uv, noise)
        if s.label == WALL and room.skirting_height > 0:
            low = q[1] < room.skirting_height
            if low.any():
                color[:, idx[low]] = albedo(room.skirting, uv[:, low], noise)
        specular[idx] = s.material.specular
        shininess[idx] = s.material.shininess
    # two-sided: a grazing hit may round to a normal facing away from the ray
    away = (normal * d).sum(axis=0) > 0
    normal[:, away] *= -1
    return normal, color, specular, shininess


def _radiance(
    o: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    surface: np.ndarray,
    surfaces: list[_Surface],
    spec: SceneSpec,
    config: SceneConfig,
    noise: NoiseLattice,
) -> tuple[np.ndarray, np.ndarray]:
    """Linear RGB radiance (3, N) towards the camera, and the world normals used."""
    p = o + t * d
    normal, color, specular, shininess = _shade_inputs(p, d, surface, surfaces, spec, noise)
    light = spec.light
    to_light = np.asarray(light.position, np.float32)[:, None] - p
    dist2 = (to_light * to_light).sum(axis=0)
    l_dir = to_light / np.sqrt(dist2)
    cos_in = np.maximum((normal * l_dir).sum(axis=0), 0)
    lit = np.flatnonzero(cos_in > 0)
    visible = np.zeros_like(cos_in)
    origins = p[:, lit] + np.float32(SHADOW_BIAS_M) * normal[:, lit]
    visible[lit] = ~_occluded(origins, to_light[:, lit], spec)
    irradiance = np.float32(light.intensity) * visible / (1 + dist2 / np.float32(light.falloff**2))
    view = -d / np.sqrt((d * d).sum(axis=0))
    half = l_dir + view
    half /= np.maximum(np.sqrt((half * half).sum(axis=0)), 1e-6)
    cos_h = np.maximum((normal * half).sum(axis=0), 0)
    highlight = specular * cos_h**shininess * irradiance
    ambient = np.float32(light.ambient) * _ambient_occlusion(p, surface, surfaces, spec, config)
    tint = np.asarray(light.color, np.float32)[:, None]
    rgb = color * (ambient + cos_in * irradiance * tint) + highlight * tint
    return rgb, normal


def _develop(
    rgb: np.ndarray, spec: SceneSpec, config: SceneConfig, rng: np.random.Generator
) -> np.ndarray:
    """Antialias, vignette, expose, gamma-encode and add sensor noise: (H, W, 3) uint8."""
    h, w = config.image_height, config.image_width
    image = rgb[:, : h * w].reshape(3, h, w)
    if config.antialias:
        c = rgb[:, h * w :].reshape(3, h + 1, w + 1)
        image = 0.5 * image + 0.125 * (
            c[:, :-1, :-1] + c[:, 1:, :-1] + c[:, :-1, 1:] + c[:, 1:, 1:]
        )
    if config.vignetting > 0:
        ys, xs = np.ogrid[0:h, 0:w]
        r2 = ((xs + 0.5) / w - 0.5) ** 2 + ((ys + 0.5) / h - 0.5) ** 2
        image = image * (1 - np.float32(config.vignetting) * (r2 / 0.5)).astype(np.float32)
    luminance = 0.2126 * image[0] + 0.7152 * image[1] + 0.0722 * image[2]
    white = max(float(np.percentile(luminance, EXPOSURE_PERCENTILE)), 1e-6)
    image = np.clip(image * np.float32(spec.exposure / white), 0, 1) ** np.float32(1 / config.gamma)
    if spec.noise_sigma > 0:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
            spec.noise_sigma
        )
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def render_scene(spec: SceneSpec, config: SceneConfig | None = None) -> SceneRender:
    """Ray-cast `spec` at the config's image size: photo and exact per-pixel targets."""
    config = config or SceneConfig()
    room, camera = spec.room, spec.camera
    if not room.contains(camera.position, 0.05):
        raise ValueError(f"SceneSpec.camera must stand inside the room, got {camera.position}")
    if not room.contains(spec.light.position, 0.01):
        raise ValueError(f"SceneSpec.light must be inside the room, got {spec.light.position}")
    h, w = config.image_height, config.image_width
    rng = np.random.default_rng(spec.render_seed)
    noise = NoiseLattice(rng)
    prims = [(i, p) for i, obj in enumerate(spec.objects) for p in obj.primitives()]
    surfaces = [_Surface(spec.objects[i].label, spec.objects[i].material, prim=p) for i, p in prims]
    surfaces += _room_surfaces(room)

    o = camera.position[:, None]
    d = camera_rays(camera, h, w, config.antialias)
    t, surface = _trace(o, d, spec, prims)
    rgb, normal = _radiance(o, d, t, surface, surfaces, spec, config, noise)

    centre = slice(0, h * w)
    labels = np.array([s.label for s in surfaces], np.uint8)[surface[centre]].reshape(h, w)
    normals_cam = camera.rotation().T @ normal[:, centre]
    normals_cam /= np.sqrt((normals_cam * normals_cam).sum(axis=0))
    counts = np.bincount(labels.ravel(), minlength=len(SEG_CLASSES))[FIRST_OBJECT:]
    return SceneRender(
        image=_develop(rgb, spec, config, rng),
        labels=labels,
        depth=t[centre].reshape(h, w).astype(np.float32),
        normals=np.ascontiguousarray(normals_cam.T.reshape(h, w, 3)),
        objects=counts >= config.min_object_pixels,
        spec=spec,
    )


# -- sampling ---------------------------------------------------------------------------------
def _u(rng: np.random.Generator, pair: Sequence[float]) -> float:
    return float(rng.uniform(pair[0], pair[1]))


def _color(h: float, s: float, v: float) -> tuple[float, float, float]:
    """Linear RGB of an HSV colour picked in display (gamma-encoded) space."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r**PICK_GAMMA, g**PICK_GAMMA, b**PICK_GAMMA)


def _floor_material(rng: np.random.Generator) -> Material:
    kind = rng.choice(["planks", "tiles", "checker", "noise"], p=[0.42, 0.3, 0.08, 0.2])
    if kind == "planks":
        h, s, v = rng.uniform(0.05, 0.1), rng.uniform(0.35, 0.7), rng.uniform(0.45, 0.8)
        return Material(
            _color(h, s, v),
            _color(h, s * 1.1, v * 0.55),
            "planks",
            scale=rng.uniform(0.12, 0.22),
            variation=0.12,
            specular=rng.uniform(0.0, 0.25),
            shininess=24.0,
        )
    if kind == "tiles":
        h, s, v = rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.5, 0.9)
        grout = _color(h, s * 0.3, v * rng.choice([0.55, 1.15]))
        return Material(
            _color(h, s, v),
            grout,
            "tiles",
            scale=rng.uniform(0.3, 0.6),
            variation=0.06,
            specular=rng.uniform(0.1, 0.4),
            shininess=48.0,
        )
    if kind == "checker":
        h = rng.random()
        return Material(
            _color(h, 0.1, 0.85),
            _color(h + 0.5, 0.3, 0.25),
            "checker",
            scale=rng.uniform(0.3, 0.5),
            variation=0.05,
            specular=rng.uniform(0.1, 0.3),
            shininess=48.0,
        )
    h, s, v = rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.7)  # carpet
    return Material(_color(h, s, v), _color(h, s, v * 0.7), "noise", scale=0.15, variation=0.3)


def _wall_material(rng: np.random.Generator) -> Material:
    h, s, v = rng.random(), rng.uniform(0.03, 0.3), rng.uniform(0.65, 0.95)
    kind = rng.choice(["plain", "stripes", "noise", "tiles"], p=[0.45, 0.25, 0.2, 0.1])
    second = _color(h + rng.uniform(-0.05, 0.05), s * rng.uniform(0.8, 1.6), v * 0.85)
    scale = {
        "plain": 1.0,
        "stripes": rng.uniform(0.1, 0.35),
        "noise": 0.6,
        "tiles": rng.uniform(0.15, 0.3),
    }[str(kind)]
    return Material(_color(h, s, v), second, str(kind), scale=scale, variation=0.05)


def _object_material(rng: np.random.Generator) -> Material:
    h, s, v = rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.35, 0.95)
    kind = rng.choice(
        ["plain", "checker", "stripes", "noise", "planks"], p=[0.45, 0.12, 0.15, 0.13, 0.15]
    )
    second = _color(h + rng.uniform(0.3, 0.7), s, v * rng.uniform(0.5, 1.0))
    if kind == "planks":  # wooden furniture
        h, v = rng.uniform(0.05, 0.1), rng.uniform(0.35, 0.75)
        return Material(
            _color(h, 0.55, v),
            _color(h, 0.6, v * 0.6),
            "planks",
            scale=0.1,
            variation=0.1,
            specular=0.1,
            shininess=24.0,
        )
    scale = rng.uniform(0.08, 0.25)
    glossy = rng.random() < 0.5
    return Material(
        _color(h, s, v),
        second,
        str(kind),
        scale=scale,
        variation=0.04,
        specular=rng.uniform(0.3, 0.8) if glossy else 0.0,
        shininess=float(rng.choice([16.0, 32.0, 64.0])),
    )


def _object_size(rng: np.random.Generator, kind: str, scale: float) -> tuple[float, float, float]:
    ext = [_u(rng, r) * scale for r in SHAPE_RANGES[kind]]
    if kind == "sphere":
        return (ext[0], ext[0], ext[0])
    if kind in ("cylinder", "cone"):
        return (ext[0], ext[1], ext[0])
    return (ext[0], ext[1], ext[2])


def _sample_room(rng: np.random.Generator, config: SceneConfig) -> Room:
    width, depth = _u(rng, config.room_width), _u(rng, config.room_depth)
    wall = _wall_material(rng)
    back = _wall_material(rng) if rng.random() < 0.3 else wall  # an accent wall now and then
    ceiling_v = rng.uniform(0.8, 0.95)
    offset = rng.uniform(-0.25, 0.25) * width  # the camera is not always centred
    skirting_v = rng.uniform(0.85, 0.95) if rng.random() < 0.7 else rng.uniform(0.2, 0.4)
    return Room(
        x_min=-width / 2 + offset,
        x_max=width / 2 + offset,
        z_min=-rng.uniform(0.3, 1.0),
        z_max=depth,
        height=_u(rng, config.room_height),
        floor=_floor_material(rng),
        wall=wall,
        back_wall=back,
        ceiling=Material(
            _color(0.1, 0.03, ceiling_v),
            _color(0.1, 0.03, ceiling_v * 0.9),
            "noise",
            scale=1.0,
            variation=0.02,
        ),
        skirting=Material(
            _color(0.1, 0.05, skirting_v),
            _color(0.1, 0.05, skirting_v),
            variation=0.02,
            specular=0.2,
        ),
        skirting_height=rng.uniform(0.06, 0.14) if rng.random() < 0.8 else 0.0,
    )


def _floor_spot(
    rng: np.random.Generator,
    camera: Camera,
    room: Room,
    config: SceneConfig,
    radius: float,
    placed: list[SceneObject],
) -> tuple[float, float] | None:
    """A free floor position inside the room that the camera sees (base within the frame)."""
    half_h = math.atan(
        math.tan(math.radians(camera.fov_deg) / 2) * config.image_height / config.image_width
    )
    near = camera.height / math.tan(math.radians(camera.pitch_deg) + half_h) + 0.3
    far = room.z_max - camera.z - 0.2
    half_w = math.radians(camera.fov_deg) / 2 * 0.85
    for _ in range(PLACE_TRIES):
        lo, hi = max(near, 1.0), max(far, near + 0.1)
        dist = lo + (hi - lo) * rng.random() ** NEAR_BIAS
        angle = math.radians(camera.yaw_deg) + rng.uniform(-half_w, half_w)
        x, z = camera.x + dist * math.sin(angle), camera.z + dist * math.cos(angle)
        margin = radius + 0.05
        if not (room.x_min + margin < x < room.x_max - margin and z < room.z_max - margin):
            continue
        if all(math.hypot(x - o.x, z - o.z) > radius + o.footprint_radius + 0.05 for o in placed):
            return x, z
    return None


def _stack_spot(
    rng: np.random.Generator, support: SceneObject, size: tuple[float, float, float]
) -> tuple[float, float] | None:
    """A position on the support's top where an object of `size` fits, None if it cannot."""
    room_x = support.size[0] - size[0] - 0.04
    room_z = support.size[2] - size[2] - 0.04
    if room_x <= 0 or room_z <= 0:
        return None
    ox, oz = rng.uniform(-room_x / 2, room_x / 2), rng.uniform(-room_z / 2, room_z / 2)
    yaw = math.radians(support.yaw_deg)
    c, s = math.cos(yaw), math.sin(yaw)
    return support.x + c * ox + s * oz, support.z - s * ox + c * oz


def sample_scene(rng: np.random.Generator, config: SceneConfig | None = None) -> SceneSpec:
    """Draw a random room, camera, light and objects from the config's distribution."""
    config = config or SceneConfig()
    room = _sample_room(rng, config)
    camera = Camera(
        x=0.0,  # the room's random offset moves the camera off its centre line
        height=_u(rng, config.camera_height),
        z=0.0,
        yaw_deg=_u(rng, config.yaw_deg),
        pitch_deg=_u(rng, config.pitch_deg),
        fov_deg=_u(rng, config.fov_deg),
    )
    hue = rng.uniform(0.05, 0.6)  # warm (tungsten) to cool (daylight) light
    light = Light(
        position=(
            rng.uniform(room.x_min + 0.4, room.x_max - 0.4),
            room.height - rng.uniform(0.15, 0.45),
            rng.uniform(room.z_min + 0.2, 0.6 * room.z_max),
        ),
        color=_color(hue, rng.uniform(0.0, 0.15), 1.0),
        intensity=_u(rng, config.light_intensity),
        falloff=_u(rng, config.light_falloff),
        ambient=_u(rng, config.ambient),
    )
    lo, hi = config.num_objects
    count = int(rng.integers(lo, hi + 1))
    objects: list[SceneObject] = []
    used_supports: set[int] = set()
    for _ in range(count):
        kind = OBJECT_CLASSES[int(rng.integers(len(OBJECT_CLASSES)))]
        scale = _u(rng, config.object_scale)
        material = _object_material(rng)
        yaw = rng.uniform(-90.0, 90.0) if kind in SUPPORTS else rng.uniform(-180, 180)
        supports = [
            i for i, o in enumerate(objects) if o.kind in SUPPORTS and i not in used_supports
        ]
        if kind in STACKABLE and supports and rng.random() < config.stack_prob:
            chosen = supports[int(rng.integers(len(supports)))]
            support = objects[chosen]
            size = _object_size(rng, kind, scale * 0.45)
            spot = _stack_spot(rng, support, size)
            if spot is not None and support.top + size[1] < light.position[1] - 0.3:
                used_supports.add(chosen)
                objects.append(
                    SceneObject(kind, spot[0], spot[1], size, material, yaw, y0=support.top)
                )
                continue
        size = _object_size(rng, kind, scale)
        probe = SceneObject(kind, 0.0, 0.0, size, material, yaw)
        spot = _floor_spot(rng, camera, room, config, probe.footprint_radius, objects)
        if spot is not None:
            objects.append(SceneObject(kind, spot[0], spot[1], size, material, yaw))
    return SceneSpec(
        camera=camera,
        room=room,
        light=light,
        objects=tuple(objects),
        exposure=_u(rng, config.exposure),
        noise_sigma=_u(rng, config.noise_sigma),
        render_seed=int(rng.integers(1 << 62)),
    )


def generate_scene(seed: int, index: int, config: SceneConfig | None = None) -> SceneRender:
    """Scene `index` of stream `seed`: bit-identical for the same (seed, index, config)."""
    config = config or SceneConfig()
    rng = np.random.default_rng([int(seed), int(index)])
    return render_scene(sample_scene(rng, config), config)

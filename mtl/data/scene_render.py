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
both with the RNG `default_rng([seed, index])`, so any sample can be generated alone. This
module is the public face: the description and config live in `scene_spec`, the random draws
in `scene_sampling`, the intersections in `scene_geometry` and the textures in `scene_textures`.

Targets come from the ray through each pixel centre; the image is antialiased with four more
rays at the pixel corners (shared with the neighbours; tent filter: centre 1/2, corners 1/8
each), so antialiasing costs ~2x the rays instead of 4x.
Conventions (see mtl.data.targets): depth is the z-depth in metres along the optical axis;
normals are unit vectors in the camera frame (x right, y down, z forward: surfaces facing the
camera have z < 0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from mtl.data.scene_geometry import Primitive, room_exit, sphere_cull
from mtl.data.scene_sampling import sample_scene
from mtl.data.scene_spec import (
    CEILING,
    FIRST_OBJECT,
    FLOOR,
    OBJECT_CLASSES,
    SEG_CLASSES,
    WALL,
    Camera,
    Light,
    Room,
    SceneConfig,
    SceneObject,
    SceneSpec,
)
from mtl.data.scene_textures import Material, NoiseLattice, albedo

__all__ = [
    "CEILING",
    "FIRST_OBJECT",
    "FLOOR",
    "OBJECT_CLASSES",
    "SEG_CLASSES",
    "WALL",
    "Camera",
    "Light",
    "Room",
    "SceneConfig",
    "SceneObject",
    "SceneRender",
    "SceneSpec",
    "camera_rays",
    "generate_scene",
    "render_scene",
    "sample_scene",
]

SHADOW_BIAS_M = 1e-3  # shadow rays start this far off the surface (no self-shadowing)
EXPOSURE_PERCENTILE = 98.0  # this luminance percentile maps to `SceneSpec.exposure`


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


def generate_scene(seed: int, index: int, config: SceneConfig | None = None) -> SceneRender:
    """Scene `index` of stream `seed`: bit-identical for the same (seed, index, config)."""
    config = config or SceneConfig()
    rng = np.random.default_rng([int(seed), int(index)])
    return render_scene(sample_scene(rng, config), config)

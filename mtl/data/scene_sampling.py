"""Random scenes: rooms, materials, camera, light and object placement from a `SceneConfig`.

Why these choices: materials follow real rooms (wooden, tiled or carpeted floors; pale painted
or papered walls; saturated, sometimes glossy objects), and objects are placed where the camera
sees their feet, never overlapping, some standing on a box or table, so images resemble photos
of furnished rooms and every object class appears in about half of the images.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np

from mtl.data.scene_spec import (
    OBJECT_CLASSES,
    SHAPE_RANGES,
    SUPPORTS,
    Camera,
    Light,
    Room,
    SceneConfig,
    SceneObject,
    SceneSpec,
)
from mtl.data.scene_textures import Material

STACKABLE = ("sphere", "cylinder", "cone", "box")  # small versions may stand on a support
PLACE_TRIES = 40
NEAR_BIAS = 1.5  # object distances ~ U**NEAR_BIAS across the visible floor: more near ones
PICK_GAMMA = 2.2  # colours are picked as display values and decoded to linear albedo


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

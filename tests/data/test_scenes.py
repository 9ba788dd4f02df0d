"""Synthetic scenes: renderer geometry and targets, and the data module's splits and batches."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtl.data.scene_render import (
    FIRST_OBJECT,
    FLOOR,
    OBJECT_CLASSES,
    SEG_CLASSES,
    Camera,
    Light,
    Room,
    SceneConfig,
    SceneObject,
    SceneSpec,
    generate_scene,
    render_scene,
)
from mtl.data.scene_textures import Material
from mtl.data.scenes import IMAGENET_MEAN, SyntheticScenesDataModule
from mtl.data.targets import semantic_boundaries

SMALL = SceneConfig(image_height=48, image_width=64)
GREY = Material((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), variation=0.0)
DM_SMALL = dict(
    num_train=16,
    num_val=6,
    num_test=6,
    scene={"image_height": 48, "image_width": 64},
    batch_size=4,
)


def _view_rays(camera: Camera, h: int, w: int) -> np.ndarray:
    """Camera-frame ray through each pixel centre, from the pinhole model alone: (H, W, 3)."""
    f = camera.focal(w)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return np.stack([(xs - w / 2) / f, (ys - h / 2) / f, np.ones_like(xs)], axis=-1)


def _room() -> Room:
    return Room(-3.0, 3.0, -1.0, 8.0, 3.0, GREY, GREY, GREY, GREY, GREY, skirting_height=0.0)


def _spec(*objects: SceneObject, light=(0.0, 2.7, 2.0)) -> SceneSpec:
    camera = Camera(x=0.0, height=1.5, z=0.0, yaw_deg=0.0, pitch_deg=15.0, fov_deg=60.0)
    return SceneSpec(camera, _room(), Light(light, ambient=0.2), tuple(objects), noise_sigma=0.0)


# -- renderer ---------------------------------------------------------------------------------
def test_scenes_are_deterministic_per_seed_and_index():
    a, b = generate_scene(0, 3, SMALL), generate_scene(0, 3, SMALL)
    for key in ("image", "labels", "depth", "normals", "objects"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    for other in (generate_scene(1, 3, SMALL), generate_scene(0, 4, SMALL)):
        assert not np.array_equal(a.image, other.image)
        assert not np.array_equal(a.depth, other.depth)


def test_render_shapes_dtypes_and_classes():
    scene = generate_scene(0, 0, SMALL)
    assert scene.image.shape == (48, 64, 3) and scene.image.dtype == np.uint8
    assert scene.labels.shape == (48, 64) and scene.labels.dtype == np.uint8
    assert scene.depth.shape == (48, 64) and scene.depth.dtype == np.float32
    assert scene.normals.shape == (48, 64, 3) and scene.normals.dtype == np.float32
    assert scene.objects.shape == (len(OBJECT_CLASSES),) and scene.objects.dtype == bool
    assert scene.labels.max() < len(SEG_CLASSES)
    assert SEG_CLASSES[FIRST_OBJECT:] == OBJECT_CLASSES and SEG_CLASSES[FLOOR] == "floor"
    assert scene.image.std() > 10  # not a blank frame


@pytest.mark.parametrize("index", range(4))
def test_normals_are_unit_and_face_the_camera(index):
    scene = generate_scene(5, index, SMALL)
    assert np.allclose(np.linalg.norm(scene.normals, axis=-1), 1.0, atol=1e-5)
    view = _view_rays(scene.spec.camera, 48, 64)
    assert ((scene.normals * view).sum(axis=-1) < 0).all()
    assert (scene.depth > 0).all()


@pytest.mark.parametrize("index", range(4))
def test_floor_depth_and_normal_match_the_floor_plane(index):
    scene = generate_scene(7, index, SMALL)
    cam = scene.spec.camera
    pitch = math.radians(cam.pitch_deg)
    y = _view_rays(cam, 48, 64)[..., 1]
    # ray (x, y, 1) drops by y·cos(pitch) + sin(pitch) per unit of z-depth (yaw keeps it)
    expected = cam.height / (y * math.cos(pitch) + math.sin(pitch))
    floor = scene.labels == FLOOR
    assert floor.sum() > 100
    np.testing.assert_allclose(scene.depth[floor], expected[floor], rtol=1e-4)
    up = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])  # world up in the camera frame
    np.testing.assert_allclose(
        scene.normals[floor], np.broadcast_to(up, (floor.sum(), 3)), atol=1e-5
    )


@pytest.mark.parametrize("box_first", [True, False])
def test_nearer_object_occludes_the_farther_one(box_first):
    box = SceneObject("box", 0.0, 3.0, (0.6, 0.8, 0.6), GREY)
    ball = SceneObject("sphere", 0.1, 5.0, (1.0, 1.0, 1.0), GREY)
    front, back = render_scene(_spec(box), SMALL), render_scene(_spec(ball), SMALL)
    both = render_scene(_spec(*((box, ball) if box_first else (ball, box))), SMALL)
    box_px = front.labels == SEG_CLASSES.index("box")
    ball_px = back.labels == SEG_CLASSES.index("sphere")
    overlap = box_px & ball_px
    assert overlap.sum() > 20 and (ball_px & ~box_px).sum() > 20
    assert (both.labels[overlap] == SEG_CLASSES.index("box")).all()
    assert (both.depth[overlap] < back.depth[overlap]).all()
    np.testing.assert_array_equal(both.depth[overlap], front.depth[overlap])
    assert (both.labels[ball_px & ~box_px] == SEG_CLASSES.index("sphere")).all()
    assert both.objects.tolist() == [True, True, False, False, False]


def test_objects_cast_shadows_on_the_floor():
    """Floor point (1, 0, 4) sees the light at (-2, 2, 4) through a box at x = 0 (y = 0.53)."""
    box = SceneObject("box", 0.0, 4.0, (0.4, 1.0, 0.4), GREY)
    lit = render_scene(_spec(light=(-2.0, 2.0, 4.0)), SMALL)
    shaded = render_scene(_spec(box, light=(-2.0, 2.0, 4.0)), SMALL)
    cam = shaded.spec.camera
    p = cam.rotation().T @ (np.array([1.0, 0.0, 4.0]) - cam.position)
    f = cam.focal(64)
    col, row = int(f * p[0] / p[2] + 32), int(f * p[1] / p[2] + 24)
    assert shaded.labels[row, col] == FLOOR
    # exposure follows the image, so measure both renders against a floor point lit in both
    ref = (row, 64 - 1 - col)  # the mirror point (-1, 0, 4)

    def relative(scene) -> float:
        return float(scene.image[row, col].mean() / scene.image[ref].mean())

    assert relative(shaded) < 0.75 * relative(lit)


def test_objects_target_is_visible_presence():
    config = replace(SMALL, min_object_pixels=1)
    for index in range(6):
        scene = generate_scene(2, index, config)
        present = [(scene.labels == FIRST_OBJECT + k).any() for k in range(len(OBJECT_CLASSES))]
        assert scene.objects.tolist() == present
    hidden = SceneObject("sphere", 0.0, 5.0, (0.4, 0.4, 0.4), GREY)
    wall = SceneObject("box", 0.0, 3.0, (2.0, 1.5, 0.3), GREY)  # hides the ball entirely
    scene = render_scene(_spec(hidden, wall), config)
    assert scene.objects.tolist() == [False, True, False, False, False]


def test_min_object_pixels_threshold():
    scene = generate_scene(2, 1, SMALL)
    counts = np.bincount(scene.labels.ravel(), minlength=len(SEG_CLASSES))[FIRST_OBJECT:]
    assert scene.objects.tolist() == (counts >= SMALL.min_object_pixels).tolist()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_objects": (4, 2)}, "num_objects"),
        ({"image_height": "big"}, "image_height"),
        ({"fov_deg": 60.0}, "fov_deg"),
        ({"camera_height": (1.0, 2.3)}, "camera_height"),
        ({"stack_prob": 1.5}, "stack_prob"),
        ({"antialias": "yes"}, "antialias"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SceneConfig(**kwargs)


def test_render_rejects_a_camera_outside_the_room():
    spec = _spec()
    outside = replace(spec, camera=replace(spec.camera, z=-2.0))
    with pytest.raises(ValueError, match="camera"):
        render_scene(outside, SMALL)


# -- data module ------------------------------------------------------------------------------
def test_splits_are_disjoint_and_fixed_by_seed():
    splits = SyntheticScenesDataModule(seed=3, **DM_SMALL).split_indices()
    pool = np.concatenate(list(splits.values()))
    assert len(set(pool.tolist())) == len(pool) == 28
    again = SyntheticScenesDataModule(seed=3, **DM_SMALL).split_indices()
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = SyntheticScenesDataModule(seed=4, **DM_SMALL).split_indices()
    assert not np.array_equal(splits["train"], other["train"])


@pytest.fixture(scope="module")
def datamodule() -> SyntheticScenesDataModule:
    dm = SyntheticScenesDataModule(seed=0, **DM_SMALL)
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_split_images_are_distinct(datamodule):
    hashes = {s: {im.tobytes() for im in datamodule.arrays[s].images} for s in ("train", "val")}
    assert not hashes["train"] & hashes["val"]
    item = datamodule.dataset("val")[2]
    scene = generate_scene(0, item["index"], datamodule.config)
    assert torch.equal(item["targets"]["seg"], torch.from_numpy(scene.labels.astype(np.int64)))


def test_batches_follow_the_target_contract(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    t = batch["targets"]
    assert batch["image"].shape == (4, 3, 48, 64) and batch["image"].dtype == torch.float32
    assert t["seg"].shape == (4, 48, 64) and t["seg"].dtype == torch.int64
    assert t["depth"].shape == (4, 1, 48, 64) and t["depth"].dtype == torch.float32
    assert t["normals"].shape == (4, 3, 48, 64) and t["normals"].dtype == torch.float32
    assert t["boundary"].shape == (4, 1, 48, 64) and t["boundary"].dtype == torch.float32
    assert t["objects"].shape == (4, len(OBJECT_CLASSES)) and t["objects"].dtype == torch.float32
    assert set(batch["has_target"]) == set(t) == set(datamodule.target_specs)
    assert all(v.dtype == torch.bool and v.all() for v in batch["has_target"].values())
    assert batch["index"].shape == (4,)
    assert (t["depth"] > 0).all()
    assert torch.allclose(t["normals"].norm(dim=1), torch.ones(1), atol=1e-5)
    assert set(t["boundary"].unique().tolist()) <= {0.0, 1.0}


def test_item_targets_match_the_render(datamodule):
    ds = datamodule.dataset("train")
    for i in (0, 7):
        item = ds[i]
        scene = generate_scene(0, item["index"], datamodule.config)
        seg = item["targets"]["seg"]
        assert torch.equal(item["targets"]["boundary"], semantic_boundaries(seg[None])[0])
        present = torch.tensor(scene.objects, dtype=torch.float32)
        assert torch.equal(item["targets"]["objects"], present)
        depth = item["targets"]["depth"][0].numpy()
        np.testing.assert_allclose(depth, scene.depth, rtol=1e-3)  # float16 storage
        normals = item["targets"]["normals"].numpy().transpose(1, 2, 0)
        cos = (normals * scene.normals).sum(axis=-1)
        assert cos.min() > math.cos(math.radians(1.0))  # int8 storage: within 1 degree


def test_target_specs(datamodule):
    specs = datamodule.target_specs
    assert {k: v.kind for k, v in specs.items()} == {
        "seg": "segmentation",
        "depth": "depth",
        "normals": "normals",
        "boundary": "boundary",
        "objects": "multilabel",
    }
    assert specs["seg"].num_classes == len(SEG_CLASSES) and specs["seg"].ignore_index == 255
    assert specs["seg"].class_names == SEG_CLASSES
    assert specs["objects"].class_names == OBJECT_CLASSES
    assert specs["boundary"].ignore_index == 255
    assert datamodule.in_channels == 3


def test_train_normalisation_is_saved_and_restored(datamodule):
    ds = datamodule.dataset("train")
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    assert images.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (images.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    fresh = SyntheticScenesDataModule(seed=0, **DM_SMALL)
    fresh.load_state_dict(datamodule.state_dict())
    fresh.setup("test")
    assert "train" not in fresh.arrays  # restored statistics need no training split
    assert torch.equal(fresh.dataset("test")[0]["image"], datamodule.dataset("test")[0]["image"])


def test_imagenet_normalisation_uses_the_constants():
    dm = SyntheticScenesDataModule(seed=0, normalize="imagenet", **DM_SMALL)
    dm.setup("test")
    assert "train" not in dm.arrays
    item = dm.dataset("test")[0]
    raw = torch.from_numpy(dm.arrays["test"].images[0]).float() / 255
    assert torch.allclose(item["image"][0], (raw[0] - IMAGENET_MEAN[0]) / 0.229, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_train": 0}, "num_train"),
        ({"normalize": "zscore"}, "normalize"),
        ({"boundary_width": 0}, "boundary_width"),
        ({"scene": {"num_objects": [1]}}, "num_objects"),
    ],
)
def test_datamodule_errors_name_the_key(kwargs, key):
    args = {**DM_SMALL, **kwargs}
    with pytest.raises(ValueError, match=key):
        SyntheticScenesDataModule(**args)

"""Cross-task guides: a classification head pooling under segmentation's lesion probability."""

from __future__ import annotations

import math

import pytest
import torch

from mtl.models import MTAN, CrossStitch, HardParameterSharing, SingleTaskNets, UNetDecoder
from mtl.models.encoders import UNetEncoder
from mtl.models.guides import Guide, guide_map, resolve_guides
from mtl.models.heads import PooledHead
from mtl.tasks import ClassificationTask, DepthTask, SegmentationTask, TargetSpec, TaskConfigError

SEG_NAMES = ("bg", "liver", "kidney", "bone", "lesion")
GUIDED_ARCHITECTURES = [HardParameterSharing, MTAN, CrossStitch]


def _unet() -> UNetEncoder:
    return UNetEncoder(in_channels=1, channels=(8, 16, 32))


def _tasks(guide_task="seg", guide_class="lesion", seg_names=SEG_NAMES):
    seg = SegmentationTask("seg")
    seg.bind(TargetSpec("segmentation", len(seg_names), seg_names))
    cls = ClassificationTask("cls", stages=(-2, -1), guide_task=guide_task, guide_class=guide_class)
    cls.bind(TargetSpec("classification", 3, ("none", "benign", "malignant")))
    return {"seg": seg, "cls": cls}


def test_guided_pooling_is_the_guide_weighted_mean_plus_area_and_peak():
    head = PooledHead([4], 2, stages=(0,), pool="avg", guided=True)
    x = torch.zeros(1, 4, 8, 8)
    x[:, :, :2, :2] = torch.arange(1.0, 5.0).view(1, 4, 1, 1)  # feature values in the region
    x[:, :, 4:, 4:] = 100.0  # outside the region: must not enter the weighted mean
    guide = torch.zeros(1, 1, 8, 8)
    guide[:, :, :2, :2] = 0.5
    (weighted,), scalars = head._guided_pool([x], guide)
    mass = 4 * 0.5  # sum of g over the region
    expected = torch.tensor([[1.0, 2.0, 3.0, 4.0]]) * mass / (mass + 1e-4)  # guide_eps
    torch.testing.assert_close(weighted, expected)
    share = 4 * 0.5 / 64  # g's mean over the image
    size = 1.0 - math.log(share + 1e-4) / math.log(1e-4)  # log share mapped to [0, 1]
    torch.testing.assert_close(scalars, torch.tensor([[size, 0.5]]))


def test_guided_max_keeps_the_strongest_region_that_the_mean_dilutes():
    # one strong region (a malignant lesion) and two weak ones (benign lesions), all g = 1
    x = torch.zeros(1, 2, 8, 8)
    x[:, :, :2, :2] = 9.0
    x[:, :, 4:6, :2] = 1.0
    x[:, :, 4:6, 4:6] = 1.0
    x[:, :, 2:4, 6:] = 50.0  # outside every region: in neither pool
    guide = torch.zeros(1, 1, 8, 8)
    guide[:, :, :2, :2] = guide[:, :, 4:6, :2] = guide[:, :, 4:6, 4:6] = 1.0
    pools = {}
    for mode in ("avg", "max", "avgmax"):
        head = PooledHead([2], 3, stages=(0,), pool="avg", guided=True, guide_pool=mode)
        (pools[mode],), _ = head._guided_pool([x], guide)
        assert head([x], guide=guide).shape == (1, 3)
    mean = (4 * 9.0 + 8 * 1.0) / (12 + 1e-4)  # 12 px of g = 1; guide_eps
    torch.testing.assert_close(pools["avg"], torch.full((1, 2), mean))
    torch.testing.assert_close(pools["max"], torch.full((1, 2), 9.0))
    torch.testing.assert_close(pools["avgmax"], torch.cat([pools["avg"], pools["max"]], dim=1))
    # the head's input: global avg (2) + guided pools (2 or 4) + size and peak (2)
    widths = {
        mode: PooledHead([2], 3, stages=(0,), pool="avg", guided=True, guide_pool=mode)
        .mlp[0]
        .normalized_shape[0]
        for mode in ("avg", "avgmax")
    }
    assert widths == {"avg": 6, "avgmax": 8}


def test_an_unknown_guide_pool_names_the_setting():
    with pytest.raises(TaskConfigError, match=r"tasks\.cls\.guide_pool='median' is unknown"):
        ClassificationTask("cls", guide_task="seg", guide_class="lesion", guide_pool="median")
    with pytest.raises(ValueError, match=r"guide_pool='median' is unknown"):
        PooledHead([4], 3, stages=(0,), guided=True, guide_pool="median")


def test_guide_size_spans_zero_to_one():
    head = PooledHead([1], 2, stages=(0,), guided=True)
    x = torch.zeros(2, 1, 4, 4)
    guide = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])  # no region, all region
    _, scalars = head._guided_pool([x], guide)
    torch.testing.assert_close(scalars[:, 0], torch.tensor([0.0, 1.0]), atol=2e-5, rtol=0)
    torch.testing.assert_close(scalars[:, 1], torch.tensor([0.0, 1.0]))


def test_guided_pooling_downsamples_the_guide_to_each_stage():
    head = PooledHead([1], 2, stages=(0,), pool="avg", guided=True, guide_eps=1e-9)
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = 3.0, 7.0
    guide = torch.zeros(1, 1, 8, 8)  # a full-resolution guide over a stride-4 feature map
    guide[:, :, :4, :4] = 1.0  # covers cell (0, 0) fully
    guide[:, :, 4:6, 4:8] = 1.0  # covers half of cell (1, 1)
    (weighted,), _ = head._guided_pool([x], guide)
    torch.testing.assert_close(weighted, torch.tensor([[(3.0 * 1 + 7.0 * 0.5) / 1.5]]))


def test_guide_eps_must_be_positive():
    with pytest.raises(ValueError, match="guide_eps"):
        PooledHead([4], 3, stages=(0,), guided=True, guide_eps=0.0)


def test_a_guided_head_refuses_to_run_without_its_guide_and_vice_versa():
    features = [torch.randn(2, 4, 8, 8)]
    with pytest.raises(ValueError, match="needs a guide map"):
        PooledHead([4], 3, stages=(0,), guided=True)(features)
    with pytest.raises(ValueError, match="needs a guide map"):
        PooledHead([4], 3, stages=(0,))(features, guide=torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(batch, 1, H, W\)"):
        PooledHead([4], 3, stages=(0,), guided=True)(features, guide=torch.rand(2, 3, 8, 8))


def test_guide_map_is_the_detached_softmax_probability_of_the_class():
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    g = guide_map(logits, Guide("seg", 4))
    assert g.shape == (2, 1, 4, 4) and not g.requires_grad
    torch.testing.assert_close(g, logits.detach().softmax(1)[:, 4:5])


def test_resolve_guides_finds_the_class_index_and_skips_an_absent_guide_task():
    tasks = _tasks()
    assert resolve_guides(tasks) == {"cls": Guide("seg", 4)}
    assert resolve_guides({"cls": tasks["cls"]}) == {}  # cls alone: unguided


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"guide_class": "tumour"}, "not a class of task 'seg'"),
        ({"guide_task": "cls"}, "another segmentation task"),
    ],
)
def test_resolve_guides_names_the_bad_setting(kwargs, match):
    with pytest.raises(TaskConfigError, match=match):
        resolve_guides(_tasks(**kwargs))


def test_a_guide_task_that_is_not_segmentation_is_refused():
    tasks = _tasks(guide_task="depth")
    tasks["depth"] = DepthTask("depth")
    with pytest.raises(TaskConfigError, match="another segmentation task"):
        resolve_guides(tasks)


def test_guide_task_and_class_go_together():
    with pytest.raises(TaskConfigError, match="go together"):
        ClassificationTask("cls", guide_task="seg")


@pytest.mark.parametrize("arch", GUIDED_ARCHITECTURES, ids=lambda a: a.__name__)
def test_the_guided_head_reads_segmentations_prediction(arch):
    torch.manual_seed(0)
    net = arch(_unet, _tasks(), UNetDecoder).eval()
    assert net.guides == {"cls": Guide("seg", 4)}
    image = torch.randn(2, 1, 32, 32)
    out = net(image)
    assert out["cls"].shape == (2, 3) and list(out) == ["seg", "cls"]
    # raising the seg head's lesion bias changes the lesion map, hence the class scores
    seg_head = net.heads["seg"]
    last = [m for m in seg_head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias[4] += 5.0
    out2 = net(image)
    torch.testing.assert_close(out2["seg"][:, :4], out["seg"][:, :4])
    assert not torch.allclose(out2["cls"], out["cls"])
    # decode(encode(x)) is forward(x), the contract grad_source=features relies on
    torch.testing.assert_close(net.decode(net.encode(image))["cls"], out2["cls"])


@pytest.mark.parametrize("arch", GUIDED_ARCHITECTURES, ids=lambda a: a.__name__)
def test_the_classification_loss_never_reaches_the_segmentation_head(arch):
    net = arch(_unet, _tasks(), UNetDecoder)
    out = net(torch.randn(2, 1, 32, 32))
    out["cls"].sum().backward()
    assert all(p.grad is None for p in net.heads["seg"].parameters())
    assert all(p.grad is not None for p in net.heads["cls"].parameters())


def test_single_task_baselines_are_never_guided():
    net = SingleTaskNets(_unet, _tasks(), UNetDecoder)
    assert net.guides == {}
    assert not net.heads["cls"].guided
    assert net(torch.randn(2, 1, 32, 32))["cls"].shape == (2, 3)


def test_an_unguided_cls_head_is_unchanged():
    net = HardParameterSharing(_unet, _tasks(guide_task=None, guide_class=None), UNetDecoder)
    assert net.guides == {} and not net.heads["cls"].guided


def test_stages_the_encoder_lacks_are_refused_with_the_setting_to_change():
    cls = _tasks()["cls"]  # pools stages (-2, -1)
    with pytest.raises(TaskConfigError, match=r"tasks\.cls\.stages=\[-2, -1\] .*encoder's 1 "):
        cls.build_head([8], [1])

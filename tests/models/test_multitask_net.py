import pytest
import torch

from mtl.models import MultiTaskNet, TimmEncoder, UNetEncoder
from mtl.tasks import ClassificationTask, SegmentationTask, TargetSpec


def _tasks():
    seg = SegmentationTask("seg")
    seg.bind(TargetSpec("segmentation", 5, ("bg", "liver", "kidney", "bone", "lesion")))
    cls = ClassificationTask("cls")
    cls.bind(TargetSpec("classification", 3, ("none", "benign", "malignant")))
    return {"seg": seg, "cls": cls}


def _unet():
    return UNetEncoder(in_channels=1, channels=(8, 16, 32))


def test_hps_output_shapes_and_sharing():
    net = MultiTaskNet(_unet, _tasks(), share_encoder=True)
    out = net(torch.randn(2, 1, 32, 48))
    assert out["seg"].shape == (2, 5, 32, 48)
    assert out["cls"].shape == (2, 3)
    shared = {id(p) for p in net.shared_parameters()}
    assert shared and shared == {id(p) for p in net.encoders["shared"].parameters()}
    for name in ("seg", "cls"):
        assert shared.isdisjoint(id(p) for p in net.task_parameters(name))


def test_stl_has_one_encoder_per_task_and_no_cross_gradients():
    net = MultiTaskNet(_unet, _tasks(), share_encoder=False)
    assert set(net.encoders) == {"seg", "cls"}
    assert list(net.shared_parameters()) == []
    out = net(torch.randn(2, 1, 32, 32))
    out["cls"].sum().backward()
    assert all(p.grad is None for p in net.encoders["seg"].parameters())
    assert any(p.grad is not None for p in net.encoders["cls"].parameters())


def test_timm_encoder_builds_any_backbone_without_download():
    enc = TimmEncoder("resnet18", in_channels=1)
    assert enc.reductions == [2, 4, 8, 16, 32]
    net = MultiTaskNet(lambda: TimmEncoder("resnet18", in_channels=1), _tasks())
    out = net(torch.randn(1, 1, 64, 64))
    assert out["seg"].shape == (1, 5, 64, 64) and out["cls"].shape == (1, 3)


def test_timm_missing_weights_file_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TimmEncoder("resnet18", weights=str(tmp_path / "missing.safetensors"))


def test_timm_unknown_name_lists_similar():
    with pytest.raises(ValueError, match="timm has no model"):
        TimmEncoder("resnet_does_not_exist")


def test_classification_head_pools_several_stages_with_task_convs():
    cls = ClassificationTask("cls", stages=(-3, -2, -1), conv_channels=8)
    cls.bind(TargetSpec("classification", 3, ("a", "b", "c")))
    net = MultiTaskNet(_unet, {"cls": cls})
    head = net.heads["cls"]
    assert len(head.convs) == 3  # one task-specific conv per pooled stage
    assert net(torch.randn(2, 1, 32, 32))["cls"].shape == (2, 3)
    with pytest.raises(ValueError, match="index the encoder"):
        bad = ClassificationTask("cls", stages=(5,))
        bad.bind(TargetSpec("classification", 3, ("a", "b", "c")))
        MultiTaskNet(_unet, {"cls": bad})

"""Architectures (`model=`), encoders (`encoder=`) and decoders (`decoder=`)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from conftest import compose_config

from mtl.models import (
    MTAN,
    CrossStitch,
    DeepLabV3PlusDecoder,
    FPNDecoder,
    HardParameterSharing,
    SingleTaskNets,
    TimmEncoder,
    UNetDecoder,
    UNetEncoder,
)
from mtl.models.complexity import count_flops, model_complexity
from mtl.models.encoders import Encoder
from mtl.tasks import ClassificationTask, SegmentationTask, TargetSpec
from mtl.training.builders import build_module

CONF = Path(__file__).resolve().parents[2] / "conf"
ENCODERS = sorted(p.stem for p in (CONF / "encoder").glob("*.yaml"))
DECODERS = sorted(p.stem for p in (CONF / "decoder").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
ARCHITECTURES = {
    "hps": HardParameterSharing,
    "stl": SingleTaskNets,
    "mtan": MTAN,
    "cross_stitch": CrossStitch,
}


def _tasks():
    seg = SegmentationTask("seg")
    seg.bind(TargetSpec("segmentation", 5, ("bg", "liver", "kidney", "bone", "lesion")))
    cls = ClassificationTask("cls", stages=(-2, -1))
    cls.bind(TargetSpec("classification", 3, ("none", "benign", "malignant")))
    return {"seg": seg, "cls": cls}


def _unet() -> Encoder:
    return UNetEncoder(in_channels=1, channels=(8, 16, 32))


class _Data:
    """What build_module reads from a DataModule."""

    in_channels = 1
    input_shape = (1, 64, 64)
    target_specs: ClassVar = {
        "seg": TargetSpec("segmentation", 5, ("bg", "liver", "kidney", "bone", "lesion"), 255),
        "cls": TargetSpec(
            "classification", 3, ("none", "benign", "malignant"), class_frequencies=(0.7, 0.2, 0.1)
        ),
    }

    def class_frequencies(self, target: str) -> np.ndarray:  # for class_weights: inverse
        return np.asarray(self.target_specs[target].class_frequencies)


def test_configs_cover_the_documented_choices():
    assert {"hps", "stl", "mtan", "cross_stitch"} <= set(MODELS)
    assert {"unet", "deeplabv3plus", "fpn"} <= set(DECODERS)
    assert {"unet", "resnet18", "resnet34", "resnet50", "efficientnet_b0", "convnext_tiny"} <= set(
        ENCODERS
    )


@pytest.mark.parametrize(
    "encoder,decoder,model", list(itertools.product(ENCODERS, DECODERS, MODELS))
)
def test_every_configured_combination_builds_and_trains_a_step(tmp_path, encoder, decoder, model):
    overrides = [f"encoder={encoder}", f"decoder={decoder}", f"model={model}"]
    if encoder == "unet":
        overrides.append("encoder.channels=[8,16,32,64]")
    if decoder == "deeplabv3plus":  # a 64 px input leaves 2x2 maps: small rates and widths
        overrides += ["decoder.aspp_rates=[1,2]", "decoder.aspp_channels=16"]
        overrides += ["decoder.decoder_channels=16"]
    cfg = compose_config(tmp_path, overrides)
    module = build_module(cfg, _Data())
    net = module.net
    assert isinstance(net, ARCHITECTURES[model])
    image = torch.randn(2, 1, 64, 64)
    out = net(image)
    assert out["seg"].shape == (2, 5, 64, 64) and out["cls"].shape == (2, 3)
    (out["seg"].square().mean() + out["cls"].square().mean()).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    counts = net.parameter_counts()
    assert counts["shared"] + counts["seg"] + counts["cls"] == counts["total"]
    if net.shared_representation:  # the graph cut used by grad_source=features
        net.eval()
        z = [f.detach().requires_grad_() for f in net.encode(image)]
        torch.testing.assert_close(net.decode(z)["cls"], net(image)["cls"])


def test_hps_shares_the_encoder_only():
    net = HardParameterSharing(_unet, _tasks(), UNetDecoder)
    shared = {id(p) for p in net.shared_parameters()}
    assert shared == {id(p) for p in net.encoder.parameters()}
    for name in ("seg", "cls"):
        assert shared.isdisjoint(id(p) for p in net.task_parameters(name))
    assert net.has_shared_parameters and net.shared_representation


def test_stl_has_one_encoder_per_task_and_no_cross_gradients():
    net = SingleTaskNets(_unet, _tasks(), UNetDecoder)
    assert set(net.encoders) == {"seg", "cls"}
    assert not net.has_shared_parameters
    net(torch.randn(2, 1, 32, 32))["cls"].sum().backward()
    assert all(p.grad is None for p in net.encoders["seg"].parameters())
    assert any(p.grad is not None for p in net.encoders["cls"].parameters())
    with pytest.raises(ValueError, match="no shared representation"):
        net.encode(torch.randn(1, 1, 32, 32))


def test_mtan_masks_select_task_specific_features():
    net = MTAN(_unet, _tasks(), UNetDecoder)
    image = torch.randn(2, 1, 32, 32)
    z = net.encode(image)
    seg_features = net.heads["seg"].attention(z)
    cls_features = net.heads["cls"].attention(z)
    for shared, a, b in zip(z, seg_features, cls_features, strict=True):
        assert a.shape == shared.shape
        # a mask in (0, 1) only scales the shared feature down, never flips or amplifies it
        ratio = a / shared.where(shared.abs() > 1e-6, torch.ones_like(shared))
        assert ((ratio > 0) & (ratio < 1)).float().mean() > 0.99
        assert not torch.allclose(a, b)  # each task has its own masks
    net(image)["cls"].sum().backward()
    assert all(p.grad is None for p in net.heads["seg"].parameters())
    assert all(p.grad is not None for p in net.heads["cls"].attention.parameters())
    assert any(p.grad is not None for p in net.encoder.parameters())


@pytest.mark.parametrize("init_self,crosses", [(1.0, False), (0.9, True)])
def test_cross_stitch_units_couple_the_columns(init_self, crosses):
    net = CrossStitch(_unet, _tasks(), UNetDecoder, init_self=init_self)
    assert net.stitches[0].alpha.shape == (2, 2, 8)
    net(torch.randn(2, 1, 32, 32))["cls"].sum().backward()
    seg_column = [p.grad for p in net.columns["seg"].parameters()]
    touched = any(g is not None and g.abs().sum() > 0 for g in seg_column)
    assert touched == crosses  # identity units: the columns are independent STL networks
    assert net.stitches[0].alpha.grad is not None


def test_cross_stitch_unit_mixes_as_defined():
    from mtl.models.architectures import CrossStitchUnit

    unit = CrossStitchUnit(3, 2, init_self=0.8)
    alpha = unit.alpha.detach()
    assert torch.allclose(alpha[0, 0], torch.tensor([0.8, 0.8]))
    assert torch.allclose(alpha[0, 1], torch.tensor([0.1, 0.1]))
    xs = [torch.randn(4, 2, 3, 3) for _ in range(3)]
    out = unit(xs)
    expected = sum(alpha[1, s].view(1, 2, 1, 1) * xs[s] for s in range(3))
    torch.testing.assert_close(out[1], expected)


@pytest.mark.parametrize(
    "make",
    [
        _unet,
        lambda: TimmEncoder("resnet18", in_channels=1),
        lambda: TimmEncoder("efficientnet_b0", in_channels=1),
        lambda: TimmEncoder("convnext_tiny", in_channels=1),
    ],
    ids=["unet", "resnet18", "efficientnet_b0", "convnext_tiny"],
)
def test_stage_modules_chain_reproduces_the_encoder(make):
    encoder = make().eval()
    x = torch.randn(1, 1, 64, 64)
    expected = encoder(x)
    stages = encoder.stage_modules()
    assert len(stages) == len(expected) == len(encoder.channels)
    h = x
    for stage, feature in zip(stages, expected, strict=True):
        h = stage(h)
        torch.testing.assert_close(h, feature)
    names = [n for n, _ in encoder.named_parameters()]
    assert len(names) == len(set(names)) and not any("_stage_groups" in n for n in names)


def test_decoders_report_their_output_stride():
    channels, reductions = [16, 24, 40, 112, 320], [2, 4, 8, 16, 32]
    feats = [torch.randn(1, c, 64 // r, 64 // r) for c, r in zip(channels, reductions, strict=True)]
    for decoder in (
        UNetDecoder(channels, reductions),
        DeepLabV3PlusDecoder(channels, reductions, aspp_channels=16, aspp_rates=(1, 2)),
        FPNDecoder(channels, reductions, pyramid_channels=16),
    ):
        out = decoder.eval()(feats)
        assert out.shape[1] == decoder.out_channels
        assert out.shape[-1] * decoder.out_reduction == 64
    assert DeepLabV3PlusDecoder(channels, reductions).out_reduction == 4  # the stride-4 skip


def test_timm_output_stride_dilates():
    enc = TimmEncoder("resnet18", in_channels=3, output_stride=8)
    assert enc.reductions == [2, 4, 8, 8, 8]
    assert [f.shape[-1] for f in enc(torch.randn(1, 3, 64, 64))] == [32, 16, 8, 8, 8]


def test_timm_local_weights_load_and_adapt_to_one_channel(tmp_path):
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.safetensors"
    save_file(reference.state_dict(), str(path))
    rgb = TimmEncoder("resnet18", in_channels=3, weights=str(path))
    torch.testing.assert_close(rgb.model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    grey = TimmEncoder("resnet18", in_channels=1, weights=str(path))
    torch.testing.assert_close(
        grey.model.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True)
    )


def test_timm_pretrained_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    with pytest.raises(FileNotFoundError, match=r"encoder\.weights=/path/to/model\.safetensors"):
        TimmEncoder("resnet18", pretrained=True)


def test_timm_pretrained_reads_an_existing_torch_hub_cache(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    torch.hub.set_dir(str(tmp_path / "torch_hub"))
    try:
        reference = timm.create_model("resnet18")
        url = reference.pretrained_cfg["url"]
        cached = tmp_path / "torch_hub" / "checkpoints" / url.rsplit("/", 1)[-1]
        cached.parent.mkdir(parents=True)
        torch.save(reference.state_dict(), cached)
        enc = TimmEncoder("resnet18", in_channels=3, pretrained=True)
    finally:
        torch.hub.set_dir(str(Path.home() / ".cache" / "torch" / "hub"))
    torch.testing.assert_close(enc.model.conv1.weight, reference.conv1.weight)


def test_timm_missing_weights_file_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TimmEncoder("resnet18", weights=str(tmp_path / "missing.safetensors"))


def test_timm_unknown_name_lists_similar():
    with pytest.raises(ValueError, match="timm has no model"):
        TimmEncoder("resnet_does_not_exist")


def test_classification_head_pools_several_stages_with_task_convs():
    cls = ClassificationTask("cls", stages=(-3, -2, -1), conv_channels=8)
    cls.bind(TargetSpec("classification", 3, ("a", "b", "c")))
    net = HardParameterSharing(_unet, {"cls": cls})
    assert len(net.heads["cls"].convs) == 3  # one task-specific conv per pooled stage
    assert net(torch.randn(2, 1, 32, 32))["cls"].shape == (2, 3)
    with pytest.raises(ValueError, match="index the encoder"):
        bad = ClassificationTask("cls", stages=(5,))
        bad.bind(TargetSpec("classification", 3, ("a", "b", "c")))
        HardParameterSharing(_unet, {"cls": bad})


def test_dense_task_without_any_decoder_names_the_fix():
    with pytest.raises(ValueError, match="decoder=unet"):
        HardParameterSharing(_unet, _tasks(), decoder=None)


def test_flops_and_parameter_counts():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False))
    assert count_flops(conv, (1, 8, 8)) == 2 * 4 * 9 * 8 * 8  # 2 FLOPs per multiply-add
    net = HardParameterSharing(_unet, _tasks(), UNetDecoder)
    stats = model_complexity(net, (1, 32, 32))
    assert stats["model/params/shared"] == sum(p.numel() for p in net.encoder.parameters())
    assert stats["model/params/seg"] == sum(p.numel() for p in net.heads["seg"].parameters())
    assert stats["model/gflops_per_image"] > 0
    # the encoder's first conv alone: 8 filters of 3x3x1 over 32x32 pixels
    assert stats["model/gflops_per_image"] * 1e9 > 2 * 8 * 9 * 32 * 32
    assert net.training  # counting FLOPs leaves the mode as it was


def test_unet_stem_stride_two_halves_every_stage_and_seg_keeps_input_size():
    def make() -> Encoder:
        return UNetEncoder(in_channels=1, channels=(8, 16, 32), stem_stride=2)

    encoder = make()
    assert encoder.reductions == [2, 4, 8]
    feats = encoder(torch.randn(2, 1, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8]
    net = HardParameterSharing(make, _tasks(), UNetDecoder)
    out = net(torch.randn(2, 1, 64, 64))
    assert out["seg"].shape == (2, 5, 64, 64)
    assert out["cls"].shape == (2, 3)
    full = count_flops(UNetEncoder(1, (8, 16, 32)), (1, 64, 64))
    assert count_flops(encoder, (1, 64, 64)) < 0.3 * full  # every stage at a quarter the pixels


def test_unet_stem_stride_other_than_one_or_two_is_refused():
    with pytest.raises(ValueError, match="stem_stride=4"):
        UNetEncoder(in_channels=1, channels=(8, 16), stem_stride=4)

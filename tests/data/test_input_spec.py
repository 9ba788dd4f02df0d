"""`InputSpec`: what predict needs, stored in data modules' checkpointed state."""

from __future__ import annotations

import io

import torch

from mtl.data.ct import SyntheticCTDataModule
from mtl.data.input_spec import InputSpec
from mtl.data.normalization import CTFingerprint
from mtl.tasks import TargetSpec


def test_spec_round_trips_through_a_weights_only_checkpoint():
    spec = InputSpec(
        channel_names=("CT", "T2"),
        context=2,
        patch_size=(96, 80),
        target_spacing=(0.75, 0.8),
        fingerprints={0: CTFingerprint(-100.0, 300.0, 50.0, 40.0, 1234)},
        targets={
            "seg": TargetSpec("segmentation", 3, ("bg", "organ", "lesion"), 255),
            "cls": TargetSpec("classification", 2, ("no", "yes"), None, (0.75, 0.25)),
        },
    )
    assert spec.in_channels == 2 * 5
    buffer = io.BytesIO()
    torch.save({"Data": {"input_spec": spec.to_dict()}}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert InputSpec.from_dict(loaded["Data"]["input_spec"]) == spec


def test_synthetic_ct_state_carries_its_spec():
    dm = SyntheticCTDataModule(num_train=4, num_val=2, num_test=2, phantom={"image_size": 64})
    assert "input_spec" not in dm.state_dict()  # nothing to say before the fingerprint exists
    dm.setup("fit")
    spec = InputSpec.from_dict(dm.state_dict()["input_spec"])
    assert spec.channel_names == ("CT",) and spec.patch_size == (64, 64)
    assert spec.target_spacing is None and spec.fingerprints[0] == dm.fingerprint
    assert spec.targets["seg"] == dm.target_specs["seg"]

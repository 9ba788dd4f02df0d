"""What the model sees under each sampler, counted in the batches of the training loader of a
small nnU-Net raw dataset written with nibabel: the weighted sampler raises the share of the
minority slice class, the foreground sampler puts foreground into every batch."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.nnunet import make_nnunet_dataset

from mtl.data.nnunet import NnUNetDataModule
from mtl.data.samplers import Sampling, forced_count

BATCH = 4
EPOCHS = 24


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory) -> NnUNetDataModule:
    # 3 training cases of 12 slices: the lesion is in 2 slices of each (cls 1 = 17 %), the
    # organ in 8 (foreground in 67 % of the slices)
    root = make_nnunet_dataset(tmp_path_factory.mktemp("raw"), n_cases=4, shape=(24, 24, 12))
    return NnUNetDataModule(
        str(root),
        cache_dir=str(root.parent / "cache"),
        val_fraction=0.25,
        batch_size=BATCH,
        num_workers=0,
        cls_rule={"kind": "has_label", "label": "lesion"},
    )


def seen(dm: NnUNetDataModule, sampling: Sampling) -> dict[str, np.ndarray]:
    """Per batch of every epoch: slice classes, and whether each slice holds foreground or
    lesion pixels in the mask the model is trained on."""
    dm.set_sampling(sampling)
    cls, foreground, lesion = [], [], []
    for epoch in range(EPOCHS):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning does at every epoch start
        for batch in loader:
            masks = batch["targets"]["seg"].flatten(1)
            cls.append(batch["targets"]["cls"].numpy())
            foreground.append(((masks > 0) & (masks != 255)).any(1).numpy())
            lesion.append((masks == 2).any(1).numpy())
    return {"cls": np.stack(cls), "foreground": np.stack(foreground), "lesion": np.stack(lesion)}


def test_weighted_and_foreground_samplers_change_what_the_model_sees(datamodule):
    none = seen(datamodule, Sampling(seed=3))
    weighted = seen(datamodule, Sampling(weight_target="cls", seed=3))
    foreground = seen(
        datamodule, Sampling(foreground_target="seg", foreground_fraction=0.5, seed=3)
    )
    both = seen(
        datamodule,
        Sampling(weight_target="cls", foreground_target="seg", foreground_fraction=0.5, seed=3),
    )
    lesion_share = (datamodule.dataset("train").class_labels("cls") == 1).mean()
    assert lesion_share == pytest.approx(6 / 36)

    # none: a permutation per epoch, so the natural shares (minus the dropped last batch)
    assert none["cls"].mean() == pytest.approx(lesion_share, abs=0.03)
    # weighted (power 1): both slice classes about equally often
    assert weighted["cls"].mean() == pytest.approx(0.5, abs=0.08)

    k = forced_count(0.5, BATCH)
    assert none["foreground"].sum(1).min() < k  # uniform batches can lack foreground
    for drawn in (foreground, both):
        assert drawn["foreground"].sum(1).min() >= k  # every batch: at least half foreground
        # forced places hold the lesion half the time (and organ slices may hold it too)
        assert drawn["lesion"].mean() > none["lesion"].mean() + 0.15
    assert both["cls"][:, k:].mean() == pytest.approx(0.5, abs=0.1)  # the rest is balanced

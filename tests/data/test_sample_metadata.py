"""Per-sample classes reported without loading images agree with the served items (synthetic
CT, nnU-Net slices, scenes), and class frequencies of the training split follow from them."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.nnunet import make_nnunet_dataset

from mtl.data.ct import SyntheticCTDataModule
from mtl.data.nnunet import NnUNetDataModule
from mtl.data.sample_metadata import MISSING, MetadataError, labels_of, presence_of
from mtl.data.scenes import SyntheticScenesDataModule


def _served(dataset, target: str) -> list:
    return [dataset[i]["targets"][target] for i in range(len(dataset))]


def test_synthetic_ct_reports_what_it_serves(tmp_path):
    dm = SyntheticCTDataModule(
        num_train=24, num_val=4, num_test=4, phantom={"image_size": 64}, cache_dir=None
    )
    train = dm.dataset("train")
    labels = np.asarray([int(t) for t in _served(train, "cls")])
    assert np.array_equal(labels_of(train, "cls"), labels)
    counts = np.stack(
        [np.bincount(m.flatten().numpy(), minlength=5) for m in _served(train, "seg")]
    )
    assert np.array_equal(train.class_pixel_counts("seg"), counts)
    freq = dm.class_frequencies("cls")
    assert freq.tolist() == pytest.approx((np.bincount(labels, minlength=3) / 24).tolist())
    assert dm.class_frequencies("seg").tolist() == pytest.approx(
        (counts.sum(0) / counts.sum()).tolist()
    )
    with pytest.raises(MetadataError, match=r"no classification target 'seg'.*\['cls'\]"):
        labels_of(train, "seg")


def test_nnunet_slices_report_labels_and_mask_classes(tmp_path):
    root = make_nnunet_dataset(tmp_path / "raw", n_cases=4, shape=(32, 32, 12), without_mask=[3])
    dm = NnUNetDataModule(
        str(root),
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.25,
        test_fraction=0.0,
        cls_rule={"kind": "has_label", "label": "lesion"},
    )
    for split in ("train", "val"):
        data = dm.dataset(split)
        served = [data[i] for i in range(len(data))]
        labels = [int(s["targets"]["cls"]) if s["has_target"]["cls"] else MISSING for s in served]
        assert labels_of(data, "cls").tolist() == labels
        # same spacing and size everywhere: the stored counts of the original mask are exact
        presence = np.stack(
            [
                np.bincount(s["targets"]["seg"].flatten().numpy(), minlength=3)[:3] > 0
                if s["has_target"]["seg"]
                else np.zeros(3, dtype=bool)
                for s in served
            ]
        )
        assert np.array_equal(presence_of(data, "seg"), presence)
    assert (labels_of(dm.dataset("train"), "cls") != MISSING).any()
    no_cls = NnUNetDataModule(str(root), cache_dir=str(tmp_path / "cache"), val_fraction=0.25)
    with pytest.raises(MetadataError, match=r"no classification target 'cls'.*none"):
        labels_of(no_cls.dataset("train"), "cls")


def test_scenes_report_mask_classes_but_no_class_label():
    dm = SyntheticScenesDataModule(
        num_train=4, num_val=2, num_test=2, scene={"image_height": 24, "image_width": 32}
    )
    train = dm.dataset("train")
    first = np.bincount(
        train[0]["targets"]["seg"].flatten().numpy(), minlength=train.arrays.pixel_counts.shape[1]
    )
    assert np.array_equal(train.class_pixel_counts("seg")[0], first)
    with pytest.raises(MetadataError, match="objects` is multi-label"):
        labels_of(train, "cls")

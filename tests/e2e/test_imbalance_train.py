"""Class imbalance end to end through Hydra: training on a small nnU-Net raw dataset (nibabel)
with every sampler and the imbalance losses, the default synthetic CT experiment with a
sampler and frequency-based class weights, and the errors of bad configs."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from conftest import TINY, compose_config
from fixtures.nnunet import make_nnunet_dataset
from hydra.errors import InstantiationException

from mtl.data.samplers import EpochSampler
from mtl.losses import class_weights_from_frequencies
from mtl.training.builders import ConfigError, build_datamodule, build_module, build_trainer
from mtl.training.run import train

NNUNET = [
    "data=nnunet",
    "data.batch_size=4",
    "data.eval_batch_size=16",
    "data.num_workers=0",
    "data.val_fraction=0.25",
    "data.cls_rule={kind: has_label, label: lesion}",
    "tasks=[seg,cls]",
    "tasks.seg.lesion_classes=[lesion]",
    "encoder.channels=[8,16,32]",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
    "extras.print_metrics=false",
    "logger=none",
]


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory):
    return make_nnunet_dataset(tmp_path_factory.mktemp("raw"), n_cases=4, shape=(24, 24, 8))


@pytest.mark.parametrize(
    "sampler,losses",
    [
        ("none", ["tasks.seg.class_weights=median"]),
        ("weighted", ["tasks.cls.loss=focal", "tasks.cls.class_weights=inverse"]),
        ("foreground", ["tasks.seg.loss=tversky_ce", "sampler.foreground_fraction=0.5"]),
        ("weighted_foreground", ["tasks.seg.loss=dice_focal", "tasks.cls.focal_alpha=0.75",
                                 "tasks.cls.loss=focal", "tasks.cls.class_weights=null"]),
    ],
)  # fmt: skip
def test_train_on_nnunet_with_each_sampler(tmp_path, raw_dataset, sampler, losses):
    cfg = compose_config(
        tmp_path, [*NNUNET, f"data.root={raw_dataset}", f"sampler={sampler}", *losses]
    )
    metrics = train(cfg)
    for name in ("test/seg/dice", "test/seg/dice_lesion", "test/cls/balanced_acc"):
        assert math.isfinite(metrics[name]), f"{name} = {metrics[name]}"
    assert 0.0 <= metrics["test/seg/lesion_recall_lesion"] <= 1.0


def test_default_ct_experiment_with_sampler_and_frequency_weights(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            "sampler=weighted_foreground",
            "tasks.cls.class_weights=inverse",
            "tasks.seg.class_weights=median",
            "tasks.seg.lesion_classes=[lesion]",
            "+trainer.limit_train_batches=2",
        ],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    # class weights come from the training split the model trains on
    train_split = datamodule.dataset("train")
    labels = train_split.class_labels("cls")
    freq = np.bincount(labels, minlength=3) / len(labels)
    expected = class_weights_from_frequencies(freq, "inverse")
    assert module.tasks["cls"].class_weights.tolist() == pytest.approx(expected.tolist())
    pixels = train_split.class_pixel_counts("seg").sum(0)
    expected = class_weights_from_frequencies(pixels / pixels.sum(), "median")
    seg_weights = module.tasks["seg"].criterion.class_weights
    assert seg_weights.tolist() == pytest.approx(expected.tolist())
    # the training loader draws with the configured sampler
    sampler = datamodule.train_dataloader().sampler
    assert isinstance(sampler, EpochSampler)
    assert sampler.draw.probabilities is not None and sampler.draw.forced == 3  # ceil(.33 * 8)

    metrics = train(cfg)
    assert math.isfinite(metrics["test/cls/balanced_acc"])
    assert "test/seg/lesion_recall" in metrics


def test_bad_imbalance_configs_fail_clearly(tmp_path, raw_dataset):
    def build(*overrides: str, base: tuple[str, ...] = tuple(TINY)) -> None:
        cfg = compose_config(tmp_path, [*base, *overrides])
        build_module(cfg, build_datamodule(cfg))

    with pytest.raises(ConfigError, match=r"weight_target='seg' is of kind 'segmentation'"):
        build("sampler=weighted", "sampler.weight_target=seg")
    with pytest.raises(ConfigError, match=r"foreground_target='cls' is of kind"):
        build("sampler=foreground", "sampler.foreground_target=cls")
    with pytest.raises(ConfigError, match="shuffle_train=false asks for a fixed training order"):
        build("sampler=weighted", "data.shuffle_train=false")
    with pytest.raises(InstantiationException, match="'sqrt' is not a mode; choose inverse"):
        build("tasks.cls.class_weights=sqrt")
    with pytest.raises(InstantiationException, match="a classification loss is one of"):
        build("tasks.cls.loss=tversky")
    # nnU-Net data without a classification target: the weighted sampler has nothing to weigh
    no_cls = tuple(o for o in NNUNET if not o.startswith(("data.cls_rule", "tasks")))
    with pytest.raises(ConfigError, match=r"'cls' is missing in this data; its classif.*none"):
        build(f"data.root={raw_dataset}", "tasks=[seg]", "sampler=weighted", base=no_cls)


def test_foreground_sampler_needs_masks(tmp_path):
    """A dataset with class labels only (no masks, CSV classes): no segmentation target."""
    root = make_nnunet_dataset(
        tmp_path / "raw", n_cases=4, shape=(16, 16, 4), without_mask=range(4), channel_name="MR"
    )
    csv = tmp_path / "labels.csv"
    csv.write_text("case,label\n" + "".join(f"case_{i:03d},{i % 2}\n" for i in range(4)))
    cfg = compose_config(
        tmp_path,
        [
            *[o for o in NNUNET if not o.startswith(("data.cls_rule", "tasks"))],
            f"data.root={root}",
            f"data.cls_csv={csv}",
            "data.cls_classes=[a,b]",
            "tasks=[cls]",
            "sampler=foreground",
        ],
    )
    with pytest.raises(ConfigError, match=r"foreground sampler needs a segmentation target.*none"):
        build_datamodule(cfg)


class RecordIndices(L.Callback):
    """Appends the pool indices of every training batch to `rank<r>.txt`, one line a batch."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        path = Path(self.folder) / f"rank{trainer.global_rank}.txt"
        with path.open("a") as handle:
            handle.write(" ".join(str(i) for i in batch["index"].tolist()) + "\n")


@pytest.mark.slow
def test_ddp_ranks_draw_disjoint_shares_of_the_seeded_epoch_draw(tmp_path):
    """Two gloo processes: Lightning keeps our sampler (no DistributedSampler of its own),
    calls set_epoch, and rank r sees exactly positions r, r + 2, ... of the (seed, epoch)
    draw that one process computes."""
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            "trainer=ddp_cpu",
            "sampler=weighted",
            "data.num_train=48",
            "data.batch_size=4",
            "trainer.max_epochs=2",
            "trainer.limit_val_batches=0",
            "trainer.enable_checkpointing=false",
            "trainer.enable_model_summary=false",
            "trainer.enable_progress_bar=false",
        ],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, callbacks=[RecordIndices(tmp_path)], loggers=[])
    trainer.fit(module, datamodule=datamodule)

    train_split = datamodule.dataset("train")
    pool = train_split.arrays.indices
    seen = {}
    for rank in range(2):
        sampler = datamodule.sampling.build(train_split, batch_size=4, rank=rank, world_size=2)
        expected = np.stack([pool[sampler.global_draw(epoch)[:, rank]] for epoch in range(2)])
        lines = (tmp_path / f"rank{rank}.txt").read_text().split("\n")[:-1]
        seen[rank] = np.array([[int(i) for i in line.split()] for line in lines]).reshape(2, -1)
        assert np.array_equal(seen[rank], expected), f"rank {rank}"
    # the ranks' shares differ, and so do the epochs
    assert not np.array_equal(seen[0], seen[1])
    assert not np.array_equal(seen[0][0], seen[0][1])

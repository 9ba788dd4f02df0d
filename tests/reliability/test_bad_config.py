"""Config mistakes fail before training, naming the key, the target, and what would work."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from conftest import TINY, compose_config
from omegaconf import open_dict

from mtl.training.builders import ConfigError, build_datamodule, build_module
from mtl.training.config_check import UnknownConfigKeyError, check_config_keys
from mtl.training.run import train

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "+data.batchsize=4",
            r"data\.batchsize: .*SyntheticCTDataModule has no option "
            r"'batchsize'; did you mean 'batch_size'\?",
        ),
        ("+encoder.chanels=[8,16]", r"did you mean 'channels'"),
        ("+weighting.temp=2", r"weighting\.temp: .* has no option 'temp'\. Its options: seed"),
        ("+optimizer.betaz=[0.9,0.99]", r"did you mean 'betas'"),  # a partial: built in fit()
        ("+trainer.max_epoch=3", r"did you mean 'max_epochs'"),
        ("+data.augment.flip=1", r"data\.augment\.flip: .*BatchAugment"),
    ],
)
def test_unknown_keys_name_the_key_and_the_options(tmp_path, override, message):
    cfg = compose_config(tmp_path, [*TINY, override])
    with pytest.raises(UnknownConfigKeyError, match=message):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()  # failed before training
    assert (Path(cfg.paths.output_dir) / "failure.json").is_file()


def test_unimportable_target_is_named(tmp_path):
    cfg = compose_config(tmp_path, TINY)
    with open_dict(cfg):
        cfg.weighting._target_ = "mtl.weighting.NoSuchMethod"
    with pytest.raises(UnknownConfigKeyError, match=r"weighting\._target_=.*cannot be imported"):
        check_config_keys(cfg)


@pytest.mark.parametrize(
    "weighting", sorted(Path(p).stem for p in glob.glob(str(CONF / "weighting/*.yaml")))
)
def test_every_shipped_weighting_config_passes_the_check(tmp_path, weighting):
    check_config_keys(compose_config(tmp_path, [*TINY, f"weighting={weighting}"]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=scenes", "tasks=[seg,depth,normals,boundary]", "encoder=resnet18", "decoder=fpn"],
        ["data=nyuv2", "tasks=[seg,depth,normals]", "model=mtan", "decoder=deeplabv3plus"],
        ["data=nnunet", "tasks=[seg]", "sampler=weighted_foreground", "trainer=ddp_cpu"],
        ["experiment=scenes_mtl", "logger=[csv,wandb,tensorboard]", "callbacks=early_stopping"],
        ["model=cross_stitch", "scheduler=cosine", "optimizer=sgd", "trainer=gpu"],
    ],
)
def test_shipped_configs_pass_the_check(tmp_path, overrides):
    check_config_keys(compose_config(tmp_path, overrides))


@pytest.mark.parametrize(
    "override,message",
    [
        ("tasks.seg.num_classes=3", r"num_classes=3 but the data's target 'seg' has 5 classes"),
        ("tasks.cls.target=grade", r"task 'cls' needs target 'grade', which data"),
        ("optimized_metric=val/seg/dise", r"optimized_metric 'val/seg/dise' is not logged"),
        ("optimized_mode=min", r"better when higher, but optimized_mode=min"),
    ],
)
def test_config_and_data_mismatches_name_both_sides(tmp_path, override, message):
    cfg = compose_config(tmp_path, [*TINY, override])
    with pytest.raises(ConfigError, match=message):
        build_module(cfg, build_datamodule(cfg))


@pytest.mark.parametrize("group", ["weighting", "model", "encoder", "sampler", "data"])
def test_unknown_group_option_lists_the_valid_ones(tmp_path, group):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_config(tmp_path, [*TINY, f"{group}=nonexistent"])
    listed = sorted(Path(p).stem for p in glob.glob(str(CONF / group / "*.yaml")))
    assert "Available options" in str(err.value)
    assert all(name in str(err.value) for name in listed)

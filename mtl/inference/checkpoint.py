"""Rebuild a trained model for prediction from its checkpoint and its run's `config.yaml`.

The architecture comes from the run's config (as `eval.py` rebuilds it); what the inputs must
look like (channels, normalisation, spacing, context, patch size, classes) from the
`InputSpec` the data module stored in the checkpoint, so the training data need not be
present. Checkpoints written before data modules stored a spec fall back to rebuilding the
data module from the run's config, which needs the training data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from mtl.data.base import MultiTaskDataModule
from mtl.data.input_spec import InputSpec
from mtl.module import MultiTaskModule
from mtl.tasks import Task
from mtl.training.builders import ConfigError, build_datamodule, build_module
from mtl.training.run import RUN_CONFIG, find_run_config

log = logging.getLogger(__name__)

SPEC_KEY = "input_spec"


@dataclass
class LoadedModel:
    module: MultiTaskModule
    spec: InputSpec
    ckpt_path: Path
    run_config: Path
    device: torch.device

    @property
    def tasks(self) -> dict[str, Task]:
        return dict(self.module.tasks.items())

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.module(images.to(self.device, torch.float32))


class _SpecData(MultiTaskDataModule):
    """Stands in for the training data module when the model is built: it reports the
    input channels and targets the run trained on, and serves no data."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.in_channels = spec.in_channels
        self.target_specs = dict(spec.targets)
        self.spec = spec

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.spec.in_channels, *self.spec.patch_size)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(ckpt_path: str | Path, device: str = "auto") -> LoadedModel:
    """The trained module in eval mode on `device`, and its input spec."""
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint '{path}' not found; pass ckpt_path=<run dir>/checkpoints/best.ckpt "
            f"(train.py writes it; last.ckpt works too)"
        )
    config_path = find_run_config(path)
    if config_path is None:
        raise ConfigError(
            f"no {RUN_CONFIG} beside '{path}' or in its parent folder: predict rebuilds the "
            f"model from the training run's config; keep the checkpoint in its run folder "
            f"(<run>/checkpoints/best.ckpt) or copy the run's {RUN_CONFIG} next to it"
        )
    run_cfg = OmegaConf.load(config_path)
    checkpoint = _load_checkpoint(path)
    spec = _input_spec(checkpoint, run_cfg, path)
    module = _build(run_cfg, spec)
    state = checkpoint.get("state_dict")
    if state is None:
        raise ConfigError(f"'{path}' holds no 'state_dict': it is not a Lightning checkpoint")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(
            f"the weights in '{path}' do not fit the model {config_path} describes ({err}); "
            f"the config was edited after training or the checkpoint comes from another run"
        ) from err
    target = resolve_device(device)
    module.eval().to(target)
    return LoadedModel(module, spec, path, config_path, target)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        # our checkpoints hold tensors and plain containers only: no code runs on load
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, foreign pickled objects
        raise ConfigError(
            f"cannot load checkpoint '{path}' ({type(err).__name__}: {err}); it is truncated "
            f"or not a checkpoint written by train.py: copy it again"
        ) from err


def _input_spec(checkpoint: dict[str, Any], run_cfg: DictConfig, path: Path) -> InputSpec:
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get(SPEC_KEY), dict):
            return InputSpec.from_dict(value[SPEC_KEY])
    log.warning(
        "%s stores no input spec (trained before predict existed); rebuilding the data module "
        "from the run's config to recover it, which needs the training data", path,
    )  # fmt: skip
    try:
        datamodule = build_datamodule(run_cfg)
    except Exception as err:
        raise ConfigError(
            f"'{path}' predates stored input specs and its training data cannot be loaded "
            f"({type(err).__name__}: {err}); make data.{_data_hint(run_cfg)} available or "
            f"retrain, which stores what predict needs in the checkpoint"
        ) from err
    if not hasattr(datamodule, "input_spec"):
        raise ConfigError(
            f"the run trained on {type(datamodule).__name__}, which predict does not support "
            f"(it reads CT / medical inputs: data=ct or data=nnunet runs)"
        )
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)  # the training fingerprint, not a recomputed one
    return datamodule.input_spec()


def _data_hint(run_cfg: DictConfig) -> str:
    data = run_cfg.get("data") or {}
    return f"root={data.get('root')}" if data.get("root") else "*"


def _build(run_cfg: DictConfig, spec: InputSpec) -> MultiTaskModule:
    cfg = run_cfg.copy()
    with open_dict(cfg):
        encoder = cfg.get("encoder") or {}
        # the checkpoint holds every weight: never look for pretrained files
        if "pretrained" in encoder:
            cfg.encoder.pretrained = False
        if "weights" in encoder:
            cfg.encoder.weights = None
    try:
        return build_module(cfg, _SpecData(spec))
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(
            f"cannot rebuild the model from the run's config ({type(err).__name__}: {err})"
        ) from err

"""`trainer.precision: auto`: bf16 autocast only where the hardware computes bf16 natively.

Why: bf16-mixed is about 2x faster than fp32 on GPUs from Ampere on and on CPUs with
AVX512-BF16 or AMX, but on a CPU without them oneDNN emulates bf16 convolutions and a step
of the default CT network runs about 12x *slower* than in fp32 (measured on a 2-core AVX2
EPYC). One config that is fast everywhere has to look at the machine.
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

AUTO = "auto"
FAST_MIXED = "bf16-mixed"
FALLBACK = "32-true"
GPU_ACCELERATORS = ("gpu", "cuda")


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` ('cpu' or 'cuda') runs bf16 matmuls and convolutions natively."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    try:  # oneDNN's own check: AVX512-BF16 or AMX
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without oneDNN
        return False


def device_type_of(accelerator: object) -> str:
    """The device a Trainer `accelerator` setting runs on: 'cuda' or 'cpu'."""
    name = str(accelerator or AUTO).lower()
    if name in GPU_ACCELERATORS:
        return "cuda"
    if name == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def resolve_precision(precision: object, accelerator: object) -> object:
    """`auto` becomes bf16-mixed where bf16 is native and 32-true elsewhere; any other value
    is returned as it is."""
    if str(precision).lower() != AUTO:
        return precision
    return FAST_MIXED if native_bf16(device_type_of(accelerator)) else FALLBACK


def resolve_trainer_precision(cfg: DictConfig) -> None:
    """Write the precision `auto` stands for into `cfg.trainer`, so the run's saved config
    and every builder see the one actually used."""
    trainer = cfg.get("trainer")
    if trainer is None:
        return
    chosen = resolve_precision(trainer.get("precision"), trainer.get("accelerator"))
    if chosen != trainer.get("precision"):
        trainer.precision = chosen
        log.info("trainer.precision=auto: using %s on this machine", chosen)

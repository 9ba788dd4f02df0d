"""Model size and cost, logged with every run: parameters (shared vs per task) and FLOPs.

FLOPs are counted by `torch.utils.flop_counter` (2 FLOPs per multiply-add, forward pass of one
image at the data's input size), the convention of fvcore/ptflops x 2; reports say GFLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtl.models.architectures import MultiTaskNet


def count_flops(net: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one image of shape (C, H, W), in eval mode, without gradients."""
    was_training = net.training
    parameter = next(net.parameters())
    image = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(image)
    finally:
        net.train(was_training)
    return int(counter.get_total_flops())


def model_complexity(net: MultiTaskNet, input_shape: Sequence[int]) -> dict[str, float]:
    """`model/params/<part>` (shared, each task, total) and `model/gflops_per_image`."""
    out: dict[str, float] = {
        f"model/params/{part}": float(n) for part, n in net.parameter_counts().items()
    }
    out["model/gflops_per_image"] = count_flops(net, input_shape) / 1e9
    return out

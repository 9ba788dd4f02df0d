"""Under DDP (2 CPU processes, gloo) every metric's compute() on every rank equals the
single-process value on all the data: the states are split-level sums (or gathered
predictions), so how the split is divided among ranks does not matter."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtl.metrics import (
    BoundaryFScore,
    DepthMetrics,
    LesionRecall,
    MultilabelMetrics,
    NormalMetrics,
)

WORLD_SIZE = 2
BATCHES = 4  # per split; rank r takes the r-th half


def _metrics() -> dict:
    return {
        "depth": DepthMetrics(delta_powers=(1, 2, 3)),
        "normals": NormalMetrics(),
        "boundary": BoundaryFScore(tolerance=1, ods_thresholds=[0.3, 0.5, 0.7]),
        "multilabel": MultilabelMetrics(num_labels=4),
        "lesions": LesionRecall([1, 2], ["a", "b"], min_overlap=0.3),
    }


def _batches() -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Deterministic data with a different number of valid pixels per batch."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(BATCHES):
        size = (2, 1, 6 + i, 7)
        depth_t = torch.rand(size, generator=gen) * 5 * (torch.rand(size, generator=gen) > 0.2 * i)
        normal_t = torch.nn.functional.normalize(torch.randn(2, 3, 6 + i, 7, generator=gen), dim=1)
        normal_t[:, :, : i + 1] = 0
        edge_t = (torch.rand(size, generator=gen) > 0.8).float()
        edge_t[:, :, :i] = 255
        labels = (torch.rand(3 + i, 4, generator=gen) > 0.5).float()
        lesions = (torch.rand(2, 6 + i, 7, generator=gen) * 3.4).long().clamp(max=2)
        out.append(
            {
                "depth": (torch.rand(size, generator=gen) * 5, depth_t),
                "normals": (normal_t + torch.randn(normal_t.shape, generator=gen), normal_t),
                "boundary": (torch.rand(size, generator=gen), edge_t),
                "multilabel": (torch.rand(labels.shape, generator=gen), labels),
                "lesions": ((torch.rand(lesions.shape, generator=gen) * 3).long(), lesions),
            }
        )
    return out


def _compute(batches) -> dict[str, dict[str, torch.Tensor]]:
    metrics = _metrics()
    for batch in batches:
        for name, (pred, target) in batch.items():
            metrics[name].update(pred, target)
    return {name: metric.compute() for name, metric in metrics.items()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        half = BATCHES // WORLD_SIZE
        values = _compute(_batches()[rank * half : (rank + 1) * half])
        torch.save(values, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_compute_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected = _compute(_batches())
    one_half = _compute(_batches()[: BATCHES // WORLD_SIZE])
    assert not torch.allclose(one_half["depth"]["abs_err"], expected["depth"]["abs_err"])
    assert not torch.allclose(
        one_half["lesions"]["lesion_recall"], expected["lesions"]["lesion_recall"]
    )
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name, values in expected.items():
            assert got[name].keys() == values.keys(), name
            for key, value in values.items():
                assert torch.allclose(got[name][key], value, rtol=1e-6, equal_nan=True), (
                    f"rank {rank} {name}/{key}: {got[name][key]} != {value}"
                )

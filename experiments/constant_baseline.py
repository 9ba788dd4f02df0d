"""Test metrics of the best constant predictor per task, the floor a trained model must beat.

    .venv/bin/python experiments/constant_baseline.py experiment=scenes_mtl

Takes the same overrides as `train.py`; statistics come from the training split, scores from
the test split through each task's own metrics:
segmentation / classification: the most frequent class; depth: the mean valid depth;
normals: the mean normal direction; boundary: every pixel a boundary (predicting none scores
F1 = 0); multi-label: each class's training prevalence as its probability.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl.training.builders import build_datamodule, build_tasks  # noqa: E402
from mtl.training.results import print_metrics_table, to_floats  # noqa: E402

BIG = 20.0  # a logit that makes a probability 1 (or 0) in float32


def training_statistics(datamodule, kinds: dict[str, str]) -> dict[str, torch.Tensor]:
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for batch in datamodule.train_dataloader():
        for key, kind in kinds.items():
            t = batch["targets"][key]
            if kind in ("segmentation", "classification"):
                n = datamodule.target_specs[key].num_classes
                value = torch.bincount(t[t != 255].flatten().long(), minlength=n).double()
                count = torch.ones(())
            elif kind == "depth":
                value, count = t[t > 0].double().sum().view(1), (t > 0).sum().double()
            elif kind == "normals":
                value, count = t.double().sum(dim=(0, 2, 3)), torch.ones(())
            elif kind == "multilabel":
                value, count = t.double().sum(0), torch.tensor(float(len(t)))
            else:
                continue
            sums[key] = sums.get(key, 0) + value
            counts[key] = counts.get(key, 0) + count
    return {key: sums[key] / counts[key] for key in sums}


def constant_output(kind: str, stat: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    b = target.shape[0]
    if kind in ("segmentation", "classification"):
        logits = torch.full((stat.numel(),), -BIG)
        logits[stat.argmax()] = BIG
        shape = (b, stat.numel(), *target.shape[1:]) if kind == "segmentation" else (b, -1)
        view = (1, -1, *([1] * (target.dim() - 1))) if kind == "segmentation" else (1, -1)
        return logits.view(view).expand(shape)
    if kind == "depth":
        return torch.full(target.shape, float(stat))
    if kind == "normals":
        return stat.float().view(1, 3, 1, 1).expand(target.shape)
    if kind == "boundary":
        return torch.full(target.shape, BIG)
    if kind == "multilabel":
        p = stat.float().clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p)).view(1, -1).expand(b, -1)
    raise ValueError(f"no constant predictor for target kind '{kind}'")


def main(overrides: list[str]) -> dict[str, float]:
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("train", overrides=overrides)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    tasks = build_tasks(cfg, datamodule)
    kinds = {task.target: task.kind for task in tasks.values()}
    stats = training_statistics(datamodule, kinds)
    metrics = {name: task.build_metrics() for name, task in tasks.items()}
    datamodule.setup("test")
    for batch in datamodule.test_dataloader():
        for name, task in tasks.items():
            target = batch["targets"][task.target]
            output = constant_output(task.kind, stats.get(task.target), target)
            task.update_metrics(metrics[name], output, target, batch["has_target"].get(task.target))
    results: dict[str, float] = {}
    for name, collection in metrics.items():
        for metric, value in collection.compute().items():  # member dicts come flattened
            results[f"test/{name}/{metric}"] = value
    results = to_floats(results)
    print_metrics_table(results, "Constant predictor (test split)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

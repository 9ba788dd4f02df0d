"""The recipe behind `predict.py`: every input under `input=` through the trained model.

Per input: read (NIfTI / PNG / DICOM) -> prepare the slices as training did (resample to the
run's spacing, normalise with its fingerprint, stack 2.5D context) -> predict each slice
(sliding window beyond the training patch size) -> segmentation back to the input's pixel
grid -> write the mask in the input's format, CSV rows and overlays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from mtl.data.nnunet_preprocess import _resample as resample_slices
from mtl.inference.checkpoint import LoadedModel, load_model
from mtl.inference.discover import discover_inputs
from mtl.inference.preprocess import context_stack, prepare_slices
from mtl.inference.readers import PNG_SPACING, InputImage, read_input
from mtl.inference.sliding_window import predict_windows
from mtl.inference.writers import OVERLAY_CHOICES, PredictionTable, write_mask, write_overlays

log = logging.getLogger(__name__)

CSV_NAME = "predictions.csv"
RESAMPLE_BACK = ("nearest", "linear")


@dataclass(frozen=True)
class WindowOptions:
    """How slices are predicted (see `mtl.inference.sliding_window`)."""

    batch_size: int = 16
    step: float = 0.5
    sigma_scale: float = 0.125
    image_level: str = "whole"
    resample_back: str = "nearest"


@dataclass
class ImagePrediction:
    """`labels`: task -> Z x H x W uint8 on the input's canonical slices; `probabilities`:
    task -> Z x K; `num_tiles`: tiles per slice (1 = the slice fit the training patch)."""

    labels: dict[str, np.ndarray] = field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    num_tiles: int = 1


def predict_image(
    model: LoadedModel, image: InputImage, options: WindowOptions = WindowOptions()
) -> ImagePrediction:
    """Segmentation labels and class probabilities for every slice of `image`."""
    if options.resample_back not in RESAMPLE_BACK:
        raise ValueError(
            f"resample_back must be one of {RESAMPLE_BACK}, got {options.resample_back!r}"
        )
    spec = model.spec
    volume = prepare_slices(image, spec)
    size = tuple(int(s) for s in image.slices.shape[-2:])
    kinds = {name: task.kind for name, task in model.tasks.items()}
    parts: dict[str, list[np.ndarray]] = {}
    result = ImagePrediction()
    for start in range(0, len(volume), options.batch_size):
        indices = np.arange(start, min(len(volume), start + options.batch_size))
        batch = torch.from_numpy(np.ascontiguousarray(context_stack(volume, indices, spec.context)))
        out = predict_windows(
            model,
            batch.to(model.device),
            spec.patch_size,
            step=options.step,
            sigma_scale=options.sigma_scale,
            batch_size=options.batch_size,
            image_level=options.image_level,
        )
        result.num_tiles = out.num_tiles
        for name, kind in kinds.items():
            if kind == "segmentation":
                labels = _back_to_input(out.dense[name], size, options.resample_back)
                parts.setdefault(name, []).append(labels)
            elif kind == "classification":
                probs = torch.softmax(out.image[name].float(), dim=1).cpu().numpy()
                parts.setdefault(name, []).append(probs)
    for name, chunks in parts.items():
        target = result.labels if kinds[name] == "segmentation" else result.probabilities
        target[name] = np.concatenate(chunks)
    return result


def _back_to_input(logits: torch.Tensor, size: tuple[int, ...], mode: str) -> np.ndarray:
    """N x K x H' x W' logits -> N x H x W uint8 labels on the input's grid: `nearest` on
    the labels (exact pixel centres, as training resampled masks) or `linear` on the logits
    then argmax (smoother borders when upsampling)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits.argmax(1).to(torch.uint8).cpu().numpy()
    if mode == "linear":
        resized = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
        return resized.argmax(1).to(torch.uint8).cpu().numpy()
    labels = logits.argmax(1).to(torch.uint8).cpu().numpy()[:, None]
    return resample_slices(labels, size, "nearest")[:, 0].astype(np.uint8)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict every input of `cfg.input` and write the results under `cfg.output_dir`;
    returns what was written (paths per kind, tiles per input)."""
    if cfg.get("overlays", "all") not in OVERLAY_CHOICES:
        raise ValueError(f"overlays must be one of {OVERLAY_CHOICES}, got {cfg.overlays!r}")
    model = load_model(cfg.ckpt_path, str(cfg.get("device") or "auto"))
    sources = discover_inputs(cfg.input, len(model.spec.channel_names))
    output_dir = Path(str(cfg.output_dir)).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)
    window = cfg.get("sliding_window") or {}
    options = WindowOptions(
        batch_size=int(cfg.get("batch_size") or 16),
        step=float(window.get("step", 0.5)),
        sigma_scale=float(window.get("sigma_scale", 0.125)),
        image_level=str(window.get("image_level", "whole")),
        resample_back=str(cfg.get("resample_back") or "nearest"),
    )
    segmentation, classes = _task_classes(model)
    table = PredictionTable(output_dir / CSV_NAME, classes, segmentation)
    summary: dict[str, Any] = {
        "output_dir": str(output_dir),
        "csv": str(table.path),
        "masks": [],
        "overlays": [],
        "tiles": {},
    }
    log.info("Predicting %d input(s) with %s on %s", len(sources), model.ckpt_path, model.device)
    try:
        for source in sources:
            image = read_input(source, cfg.get("png_spacing") or PNG_SPACING)
            result = predict_image(model, image, options)
            summary["tiles"][source.name] = result.num_tiles
            for task in segmentation:
                summary["masks"] += write_mask(
                    image, result.labels[task], output_dir / task, bool(cfg.get("dicom_png"))
                )
                summary["overlays"] += write_overlays(
                    image,
                    result.labels[task],
                    output_dir / "overlays",
                    task,
                    str(cfg.get("overlays", "all")),
                    many_tasks=len(segmentation) > 1,
                )
            for z in range(image.slices.shape[0]):
                table.add(
                    image,
                    z,
                    {t: p[z] for t, p in result.probabilities.items()},
                    {t: labels[z] for t, labels in result.labels.items()},
                )
            log.info(
                "%s: %d slice(s) %s, %d tile(s) per slice",
                source.location, image.slices.shape[0], "x".join(map(str, image.slices.shape[-2:])),
                result.num_tiles,
            )  # fmt: skip
    finally:
        table.close()
    _report(summary, segmentation, len(sources))
    return summary


def _task_classes(
    model: LoadedModel,
) -> tuple[dict[str, Sequence[str]], dict[str, Sequence[str]]]:
    segmentation, classes = {}, {}
    for name, task in model.tasks.items():
        names = getattr(task, "class_names", None) or ()
        if task.kind == "segmentation":
            segmentation[name] = names
        elif task.kind == "classification":
            classes[name] = names
        else:
            log.warning(
                "task '%s' (%s) is not written: predict writes segmentation masks and "
                "classification probabilities", name, task.kind,
            )  # fmt: skip
    return segmentation, classes


def _report(summary: Mapping[str, Any], segmentation: Mapping[str, Any], count: int) -> None:
    out = Path(summary["output_dir"])
    lines = [f"Predicted {count} input(s); results in {out}:"]
    for task in segmentation:
        lines.append(f"  masks ({task}):       {out / task}/")
    lines.append(f"  class probabilities: {summary['csv']}")
    if summary["overlays"]:
        lines.append(f"  overlays:            {out / 'overlays'}/")
    print("\n".join(lines))

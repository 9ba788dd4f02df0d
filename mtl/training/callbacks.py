"""Callbacks specific to multi-task runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

log = logging.getLogger(__name__)

# background transparent; then liver, kidney, bone, lesion, and more for other datasets
PALETTE = (
    np.array(
        [
            [0, 0, 0],
            [230, 126, 34],
            [52, 152, 219],
            [236, 240, 241],
            [231, 76, 60],
            [46, 204, 113],
            [155, 89, 182],
            [241, 196, 15],
            [26, 188, 156],
            [233, 30, 99],
        ],
        dtype=np.float32,
    )
    / 255.0
)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Grey image (H, W) with coloured labels (H, W) -> RGB float (H, W, 3)."""
    lo, hi = np.percentile(image, [1, 99])
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    colours = PALETTE[labels.astype(np.int64) % len(PALETTE)]
    fg = (labels > 0) & (labels != 255)
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * colours[fg]
    return rgb


class PredictionImageLogger(L.Callback):
    """Every `every_n_epochs` (and after the last epoch) renders the first validation images:
    image | ground truth overlay | prediction overlay for each dense-label task, with
    image-level labels in the titles. Saved as PNG and sent to W&B / TensorBoard."""

    def __init__(self, every_n_epochs: int = 5, num_images: int = 8, dirpath: str | None = None):
        super().__init__()
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.dirpath = Path(dirpath) if dirpath else None
        self._batch: dict[str, Any] | None = None

    def _due(self, trainer: L.Trainer) -> bool:
        if self.every_n_epochs <= 0 or trainer.sanity_checking or trainer.fast_dev_run:
            return False
        epoch = trainer.current_epoch + 1
        return epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if batch_idx == 0 and self._due(trainer):
            n = self.num_images
            self._batch = {
                "image": batch["image"][:n].detach(),
                "targets": {k: v[:n].detach() for k, v in batch["targets"].items()},
            }

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._batch is None or not trainer.is_global_zero:
            self._batch = None
            return
        batch, self._batch = self._batch, None
        with torch.no_grad():
            outputs = pl_module(batch["image"])
        figure = self.render(pl_module, batch, outputs)
        epoch = trainer.current_epoch
        path = self.dirpath / f"epoch_{epoch:03d}.png" if self.dirpath else None
        publish_figure(trainer, figure, "val/predictions", epoch, path)

    def render(self, pl_module: L.LightningModule, batch: dict[str, Any], outputs: dict[str, Any]):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        dense = [n for n, t in pl_module.tasks.items() if t.kind == "segmentation"]
        labels = [n for n, t in pl_module.tasks.items() if t.kind == "classification"]
        images = batch["image"][:, 0].float().cpu().numpy()
        n = images.shape[0]
        cols = 1 + 2 * len(dense)
        figure, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
        for row in range(n):
            title = []
            for name in labels:
                task = pl_module.tasks[name]
                truth = int(batch["targets"][task.target][row])
                pred = int(outputs[name][row].argmax())
                names = task.class_names or ()
                title.append(
                    f"{name}: {names[truth] if names else truth} -> "
                    f"{names[pred] if names else pred}"
                )
            axes[row, 0].imshow(images[row], cmap="gray")
            axes[row, 0].set_title("\n".join(title), fontsize=6)
            for j, name in enumerate(dense):
                task = pl_module.tasks[name]
                truth = batch["targets"][task.target][row].cpu().numpy()
                pred = outputs[name][row].argmax(0).cpu().numpy()
                axes[row, 1 + 2 * j].imshow(overlay(images[row], truth))
                axes[row, 2 + 2 * j].imshow(overlay(images[row], pred))
                if row == 0:
                    axes[row, 1 + 2 * j].set_title(f"{name} truth", fontsize=7)
                    axes[row, 2 + 2 * j].set_title(f"{name} prediction", fontsize=7)
        for ax in axes.flat:
            ax.axis("off")
        figure.tight_layout()
        return figure


def publish_figure(trainer: L.Trainer, figure, tag: str, index: int, path: Path | None) -> None:
    """Save a matplotlib figure as PNG (if `path`), send it to W&B / TensorBoard, close it."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=80)
    image = _figure_to_array(figure)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(tag, [image], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, index, dataformats="HWC")
    import matplotlib.pyplot as plt

    plt.close(figure)


def _figure_to_array(figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


class GradientConflictLogger(L.Callback):
    """Every `every_n_steps` optimizer steps, draws the pairwise cosine matrix of the task
    gradients on the shared parameters (red: conflict, blue: agreement) with per-task
    gradient norms, so a user can see *why* a method helps. Reads the Gramian the module
    recorded (`module.diagnostics_every` must make one available). PNG + W&B / TensorBoard.
    """

    def __init__(self, every_n_steps: int = 200, dirpath: str | None = None) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.dirpath = Path(dirpath) if dirpath else None
        self._drawn_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        gram = getattr(pl_module, "last_gradient_gram", None)
        step = getattr(pl_module, "last_gradient_step", -1)
        if (
            self.every_n_steps <= 0
            or gram is None
            or step == self._drawn_step
            or step % self.every_n_steps != 0
            or not trainer.is_global_zero
        ):
            return
        self._drawn_step = step
        figure = self.render(gram, list(pl_module.tasks), step)
        path = self.dirpath / f"step_{step:06d}.png" if self.dirpath else None
        publish_figure(trainer, figure, "train/gradient_conflicts", step, path)

    @staticmethod
    def render(gram: torch.Tensor, names: list[str], step: int):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from mtl.training.task_gradients import cosine_matrix

        cos = cosine_matrix(gram.float()).numpy()
        norms = gram.float().diagonal().clamp_min(0).sqrt().numpy()
        k = len(names)
        figure, ax = plt.subplots(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k))
        im = ax.imshow(cos, cmap="RdBu", vmin=-1, vmax=1)
        labels = [f"{n}\n|g|={v:.2g}" for n, v in zip(names, norms, strict=True)]
        ax.set_xticks(range(k), labels, fontsize=7)
        ax.set_yticks(range(k), labels, fontsize=7)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cos[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"task gradient cosine, step {step}", fontsize=8)
        figure.colorbar(im, ax=ax, fraction=0.046)
        figure.tight_layout()
        return figure


class LastEpochsCheckpoint(L.Callback):
    """Saves the weights of each of the last `num_epochs` epochs, for the papers' protocol
    "mean of the test metrics over the last N epochs" (MTAN, Nash-MTL, FAMO), which
    `train.py` reports beside the best-validation checkpoint (`test_last_epochs`)."""

    def __init__(self, num_epochs: int, dirpath: str | Path) -> None:
        if num_epochs < 1:
            raise ValueError(f"test_last_epochs must be >= 1 to save epochs, got {num_epochs}")
        self.num_epochs = num_epochs
        self.dirpath = Path(dirpath)
        self.paths: list[Path] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ValueError(
                "test_last_epochs needs trainer.max_epochs (the last epochs must be known)"
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch < trainer.max_epochs - self.num_epochs:
            return
        path = self.dirpath / f"epoch_{trainer.current_epoch:03d}.ckpt"
        trainer.save_checkpoint(path)
        if path not in self.paths:
            self.paths.append(path)

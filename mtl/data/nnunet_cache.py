"""Preprocessed cases and the CT fingerprint, cached on disk so epochs never re-read NIfTI.

    <cache_dir>/<config key>/config.json                       the preprocessing settings
    <cache_dir>/<config key>/cases/<case>__<source key>.json   metadata; written last, so
                                   .../<case>__<source key>.image.npy   its presence means the
                                   .../<case>__<source key>.mask.npy    arrays are complete
                                   .../<case>__<source key>.fg.npy
    <cache_dir>/<config key>/fingerprint_<training cases key>.json

The config key hashes everything that changes the arrays (target spacing, dataset.json's
channels and labels, the cache format); the source key hashes the case's files (path, size,
modification time), so editing or replacing a file rebuilds that case only, and older arrays
of the case are deleted. Arrays are read memory-mapped: a worker touches only the slices it
serves. Writes go through a temporary file and a rename, so a crash never leaves a half-written
entry and concurrent processes (DDP ranks) writing the same entry are harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl.data.atomic_io import save_array_atomic, write_json_atomic
from mtl.data.nnunet_layout import Case, NnUNetDataError, NnUNetMissingError
from mtl.data.nnunet_preprocess import PreprocessedCase
from mtl.data.normalization import CTFingerprint

log = logging.getLogger(__name__)

# bump when the preprocessing or file format changes: old caches then stop matching
CACHE_VERSION = 1
KEY_LENGTH = 16


def digest(payload: Any) -> str:
    """A short stable hash of JSON-serialisable data."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:KEY_LENGTH]


@dataclass(frozen=True)
class CaseEntry:
    """A cached case: where its arrays are and what was learned while preprocessing it."""

    name: str
    prefix: Path  # <cases folder>/<case>__<source key>
    num_slices: int
    height: int
    width: int
    has_mask: bool
    label_counts: np.ndarray | None  # Z x classes, voxels of the original mask
    channel_mean: tuple[float, ...]  # over the resampled case, for per-image z-scoring
    channel_std: tuple[float, ...]
    spacing: tuple[float, float, float]  # of the source file (x, y, z), mm

    @property
    def image_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".image.npy")

    @property
    def mask_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".mask.npy")

    @property
    def foreground_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".fg.npy")

    @property
    def meta_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".json")

    def image(self) -> np.ndarray:
        """Z x C x H x W float32, memory-mapped."""
        return _load(self.image_path)

    def mask(self) -> np.ndarray:
        """Z x H x W uint8, memory-mapped."""
        return _load(self.mask_path)

    def foreground(self) -> np.ndarray | None:
        """C x N foreground intensity samples, or None for a case without foreground."""
        if not self.has_mask:
            return None
        samples = _load(self.foreground_path, mmap=False)
        return samples if samples.shape[1] else None


class CaseCache:
    """Preprocessed cases under one preprocessing config, built on first use."""

    def __init__(
        self,
        folder: Path,
        config: Mapping[str, Any],
        dataset_root: Path,
        build: Callable[[Case], PreprocessedCase],
    ) -> None:
        self.folder = folder / digest({"version": CACHE_VERSION, **config})
        self.cases_dir = self.folder / "cases"
        self.dataset_root = dataset_root
        self.build = build
        self.built: list[str] = []  # names of the cases preprocessed by this object
        self.reused: list[str] = []
        try:
            self.cases_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise NnUNetDataError(
                f"cannot create the preprocessing cache {self.cases_dir} ({err}); set "
                f"data.cache_dir to a writable folder"
            ) from err
        config_file = self.folder / "config.json"
        if not config_file.exists():
            write_json_atomic(config_file, {"version": CACHE_VERSION, **config})

    def source_key(self, case: Case) -> str:
        """Hash of the case's files: relative path, size and modification time."""
        files = []
        for path in case.sources:
            try:
                stat = path.stat()
            except FileNotFoundError:
                raise NnUNetMissingError(
                    f"{path} is missing (it was listed at setup); restore it", path
                ) from None
            files.append((_relative(path, self.dataset_root), stat.st_size, stat.st_mtime_ns))
        return digest(files)

    def get(self, case: Case) -> CaseEntry:
        """The cached case, preprocessing it first if its files changed or it is not cached."""
        prefix = self.cases_dir / f"{case.name}__{self.source_key(case)}"
        entry = _read_entry(case.name, prefix)
        if entry is not None:
            self.reused.append(case.name)
            return entry
        arrays = self.build(case)
        self._remove_stale(case.name, keep=prefix.name)
        entry = _write_entry(case, prefix, arrays)
        self.built.append(case.name)
        return entry

    def _remove_stale(self, name: str, keep: str) -> None:
        pattern = re.compile(rf"^{re.escape(name)}__[0-9a-f]{{{KEY_LENGTH}}}\.")
        for path in self.cases_dir.iterdir():
            if pattern.match(path.name) and not path.name.startswith(keep + "."):
                path.unlink(missing_ok=True)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _write_entry(case: Case, prefix: Path, arrays: PreprocessedCase) -> CaseEntry:
    image = arrays.image
    flat = image.transpose(1, 0, 2, 3).reshape(image.shape[1], -1).astype(np.float64)
    entry = CaseEntry(
        name=case.name,
        prefix=prefix,
        num_slices=int(image.shape[0]),
        height=int(image.shape[2]),
        width=int(image.shape[3]),
        has_mask=arrays.mask is not None,
        label_counts=arrays.label_counts,
        channel_mean=tuple(float(m) for m in flat.mean(axis=1)),
        channel_std=tuple(float(s) for s in flat.std(axis=1)),
        spacing=tuple(float(s) for s in arrays.spacing),
    )
    save_array_atomic(entry.image_path, image.astype(np.float32, copy=False))
    if arrays.mask is not None:
        save_array_atomic(entry.mask_path, arrays.mask)
        foreground = arrays.foreground
        if foreground is None:
            foreground = np.zeros((image.shape[1], 0), dtype=np.float32)
        save_array_atomic(entry.foreground_path, foreground)
    meta = {
        "case": case.name,
        "num_slices": entry.num_slices,
        "height": entry.height,
        "width": entry.width,
        "has_mask": entry.has_mask,
        "label_counts": None if entry.label_counts is None else entry.label_counts.tolist(),
        "channel_mean": entry.channel_mean,
        "channel_std": entry.channel_std,
        "spacing": entry.spacing,
        "sources": [str(p) for p in case.sources],
    }
    write_json_atomic(entry.meta_path, meta)  # last: marks the entry complete
    return entry


def _read_entry(name: str, prefix: Path) -> CaseEntry | None:
    meta_path = prefix.with_name(prefix.name + ".json")
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        counts = meta["label_counts"]
        entry = CaseEntry(
            name=name,
            prefix=prefix,
            num_slices=int(meta["num_slices"]),
            height=int(meta["height"]),
            width=int(meta["width"]),
            has_mask=bool(meta["has_mask"]),
            label_counts=None if counts is None else np.asarray(counts, dtype=np.int64),
            channel_mean=tuple(meta["channel_mean"]),
            channel_std=tuple(meta["channel_std"]),
            spacing=tuple(meta["spacing"]),
        )
    except (OSError, KeyError, TypeError, ValueError) as err:
        log.warning("cache entry %s is unreadable (%s); rebuilding it", meta_path, err)
        return None
    problem = _arrays_problem(entry)
    if problem:
        log.warning("cache entry %s: %s; rebuilding it", meta_path, problem)
        return None
    return entry


def _arrays_problem(entry: CaseEntry) -> str | None:
    """Why the entry's arrays cannot be served (missing, truncated, other shape), or None.

    Only the `.npy` headers are read (memory-mapping checks the file is long enough), so a
    cache damaged after it was written is rebuilt instead of failing mid-training."""
    channels = len(entry.channel_mean)
    expected = {entry.image_path: (entry.num_slices, channels, entry.height, entry.width)}
    if entry.has_mask:
        expected[entry.mask_path] = (entry.num_slices, entry.height, entry.width)
    for path, shape in expected.items():
        try:
            found = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (OSError, ValueError, EOFError) as err:
            return f"{path.name} is missing or unreadable ({err})"
        if tuple(found) != shape:
            return f"{path.name} has shape {found}, the entry says {shape}"
    return None


# -- CT fingerprint --------------------------------------------------------------------------
def fingerprint_path(folder: Path, train: Sequence[CaseEntry], settings: Mapping) -> Path:
    """One file per set of training cases (their cached versions) and fingerprint settings."""
    cases = sorted(entry.prefix.name for entry in train)
    return folder / f"fingerprint_{digest({'cases': cases, **settings})}.json"


def load_or_compute_fingerprints(
    path: Path,
    train: Sequence[CaseEntry],
    channels: Sequence[int],
    percentiles: tuple[float, float],
) -> dict[int, CTFingerprint]:
    """Per CT channel, nnU-Net's foreground statistics over the training cases; read from
    `path` when it exists, else computed from the cached foreground samples and saved."""
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            return {int(c): CTFingerprint.from_dict(d) for c, d in data["channels"].items()}
        except (OSError, KeyError, TypeError, ValueError) as err:
            log.warning("fingerprint cache %s is unreadable (%s); recomputing it", path, err)
    samples = [(entry, entry.foreground()) for entry in train]
    samples = [(entry, fg) for entry, fg in samples if fg is not None]
    if not samples:
        raise NnUNetDataError(
            f"no training case has foreground voxels in its mask ({len(train)} training "
            f"cases): CT normalisation needs the intensity statistics of labelled foreground "
            f"(nnU-Net's fingerprint); add masks to labelsTr/ or declare the channel as "
            f"something other than CT in dataset.json (per-image z-score)"
        )
    fingerprints = {}
    for channel in channels:
        pairs = [(fg[channel], np.ones(fg.shape[1], dtype=bool)) for _, fg in samples]
        fingerprints[channel] = CTFingerprint.from_images(pairs, percentiles)
    log.info(
        "CT fingerprint from %d training cases: %s",
        len(samples),
        {c: fp.to_dict() for c, fp in fingerprints.items()},
    )
    payload = {
        "channels": {str(c): fp.to_dict() for c, fp in fingerprints.items()},
        "cases": [entry.name for entry, _ in samples],
        "percentiles": list(percentiles),
    }
    write_json_atomic(path, payload)
    return fingerprints


def _load(path: Path, mmap: bool = True) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise NnUNetMissingError(
            f"cached array {path} is missing; delete its .json beside it (or the cache folder) "
            f"to rebuild it",
            path,
        ) from None
    except (ValueError, OSError, EOFError) as err:
        raise NnUNetDataError(
            f"cached array {path} is corrupt ({err}); delete the cache folder {path.parent} "
            f"to rebuild it",
            path,
        ) from err

"""The values of every `.npy` file, checked at setup, so that a bad file (NaN, out-of-range
ids, an image in [0, 255]) fails or is skipped before training instead of hours into it.

One pass reads the whole dataset (NYUv2 ~5 GB, Cityscapes ~2.3 GB as float32), so the files
that passed are remembered in `<cache_dir>/npy_checked_<settings key>.json` by relative path,
size and modification time, and later runs read only new or changed files. A failing file is
never remembered: it is read and reported again until it is fixed. The record only saves time;
when it cannot be written (a read-only folder) the pass repeats next run, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Collection, Sequence
from pathlib import Path

from mtl.data.atomic_io import write_json_atomic
from mtl.data.npy_layout import NpyDataError, OnBad, SplitLayout, check_values, load_array

log = logging.getLogger(__name__)

# bump when `check_values` changes: records of the older checks then stop matching
CHECK_VERSION = 1
KEY_LENGTH = 16


class CheckedFiles:
    """Which files passed the value check with these settings, by (size, mtime)."""

    def __init__(self, folder: Path, root: Path, num_classes: int) -> None:
        settings = json.dumps({"version": CHECK_VERSION, "num_classes": num_classes})
        key = hashlib.sha1(settings.encode()).hexdigest()[:KEY_LENGTH]
        self.path = folder / f"npy_checked_{key}.json"
        self.root = root
        self.files: dict[str, list[int]] = self._read()
        self.changed = False

    def _read(self) -> dict[str, list[int]]:
        if not self.path.is_file():
            return {}
        try:
            files = json.loads(self.path.read_text())["files"]
            return {str(k): [int(v[0]), int(v[1])] for k, v in files.items()}
        except (OSError, KeyError, TypeError, ValueError, IndexError) as err:
            log.warning(
                "record of checked files %s is unreadable (%s); checking again", self.path, err
            )
            return {}

    def _entry(self, path: Path) -> tuple[str, list[int]]:
        stat = path.stat()
        return str(path.relative_to(self.root)), [stat.st_size, stat.st_mtime_ns]

    def passed(self, path: Path) -> bool:
        key, stamp = self._entry(path)
        return self.files.get(key) == stamp

    def add(self, path: Path) -> None:
        key, stamp = self._entry(path)
        self.files[key] = stamp
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            write_json_atomic(self.path, {"version": CHECK_VERSION, "files": self.files})
            self.changed = False
        except OSError as err:
            log.warning(
                "cannot record the checked files in %s (%s): the next run checks every file "
                "again; set data.cache_dir to a writable folder",
                self.path,
                err,
            )


def check_split_values(
    layout: SplitLayout,
    modalities: Sequence[str],
    num_classes: int,
    checked: CheckedFiles,
    on_bad: OnBad,
    skip: Collection[int] = (),
) -> None:
    """Read and check every file of the samples of `layout` (but `skip`, already bad) that
    `checked` does not know; a sample with a bad file goes to `on_bad`."""
    todo = [
        index
        for index in range(layout.count)
        if index not in skip and not all(checked.passed(layout.path(m, index)) for m in modalities)
    ]
    if not todo:
        return
    log.info(
        "checking the values of %d samples of %s once (later runs read only changed files; "
        "data.scan_values=false skips this)",
        len(todo),
        layout.split_dir,
    )
    start = time.perf_counter()
    try:
        for index in todo:
            for modality in modalities:
                path = layout.path(modality, index)
                if checked.passed(path):
                    continue
                try:
                    check_values(modality, path, load_array(path, mmap=False), num_classes)
                except NpyDataError as err:
                    on_bad(index, err)
                    break
                checked.add(path)
    finally:
        checked.save()  # what passed so far is kept even when a bad file stops the pass
    log.info("checked %s in %.1f s", layout.split_dir, time.perf_counter() - start)

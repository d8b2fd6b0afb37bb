"""The brainloop HDF5 recording format: the only module that writes or reads it (DESIGN.md §7).

A `Recorder` writes one file per run. Root attributes hold the provenance (`format`,
`format_version`, `sim`, `seed`, `config` and `versions` as JSON, `created` in ISO 8601); time
series are appended step by step into chunked, gzip-compressed, resizable datasets whose first
axis is the row of the series (a step, an update, an episode...); static arrays are written once;
the headline figures of a run are attributes of the group `/summary`. Every dataset name comes
from the monitor table (`analysis.monitors`), which gives its `units`, `description` and `shape`
attributes. Appends are buffered in memory and the file is opened, written and closed only at a
flush, so a process killed at any other moment (even by SIGKILL) leaves a closed, readable file
holding everything up to the last flush.

A recording never destroys data: an existing file is replaced only when asked (`overwrite=True`);
a run writes to a temporary file beside its path (`.NAME.h5.<pid>.tmp`) and moves it into place
when it has started cleanly (its first flush that writes data, or its close), so a run that fails
before recording anything leaves the path as it was; and a lock file (`NAME.h5.lock`, holding the
writer's pid) refuses a second writer. `Recorder.open_existing` adds datasets to a finished
recording. `Recording` reads a file back as numpy arrays; analysis code uses nothing else.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from analysis.lockfile import lock_path, take_lock, temp_path
from analysis.monitors import lookup

FORMAT = "brainloop"
FORMAT_VERSION = 1

# Distributions whose versions make a run reproducible; missing ones are left out.
_VERSIONED_PACKAGES = (
    "brainloop", "torch", "numpy", "scipy", "h5py", "networkx", "gymnasium", "scikit-learn",
    "matplotlib", "brian2",
)
# Target bytes per chunk: large enough for gzip to pay off, small enough to append cheaply.
_CHUNK_BYTES = 1 << 18


def package_versions() -> dict[str, str]:
    """Versions of Python and of the installed packages a run depends on (name -> version).

    Read from package metadata rather than by importing, so it is fast and has no side effects.
    """
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _normalise_name(name: str) -> str:
    """'/cortex/h1/z' and 'cortex/h1/z' name the same dataset; empty parts are an error."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {name!r}")
    parts = name.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid dataset name {name!r}: use slash paths like 'cortex/h1/z'")
    return "/".join(parts)


def _to_numpy(name: str, value: Any) -> np.ndarray:
    """A python number, numpy array or torch tensor as a numeric numpy array."""
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":
        raise ValueError(f"dataset {name!r}: values must be numeric or bool, got dtype {array.dtype}")
    return array


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} value {value!r} is not JSON serialisable")


def _plain_number(key: str, value: Any) -> float | int:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"summary figure {key!r} must be a number, got {value!r}") from None


class _Series:
    """One time series: its per-row shape and dtype, its attributes and the unwritten rows."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, attrs: dict[str, str]):
        self.shape = shape
        self.dtype = dtype
        self.attrs = attrs
        self.created = False
        self.pending: list[np.ndarray] = []  # blocks of rows, each (n, *shape)


class Recorder:
    """Writes one brainloop recording; a context manager.

    Args:
        path: the HDF5 file to create; missing parents are created.
        sim: name of the simulation that produced it.
        seed: the run's seed.
        config: the run's configuration, stored as JSON.
        flush_every: a flush happens once any series holds this many unwritten appends (an
            `extend` of a whole rollout is one).
        flush_seconds: ... or once this many seconds have passed since the last flush.
        overwrite: replace a file already at `path` (when this recording moves into place);
            otherwise an existing file is refused.

    Until its first flush that writes data (or its close), the recording lives in a temporary
    file beside `path`; leaving a `with` block by an exception before anything was recorded
    deletes it and leaves `path` as it was. `path` is locked until `close` or `discard`.

    Raises:
        ValueError: naming the path, if it exists (and not `overwrite`), is being written by
            another run, or cannot be created or written.
    """

    def __init__(self, path, *, sim: str, seed: int, config: dict,
                 flush_every: int = 200, flush_seconds: float = 5.0, overwrite: bool = False):
        self._init_state(path, flush_every, flush_seconds)
        try:
            config_json = json.dumps(config, default=_json_default)
        except TypeError as error:
            raise ValueError(f"config of {self.path}: {error}") from None
        if self.path.is_dir():
            raise ValueError(f"cannot write recording {self.path}: it is a directory")
        self._refuse_existing(overwrite)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot write recording {self.path}: {error}") from None
        self._claim()
        try:  # checked again under the lock: a run may have finished there meanwhile
            self._refuse_existing(overwrite)
        except ValueError:
            self._abandon()
            raise
        try:
            # Default libver on purpose: 'latest' marks the superblock as open-for-write, which
            # makes a file whose writer was killed unreadable.
            with h5py.File(self._file_path, "w") as file:
                file.attrs["format"] = FORMAT
                file.attrs["format_version"] = FORMAT_VERSION
                file.attrs["sim"] = sim
                file.attrs["seed"] = int(seed)
                file.attrs["config"] = config_json
                file.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                file.attrs["versions"] = json.dumps(package_versions(), sort_keys=True)
        except OSError as error:
            self._abandon()
            raise ValueError(f"cannot write recording {self.path}: {error}") from None

    @classmethod
    def open_existing(cls, path, *, flush_every: int = 200,
                      flush_seconds: float = 5.0) -> Recorder:
        """Reopen a finished recording to add datasets (and new `/summary` figures) to it.

        What is in the file stays as it is: provenance, datasets and summary figures; adding a
        name already there is refused. The additions are made on a copy beside the file, which
        replaces it at `close`; leaving a `with` block by an exception (or `discard`) leaves the
        file exactly as it was. The file is locked while open.

        Raises:
            FileNotFoundError: if there is no file at `path`.
            ValueError: naming the path, if it is not a brainloop recording or is being written.
        """
        recorder = cls.__new__(cls)
        recorder._init_state(path, flush_every, flush_seconds)
        if not recorder.path.is_file():
            raise FileNotFoundError(f"no recording at {recorder.path}")
        recorder._claim()
        try:
            with Recording(recorder.path) as existing:
                recorder._names.update(existing.datasets())
                recorder._existing_names = set(existing.datasets())
                recorder._existing_summary = set(existing.summary)
            shutil.copy2(recorder.path, recorder._file_path)
        except OSError as error:
            recorder._abandon()
            raise ValueError(f"cannot add to recording {recorder.path}: {error}") from None
        except BaseException:
            recorder._abandon()
            raise
        recorder._adding = True
        return recorder

    def _refuse_existing(self, overwrite: bool) -> None:
        if self.path.exists() and not overwrite:
            raise ValueError(f"{self.path} already exists; pass --overwrite (overwrite=True) to "
                             f"replace it, or choose another path")

    def _claim(self) -> None:
        """Lock `path` and choose the temporary file this process writes until placed."""
        self._lock = take_lock(self.path)
        self._file_path = temp_path(self.path, os.getpid())

    def _init_state(self, path, flush_every: int, flush_seconds: float) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.path = Path(path)
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._series: dict[str, _Series] = {}
        self._static: dict[str, tuple[np.ndarray, dict[str, str]]] = {}
        self._names: set[str] = set()
        self._summary: dict[str, float | int] = {}
        self._group_attrs: dict[str, dict] = {}
        self._existing_names: set[str] = set()  # datasets the file had when reopened
        self._existing_summary: set[str] = set()
        self._adding = False      # opened by open_existing
        self._placed = False      # the file written to is `path` itself
        self._recorded = False    # something was appended, written or summarised
        self._closed = False
        self._lock: Path | None = None
        self._file_path: Path | None = None  # where flushes write: a temporary file, then `path`
        self._last_flush = time.monotonic()

    @property
    def started(self) -> bool:
        """True once anything has been recorded (appended, written or summarised)."""
        return self._recorded

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None and not self._placed and (self._adding or not self._recorded):
            self.discard()
        else:
            self.close()

    def append(self, name: str, value, *, units: str | None = None,
               description: str | None = None) -> None:
        """Append one row to the series `name`; the first append fixes the row's shape and dtype.

        `value` is a python number, numpy array or torch tensor of the same shape at every row.
        `name` must match an entry of `analysis.monitors`, which gives its units and description:
        `units=`/`description=` are needed only for entries documented by the caller
        (`metrics/{name}`), and otherwise must equal the table's if given.
        """
        self.extend(name, _to_numpy(_normalise_name(name), value)[None], units=units,
                    description=description)

    def extend(self, name: str, rows, *, units: str | None = None,
               description: str | None = None) -> None:
        """Append several rows at once: `rows` is (n, *row shape), e.g. a rollout (T, env)."""
        self._check_open()
        name = _normalise_name(name)
        array = _to_numpy(name, rows)
        if array.ndim == 0:
            raise ValueError(f"dataset {name!r}: extend takes rows (n, ...), got a scalar")
        series = self._series.get(name)
        if series is None:
            attrs = self._new_attrs(name, units, description, static=False)
            series = _Series(array.shape[1:], array.dtype, attrs)
            self._series[name] = series
        elif array.shape[1:] != series.shape:
            raise ValueError(f"dataset {name!r}: value of shape {array.shape[1:]} appended to a "
                             f"series of per-row shape {series.shape}")
        elif array.dtype != series.dtype:
            if not np.can_cast(array.dtype, series.dtype, casting="same_kind"):
                raise ValueError(f"dataset {name!r}: value of dtype {array.dtype} appended to a "
                                 f"series of dtype {series.dtype}")
            array = array.astype(series.dtype)
        if len(array) == 0 and (series.created or series.pending):
            return  # (an empty first extend still creates the dataset, with no rows)
        # A copy, so that the caller reusing its buffer cannot change a recorded row.
        series.pending.append(np.array(array, copy=True))
        self._recorded = True
        if (len(series.pending) >= self.flush_every
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()

    def write(self, name: str, array, *, units: str | None = None,
              description: str | None = None) -> None:
        """Write the static (not time-series) dataset `name` at once; units and description as
        for `append`."""
        self._check_open()
        name = _normalise_name(name)
        data = _to_numpy(name, array)
        attrs = self._new_attrs(name, units, description, static=True)
        self._static[name] = (np.array(data, copy=True), attrs)
        self._recorded = True
        self.flush()

    def annotate(self, group: str, **attrs: float | int | str) -> None:
        """Set attributes of the group `group` (e.g. the parameters that made the datasets in
        it); written with the next flush. The group must be new to the file: not a dataset, not
        `summary` (`Recorder.summary`) and not a group the file had when reopened."""
        self._check_open()
        group = _normalise_name(group)
        if group in self._names:
            raise ValueError(f"{group!r} is a dataset, not a group")
        if group == "summary" or any(n.startswith(group + "/") for n in self._existing_names):
            raise ValueError(f"group {group!r} is already in {self.path}; annotate only groups "
                             f"this recorder adds")
        self._group_attrs.setdefault(group, {}).update(attrs)
        self._recorded = True

    def summary(self, **figures: float | int) -> None:
        """Set headline figures of the run as attributes of `/summary` (written at once)."""
        self._check_open()
        kept = sorted(self._existing_summary & figures.keys())
        if kept:
            raise ValueError(f"summary figures {kept} are already in {self.path}; a recording "
                             f"reopened to add to it keeps them as they are")
        self._summary.update({key: _plain_number(key, value) for key, value in figures.items()})
        self._recorded = True
        self.flush()

    def flush(self) -> None:
        """Write everything buffered and close the file, so that it is complete on disk.

        The first flush that writes data moves a new recording into place at `path`.
        """
        self._check_open()
        if (any(series.pending for series in self._series.values()) or self._static
                or self._summary or self._group_attrs):
            with h5py.File(self._file_path, "a") as file:
                for name, series in self._series.items():
                    if series.pending:
                        self._write_series(file, name, series)
                for name, (data, attrs) in self._static.items():
                    dataset = file.create_dataset(name, data=data, **_compression(data))
                    dataset.attrs.update(attrs)
                if self._summary:
                    file.require_group("summary").attrs.update(self._summary)
                for group, attrs in self._group_attrs.items():
                    file.require_group(group).attrs.update(attrs)
            self._static.clear()
            self._group_attrs.clear()
            self._summary.clear()
            if not self._adding:
                self._place()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush, move the recording into place and release the lock; again, it does nothing."""
        if self._closed:
            return
        try:
            self.flush()
            self._place()
        finally:
            self._closed = True
            self._abandon()

    def discard(self) -> None:
        """Stop without moving the recording into place: its temporary file is deleted and `path`
        stays as it was. A recording already in place is kept (ValueError); a closed one: no-op.
        """
        if self._closed:
            return
        if self._placed:
            raise ValueError(f"recording {self.path} is in place already; close it instead")
        self._closed = True
        self._abandon()

    def _place(self) -> None:
        if not self._placed:
            os.replace(self._file_path, self.path)
            self._file_path = self.path
            self._placed = True

    def _abandon(self) -> None:
        """Delete the temporary file (if not placed) and release the lock."""
        if not self._placed and self._file_path is not None:
            self._file_path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def _write_series(self, file: h5py.File, name: str, series: _Series) -> None:
        rows = np.concatenate(series.pending)
        if not series.created:
            row_bytes = max(1, series.dtype.itemsize * math.prod(series.shape))
            chunk_rows = max(1, min(4096, _CHUNK_BYTES // row_bytes))
            dataset = file.create_dataset(
                name, shape=(0, *series.shape), maxshape=(None, *series.shape),
                dtype=series.dtype, chunks=(chunk_rows, *series.shape),
                compression="gzip", compression_opts=4, shuffle=True)
            dataset.attrs.update(series.attrs)
            series.created = True
        dataset = file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(rows), axis=0)
        dataset[start:] = rows
        series.pending.clear()

    def _new_attrs(self, name: str, units: str | None, description: str | None, *,
                   static: bool) -> dict[str, str]:
        """Attributes of a new dataset, from the monitor table; checks it clashes with nothing."""
        if name in self._names:
            raise ValueError(f"dataset {name!r} already exists in {self.path}")
        for other in self._names:
            if other.startswith(name + "/") or name.startswith(other + "/"):
                raise ValueError(f"dataset {name!r} clashes with dataset {other!r}: "
                                 f"one cannot be both a dataset and a group")
        monitor = lookup(name)
        if monitor.static != static:
            raise ValueError(
                f"dataset {name!r} is a {'static array' if monitor.static else 'series'} in "
                f"analysis/monitors.py ({monitor.pattern!r}): "
                + ("write it once with Recorder.write" if monitor.static
                   else "append it row by row with Recorder.append or Recorder.extend"))
        if monitor.caller_documented:
            if units is None or description is None:
                raise ValueError(f"dataset {name!r} ({monitor.pattern!r} in analysis/monitors.py) "
                                 f"needs units= and description= when it is created")
        else:
            for arg, given, table in (("units", units, monitor.units),
                                      ("description", description, monitor.description)):
                if given is not None and given != table:
                    raise ValueError(f"dataset {name!r}: {arg}={given!r} differs from the monitor "
                                     f"table's {table!r} (analysis/monitors.py); drop the argument "
                                     f"or change the table")
            units, description = monitor.units, monitor.description
        self._names.add(name)
        return {"units": units, "description": description, "shape": monitor.shape}

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"recorder for {self.path} is closed")


def _compression(data: np.ndarray) -> dict[str, Any]:
    # Scalars cannot be chunked, and tiny arrays do not gain from gzip.
    return {"compression": "gzip", "compression_opts": 4} if data.size >= 1024 else {}


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain python object."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class Recording:
    """Read access to a brainloop recording; a context manager.

    Attributes:
        sim, seed, config (dict), versions (dict), created (ISO 8601 string), format_version,
        summary (dict of headline figures; empty if the run did not finish).

    The file stays open (read-only) until `close`; datasets are read when indexed.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming the path, if it is not a brainloop recording or is of a newer version.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no recording at {self.path}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError:
            raise ValueError(f"{self.path} is not a brainloop recording (not a readable HDF5 "
                             f"file)") from None
        attrs = self._file.attrs
        if _plain(attrs.get("format")) != FORMAT:
            self._file.close()
            raise ValueError(f"{self.path} is not a brainloop recording (no format={FORMAT!r})")
        self.format_version = int(attrs["format_version"])
        if self.format_version > FORMAT_VERSION:
            self._file.close()
            raise ValueError(f"{self.path} has format version {self.format_version}; this "
                             f"brainloop reads up to version {FORMAT_VERSION}")
        self.sim: str = _plain(attrs["sim"])
        self.seed: int = int(attrs["seed"])
        self.config: dict = json.loads(attrs["config"])
        self.versions: dict = json.loads(attrs["versions"])
        self.created: str = _plain(attrs["created"])
        group = self._file.get("summary")
        self.summary: dict = {k: _plain(v) for k, v in group.attrs.items()} if group else {}

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getitem__(self, name: str) -> np.ndarray:
        """The whole dataset `name` as a numpy array (time series: first axis = step)."""
        return np.asarray(self._dataset(name)[()])

    def __contains__(self, name: str) -> bool:
        return isinstance(self._file.get(_normalise_name(name)), h5py.Dataset)

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of the dataset `name`, without reading it."""
        return tuple(self._dataset(name).shape)

    def dtype(self, name: str) -> np.dtype:
        """Dtype of the dataset `name`, without reading it."""
        return self._dataset(name).dtype

    def datasets(self) -> list[str]:
        """Full names of every dataset, e.g. 'cortex/h1/error', sorted."""
        names: list[str] = []
        self._file.visititems(
            lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        return sorted(names)

    def attrs(self, name: str) -> dict:
        """Attributes (`units`, `description`, ...) of the dataset or group `name`."""
        item = self._file.get(_normalise_name(name))
        if item is None:
            raise KeyError(f"no dataset or group {name!r} in {self.path}")
        return {key: _plain(value) for key, value in item.attrs.items()}

    def close(self) -> None:
        self._file.close()

    def _dataset(self, name: str) -> h5py.Dataset:
        item = self._file.get(_normalise_name(name))
        if not isinstance(item, h5py.Dataset):
            raise KeyError(f"no dataset {name!r} in {self.path}")
        return item

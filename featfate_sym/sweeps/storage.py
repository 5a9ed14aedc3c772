"""Storage of a sweep: one netCDF file per cell, written atomically, and the combined,
self-describing dataset.

Layout of an output directory ``OUT``::

    OUT/sweep.json          the sweep's settings (grid, replicates, seed, dtype, device,
                            cell function); a resumed sweep must match them
    OUT/cells/cell-NNNNNN.nc   one file per finished cell
    OUT/results.nc          the combined dataset, written when every cell is done
    OUT/sweep.lock          present while a run writes the sweep (see below)

A cell file that cannot be read (truncated, overwritten by something else) is reported
with a warning naming it and computed again; a readable cell of another sweep is an error.

Lock.  A run holds ``OUT/sweep.lock`` while it writes ``OUT``: created with
``O_CREAT | O_EXCL`` (so only one run can create it), holding the run's process id, host
name and start time as JSON, and removed when the run ends.  A second run on the same
folder stops with :class:`SweepLockedError` saying who holds the lock.  A lock whose
process is gone (same host, process id no longer running: a run that was killed) is
stale and is taken over, with a warning; a lock from another host is never taken over
(remove it by hand once that run is known to be gone).

Every file is written to a temporary name in the same directory, flushed to disk and
then renamed over its final name (``os.replace``, atomic on POSIX), so a file that is
visible under its final name is complete: an interrupted sweep leaves only whole cells.

Format: netCDF3 (``engine="scipy"``; no dependency beyond SciPy).  netCDF3 has no
boolean and no 64-bit integer types, so

* boolean arrays (convergence flags) are stored as ``int8`` 0/1 with the CF attributes
  ``flag_values = [0, 1]``, ``flag_meanings = "false true"``;
* integer arrays (step counts, ranks) are stored as ``int32`` (a value beyond 32 bits
  is stored as ``float64``);
* each such variable records its original type in the attribute ``source_dtype``, and
  :func:`open_sweep` restores it.
"""

from __future__ import annotations

import contextlib
import datetime as _datetime
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Mapping

import numpy as np
import xarray as xr

from featfate_sym.sweeps.grid import AXES, INTEGER_AXES, Cell, Grid, describe_json

__all__ = [
    "SweepLockedError",
    "SweepMismatchError",
    "atomic_write",
    "cell_path",
    "combine_cells",
    "encode_arrays",
    "open_sweep",
    "netcdf3_problem",
    "provenance",
    "read_cell",
    "sweep_lock",
    "write_cell",
]

ENGINE = "scipy"
MANIFEST = "sweep.json"
CELLS = "cells"
RESULTS = "results.nc"
LOCK = "sweep.lock"
_INT32 = np.iinfo(np.int32)

_AXIS_ATTRS = {
    "gamma": {"long_name": "target samples per dimension n/d"},
    "theta": {"long_name": "angle between source and target teachers", "units": "rad"},
    "sigma": {"long_name": "target label noise standard deviation"},
    "lam": {"long_name": "ridge of the linear-transfer readout"},
    "L": {"long_name": "depth (number of layers)"},
    "d": {"long_name": "input dimension"},
    "gamma_s": {"long_name": "source samples per dimension n_s/d (inf: population source)"},
    "sigma_s": {"long_name": "source label noise standard deviation"},
}


class SweepMismatchError(ValueError):
    """An output directory holds results of a sweep with other settings."""


class SweepLockedError(RuntimeError):
    """Another run holds the lock of the output directory."""


# --------------------------------------------------------------------------- files


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory,
    flushed and fsynced, then renamed over ``path``.  On any failure the temporary file
    is removed and ``path`` is untouched."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def remove_stale_temporaries(directory: Path) -> None:
    """Remove temporary files left by a writer that was killed (never a finished file)."""
    for stale in Path(directory).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _to_bytes(dataset: xr.Dataset) -> bytes:
    return bytes(dataset.to_netcdf(None, engine=ENGINE))


#: the first bytes of a netCDF3 file (classic, 64-bit offset, 64-bit data)
_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")


def netcdf3_problem(head: bytes) -> str | None:
    """None if ``head`` (a file's first 4 bytes) starts a netCDF3 file, else what it is."""
    if head[:4] in _NETCDF3_MAGIC:
        return None
    return "an HDF5/netCDF4 file" if head[:4] == b"\x89HDF" else "not a netCDF file"


def _from_bytes(data: bytes) -> xr.Dataset:
    # checked here so that the error is one plain line, not a reader's install advice
    problem = netcdf3_problem(data[:4])
    if problem:
        raise ValueError(f"{problem}; sweeps are stored as netCDF3")
    with xr.open_dataset(io.BytesIO(data), engine=ENGINE) as dataset:
        return dataset.load()


# ----------------------------------------------------------------------- encoding


def encode_arrays(arrays: Mapping[str, np.ndarray], replicates: int) -> dict[str, tuple[np.ndarray, dict]]:
    """The arrays returned by a cell function, in netCDF3 types, with their attributes.

    Every array must have shape ``(replicates,)``; raises ``ValueError`` otherwise, or for
    a type netCDF3 cannot hold (complex, strings, objects)."""
    encoded = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.shape != (replicates,):
            raise ValueError(f"cell output {name} has shape {array.shape}, expected ({replicates},)")
        if array.dtype == np.bool_:
            encoded[name] = (
                array.astype(np.int8),
                {"source_dtype": "bool", "flag_values": np.array([0, 1], np.int8), "flag_meanings": "false true"},
            )
        elif np.issubdtype(array.dtype, np.integer):
            fits = array.size == 0 or (array.min() >= _INT32.min and array.max() <= _INT32.max)
            encoded[name] = (
                array.astype(np.int32 if fits else np.float64),
                {"source_dtype": str(array.dtype)},
            )
        elif array.dtype in (np.float32, np.float64):
            encoded[name] = (array, {})
        elif np.issubdtype(array.dtype, np.floating):
            encoded[name] = (array.astype(np.float64), {"source_dtype": str(array.dtype)})
        else:
            raise ValueError(f"cell output {name} has type {array.dtype}, which netCDF3 cannot store")
    return encoded


def _decode(dataset: xr.Dataset) -> xr.Dataset:
    for name in list(dataset.data_vars):
        source = dataset[name].attrs.get("source_dtype")
        if source is not None:
            attrs = {k: v for k, v in dataset[name].attrs.items() if k not in ("source_dtype", "flag_values", "flag_meanings")}
            dataset[name] = dataset[name].astype(np.dtype(source)).assign_attrs(attrs)
    return dataset


def _coordinate_array(name: str, values) -> np.ndarray:
    return np.asarray(values, dtype=np.int32 if name in INTEGER_AXES else np.float64)


# ---------------------------------------------------------------------- provenance


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance(command_line: str | None = None) -> dict[str, str]:
    """Package versions, the git commit (``unknown`` outside a repository), the UTC
    creation time and the command line (default: ``sys.argv``)."""
    import featfate_sym

    # the package metadata as a fallback: an editable install can import the package
    # as a namespace (without its __init__) when run from outside the repository
    version = getattr(featfate_sym, "__version__", None) or _version("featfate_sym")
    if command_line is None:
        command_line = " ".join([Path(sys.executable).name, *sys.argv])
    return {
        "featfate_sym_version": version,
        "torch_version": _version("torch"),
        "numpy_version": np.__version__,
        "sympy_version": _version("sympy"),
        "xarray_version": xr.__version__,
        "scipy_version": _version("scipy"),
        "python_version": sys.version.split()[0],
        "git_commit": _git_commit(),
        "created": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
        "command_line": command_line,
    }


# --------------------------------------------------------------------------- cells


def cell_path(out: Path, cell: Cell) -> Path:
    return Path(out) / CELLS / f"{cell.name}.nc"


def _cell_identity(cell: Cell, settings: Mapping) -> dict[str, str]:
    return {
        "params": describe_json(cell.params),
        "settings": describe_json(dict(settings)),
    }


def cell_dataset(cell: Cell, arrays: Mapping[str, np.ndarray], settings: Mapping) -> xr.Dataset:
    """One finished cell as a dataset (dimension ``replicate``, every axis a scalar
    coordinate); ``settings``: replicates, dtype, device, cell function (what makes two
    cells with the same parameters comparable)."""
    replicates = int(settings["replicates"])
    variables = {name: (("replicate",), data, attrs) for name, (data, attrs) in encode_arrays(arrays, replicates).items()}
    coords = {"replicate": np.arange(replicates, dtype=np.int32)}
    for name in AXES:
        coords[name] = ((), _coordinate_array(name, cell.params[name]), _AXIS_ATTRS[name])
    attrs = {"cell_index": np.int32(cell.index), "seed": np.int32(cell.seed), **_cell_identity(cell, settings)}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_cell(out: Path, cell: Cell, arrays: Mapping[str, np.ndarray], settings: Mapping) -> Path:
    """Store one finished cell (:func:`cell_dataset`) atomically."""
    path = cell_path(out, cell)
    atomic_write(path, _to_bytes(cell_dataset(cell, arrays, settings)))
    return path


def read_cell(out: Path, cell: Cell, settings: Mapping) -> xr.Dataset | None:
    """The stored cell, or ``None`` if it is not on disk or cannot be read (then with a
    warning naming the file: the cell is computed again and the file replaced).  Raises
    :class:`SweepMismatchError` if the file holds another cell or other settings."""
    path = cell_path(out, cell)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        dataset = _from_bytes(data)
    except Exception as err:  # damaged (e.g. a disk error): only this cell is redone
        reason = " ".join(str(err).split()[:30]) or type(err).__name__
        warnings.warn(f"{path} cannot be read ({reason}); computing cell {cell.index} again", stacklevel=2)
        return None
    expected = _cell_identity(cell, settings)
    stored = {key: dataset.attrs.get(key) for key in expected}
    if stored != expected or int(dataset.attrs.get("seed", -1)) != cell.seed:
        raise SweepMismatchError(
            f"{path} holds a cell with other parameters or settings than this sweep; use --overwrite to start afresh"
        )
    return dataset


# ------------------------------------------------------------------------ manifest


def check_manifest(out: Path, description: Mapping, *, overwrite: bool) -> None:
    """Make ``out`` ready for the sweep ``description``: create it, or check that what it
    holds is a sweep with the same description (else :class:`SweepMismatchError`, unless
    ``overwrite``, which removes the stored cells and results first)."""
    out = Path(out)
    manifest = out / MANIFEST
    cells = out / CELLS
    text = describe_json(dict(description))
    stored_cells = sorted(cells.glob("cell-*.nc")) if cells.is_dir() else []
    if manifest.exists():
        stored = manifest.read_text()
        if stored != text:
            if not overwrite:
                raise SweepMismatchError(
                    f"{out} holds a sweep with other settings ({_difference(stored, text)}); "
                    "use another --out or --overwrite"
                )
            _clear(out)
    elif stored_cells or (out / RESULTS).exists():
        if not overwrite:
            raise SweepMismatchError(f"{out} holds results without {MANIFEST}; use another --out or --overwrite")
        _clear(out)
    cells.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cells)
    remove_stale_temporaries(out)
    if not manifest.exists():
        atomic_write(manifest, text.encode())


def _difference(stored: str, wanted: str) -> str:
    try:
        old, new = json.loads(stored), json.loads(wanted)
    except json.JSONDecodeError:
        return "unreadable sweep.json"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "differs in " + ", ".join(keys) if keys else "differs"


def _clear(out: Path) -> None:
    # Only the files a sweep writes; anything else in the directory is left alone.
    for path in (Path(out) / CELLS).glob("cell-*.nc"):
        path.unlink()
    for name in (RESULTS, MANIFEST):
        (Path(out) / name).unlink(missing_ok=True)


# ------------------------------------------------------------------------- combine


def combine_cells(grid: Grid, cells: Mapping[int, xr.Dataset], attrs: Mapping) -> xr.Dataset:
    """The combined dataset: dims = swept axes + ``replicate``; every fixed axis a scalar
    coordinate; one variable per cell output, and ``seed`` (per cell)."""
    if len(cells) != grid.size:
        raise ValueError(f"combine_cells needs all {grid.size} cells (got {len(cells)})")
    first = cells[0]
    names = list(first.data_vars)
    dims = (*grid.dims, "replicate")
    shape = (*grid.shape, grid.replicates)
    data = {name: np.empty(shape, dtype=first[name].dtype) for name in names}
    seeds = np.empty(grid.shape, dtype=np.int32)
    for cell in grid.cells():
        stored = cells[cell.index]
        if list(stored.data_vars) != names:
            raise ValueError(f"cell {cell.index} has outputs {list(stored.data_vars)}, cell 0 has {names}")
        for name in names:
            data[name][cell.position] = stored[name].values
        seeds[cell.position] = cell.seed
    variables = {name: (dims, data[name], dict(first[name].attrs)) for name in names}
    variables["seed"] = (
        grid.dims,
        seeds,
        {"long_name": "seed of the cell's simulations, derived from the base seed and the cell's coordinates"},
    )
    coords = {"replicate": np.arange(grid.replicates, dtype=np.int32)}
    for name, values in grid.swept:
        coords[name] = ((name,), _coordinate_array(name, values), _AXIS_ATTRS[name])
    for name, value in grid.fixed:
        coords[name] = ((), _coordinate_array(name, value), _AXIS_ATTRS[name])
    return xr.Dataset(variables, coords=coords, attrs=dict(attrs))


def write_results(out: Path, dataset: xr.Dataset) -> Path:
    path = Path(out) / RESULTS
    atomic_write(path, _to_bytes(dataset))
    return path


def open_sweep(path: str | os.PathLike) -> xr.Dataset:
    """Load a stored sweep (``results.nc``, a cell file, or a sweep folder, whose
    ``results.nc`` is read) into memory, restoring the boolean and 64-bit integer types
    of the outputs.  ``ValueError`` for a file that is not netCDF3."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    return _decode(_from_bytes(path.read_bytes()))


# ---------------------------------------------------------------------------- lock

#: locks this process holds (path -> token), so that a lock with this process's id
#: that is not in here is recognised as left by an earlier process with the same id
_HELD: dict[str, str] = {}


def _read_lock(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe_lock(record: dict) -> str:
    if not record:
        return "an unreadable lock"
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')} since {record.get('started', '?')}"


def _is_stale(path: Path, record: dict) -> bool:
    if not record or record.get("host") != socket.gethostname():
        return False  # another host's process cannot be checked from here
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return _HELD.get(str(path)) != record.get("token")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _create_lock(path: Path, record: dict) -> bool:
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as stream:
        stream.write(json.dumps(record))
        stream.flush()
        os.fsync(stream.fileno())
    return True


def _take_over(path: Path, record: dict) -> bool:
    """Remove the stale lock ``record`` at ``path``, unless it changed meanwhile."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.stale")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return True  # removed by someone else: try to create it
    if _read_lock(aside) != record:
        # another run took it over first: put its lock back (never over a newer one)
        try:
            os.link(aside, path)
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def sweep_lock(out: str | os.PathLike):
    """Hold ``OUT/sweep.lock`` for the duration of the ``with`` block (creating ``OUT``).

    Raises :class:`SweepLockedError` naming the holder when another live run holds it;
    a stale lock (its process gone, same host) is taken over with a warning."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
        "token": secrets.token_hex(8),
    }
    for _ in range(3):
        if _create_lock(path, record):
            break
        held = _read_lock(path)
        if held is None:
            continue  # released between the two calls
        if not _is_stale(path, held):
            raise SweepLockedError(
                f"{out} is being written by another run ({_describe_lock(held)}; lock file {path}); "
                "wait for it to finish, or remove the lock file if that run is gone"
            )
        warnings.warn(f"taking over the stale lock {path} of a run that is gone ({_describe_lock(held)})", stacklevel=3)
        _take_over(path, held)
    else:
        raise SweepLockedError(f"{out}: could not take the lock file {path}; another run keeps taking it")
    _HELD[str(path)] = record["token"]
    try:
        yield path
    finally:
        _HELD.pop(str(path), None)
        # only our own lock: never one another run took over meanwhile
        if _read_lock(path) == record:
            path.unlink(missing_ok=True)

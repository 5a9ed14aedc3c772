"""Where the cells of a sweep run: in this process, in a pool of local processes, or
on a Dask distributed cluster.

Every executor computes cells and hands each finished result back to the caller, which
stores it; workers never write files, so a remote cluster needs no shared disk.  When a
cell fails, no new cell is started, the cells already finished are handed back (a local
pool also finishes the cells it is running) so that their work is stored, and then the
error is raised.

Threads.  A pool of ``workers`` local processes sets ``torch`` to
``max(1, os.cpu_count() // workers)`` threads in each (and the matching
``OMP_NUM_THREADS``/``MKL_NUM_THREADS``), so that the pool does not oversubscribe the
cores.  The processes are started with the ``spawn`` method: forking a process whose
OpenMP runtime is already running can deadlock the child.  Dask workers keep the thread
settings of their cluster (start them with ``--nthreads 1`` and ``OMP_NUM_THREADS=1``
for one simulation per core).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from featfate_sym.sweeps.grid import Cell

__all__ = ["CellFunction", "SimulationCell", "simulation_cell", "whitened_simulation_cell", "SOLVER_CELLS", "cell_function_name", "run_in_process", "run_in_processes", "run_on_dask"]

#: ``cell_function(params, *, replicates, seed, device, dtype) -> {name: array (replicates,)}``
CellFunction = Callable[..., dict]


@dataclass(frozen=True)
class SimulationCell:
    """The Torch simulation of one cell, :func:`featfate_sym.simulation.run_cell`, with
    its settings: the training ``solver``; the ``protocols`` it runs (names, as
    :func:`featfate_sym.protocols.get` reads them; ``None``: the paper's scratch, linear
    transfer and fine-tuning, or scratch and linear transfer for ``k > 1``); the input
    ``spectrum`` and the ``teachers``' energy profile as text
    (:func:`featfate_sym.spectra.parse_spectrum`, :func:`~featfate_sym.spectra.parse_teachers`;
    ``None``: isotropic, uniform), built at each cell's ``d``; and ``k`` source tasks.

    A picklable value, so it travels to worker processes and Dask workers; its
    :attr:`name` holds every setting and is recorded with the sweep, so a sweep resumed
    with other settings is refused rather than mixed.  Torch is imported when first called
    (building and checking a sweep does not import it).  Bad settings raise ``ValueError``
    when the cell function is made."""

    solver: str = "gd"
    protocols: tuple[str, ...] | None = None
    spectrum: str | None = None
    teachers: str | None = None
    k: int = 1

    def __post_init__(self):
        from featfate_sym import parameters, spectra

        if self.solver not in ("gd", "whitened"):
            raise ValueError(f"solver must be gd or whitened (got {self.solver!r})")
        object.__setattr__(self, "k", parameters.scalar(parameters.k, self.k))
        if self.spectrum is not None:
            spectra.parse_spectrum(self.spectrum)
        if self.teachers is not None:
            spectra.parse_teachers(self.teachers)
        if self.protocols is not None:
            from featfate_sym import protocols as table

            names = tuple(table.get(name).name for name in self.protocols)  # unknown names raise
            if not names:
                raise ValueError("protocols must name at least one protocol")
            if len(set(names)) != len(names):
                raise ValueError(f"protocols must not repeat a protocol (got {', '.join(self.protocols)})")
            object.__setattr__(self, "protocols", None if names == table.PAPER and self.k == 1 else names)

    def inputs(self, dim: int):
        """``(covariance, profile)`` at input dimension ``dim`` (``None`` for isotropic
        inputs / uniform teachers), :func:`featfate_sym.spectra.spectrum_arrays`."""
        from featfate_sym import spectra

        if self.spectrum is None and self.teachers is None:
            return None, None
        spectrum = None if self.spectrum is None else spectra.parse_spectrum(self.spectrum)
        teachers = ("uniform", math.nan) if self.teachers is None else spectra.parse_teachers(self.teachers)
        return spectra.spectrum_arrays(spectrum, teachers, int(dim))

    def __call__(self, params: dict, *, replicates: int, seed: int, device: str = "cpu",
                 dtype: str = "float64") -> dict:
        from featfate_sym.simulation import run_cell

        extra = {}
        if self.spectrum is not None or self.teachers is not None or self.k != 1:
            covariance, profile = self.inputs(params["d"])
            extra = dict(covariance=covariance, profile=profile, source_tasks=self.k)
        return run_cell(params, replicates=replicates, seed=seed, device=device, dtype=dtype,
                        solver=None if self.solver == "gd" else self.solver, protocols=self.protocols, **extra)

    @property
    def name(self) -> str:
        """The recorded name: for the paper's settings the one earlier sweeps recorded."""
        options = [] if self.solver == "gd" else [f"solver='{self.solver}'"]
        if self.protocols is not None:
            options.append(f"protocols={list(self.protocols)!r}")
        options += [f"spectrum={self.spectrum!r}"] if self.spectrum is not None else []
        options += [f"teachers={self.teachers!r}"] if self.teachers is not None else []
        options += [f"source_tasks={self.k}"] if self.k != 1 else []
        text = "featfate_sym.simulation.run_cell"
        return f"{text}({', '.join(options)})" if options else text


#: the paper's protocols with gradient descent on the empirical loss
simulation_cell = SimulationCell("gd")
#: the same with the ``whitened`` solver (same end points, steps independent of the
#: conditioning of ``X^T X / n``; see :mod:`featfate_sym.simulation.deep_linear`)
whitened_simulation_cell = SimulationCell("whitened")

#: the simulation cell function of each training solver
SOLVER_CELLS = {"gd": simulation_cell, "whitened": whitened_simulation_cell}


def cell_function_name(function: CellFunction) -> str:
    """The importable name of a cell function (recorded with the sweep)."""
    if isinstance(function, SimulationCell):
        return function.name
    return f"{function.__module__}.{function.__qualname__}"


def _compute(function: CellFunction, cell: Cell, replicates: int, device: str, dtype: str) -> dict[str, np.ndarray]:
    arrays = function(dict(cell.params), replicates=replicates, seed=cell.seed, device=device, dtype=dtype)
    return {name: np.asarray(value) for name, value in arrays.items()}


def run_in_process(
    function: CellFunction, cells: Iterable[Cell], *, replicates: int, device: str, dtype: str
) -> Iterator[tuple[Cell, dict]]:
    """Compute the cells one after the other in this process."""
    for cell in cells:
        yield cell, _compute(function, cell, replicates, device, dtype)


def _initialise_worker(threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    try:
        import torch
    except ImportError:  # a cell function that does not use torch
        return
    torch.set_num_threads(threads)


def _drain(pending: dict[Future, Cell]) -> Iterator[tuple[Cell, dict]]:
    # After a failure: finish what is running, keep what succeeded.
    for future in list(pending):
        future.cancel()
    for future, cell in pending.items():
        if future.cancelled():
            continue
        try:
            result = future.result()
        except BaseException:
            continue
        yield cell, result


def run_in_processes(
    function: CellFunction,
    cells: Iterable[Cell],
    *,
    replicates: int,
    device: str,
    dtype: str,
    workers: int,
) -> Iterator[tuple[Cell, dict]]:
    """Compute the cells in a pool of ``workers`` local processes, yielding each as it
    finishes (in completion order)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_initialise_worker, initargs=(threads,))
    pending: dict[Future, Cell] = {}
    try:
        for cell in cells:
            pending[pool.submit(_compute, function, cell, replicates, device, dtype)] = cell
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                cell = pending.pop(future)
                error = future.exception()
                if error is not None:
                    yield from _drain(pending)
                    pending.clear()
                    raise error
                yield cell, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_on_dask(
    function: CellFunction,
    cells: Iterable[Cell],
    *,
    replicates: int,
    device: str,
    dtype: str,
    scheduler,
) -> Iterator[tuple[Cell, dict]]:
    """Compute the cells on a Dask distributed cluster; ``scheduler`` is its address
    (``tcp://host:port``) or a connected ``dask.distributed.Client``.  The package must
    be importable on the workers."""
    from dask.distributed import Client, as_completed

    own_client = not isinstance(scheduler, Client)
    client = Client(scheduler) if own_client else scheduler
    pending: dict = {}
    try:
        for cell in cells:
            future = client.submit(_compute, function, cell, replicates, device, dtype, pure=False)
            pending[future] = cell
        for future in as_completed(list(pending)):
            cell = pending.pop(future)
            if future.status == "error":
                error = future.exception()
                client.cancel([f for f in pending if f.status == "pending"])
                for other, other_cell in list(pending.items()):
                    if other.status == "finished":
                        yield other_cell, other.result()
                pending.clear()
                raise error
            yield cell, future.result()
    finally:
        if pending:
            client.cancel(list(pending))
        if own_client:
            client.close()

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

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Iterator

import numpy as np

from featfate_sym.sweeps.grid import Cell

__all__ = ["CellFunction", "simulation_cell", "whitened_simulation_cell", "SOLVER_CELLS", "cell_function_name", "run_in_process", "run_in_processes", "run_on_dask"]

#: ``cell_function(params, *, replicates, seed, device, dtype) -> {name: array (replicates,)}``
CellFunction = Callable[..., dict]


def simulation_cell(params: dict, *, replicates: int, seed: int, device: str = "cpu", dtype: str = "float64") -> dict:
    """:func:`featfate_sym.simulation.run_cell`, imported when first called (so that
    building and checking a sweep does not import Torch)."""
    from featfate_sym.simulation import run_cell

    return run_cell(params, replicates=replicates, seed=seed, device=device, dtype=dtype)


def whitened_simulation_cell(
    params: dict, *, replicates: int, seed: int, device: str = "cpu", dtype: str = "float64"
) -> dict:
    """:func:`simulation_cell` with the ``whitened`` solver (same end points, steps
    independent of the conditioning of ``X^T X / n``; see
    :mod:`featfate_sym.simulation.deep_linear`)."""
    from featfate_sym.simulation import run_cell

    return run_cell(params, replicates=replicates, seed=seed, device=device, dtype=dtype, solver="whitened")


#: the simulation cell function of each training solver
SOLVER_CELLS = {"gd": simulation_cell, "whitened": whitened_simulation_cell}


def cell_function_name(function: CellFunction) -> str:
    """The importable name of a cell function (recorded with the sweep)."""
    if function is simulation_cell:
        return "featfate_sym.simulation.run_cell"
    if function is whitened_simulation_cell:
        return "featfate_sym.simulation.run_cell(solver='whitened')"
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

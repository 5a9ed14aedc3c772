"""Theory and simulation as one labelled type: ``ff.theory``, ``ff.simulate``, ``ff.compare``.

``ff.theory(key, **params)`` is a registry result as an ``xarray.DataArray``;
``ff.simulate(protocols, replicates=, seed=, **params)`` runs the protocols on shared
target data and returns an ``xarray.Dataset`` laid out as a sweep (one dimension per
array-valued parameter, then ``replicate``); ``ff.compare(key, simulation)`` tests the
simulated mean against the result at every point, through the protocol table
(:mod:`featfate_sym.protocols`) that says which variable the key predicts and where.

Theory.
A parameter given as a 1-D array becomes a dimension named after it (its values the
coordinate); scalars become scalar coordinates; the result is evaluated on the outer
grid of the array-valued parameters.  A vector-valued result gains a leading ``output``
dimension named by its components.  The attributes carry the key, title, status, regime
and reference, so a value never travels without what it means.  Values are validated
through the result's parameters (``ValueError`` naming the parameter and its range).
"""

from __future__ import annotations

import numpy as np

from featfate_sym import registry

__all__ = ["theory", "simulate", "compare"]

#: family-wise false-alarm rate of :func:`compare` by default (Bonferroni over its points)
COMPARE_ALPHA = 1e-3


def theory(key: str, **params):
    """``key`` evaluated at ``params`` as an ``xarray.DataArray`` (see the module docstring).

    Example: ``theory("lt.transferability", gamma=np.linspace(0.1, 2, 20), theta=np.pi / 4,
    sigma=0.2, lam=0)`` has one dimension ``gamma``.
    """
    import xarray as xr

    result = registry.get(key)
    values = result.validate(params)
    arrays = {name: np.asarray(value, dtype=float) for name, value in values.items()}
    for name, arr in arrays.items():
        if arr.ndim > 1:
            raise ValueError(f"parameter {name} must be a number or a 1-D array (got shape {arr.shape})")
    dims = [name for name, arr in arrays.items() if arr.ndim == 1]
    coords = {name: arr if arr.ndim == 1 else float(arr) for name, arr in arrays.items()}
    # each array parameter along its own axis of the outer grid
    grids = [arr.reshape([arr.size if d == name else 1 for d in dims]) if arr.ndim == 1 else arr
             for name, arr in arrays.items()]
    out = np.asarray(result.numpy.unchecked(*grids), dtype=float)  # validated above
    full = tuple(arrays[d].size for d in dims)
    if result.outputs:
        out = np.broadcast_to(out, (len(result.outputs), *full))
        dims = ["output", *dims]
        coords["output"] = list(result.outputs)
    else:
        out = np.broadcast_to(out, full)
    attrs = {"key": result.key, "title": result.title, "status": result.status.value,
             "source": result.status.source.value, "exactness": result.status.exactness.value,
             "regime": result.regime, "reference": result.reference}
    return xr.DataArray(np.array(out), dims=dims, coords=coords, name=result.key, attrs=attrs)


def _grid_axes(params: dict) -> tuple[dict, dict]:
    swept, fixed = {}, {}
    for name, value in params.items():
        arr = np.asarray(value, dtype=float)
        if arr.ndim > 1:
            raise ValueError(f"parameter {name} must be a number or a 1-D array (got shape {arr.shape})")
        if arr.ndim == 1:
            swept[name] = [int(v) if name in ("L", "d") and float(v).is_integer() else float(v) for v in arr]
        else:
            fixed[name] = value if name in ("L", "d") else float(value)
    return swept, fixed


def simulate(protocols=None, *, replicates: int, seed: int = 0, solver: str = "gd", device: str = "cpu",
             dtype: str = "float64", options=None, progress=None, spectrum: str | None = None,
             teachers: str | None = None, k: int = 1, **params):
    """Simulate ``protocols`` (names, ``fine_tune[1]``-style partial fine-tuning, or
    :class:`~featfate_sym.protocols.Protocol` objects; default the paper's scratch, linear
    transfer and fine-tuning) on shared target data, ``replicates`` experiments per point.

    ``params``: the cell parameters ``gamma, theta, sigma, lam, L, d, gamma_s, sigma_s``
    (validated through :mod:`featfate_sym.parameters`); each a number or a 1-D array, an
    array becoming a dimension of the result; missing ones take the sweep defaults
    (:data:`featfate_sym.sweeps.grid.DEFAULTS`: ``d = 500``, ``L = 2``, population source).

    Returns an ``xarray.Dataset`` with the dimensions of the array parameters and
    ``replicate``; one variable per observable (``risk_<tag>``, ``T_<tag>``), the
    convergence flags ``converged_<tag>`` and the other diagnostics, a ``seed`` per point,
    and provenance in the attributes (protocols, solver, replicates, base seed, package
    versions).  Each point's seed derives from ``seed`` and its coordinates exactly as in a
    sweep (:mod:`featfate_sym.sweeps.grid`), so a point has the same numbers here and in
    ``python -m featfate_sym.simulate`` with the same base seed, and the result has the
    layout of a sweep's ``results.nc``.  ``progress(done, total)``, if given, is called
    after each point.

    ``spectrum`` (``"two_level:frac=0.2,r=4"``, ``"power_law:a=1"``, ``"values:..."``),
    ``teachers`` (``"uniform"``, ``"top"``, ``"bottom:0.2"``) and ``k`` (source tasks) set
    anisotropic inputs and rank-``k`` features, as the ``simulate`` command's flags do
    (:func:`featfate_sym.spectra.parse_spectrum`); with ``k > 1`` the default protocols are
    scratch and linear transfer.  :func:`compare` refuses such a simulation: the
    protocols' predictions are for isotropic inputs and one source task (compare with
    ``scratch.risk_two_level``, ``lt.k.risk_finite``, ... directly).
    """
    from functools import partial

    from featfate_sym import protocols as protocol_table
    from featfate_sym.simulation import run_cell
    from featfate_sym.sweeps import storage
    from featfate_sym.sweeps.grid import Grid

    from featfate_sym.sweeps.executors import SimulationCell

    inputs = SimulationCell(solver, None, spectrum, teachers, k)  # validates the three
    if protocols is None and inputs.k > 1:
        protocols = protocol_table.defaults(inputs.k)
    chosen = protocol_table.resolve(protocols)
    swept, fixed = _grid_axes(params)
    grid = Grid.build(swept, fixed=fixed, replicates=replicates, seed=seed)
    names = [p.name for p in chosen]
    function = partial(run_cell, solver=solver, options=options, protocols=chosen)
    special = spectrum is not None or teachers is not None or inputs.k != 1
    described = {"spectrum": spectrum or "isotropic", "teachers": teachers or "uniform", "source_tasks": inputs.k}
    settings = {"replicates": grid.replicates, "dtype": dtype, "device": device, "solver": solver,
                "protocols": ",".join(names), **(described if special else {})}
    cells = {}
    for cell in grid.cells():
        extra = {}
        if special:
            covariance, profile = inputs.inputs(cell.params["d"])
            extra = dict(covariance=covariance, profile=profile, source_tasks=inputs.k)
        arrays = function(dict(cell.params), replicates=grid.replicates, seed=cell.seed, device=device, dtype=dtype,
                          **extra)
        cells[cell.index] = storage.cell_dataset(cell, arrays, settings)
        if progress is not None:
            progress(cell.index + 1, grid.size)
    attrs = {**storage.provenance(), "protocols": ",".join(names), "solver": solver, "replicates": grid.replicates,
             "base_seed": grid.seed, "dtype": dtype, "device": device, **described}
    return storage._decode(storage.combine_cells(grid, cells, attrs))


def _matching(key: str, simulation):
    from featfate_sym import protocols as protocol_table

    present = set(simulation.data_vars)
    found = [(p, pred) for p, pred in protocol_table.predictions()
             if pred.key == key and p.variable(pred.observable) in present]
    if not found:
        known = sorted({pred.key for _, pred in protocol_table.predictions()})
        raise ValueError(f"key must be a result that predicts a variable of this simulation "
                         f"(variables {', '.join(sorted(present))}; predicting keys {', '.join(known)}; got {key!r})")
    return found


def compare(key: str, simulation, *, alpha: float = COMPARE_ALPHA, allowance: float = 0.0):
    """Test the simulated mean of the variable that ``key`` predicts against the result,
    at every point of ``simulation`` (from :func:`simulate` or a sweep) where the
    prediction holds (:meth:`featfate_sym.protocols.Prediction.applies`).

    Returns an ``xarray.Dataset`` over the points, with ``theory``, ``mean``, ``se``
    (standard error over the replicates), ``z = (mean - theory) / se`` (Student t with
    ``replicates - 1`` degrees of freedom under the prediction), ``critical`` (two-sided
    t critical value at ``alpha`` split over the points compared, Bonferroni) and
    ``passed`` (``|mean - theory| <= critical se + allowance``); points where the
    prediction does not hold are NaN (``passed`` false).  The attributes give the key,
    the variable, the protocol, the form, the result's status, ``alpha``, the number of
    comparisons and the false-alarm rate per point, ``alpha / comparisons``.  A limit form
    compared at finite ``d`` also measures the finite-size bias, which ``allowance``
    (a derived bound, default 0) may admit; see :class:`featfate_sym.stats.Comparison`.
    """
    import xarray as xr

    from featfate_sym import protocols as protocol_table
    from featfate_sym.stats import mean_se, t_critical

    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1) (got {alpha!r})")
    inputs = {name: simulation.attrs.get(name, default) for name, default in
              (("spectrum", "isotropic"), ("teachers", "uniform"), ("source_tasks", 1))}
    if inputs != {"spectrum": "isotropic", "teachers": "uniform", "source_tasks": 1}:
        raise ValueError(f"simulation must have isotropic inputs, uniform teachers and one source task for the "
                         f"protocols' predictions (got {inputs}); compare with the anisotropic or multi-source "
                         f"results (scratch.risk_two_level, lt.k.risk_finite, ...) directly")
    result = registry.get(key)
    candidates = _matching(key, simulation)
    dims = [d for d in simulation.dims if d != "replicate"]
    shape = tuple(simulation.sizes[d] for d in dims)
    theory_values, means, ses, counts = (np.full(shape, np.nan) for _ in range(4))
    used = set()
    for index in np.ndindex(*shape):
        point = simulation.isel(dict(zip(dims, index)))
        params = protocol_table.cell_params(point.coords)
        for protocol, prediction in candidates:
            if not prediction.applies(params):
                continue
            values = np.asarray(point[protocol.variable(prediction.observable)].values, dtype=float)
            values = values[np.isfinite(values)]
            if values.size < 2:
                break
            estimate = mean_se(values)
            theory_values[index] = float(result.evaluate(**prediction.arguments(params)))
            means[index], ses[index], counts[index] = estimate.mean, estimate.se, estimate.n
            used.add((protocol.name, prediction.form, protocol.variable(prediction.observable)))
            break
    compared = np.isfinite(means) & np.isfinite(theory_values)
    m = int(compared.sum())
    if m == 0:
        conditions = "; ".join(f"{p.name}: {pr.when or pr.source + ' source'}" for p, pr in candidates)
        raise ValueError(f"{key}: no point of this simulation where its prediction holds ({conditions})")
    crit = np.full(shape, np.nan)
    for index in np.ndindex(*shape):
        if compared[index]:
            crit[index] = t_critical(counts[index] - 1, alpha, m)
    z = np.full(shape, np.nan)
    spread = compared & (ses > 0)
    z[spread] = (means - theory_values)[spread] / ses[spread]
    exact = compared & (ses == 0)  # every replicate equal: z is 0 or infinite
    z[exact] = np.where(means[exact] == theory_values[exact], 0.0, np.copysign(np.inf, (means - theory_values)[exact]))
    passed = np.zeros(shape, dtype=bool)
    passed[compared] = np.abs(means - theory_values)[compared] <= crit[compared] * ses[compared] + allowance
    coords = {d: simulation.coords[d] for d in dims}
    data = {"theory": (dims, theory_values), "mean": (dims, means), "se": (dims, ses), "z": (dims, z),
            "critical": (dims, crit), "passed": (dims, passed), "replicates": (dims, counts)}
    protocol_name, form, variable = (" / ".join(sorted({u[i] for u in used})) for i in range(3))
    attrs = {"key": key, "variable": variable, "protocol": protocol_name, "form": form,
             "status": result.status.value, "alpha": alpha, "comparisons": m,
             "false_alarm_rate": alpha / m, "allowance": allowance,
             "all_passed": bool(passed[compared].all())}
    return xr.Dataset(data, coords=coords, attrs=attrs)

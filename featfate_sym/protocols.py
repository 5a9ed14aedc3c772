"""Protocols: how a network is trained on the target task, and which results predict it.

A :class:`Protocol` is the unit the toolkit is built around.  It declares

* how it trains in the simulator (``run(trial) -> ProtocolRun``: an end-to-end vector per
  replicate and its diagnostics), on the target data that every protocol of a
  simulation shares, so that transferabilities are paired differences;
* which registry results predict its observables (:class:`Prediction`: the risk, and the
  transferability ``T = R_scratch - R_protocol``; limit and finite-size forms), and the
  conditions under which each prediction holds;
* its regime and the layers it trains.

The simulator (:func:`featfate_sym.simulation.deep_linear.run_protocols`), ``ff.simulate``,
``ff.compare``, the agreement table of the report, the slices and the explorer read
this table, so a new protocol is one theory module (its results) plus one entry here
(see the tutorial, ``numerics/tutorial.py``, and :func:`register_protocol`).

Observables of a protocol with tag ``x`` are the variables ``risk_x`` and (for every
protocol but scratch) ``T_x``; its diagnostics are ``<name>_x`` (``steps_x``,
``converged_x``, ...).  The pretraining run is reported as ``*_pre``.

Reference: Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Sec. 3 (scratch, linear transfer
and fine-tuning); the partial fine-tuning protocols are this toolkit's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

__all__ = [
    "Prediction",
    "Protocol",
    "ProtocolRun",
    "PROTOCOLS",
    "PAPER",
    "register_protocol",
    "get",
    "resolve",
    "fine_tune_layers",
    "predictions",
    "cell_params",
    "table",
]


@dataclass
class ProtocolRun:
    """What one protocol produced on a batch of replicates: the end-to-end vectors
    ``beta`` (``(R, d)`` float64 CPU tensor) and diagnostics (name -> ``(R,)`` tensor)."""

    beta: object
    diagnostics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    """A registry result that predicts an observable of a protocol.

    ``observable``: ``"risk"`` or ``"T"``; ``form``: a short label of the form (``limit``,
    ``finite n, d``, ``paper (c = 1)``); ``takes``: the cell parameters passed to the
    result (``n`` is the simulated sample count ``round(gamma d)``); ``when``: the
    condition on the cell under which the prediction holds (``holds``, as a function of
    the cell parameters, and ``when``, the same in words).  ``source`` says which source
    the prediction assumes: ``"population"`` (``gamma_s`` absent or infinite),
    ``"finite"`` or ``"any"``.  ``finite_size``: the value is exact at the simulated
    ``n, d`` (a comparison needs no finite-size allowance); otherwise it is the
    proportional limit, which a simulation at finite ``d`` misses by ``O(1/d)``.
    """

    key: str
    observable: str
    form: str
    takes: tuple[str, ...]
    source: str = "population"
    when: str = ""
    holds: Callable[[dict], bool] | None = None
    #: exact at the simulated ``n, d`` (a finite-size form), not only in the limit
    finite_size: bool = False

    def applies(self, params: dict) -> bool:
        """Whether the prediction holds at the cell ``params`` (grid parameters)."""
        finite = math.isfinite(params.get("gamma_s", math.inf) or math.inf)
        if (self.source == "population" and finite) or (self.source == "finite" and not finite):
            return False
        if any(name not in params for name in self.takes if name != "n"):
            return False
        return self.holds is None or bool(self.holds(params))

    def arguments(self, params: dict) -> dict:
        """The result's arguments at the cell ``params``."""
        full = dict(params)
        if "d" in params:
            full["n"] = float(round(params["gamma"] * params["d"]))
            if self.finite_size:  # the simulated ratio n/d, which a finite-size form needs
                full["gamma"] = full["n"] / params["d"]
        return {name: full[name] for name in self.takes}


@dataclass(frozen=True)
class Protocol:
    """A training protocol on the target task (see the module docstring).

    ``tag`` names its variables (``risk_<tag>``, ``T_<tag>``); ``layers``: the layers it
    trains, in words; ``pretrained``: whether it starts from the pretrained network (the
    simulator pretrains once for all protocols that do); ``run(trial)``: the training,
    given a :class:`featfate_sym.simulation.deep_linear.Trial`.
    """

    name: str
    tag: str
    title: str
    layers: str
    pretrained: bool
    regime: str
    run: Callable[..., ProtocolRun]
    predictions: tuple[Prediction, ...] = ()

    def variable(self, observable: str) -> str:
        return f"{observable}_{self.tag}"

    def prediction(self, observable: str, form: str) -> Prediction:
        """The prediction of ``observable`` with the form label ``form``."""
        for p in self.predictions:
            if p.observable == observable and p.form == form:
                return p
        raise ValueError(f"protocol {self.name} has no {form!r} prediction of {observable}")

    def headline(self, observable: str, params: dict | None = None) -> Prediction:
        """The prediction a figure draws for ``observable``: the first population-source
        one whose result is exact (else the first) that holds at ``params`` (if given)."""
        from featfate_sym import registry

        found = [p for p in self.predictions if p.observable == observable and p.source != "finite"
                 and (params is None or p.holds is None or p.holds(params))]
        if not found:
            raise ValueError(f"protocol {self.name} has no prediction of {observable}")
        exact = [p for p in found if registry.get(p.key).status.exact]
        return (exact or found)[0]

    @property
    def observables(self) -> tuple[str, ...]:
        return ("risk",) if self.tag == "sc" else ("risk", "T")


#: every protocol by name, in registration order
PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` (its name and tag must be new)."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"protocol {protocol.name!r} registered twice")
    if any(p.tag == protocol.tag for p in PROTOCOLS.values()):
        raise ValueError(f"protocol tag {protocol.tag!r} is taken")
    for prediction in protocol.predictions:
        if prediction.observable not in protocol.observables:
            raise ValueError(f"{protocol.name}: observable {prediction.observable!r} is not one of "
                             f"{', '.join(protocol.observables)}")
    PROTOCOLS[protocol.name] = protocol
    return protocol


#: the protocols run by default on a network pretrained on k > 1 source tasks (fine-tuning a
#: k-output network is not defined)
MULTI_SOURCE = ("scratch", "linear_transfer")


def defaults(source_tasks: int = 1) -> tuple[str, ...]:
    """The protocols a simulation runs when none are named: the paper's three, or
    :data:`MULTI_SOURCE` for ``source_tasks > 1``."""
    return PAPER if source_tasks == 1 else MULTI_SOURCE


def get(name: str) -> Protocol:
    """The protocol ``name``; ``fine_tune[1,2]`` builds the partial fine-tuning of those
    layers (:func:`fine_tune_layers`).  ``ValueError`` lists the known names."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    if name.startswith("fine_tune[") and name.endswith("]"):
        try:
            layers = tuple(int(part) for part in name[len("fine_tune["):-1].split(","))
        except ValueError:
            layers = ()
        if layers:
            return fine_tune_layers(layers)
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)} or fine_tune[l1,l2,...] (got {name!r})")


def resolve(protocols: Iterable[str | Protocol] | str | Protocol | None) -> tuple[Protocol, ...]:
    """Protocols by name or object, in order, without repeats (``None``: :data:`PAPER`)."""
    if protocols is None:
        protocols = PAPER
    if isinstance(protocols, (str, Protocol)):
        protocols = (protocols,)
    out: list[Protocol] = []
    for item in protocols:
        protocol = item if isinstance(item, Protocol) else get(item)
        if any(p.tag == protocol.tag for p in out):
            raise ValueError(f"protocol {protocol.name!r} given twice")
        out.append(protocol)
    if not out:
        raise ValueError("protocols must name at least one protocol")
    return tuple(out)


def predictions(protocols: Iterable[Protocol] | None = None):
    """``(protocol, prediction)`` pairs of ``protocols`` (default: every registered one)."""
    for protocol in PROTOCOLS.values() if protocols is None else protocols:
        for prediction in protocol.predictions:
            yield protocol, prediction


#: the grid parameters of a simulation cell, in order
CELL_PARAMS = ("gamma", "theta", "sigma", "lam", "L", "d", "gamma_s", "sigma_s")


def cell_params(coords) -> dict:
    """The grid parameters found in ``coords`` (a mapping, e.g. a Dataset's coordinates),
    as floats."""
    return {name: float(coords[name]) for name in CELL_PARAMS if name in coords}


# --------------------------------------------------------------------------- training
# Each run takes the trial (teachers, shared target data, pretrained network, options)
# and trains one network; the engine is imported when a protocol runs, so reading the
# table needs neither Torch nor a simulation.
def _scratch_run(trial) -> ProtocolRun:
    from featfate_sym.simulation.deep_linear import train_scratch

    weights, run = train_scratch(trial.target, trial.depth, trial.generator, trial.options,
                                 device=trial.device, dtype=trial.dtype)
    return ProtocolRun(trial.end_to_end(weights), trial.descent_diagnostics(run))


def _linear_transfer_run(trial) -> ProtocolRun:
    from featfate_sym.simulation.monitors import feature_map
    from featfate_sym.simulation.readout import refit_readout

    weights, _ = trial.pretrained()
    fit = refit_readout(feature_map(trial.cpu64(weights)), trial.target, trial.ridge,
                        rank_tol=trial.options.rank_tol)
    naive = trial.risk(fit.beta_naive)  # in the metric of the input covariance
    return ProtocolRun(fit.beta, {"rank": fit.rank, "pinv_risk": naive})


def _fine_tune_run(trial, layers=None) -> ProtocolRun:
    from featfate_sym.simulation.deep_linear import fine_tune

    pretrained, _ = trial.pretrained()
    if trial.source_tasks > 1:
        # rank-k features: the new one-output readout starts at linear transfer's fit
        # (multi_output.trunk_start), then every layer descends
        if layers is not None:
            raise ValueError("layers: fine-tuning some layers of a network pretrained on k > 1 source tasks "
                             "is not defined (use fine_tune, all layers)")
        from featfate_sym.simulation import multi_output

        weights, run, start = multi_output.fine_tune_from_trunk(
            pretrained, trial.target, trial.options, ridge=trial.ridge, device=trial.device, dtype=trial.dtype)
        return ProtocolRun(trial.end_to_end(weights), {**trial.descent_diagnostics(run),
                                                       "drift": trial.drift(start.weights, weights)})
    weights, run = fine_tune(pretrained, trial.target, trial.options, device=trial.device,
                             dtype=trial.dtype, layers=layers)
    return ProtocolRun(trial.end_to_end(weights),
                       {**trial.descent_diagnostics(run), "drift": trial.drift(pretrained, weights)})


def _lam_zero(params: dict) -> bool:
    return params.get("lam", 0.0) == 0.0


_SCRATCH_REGIME = ("all layers from a fresh small initialisation (alpha -> 0): gradient flow ends at "
                   "the minimum-norm least-squares solution X^+ y")
_LT_REGIME = ("W_1..W_{L-1} frozen at the pretrained network (rank-one feature beta_s), readout refit "
              "by ridge lam (closed form, rank rule)")
_FT_REGIME = ("every layer by gradient flow from the balanced pretrained network; the end point is "
              "set by the conserved imbalances (c = 1 is the paper's approximation)")

register_protocol(Protocol(
    name="scratch", tag="sc", title="Training from scratch", layers="all, from small initialisation",
    pretrained=False, regime=_SCRATCH_REGIME, run=_scratch_run,
    predictions=(
        Prediction("scratch.risk", "risk", "limit", ("gamma", "sigma"), source="any"),
        Prediction("scratch.risk_finite", "risk", "finite n, d", ("n", "d", "sigma"), source="any",
                   finite_size=True),
    ),
))
register_protocol(Protocol(
    name="linear_transfer", tag="lt", title="Linear transfer", layers="readout (closed form)",
    pretrained=True, regime=_LT_REGIME, run=_linear_transfer_run,
    predictions=(
        Prediction("lt.risk", "risk", "limit", ("theta", "lam")),
        Prediction("lt.risk_finite", "risk", "finite n (lam = 0)", ("n", "theta", "sigma"),
                   when="lam = 0", holds=_lam_zero, finite_size=True),
        Prediction("lt.transferability", "T", "limit", ("gamma", "theta", "sigma", "lam")),
        # the n -> oo limit of the lam = 0 readout on a pretrained network of n_s samples
        Prediction("lt.risk_finite_source", "risk", "finite source, limit (lam = 0)",
                   ("theta", "gamma_s", "sigma_s"), source="finite", when="lam = 0", holds=_lam_zero),
    ),
))
register_protocol(Protocol(
    name="fine_tune", tag="ft", title="Fine-tuning (all layers)", layers="all, from the pretrained network",
    pretrained=True, regime=_FT_REGIME, run=_fine_tune_run,
    predictions=(
        Prediction("ft.transferability", "T", "paper (c = 1)", ("gamma", "theta")),
        Prediction("ft.transferability_exact", "T", "exact balanced flow", ("gamma", "theta", "sigma", "L")),
        Prediction("ft.transferability_finite_source", "T", "finite source, c = 1",
                   ("gamma", "theta", "gamma_s", "sigma_s"), source="finite"),
        Prediction("ft.transferability_finite_source_exact", "T", "finite source, exact balanced flow",
                   ("gamma", "theta", "sigma", "gamma_s", "sigma_s", "L"), source="finite"),
    ),
))

#: the paper's three protocols (the default of the simulator and the sweeps)
PAPER = ("scratch", "linear_transfer", "fine_tune")


def _layers_text(layers: tuple[int, ...]) -> str:
    return ",".join(str(layer) for layer in layers)


def fine_tune_layers(layers: Iterable[int]) -> Protocol:
    """Fine-tuning of the layers ``layers`` only (1-based: 1 is the input layer), the
    others frozen at the pretrained network; registered on first use as
    ``fine_tune[l1,...]`` with tag ``ft<l1><l2>...``.

    Predictions: the first layer alone ends at ``X^+ y + (I - P) beta_s`` for every noise
    level and depth (``ft.transferability_first_layer``); the last layer alone (``layers
    = (L,)``) is linear transfer by descent, predicted by ``lt.transferability`` at
    ``lam = 0``; all layers is :data:`PROTOCOLS` ``["fine_tune"]`` (use that).  Other
    subsets (two or more layers but not all) end at a point that depends on the
    imbalances of the trained layers only; no closed form is registered for them, so
    they are simulated without a prediction.
    """
    layers = tuple(layers)
    if not layers or any(isinstance(l, bool) or int(l) != l or l < 1 for l in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct integers >= 1 (1-based; got {layers!r})")
    layers = tuple(sorted(int(l) for l in layers))
    name = f"fine_tune[{_layers_text(layers)}]"
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    preds = []
    if layers == (1,):
        # exact at finite n < d with gamma = n/d (E P = (n/d) I; see the result's notes)
        preds.append(Prediction("ft.transferability_first_layer", "T", "first layer only, exact",
                                ("gamma", "theta", "sigma"), finite_size=True))
    if len(layers) >= 2 and layers == tuple(range(1, len(layers) + 1)):
        # every layer of a network of depth len(layers): the all-layer end point
        preds.append(Prediction("ft.transferability_exact", "T", "all layers, exact balanced flow",
                                ("gamma", "theta", "sigma", "L"), when=f"L = {len(layers)}",
                                holds=lambda p: p.get("L") == len(layers)))
    if len(layers) == 1 and layers[0] >= 2:
        last = layers[0]
        preds.append(Prediction("lt.transferability", "T", "last layer = linear transfer (lam = 0)",
                                ("gamma", "theta", "sigma", "lam"), when=f"L = {last}, lam = 0",
                                holds=lambda p, last=last: p.get("L") == last and _lam_zero(p)))

    def run(trial, layers=layers):
        if max(layers) > trial.depth:
            raise ValueError(f"layers must be in [1, L = {trial.depth}] (got {layers!r})")
        return _fine_tune_run(trial, layers)

    return register_protocol(Protocol(
        name=name, tag="ft" + "".join(str(l) for l in layers),
        title=f"Fine-tuning layer{'s' if len(layers) > 1 else ''} {_layers_text(layers)} only",
        layers=_layers_text(layers), pretrained=True,
        regime="gradient flow of the chosen layers from the pretrained network, the others frozen",
        run=run, predictions=tuple(preds),
    ))


fine_tune_layers((1,))


def table(protocols: Iterable[Protocol] | None = None) -> list[tuple[str, str, str, str]]:
    """Rows ``(protocol, trained layers, predicting keys with their forms and conditions,
    regime)`` of the protocol table (default: every registered protocol)."""
    rows = []
    for protocol in PROTOCOLS.values() if protocols is None else protocols:
        keys = "; ".join(f"{p.key} ({p.observable}, {p.form}{', ' + p.when if p.when else ''}"
                         f"{', finite source' if p.source == 'finite' else ''})" for p in protocol.predictions)
        rows.append((protocol.name, protocol.layers, keys or "none (simulated only)", protocol.regime))
    return rows

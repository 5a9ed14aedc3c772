"""Transfer experiments on deep linear networks: pretraining, scratch, linear transfer
and fine-tuning on the same target set, batched over replicates.

Protocol (SPEC sections 1 and 4; Tahir, Ganguli & Rotskoff, arXiv 2410.08194, Sec. 3):

1. Teachers ``beta_s``, ``beta_t`` at angle ``theta`` (per replicate).
2. Pretraining from small initialisation (``alpha = 1e-5``) by gradient descent on the
   population source loss ``|beta - beta_s|^2``, or on ``n_s = gamma_s d`` source samples
   with noise ``sigma_s``.
3. One target set per replicate, ``n = round(gamma d)`` samples with noise ``sigma``,
   shared by the three procedures so that ``T = R_sc - R_transfer`` is a paired
   difference:
   scratch (all layers from a fresh small initialisation), linear transfer (frozen
   ``W_1..W_{L-1}``, closed-form ridge readout with a rank rule, see
   :mod:`featfate_sym.simulation.readout`), fine-tuning (all layers from the pretrained
   weights).
4. Risks ``|beta_hat - beta_t|^2`` (exact noise-free test error).

Training is gradient descent to convergence with the adaptive step of
:mod:`featfate_sym.simulation.training` (gradient flow is the paper's model; the step
is reported).  Data and initialisations are drawn in float64 on the CPU from one
``torch.Generator`` seeded by ``seed``, in a fixed order, so the same seed gives the
same numbers on any device (up to the arithmetic of the device).

Solvers.  ``solver="gd"`` (the default) is plain gradient descent on the empirical loss.
Its number of steps grows with the condition number of ``Sxx = X^T X / n``, which near
``n = d`` is of order ``d^2`` (the smallest eigenvalue of ``Sxx`` is about
``(1 - gamma^(-1/2))^2``), so at ``d = 500`` and ``gamma`` in ``[0.9, 1.1]`` it needs
``10^4`` to ``10^7`` steps.  ``solver="whitened"`` is gradient descent preconditioned by
``Sxx^+`` in the end-to-end gradient: every layer gradient uses ``g = 2 Sxx^+ (Sxx beta -
Sxy) = 2 (P beta - beta*)`` in place of ``2 (Sxx beta - Sxy)``, which is plain gradient
descent of the same network on the whitened loss ``|P beta - beta*|^2``
(:func:`~featfate_sym.simulation.tasks.whitened`; every nonzero curvature 1).  It ends
where gradient flow on the empirical loss ends, for these reasons, each of which holds
for any loss that depends on the weights only through ``beta``:

* the minimisers are the same (``P beta = beta*``);
* the conserved quantities ``D_l = W_l^T W_l - W_{l+1} W_{l+1}^T`` are conserved by the
  flow of either loss (and a step breaks them by the same ``eta^2`` law);
* the first-layer gradient is ``g b_1^T`` with ``g`` in the row space of ``X`` for either
  loss, so the null-space part ``(I - P) W_1`` is never moved.

For a balanced network (small initialisation, or pretrained from one) these three fix
the end point: scratch ends at the minimum-norm interpolator ``X^+ y`` (up to the
``O(alpha)`` null-space residue of its initialisation), fine-tuning at the row-space
interpolant plus the pretrained null-space part scaled by the root of the balance
equation (SPEC section 2, ``ft.transferability_exact``); for ``n >= d`` there is one
minimiser and both end at ``beta*``.  The tests compare the two solvers' end points
replicate by replicate.  The whitened convergence tolerance is ``tol / max(1,
lambda_max(Sxx))``, so that the loss of the original problem is within ``tol`` of its
minimum when the whitened one converges (the original excess is at most
``lambda_max`` times the whitened one); the reported ``loss`` and ``excess`` are those
of the original problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from featfate_sym.simulation import tasks
from featfate_sym.simulation.monitors import conserved_quantities, feature_map
from featfate_sym.simulation.readout import refit_readout
from featfate_sym.simulation.training import DescentResult, gradient_descent, small_init

__all__ = ["SOLVERS", "EngineOptions", "whitened_problem", "TransferOutcome", "pretrain", "train_scratch", "fine_tune", "simulate_transfer", "run_cell"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: training solvers (see the module docstring)
SOLVERS = ("gd", "whitened")


@dataclass(frozen=True)
class EngineOptions:
    """Numerical settings of the simulations.

    ``tol`` / ``pretrain_tol``: convergence tolerance on the loss above its least-squares
    minimum (``None``: 1e-9 / 1e-12 in float64, 1e-7 / 1e-10 in float32; the excess is
    computed as ``(beta - beta*) . g / 2``, without cancellation, so it is resolved far
    below the rounding unit of the loss itself).  The excess loss bounds the error of ``beta`` in the
    metric of ``Sxx``, so the risk error is at most ``tol / mu_min`` along the weakest
    data direction (``mu_min >= 1e-3`` on the paper's grid): 1e-9 leaves the risk
    accurate to about 1e-6.
    ``width``: hidden width (``None``: ``d``); ``init_scale``: ``alpha``;
    ``step_scale``: the adaptive step is ``step_scale / H`` with ``H`` an upper bound of
    the curvature (:mod:`featfate_sym.simulation.training`); 1.5 is below the linear
    stability limit 2 with a margin, and takes about 1.5x fewer steps than the
    descent-lemma step 1 (measured: 321 vs 475 scratch steps at d = 60, gamma = 0.5).
    ``rank_tol``: the linear-transfer rank rule (``None``: ``sqrt(alpha)``).
    ``fine_tune_drift_control``: the level ``rho`` of the step reduction that keeps
    fine-tuning balanced, so that it ends where gradient flow ends (``None`` to turn it
    off; see :mod:`featfate_sym.simulation.training`); ``"auto"``: 1e-2 for ``gd``, 3e-3
    for ``whitened``, whose steps are larger along the weak directions of ``Sxx`` and
    make more imbalance per unit of (whitened) loss; 3e-3 gives it the accuracy of
    ``gd`` at 1e-2.  Measured against the balanced end point (8 replicates, ``theta =
    0.4 pi``, ``L = 2 / 3``; largest error and steps): ``d = 30, n = 15, sigma = 1``: gd
    1e-2 9.6e-4 / 1.2e-3 in 930 / 1390 steps; whitened 1e-2 3.3e-3 / 3.9e-3 in 140 /
    220, 3e-3 1.2e-3 / 1.4e-3 in 430 / 690, 1e-3 4.9e-4 / 5.6e-4 in 1250 / 2020.  ``d =
    40, n = 36``: gd 1e-2 1.9e-3 / 4.1e-3 in 9620 / 13430; whitened 3e-3 9.0e-4 / 1.1e-3
    in 470 / 770.  Scratch training and pretraining
    end at points that do not depend on the balance and use the plain adaptive step.
    ``solver``: ``"gd"`` (gradient descent on the empirical loss) or ``"whitened"``
    (preconditioned by ``Sxx^+``, same end point, steps independent of the conditioning;
    see the module docstring).
    """

    width: int | None = None
    init_scale: float = 1e-5
    tol: float | None = None
    pretrain_tol: float | None = None
    max_steps: int = 200_000
    step_scale: float = 1.5
    check_every: int = 10
    rank_tol: float | None = None
    fine_tune_drift_control: float | str | None = "auto"
    solver: str = "gd"

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (got {self.solver!r})")

    def resolved(self, dtype: torch.dtype) -> "EngineOptions":
        single = dtype == torch.float32
        return replace(
            self,
            tol=self.tol if self.tol is not None else (1e-7 if single else 1e-9),
            pretrain_tol=self.pretrain_tol
            if self.pretrain_tol is not None
            else (1e-10 if single else 1e-12),
            rank_tol=self.rank_tol if self.rank_tol is not None else math.sqrt(self.init_scale),
            fine_tune_drift_control=(1e-2 if self.solver == "gd" else 3e-3)
            if self.fine_tune_drift_control == "auto"
            else self.fine_tune_drift_control,
        )


@dataclass
class TransferOutcome:
    """Everything one batched transfer experiment produced (CPU tensors, shape ``(R,)``
    unless stated)."""

    teachers: tasks.Teachers
    pretrained: list[torch.Tensor]
    beta_sc: torch.Tensor  # (R, d)
    beta_lt: torch.Tensor
    beta_lt_naive: torch.Tensor
    beta_ft: torch.Tensor
    rank_lt: torch.Tensor
    drift_ft: torch.Tensor  # max_l ||D_l(fine-tuned) - D_l(pretrained)||_F
    pretrain_run: DescentResult
    scratch_run: DescentResult
    fine_tune_run: DescentResult


def _to(weights, device, dtype):
    return [w.to(device=device, dtype=dtype).clone() for w in weights]


def _end_to_end64(weights):
    out = weights[-1].to(torch.float64).cpu()
    for w in reversed(weights[:-1]):
        out = (w.to(torch.float64).cpu() @ out.unsqueeze(-1)).squeeze(-1)
    return out


def pretrain(
    source_data: tasks.RegressionData,
    depth: int,
    generator: torch.Generator,
    options: EngineOptions,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[list[torch.Tensor], DescentResult]:
    """Gradient descent from small initialisation on the source loss (population loss
    from :func:`tasks.population_data`, or a finite source sample)."""
    opts = options.resolved(dtype)
    return _descend_from_small_init(source_data, depth, generator, opts, opts.pretrain_tol, device, dtype)


def whitened_problem(data: tasks.RegressionData, tol: float) -> tuple[tasks.RegressionData, float]:
    """The problem the ``whitened`` solver descends and its tolerance ``tol / max(1,
    lambda_max(Sxx))``, which keeps the original excess loss below ``tol`` (see
    "Solvers" in the module docstring)."""
    return tasks.whitened(data), tol / max(1.0, float(data.top_eigenvalue.max()))


def _descend(weights, data, opts, tol, device, dtype, drift_control=None, trainable=None):
    """Train ``weights`` in place with the solver of ``opts``; the result reports the
    loss of ``data`` itself (see "Solvers" in the module docstring)."""
    settings = dict(max_steps=opts.max_steps, step_scale=opts.step_scale, check_every=opts.check_every,
                    trainable=trainable)
    if opts.solver == "gd" or data.sxx is None:
        return gradient_descent(
            weights, tasks.to_device(data, device, dtype), tol=tol, drift_control=drift_control, **settings
        )
    white, white_tol = whitened_problem(data, tol)
    run = gradient_descent(
        weights, tasks.to_device(white, device, dtype), tol=white_tol, drift_control=drift_control, **settings
    )
    beta = _end_to_end64(weights)
    diff = beta - data.minimiser
    excess = ((diff.unsqueeze(-2) @ data.sxx).squeeze(-2) * diff).sum(-1)
    return replace(run, loss=excess + data.min_loss, excess=excess, converged=run.converged & (excess <= tol))


def _descend_from_small_init(data, depth, generator, opts, tol, device, dtype):
    replicates, dim = data.sxy.shape
    weights = _to(
        small_init(replicates, dim, depth, generator, width=opts.width, scale=opts.init_scale), device, dtype
    )
    return weights, _descend(weights, data, opts, tol, device, dtype)


def train_scratch(
    data: tasks.RegressionData,
    depth: int,
    generator: torch.Generator,
    options: EngineOptions,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[list[torch.Tensor], DescentResult]:
    """All layers from a fresh small initialisation on the target loss."""
    opts = options.resolved(dtype)
    return _descend_from_small_init(data, depth, generator, opts, opts.tol, device, dtype)


def fine_tune(
    pretrained: list[torch.Tensor],
    data: tasks.RegressionData,
    options: EngineOptions,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    layers: tuple[int, ...] | None = None,
) -> tuple[list[torch.Tensor], DescentResult]:
    """Gradient descent from (a copy of) the pretrained weights, of the layers ``layers``
    (1-based, first = the input layer; default all).

    Training only the last layer is linear transfer (by descent); training only the
    first moves ``beta`` by linear gradient flow from ``beta_s`` (the frozen product
    scales the rate), so it ends at ``X^+ y + (I - P) beta_s`` whatever the balance
    (``ft.transferability_first_layer``).  The balance control of all-layer fine-tuning is
    used whenever two or more layers train, where the end point depends on the balance.
    """
    opts = options.resolved(dtype)
    depth = len(pretrained)
    chosen = tuple(range(1, depth + 1)) if layers is None else tuple(layers)
    if not chosen or len(set(chosen)) != len(chosen) or any(
            isinstance(l, bool) or int(l) != l or not 1 <= l <= depth for l in chosen):
        raise ValueError(f"layers must be distinct integers in [1, {depth}] (1-based; got {layers!r})")
    trainable = None if len(chosen) == depth else tuple(int(l) - 1 for l in chosen)
    weights = _to(pretrained, device, dtype)
    control = opts.fine_tune_drift_control if len(chosen) >= 2 else None
    return weights, _descend(weights, data, opts, opts.tol, device, dtype, control, trainable)


def simulate_transfer(
    *,
    replicates: int,
    dim: int,
    depth: int,
    n_samples: int,
    theta: float,
    noise_std: float,
    ridge: float = 0.0,
    source_samples: int | None = None,
    source_noise_std: float = 0.0,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    options: EngineOptions | None = None,
) -> TransferOutcome:
    """Run pretraining and the three target procedures on shared target sets.

    ``source_samples=None`` pretrains on the population source loss.  Random draws, in
    order: teachers, target set, source set (if finite), pretraining init, scratch init.

    ``depth = 1`` is refused: linear transfer freezes ``W_1 .. W_{L-1}``, and a one-layer
    network has no frozen feature (refitting its only layer is training from scratch), so
    no ``lt.*`` result describes it; the sweeps (:func:`run_cell`) refuse it likewise.
    """
    if isinstance(depth, bool) or int(depth) != depth or depth < 2:
        raise ValueError(f"L must be an integer >= 2 for linear transfer (a one-layer network has no "
                         f"frozen feature; got L = {depth!r})")
    options = EngineOptions() if options is None else options
    opts = options.resolved(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    teachers = tasks.make_teachers(replicates, dim, theta, gen)
    target = tasks.sample_regression(teachers.target, n_samples, noise_std, gen)
    if source_samples is None:
        source = tasks.population_data(teachers.source)
    else:
        source = tasks.sample_regression(teachers.source, source_samples, source_noise_std, gen, keep_design=False)
    pre_w, pre_run = pretrain(source, depth, gen, opts, device=device, dtype=dtype)
    sc_w, sc_run = train_scratch(target, depth, gen, opts, device=device, dtype=dtype)
    fit = refit_readout(
        feature_map([w.to(torch.float64).cpu() for w in pre_w]),
        target,
        ridge,
        rank_tol=opts.rank_tol,
    )
    ft_w, ft_run = fine_tune(pre_w, target, opts, device=device, dtype=dtype)
    drift = torch.zeros(replicates, dtype=torch.float64)
    for before, after in zip(conserved_quantities(pre_w), conserved_quantities(ft_w)):
        change = (after - before).to(torch.float64).cpu()
        drift = torch.maximum(drift, change.flatten(1).norm(dim=-1))
    return TransferOutcome(
        teachers=teachers,
        pretrained=[w.cpu() for w in pre_w],
        beta_sc=_end_to_end64(sc_w),
        beta_lt=fit.beta,
        beta_lt_naive=fit.beta_naive,
        beta_ft=_end_to_end64(ft_w),
        rank_lt=fit.rank,
        drift_ft=drift,
        pretrain_run=pre_run,
        scratch_run=sc_run,
        fine_tune_run=ft_run,
    )


# ---------------------------------------------------------------------------------------
# the interface of the sweeps


def _number(params, name, *, lower=None, upper=None, lower_open=False, integer=False, allow_inf=False):
    if name not in params:
        raise ValueError(f"missing parameter {name}")
    value = params[name]
    if integer:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"{name} must be an integer >= {lower} (got {value!r})")
        value = int(value)
    else:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a real number (got {value!r})") from None
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise ValueError(f"{name} must be finite (got {value!r})")
    text = (
        f"{name} must be in {'(' if lower_open else '['}{lower}, {upper if upper is not None else 'inf'}"
        f"{']' if upper is not None else ')'}"
    )
    if lower is not None and (value < lower or (lower_open and value == lower)):
        raise ValueError(f"{text} (got {value!r})")
    if upper is not None and value > upper:
        raise ValueError(f"{text} (got {value!r})")
    return value


_PARAMS = ("gamma", "theta", "sigma", "lam", "L", "d", "gamma_s", "sigma_s")


def run_cell(
    params: dict,
    *,
    replicates: int,
    seed: int,
    device: str = "cpu",
    dtype: str = "float64",
    options: EngineOptions | None = None,
    solver: str | None = None,
) -> dict[str, np.ndarray]:
    """One cell of a sweep: ``replicates`` independent transfer experiments.

    ``params`` keys: ``gamma`` (> 0; ``n = round(gamma d) >= 2``), ``theta`` (in
    ``[0, pi]``), ``sigma`` (>= 0), ``lam`` (>= 0, readout ridge of linear transfer),
    ``L`` (integer >= 2: every cell includes linear transfer, which needs a frozen feature;
    ``L = 1`` raises ``ValueError``), ``d`` (integer >= 2), ``gamma_s`` (> 0, or ``inf`` / ``None``
    for the population source), ``sigma_s`` (>= 0).

    Returns arrays of shape ``(replicates,)``: risks ``risk_sc, risk_lt, risk_lt_naive,
    risk_ft``; transferabilities ``T_lt = risk_sc - risk_lt``, ``T_ft = risk_sc -
    risk_ft`` (paired, same target set); per trained procedure (``sc``, ``ft``, ``pre``)
    ``steps_*``, ``converged_*``, ``step_size_*`` (final adaptive step) and ``loss_*``
    (final training loss); ``rank_lt`` (feature directions kept by the rank rule);
    ``drift_ft`` (largest Frobenius change of a conserved quantity ``D_l`` during
    fine-tuning: the balance that the fine-tuning theory assumes; 0 for ``L = 1``).
    ``solver`` (``"gd"`` or ``"whitened"``) replaces the solver of ``options``.
    Same ``seed`` -> same numbers.  Bad parameters raise ``ValueError`` naming the
    parameter and its range.  Non-convergence is reported, not raised; divergence raises
    :class:`~featfate_sym.simulation.training.DivergenceError`.
    """
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict with keys {', '.join(_PARAMS)}")
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]}; parameters are {', '.join(_PARAMS)}")
    replicates = _number({"replicates": replicates}, "replicates", lower=1, integer=True)
    options = EngineOptions() if options is None else options
    if solver is not None:
        options = replace(options, solver=solver)  # EngineOptions checks the name
    seed = _number({"seed": seed}, "seed", lower=0, integer=True)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of float32, float64 (got {dtype!r})")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, TypeError, AssertionError, NotImplementedError) as err:
        # torch reports a missing backend by several exception types
        raise ValueError(f"device must be a torch device available here (got {device!r}): {err}") from None
    gamma = _number(params, "gamma", lower=0, lower_open=True)
    theta = _number(params, "theta", lower=0, upper=math.pi)
    sigma = _number(params, "sigma", lower=0)
    lam = _number(params, "lam", lower=0)
    depth = _number(params, "L", lower=1, integer=True)
    if depth < 2:
        raise ValueError(f"L must be an integer >= 2 for linear transfer (a one-layer network has no "
                         f"frozen feature; got L = {depth})")
    dim = _number(params, "d", lower=2, integer=True)
    gamma_s = params.get("gamma_s", None)
    if gamma_s is not None:
        gamma_s = _number(params, "gamma_s", lower=0, lower_open=True, allow_inf=True)
        if math.isinf(gamma_s):
            gamma_s = None
    sigma_s = _number({"sigma_s": params.get("sigma_s", 0.0) or 0.0}, "sigma_s", lower=0)

    n_samples = int(round(gamma * dim))
    if n_samples < 2:
        raise ValueError(f"gamma must give n = round(gamma d) >= 2 samples (got gamma = {gamma}, d = {dim})")
    source_samples = None
    if gamma_s is not None:
        source_samples = int(round(gamma_s * dim))
        if source_samples < 1:
            raise ValueError(f"gamma_s must give n_s = round(gamma_s d) >= 1 (got gamma_s = {gamma_s}, d = {dim})")

    out = simulate_transfer(
        replicates=replicates,
        dim=dim,
        depth=depth,
        n_samples=n_samples,
        theta=theta,
        noise_std=sigma,
        ridge=lam,
        source_samples=source_samples,
        source_noise_std=sigma_s,
        seed=seed,
        device=device,
        dtype=_DTYPES[dtype],
        options=options,
    )
    target = out.teachers.target
    risk_sc = tasks.risk(out.beta_sc, target)
    risk_lt = tasks.risk(out.beta_lt, target)
    risk_ft = tasks.risk(out.beta_ft, target)
    result = {
        "risk_sc": risk_sc,
        "risk_lt": risk_lt,
        "risk_lt_naive": tasks.risk(out.beta_lt_naive, target),
        "risk_ft": risk_ft,
        "T_lt": risk_sc - risk_lt,
        "T_ft": risk_sc - risk_ft,
        "rank_lt": out.rank_lt,
        "drift_ft": out.drift_ft,
    }
    for tag, run in (("sc", out.scratch_run), ("ft", out.fine_tune_run), ("pre", out.pretrain_run)):
        result[f"steps_{tag}"] = run.steps
        result[f"converged_{tag}"] = run.converged
        result[f"step_size_{tag}"] = run.step_size
        result[f"loss_{tag}"] = run.loss
    return {k: v.numpy().copy() for k, v in result.items()}

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

Options beyond the paper (:func:`run_protocols`; without them every number is the
isotropic one-source protocol above, draw for draw):

* ``covariance = lambda``: inputs ``x ~ N(0, diag(lambda))`` (``X = Z diag(sqrt
  lambda)``), teachers drawn with the energy profile ``profile = p`` over the
  eigendirections (:func:`~featfate_sym.simulation.tasks.make_profiled_teachers`), the
  population source loss ``(beta - beta_s)^T Sigma (beta - beta_s)`` and the risk of every
  protocol the excess test error ``(beta - beta_t)^T Sigma (beta - beta_t)``;
* ``source_tasks = k > 1``: ``k`` source teachers at angle ``theta`` to the target
  (:func:`~featfate_sym.simulation.tasks.make_multi_source_teachers`), pretraining of a
  ``k``-output network (:mod:`featfate_sym.simulation.multi_output`) and linear transfer
  on its frozen trunk; scratch is unchanged, all-layer fine-tuning starts from the trunk
  with linear transfer's readout and fine-tuning some layers is refused (see
  :func:`run_protocols`).

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

from featfate_sym.simulation import multi_output, tasks
from featfate_sym.simulation.monitors import conserved_quantities
from featfate_sym.simulation.training import DescentResult, gradient_descent, small_init

__all__ = ["SOLVERS", "STEP_RULES", "EngineOptions", "end_point_budget", "whitened_problem", "Trial", "Outcome", "pretrain", "train_scratch", "fine_tune",
           "run_protocols", "run_cell", "cell_settings"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: training solvers (see the module docstring)
SOLVERS = ("gd", "whitened")

#: fine-tuning step rules (see :class:`EngineOptions` and :func:`fine_tune`)
STEP_RULES = ("end_point", "drift_control", "plain")


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
    ``fine_tune_step_rule``: how all-layer fine-tuning chooses its step (see
    :func:`fine_tune`): ``"end_point"`` (default) the largest step whose predicted shift of
    the end point stays below ``end_point_accuracy``, and no control where the end point
    does not depend on the step; ``"drift_control"`` the former balance control below (kept
    for comparisons); ``"plain"`` the adaptive step alone.
    ``end_point_accuracy`` (``epsilon``, default 5e-4): the bound on ``|beta_end -
    beta_balanced|`` the end-point rule keeps, to first order in the drift.  It moves
    ``T_ft`` by at most ``epsilon (2 |beta_end - beta_t| + epsilon)``.  On a cover of the
    paper grid's ``gamma < 1`` cells (``d = 500``, 20 replicates; ``python
    numerics/bench_step_rule.py --se-grid``) the standard error of a cell's mean ``T_ft`` is
    3.3e-3 to 1.4e-2 and ``|beta_end - beta_t| <= 1.38``, so the bound is at most 0.22 of
    the cell's SE (worst at ``gamma = 0.9``, ``theta = pi/40``, ``sigma = 0.2``) and at most
    1.4e-3; the shifts measured at ``d = 500`` are 1.5e-4 to 3e-4, below 0.05 SE.  Halving
    ``epsilon`` about doubles the fine-tuning steps of a ``gamma < 1`` cell (the count is
    about ``4 E_0 / (K B)``, :mod:`featfate_sym.simulation.training`).
    ``fine_tune_drift_control`` (used by ``fine_tune_step_rule = "drift_control"`` only):
    the level ``rho`` of the former step reduction that keeps
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
    ``block_bytes``: on the CPU every descent runs over blocks of replicates whose
    weights and statistics take at most this many bytes (at least two replicates per block;
    0: all replicates at once).  Each step streams every weight matrix two or three times,
    so a block that stays in the cache runs at cache rather than memory speed, and a block
    whose replicates have converged stops; the replicates are independent, so every number
    is the same as with one batch.  Measured on one paper cell's fine-tuning (``d = 500``,
    20 replicates, one thread, 2 MiB of L2 and 32 MiB of L3): 1.28 s in one batch, 0.66 s
    in blocks of 5 at ``gamma = 0.6``, and 2.07 / 0.84 s in blocks of 4 at ``gamma = 0.9``;
    the default, 6 MiB, is about the best block at ``gamma`` 0.3 to 1.5
    (``numerics/bench_cell.py``).  Devices other than the CPU take all replicates at once.
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
    fine_tune_step_rule: str = "end_point"
    end_point_accuracy: float = 5e-4
    block_bytes: int = 6 * 2**20

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (got {self.solver!r})")
        if self.fine_tune_step_rule not in STEP_RULES:
            raise ValueError(f"fine_tune_step_rule must be one of {', '.join(STEP_RULES)} "
                             f"(got {self.fine_tune_step_rule!r})")
        if isinstance(self.end_point_accuracy, bool) or not isinstance(self.end_point_accuracy, (int, float)) \
                or not 0 < self.end_point_accuracy < math.inf:
            raise ValueError(f"end_point_accuracy must be a number in (0, inf) (got {self.end_point_accuracy!r})")
        if isinstance(self.block_bytes, bool) or not isinstance(self.block_bytes, int) or self.block_bytes < 0:
            raise ValueError(f"block_bytes must be an integer >= 0 (got {self.block_bytes!r})")

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


def _descend(weights, data, opts, tol, device, dtype, drift_control=None, trainable=None, drift_budget=None):
    """Train ``weights`` in place with the solver of ``opts``; the result reports the
    loss of ``data`` itself (see "Solvers" in the module docstring).

    With ``n < d`` the descent runs in the row space of the design
    (:func:`tasks.in_row_space`): the first layer is trained as ``Q^T W_1`` (``n`` rows
    instead of ``d``) and its change mapped back, ``W_1 += Q (Q^T W_1)_end - Q (Q^T
    W_1)_start``; the part of ``W_1`` outside the row space receives no gradient.  The
    curvature bound ``H`` of the step rule is then computed from ``|Q^T W_1|`` in place of
    ``|W_1|``: the Hessian of the loss involves ``W_1`` only through ``Q^T W_1`` (its
    ``W_2`` block is ``W_1^T Sxx W_1 = (Q^T W_1)^T (Q^T Sxx Q) (Q^T W_1)``), so this is the
    same bound without the frozen part and the steps are gradient descent's with a tighter
    (larger, still stable) step.  Every layer gradient, the loss and the metered drift of
    the end-point rule (``|G_1| = |Q^T g| |b_1|``, ``g`` in ``span Q``) are unchanged.
    """
    settings = dict(max_steps=opts.max_steps, step_scale=opts.step_scale, check_every=opts.check_every,
                    trainable=trainable)
    full = data
    first = None
    if data.basis is not None:
        q = data.basis.to(device=device, dtype=dtype)
        first = weights[0]
        vector = first.dim() == 2  # L = 1: the first layer is beta itself, (R, d)
        start = q.mT @ (first.unsqueeze(-1) if vector else first)
        reduced = start.clone()
        weights = [reduced.squeeze(-1) if vector else reduced] + list(weights[1:])
        data = tasks.in_row_space(data)
    if opts.solver == "gd" or data.sxx is None:
        problem, problem_tol = tasks.to_device(data, device, dtype), tol
    else:
        white, problem_tol = whitened_problem(data, tol)
        problem = tasks.to_device(white, device, dtype)
    runs = []
    for block in _replicate_blocks([*weights, problem.sxx, problem.projector], opts, device):
        budget = None if drift_budget is None else drift_budget[block]
        runs.append(gradient_descent([w[block] for w in weights], tasks.select(problem, block), tol=problem_tol,
                                     drift_control=drift_control, drift_budget=budget, first_replicate=block.start,
                                     **settings))
    run = DescentResult.concatenate(runs)
    if first is not None:
        change = q @ ((weights[0].unsqueeze(-1) if vector else weights[0]) - start)
        first.add_(change.squeeze(-1) if vector else change)
        weights = [first] + list(weights[1:])
    if opts.solver == "gd" or full.sxx is None:
        return run
    beta = _end_to_end64(weights)
    diff = beta - full.minimiser
    excess = ((diff.unsqueeze(-2) @ full.sxx).squeeze(-2) * diff).sum(-1)
    return replace(run, loss=excess + full.min_loss, excess=excess, converged=run.converged & (excess <= tol))


def _replicate_blocks(tensors, options: EngineOptions, device) -> list[slice]:
    """Consecutive blocks of replicates (the first dimension of ``tensors``; ``None``
    entries are skipped) whose slices of ``tensors`` take at most
    ``options.block_bytes`` bytes, with at least two replicates each: a block of one runs
    slower than the cache saves (measured at ``d = 500``: 1.46 s against 0.75 s for blocks
    of two, fine-tuning at ``gamma = 0.6``).  One block off the CPU or for ``block_bytes =
    0``."""
    budget = options.block_bytes if str(device) == "cpu" else 0
    tensors = [x for x in tensors if x is not None]
    replicates = tensors[0].shape[0]
    per = sum(x[0].numel() * x.element_size() for x in tensors)
    size = replicates if budget == 0 else max(2, min(replicates, budget // per))
    return [slice(a, min(a + size, replicates)) for a in range(0, replicates, size)]


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


def end_point_budget(pretrained: list[torch.Tensor], data: tasks.RegressionData, accuracy: float) -> torch.Tensor:
    """The drift allowance ``B = epsilon / S`` of the end-point step rule (per replicate,
    float64, CPU; ``inf`` where the end point does not depend on the imbalance).

    Regime: all-layer fine-tuning of a rank-one pretrained network (small initialisation,
    ``W_1 = v u_1^T``, ``W_l = varsigma_l u_{l-1} u_l^T``), ``n < d`` (``data.projector``
    set).  On that invariant ansatz (``ft.transferability_gd``) ``(I - P) v`` is frozen,
    the deeper scales stay equal (``c`` at the end), and the end point ``beta = beta* +
    c^(L-1) (I - P) v`` has ``c`` the root of

        ``h(c) = a + b c^(2-2L) - c^2 = Delta``,  ``a = |(I - P) v|^2 = |(I - P) beta_s|^2 /
        |b_1|^2``, ``b = |beta*|^2``,

    ``Delta = tr D_1`` at the end (``ft.transferability_gd``'s ``end_imbalance``; ``Delta =
    Delta_0``, the pretrained value, for balanced flow).  A drift ``D`` of ``Delta`` moves the
    end point, to first order, by ``|d beta| = S |D|`` with

        ``S = (L - 1) c^(L-2) sqrt(a) / |h'(c)| = (L - 1) c^(L-2) sqrt(a) / (2 c + 2 (L - 1) b
        c^(1-2L))``

    (the implicit-function slope ``dc/dDelta = 1/h'(c)``, the registered ``scale_slope``,
    times ``d beta / dc``), evaluated at the balanced root.  ``B = epsilon / S`` keeps
    ``|beta_end - beta_balanced| <= epsilon`` to first order.  The root of the decreasing
    ``h`` is found by bisection in ``log c``; a root outside ``[e^-30, e^30]`` raises
    ``ArithmeticError``.
    """
    if not 0 < accuracy < math.inf:
        raise ValueError(f"end_point_accuracy must be in (0, inf) (got {accuracy!r})")
    depth = len(pretrained)
    w = [x.to(torch.float64).cpu() for x in pretrained]
    right = w[-1]
    for layer in reversed(w[1:-1]):
        right = (layer @ right.unsqueeze(-1)).squeeze(-1)  # b_1 = W_2 ... W_L
    beta_s = (w[0] @ right.unsqueeze(-1)).squeeze(-1)
    proj = data.projector.to(torch.float64).cpu()
    null = beta_s - (proj @ beta_s.unsqueeze(-1)).squeeze(-1)
    a = ((null * null).sum(-1) / (right * right).sum(-1)).numpy()
    b = (data.minimiser.to(torch.float64).cpu() ** 2).sum(-1).numpy()
    delta0 = ((w[0] ** 2).flatten(1).sum(-1) - (w[1] ** 2).flatten(1).sum(-1)).numpy()

    def h(log_c):
        return a + b * np.exp((2 - 2 * depth) * log_c) - np.exp(2 * log_c) - delta0

    lo, hi = np.full_like(a, -30.0), np.full_like(a, 30.0)
    if not (np.all(h(lo) >= 0) and np.all(h(hi) <= 0)):
        raise ArithmeticError("the balanced end-point scale c lies outside [e^-30, e^30]")
    for _ in range(80):  # the bracket shrinks to 60 / 2^80 in log c
        mid = 0.5 * (lo + hi)
        above = h(mid) > 0
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    c = np.exp(0.5 * (lo + hi))
    slope = (depth - 1) * c ** (depth - 2) * np.sqrt(a) / (2 * c + 2 * (depth - 1) * b * c ** (1 - 2 * depth))
    # S = 0 (no null-space part): the end point does not depend on Delta, no limit
    budget = np.where(slope > 0, accuracy / np.where(slope > 0, slope, 1.0), np.inf)
    return torch.from_numpy(budget)


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
    (``ft.transferability_first_layer``).

    Step rule (``options.fine_tune_step_rule``; the stability cap ``step_scale / H`` always
    applies).  ``"end_point"``, from the first-order law of ``ft.transferability_gd``
    (a step changes ``tr D_1`` by exactly ``eta^2 (|G_1|^2 - |G_2|^2)``, ``dln.conservation``,
    and the end point moves with the accumulated change):

    * no control where the end point does not depend on the step: one trained layer (no
      imbalance between trained layers), and a target problem with a unique minimiser
      (``data.projector is None``: ``n >= d`` with full-rank ``Sxx``, or the population
      loss), where every run ends at ``beta*``;
    * all layers with ``n < d``: the drift is metered and each step is the largest whose
      predicted end-point shift stays within the budget ``B = epsilon / S`` of
      :func:`end_point_budget` (the rule of :mod:`featfate_sym.simulation.training`,
      "End-point step rule"); guaranteed: the metered drift stays below ``B``, so
      ``|beta_end - beta_balanced| <= epsilon`` to first order in the drift
      (``DescentResult.drift`` reports it);
    * two or more, but not all, layers: no sensitivity is derived there; the former
      balance control (``fine_tune_drift_control``) is kept.

    ``"drift_control"``: the former control for two or more layers; ``"plain"``: none.
    """
    opts = options.resolved(dtype)
    depth = len(pretrained)
    chosen = tuple(range(1, depth + 1)) if layers is None else tuple(layers)
    if not chosen or len(set(chosen)) != len(chosen) or any(
            isinstance(l, bool) or int(l) != l or not 1 <= l <= depth for l in chosen):
        raise ValueError(f"layers must be distinct integers in [1, {depth}] (1-based; got {layers!r})")
    trainable = None if len(chosen) == depth else tuple(int(l) - 1 for l in chosen)
    weights = _to(pretrained, device, dtype)
    rule = opts.fine_tune_step_rule
    control, budget = None, None
    if rule == "drift_control" or (rule == "end_point" and 2 <= len(chosen) < depth):
        control = opts.fine_tune_drift_control if len(chosen) >= 2 else None
    elif rule == "end_point" and len(chosen) == depth >= 2 and data.projector is not None:
        budget = end_point_budget(pretrained, data, opts.end_point_accuracy)
        if bool(torch.isinf(budget).all()):
            budget = None
    return weights, _descend(weights, data, opts, opts.tol, device, dtype, control, trainable, budget)


@dataclass
class Trial:
    """One batch of transfer experiments in progress: the teachers, the target data that
    every protocol shares, the source data, and the pretrained network (made on first
    request, once for all protocols).  A protocol's ``run`` receives it
    (:mod:`featfate_sym.protocols`)."""

    teachers: tasks.Teachers
    target: tasks.RegressionData
    source: tasks.RegressionData
    depth: int
    ridge: float
    generator: torch.Generator
    options: EngineOptions  # resolved for ``dtype``
    device: str
    dtype: torch.dtype
    _pretrained: tuple | None = None
    #: eigenvalues of the input covariance (``None``: the identity); every risk is in its metric
    covariance: torch.Tensor | None = None

    def pretrained(self) -> tuple[list[torch.Tensor], DescentResult]:
        """The pretrained weights (on the device) and the pretraining run (a ``k``-output
        network when the source is a :class:`~featfate_sym.simulation.multi_output.
        MultiSourcePopulation`)."""
        if self._pretrained is None:
            if isinstance(self.source, multi_output.MultiSourcePopulation):
                self._pretrained = multi_output.pretrain(self.source, self.depth, self.generator, self.options,
                                                         device=self.device, dtype=self.dtype)
            else:
                self._pretrained = pretrain(self.source, self.depth, self.generator, self.options,
                                            device=self.device, dtype=self.dtype)
        return self._pretrained

    @property
    def source_tasks(self) -> int:
        """The number ``k`` of source tasks (the outputs of the pretrained network)."""
        return self.source.tasks if isinstance(self.source, multi_output.MultiSourcePopulation) else 1

    def risk(self, beta: torch.Tensor) -> torch.Tensor:
        """The risk of ``beta`` on the target task: ``(beta - beta_t)^T Sigma (beta -
        beta_t)`` (``|beta - beta_t|^2`` for isotropic inputs)."""
        return tasks.risk(beta, self.teachers.target, self.covariance)

    @staticmethod
    def cpu64(weights) -> list[torch.Tensor]:
        return [w.to(torch.float64).cpu() for w in weights]

    @staticmethod
    def end_to_end(weights) -> torch.Tensor:
        return _end_to_end64(weights)

    @staticmethod
    def descent_diagnostics(run: DescentResult) -> dict[str, torch.Tensor]:
        return {"steps": run.steps, "converged": run.converged, "step_size": run.step_size, "loss": run.loss}

    def drift(self, before, after) -> torch.Tensor:
        """Largest Frobenius change of a conserved quantity ``D_l`` from ``before`` to
        ``after`` (the balance the fine-tuning theory assumes); 0 for one layer.  Computed
        in the blocks of replicates of the descent (``EngineOptions.block_bytes``), where
        the Gram matrices stay in the cache."""
        drift = torch.zeros(before[0].shape[0], dtype=torch.float64)
        for block in _replicate_blocks([*before, *after], self.options, self.device):
            pairs = zip(conserved_quantities([w[block] for w in before]), conserved_quantities([w[block] for w in after]))
            for a, b in pairs:
                drift[block] = torch.maximum(drift[block], (b - a).to(torch.float64).cpu().flatten(1).norm(dim=-1))
        return drift


@dataclass
class Outcome:
    """What :func:`run_protocols` produced: per protocol tag, its run (``beta`` and
    diagnostics); the teachers; the pretraining run (``None`` if no protocol needed it)."""

    teachers: tasks.Teachers
    protocols: tuple
    runs: dict
    pretrained: list[torch.Tensor] | None
    pretrain_run: DescentResult | None
    #: eigenvalues of the input covariance (``None``: the identity)
    covariance: torch.Tensor | None = None

    def beta(self, protocol: str) -> torch.Tensor:
        """The end-to-end vectors of the protocol ``protocol`` (name or tag)."""
        for p in self.protocols:
            if protocol in (p.name, p.tag):
                return self.runs[p.tag].beta
        raise KeyError(f"no protocol {protocol!r} in this outcome ({', '.join(p.name for p in self.protocols)})")

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-replicate arrays: ``risk_<tag>``; ``T_<tag> = risk_sc - risk_<tag>`` (paired,
        same target set) when scratch ran; ``<diagnostic>_<tag>``; ``*_pre`` for pretraining."""
        target = self.teachers.target
        out = {}
        for p in self.protocols:
            out[p.variable("risk")] = tasks.risk(self.runs[p.tag].beta, target, self.covariance)
        if "risk_sc" in out:
            for p in self.protocols:
                if p.tag != "sc":
                    out[p.variable("T")] = out["risk_sc"] - out[p.variable("risk")]
        for p in self.protocols:
            for name, value in self.runs[p.tag].diagnostics.items():
                out[f"{name}_{p.tag}"] = value
        if self.pretrain_run is not None:
            for name, value in Trial.descent_diagnostics(self.pretrain_run).items():
                out[f"{name}_pre"] = value
        return {k: v.detach().cpu().numpy().copy() for k, v in out.items()}


def run_protocols(
    protocols=None,
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
    covariance=None,
    profile=None,
    source_tasks: int = 1,
) -> Outcome:
    """Run ``protocols`` (names or :class:`featfate_sym.protocols.Protocol`; default the
    paper's scratch, linear transfer and fine-tuning) on shared target sets.

    ``source_samples=None`` pretrains on the population source loss.  Random draws, in
    order: teachers, target set, source set (if finite), pretraining init (if a protocol
    starts from the pretrained network), then each protocol's own draws in list order
    (scratch: its initialisation).  The same seed gives the same numbers.

    ``covariance``: the eigenvalues ``lambda`` (length ``d``, > 0) of the input covariance
    ``diag(lambda)`` (``None``: the identity); ``profile``: the teachers' energy profile
    ``p`` over the eigendirections (length ``d``, >= 0, sum 1; ``None``: uniform, which
    draws the isotropic teachers).  The risk of every protocol is then ``(beta -
    beta_t)^T Sigma (beta - beta_t)``, so ``T`` stays a paired difference.
    ``source_tasks = k``: for ``k > 1``, ``k`` source teachers at angle ``theta`` to the
    target (drawn after it), a ``k``-output network pretrained on their population loss
    (``source_samples`` must be ``None``) and linear transfer on its trunk ``W_1 ...
    W_{L-1}`` (``rank_lt`` counts the feature directions kept, ``k`` when pretraining
    converged).  All-layer fine-tuning from a ``k``-output network starts from its trunk
    with the linear-transfer readout (:func:`~featfate_sym.simulation.multi_output.
    fine_tune_from_trunk`: the paper defines no single-output network to start from);
    fine-tuning some layers is refused for ``k > 1``.  For ``L >= 3`` the ``k``-output pretraining learns the weaker source
    modes after a plateau whose length grows like ``1 / init_scale`` (measured at ``L =
    3``, ``d = 60``, ``k = 3``, ``theta = 0.6``, isotropic, whitened: 590 / 3120 steps at
    ``init_scale`` 1e-2 / 1e-3, no progress on the weaker modes in 2e4 steps at 1e-5), so it needs a larger
    ``init_scale`` or ``max_steps`` than the default (``converged_pre`` reports it).
    ``ValueError`` names a bad option and its rule.
    """
    from featfate_sym import protocols as registry_of_protocols

    chosen = registry_of_protocols.resolve(protocols)
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
        raise ValueError(f"L must be an integer >= 1 (got L = {depth!r})")
    if depth < 2 and any(p.pretrained for p in chosen):
        raise ValueError(f"L must be an integer >= 2 for a protocol from the pretrained network (a "
                         f"one-layer network has no frozen feature; got L = {depth!r})")
    if isinstance(source_tasks, bool) or not isinstance(source_tasks, (int, float, np.integer, np.floating)) \
            or not float(source_tasks).is_integer() or source_tasks < 1:
        raise ValueError(f"source_tasks must be an integer k >= 1 (got {source_tasks!r})")
    k = int(source_tasks)
    if k > 1:
        refused = [p.name for p in chosen if p.pretrained and p.tag not in ("lt", "ft")]
        if refused:
            raise ValueError(f"source_tasks = k > 1 runs scratch, linear_transfer and fine_tune (all layers, from "
                             f"the trunk with the linear-transfer readout) only: fine-tuning some layers of a "
                             f"k-output network is not defined (got {', '.join(refused)} with k = {k})")
        if source_samples is not None:
            raise ValueError(f"source_samples must be None (the population source) for source_tasks k > 1 "
                             f"(got source_samples = {source_samples!r} with k = {k})")
    if isinstance(dim, bool) or int(dim) != dim or dim < 2:
        raise ValueError(f"d must be an integer >= 2 (got {dim})")
    lam = None if covariance is None else tasks.check_covariance(covariance, int(dim))
    prof = None if profile is None else tasks.check_profile(profile, int(dim), support=k + 1)
    opts = (EngineOptions() if options is None else options).resolved(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    if k > 1:
        teachers = tasks.make_multi_source_teachers(replicates, dim, theta, k, gen, prof)
    elif lam is None and prof is None:
        teachers = tasks.make_teachers(replicates, dim, theta, gen)
    else:
        teachers = tasks.make_profiled_teachers(replicates, dim, theta, gen, prof)
    target = tasks.sample_regression(teachers.target, n_samples, noise_std, gen, covariance=lam)
    if k > 1:
        source = multi_output.population(teachers.source, lam)
    elif source_samples is None:
        source = tasks.population_data(teachers.source, lam)
    else:
        source = tasks.sample_regression(teachers.source, source_samples, source_noise_std, gen, keep_design=False,
                                         covariance=lam)
    trial = Trial(teachers, target, source, int(depth), float(ridge), gen, opts, device, dtype, covariance=lam)
    if any(p.pretrained for p in chosen):
        trial.pretrained()  # drawn before any protocol's own initialisation
    runs = {p.tag: p.run(trial) for p in chosen}
    pre = trial._pretrained
    return Outcome(teachers, chosen, runs, None if pre is None else [w.cpu() for w in pre[0]],
                   None if pre is None else pre[1], covariance=lam)


# ---------------------------------------------------------------------------------------
# the interface of the sweeps


_PARAMS = ("gamma", "theta", "sigma", "lam", "L", "d", "gamma_s", "sigma_s", "k")


def _integer(name: str, value, lower: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not float(value).is_integer() or value < lower:
        raise ValueError(f"{name} must be an integer >= {lower} (got {value!r})")
    return int(value)


def cell_settings(params: dict) -> dict:
    """The simulation settings of a sweep cell ``params`` (see :func:`run_cell`), each
    validated through its declaration in :mod:`featfate_sym.parameters`; ``ValueError``
    names the parameter and its range."""
    from featfate_sym import parameters as P

    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict with keys {', '.join(_PARAMS)}")
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]}; parameters are {', '.join(_PARAMS)}")
    for name in ("gamma", "theta", "sigma", "lam", "L", "d"):
        if name not in params:
            raise ValueError(f"missing parameter {name}")
    gamma = P.scalar(P.gamma, params["gamma"])
    dim = P.scalar(P.d.restricted(lower=2), params["d"])
    n_samples = int(round(gamma * dim))
    if n_samples < 2:
        raise ValueError(f"gamma must give n = round(gamma d) >= 2 samples (got gamma = {gamma}, d = {dim})")
    gamma_s = params.get("gamma_s")
    source_samples = None
    if gamma_s is not None and P.scalar(P.gamma_s, gamma_s, allow_inf=True) != math.inf:
        source_samples = int(round(float(gamma_s) * dim))
        if source_samples < 1:
            raise ValueError(f"gamma_s must give n_s = round(gamma_s d) >= 1 (got gamma_s = {gamma_s}, d = {dim})")
    extra = {}
    if params.get("k") is not None:  # the number of source tasks (optional; default 1)
        extra["source_tasks"] = P.scalar(P.k, params["k"])
        if extra["source_tasks"] > dim - 1:
            raise ValueError(f"k must be an integer in [1, d - 1] (k source directions orthogonal to the target; "
                             f"got k = {extra['source_tasks']}, d = {dim})")
    return dict(
        **extra,
        dim=dim,
        depth=P.scalar(P.L, params["L"]),
        n_samples=n_samples,
        theta=P.scalar(P.theta, params["theta"]),
        noise_std=P.scalar(P.sigma, params["sigma"]),
        ridge=P.scalar(P.lam, params["lam"]),
        source_samples=source_samples,
        source_noise_std=P.scalar(P.sigma_s, params.get("sigma_s") or 0.0),
    )


def run_cell(
    params: dict,
    *,
    replicates: int,
    seed: int,
    device: str = "cpu",
    dtype: str = "float64",
    options: EngineOptions | None = None,
    solver: str | None = None,
    protocols=None,
    covariance=None,
    profile=None,
    source_tasks: int = 1,
) -> dict[str, np.ndarray]:
    """One cell of a sweep: ``replicates`` independent transfer experiments.

    ``params`` keys: ``gamma`` (> 0; ``n = round(gamma d) >= 2``), ``theta`` (in
    ``[0, pi]``), ``sigma`` (>= 0), ``lam`` (>= 0, readout ridge of linear transfer),
    ``L`` (integer >= 1; >= 2 for a protocol from the pretrained network, which needs a
    frozen feature), ``d`` (integer >= 2), ``gamma_s`` (> 0, or ``inf`` / ``None`` for the
    population source), ``sigma_s`` (>= 0); the domains are those of
    :mod:`featfate_sym.parameters`.  ``protocols``: names or protocols
    (:mod:`featfate_sym.protocols`; default the paper's scratch, linear transfer,
    fine-tuning).

    Returns the arrays of :meth:`Outcome.arrays`, shape ``(replicates,)``: for the
    default protocols ``risk_sc, risk_lt, risk_ft``, ``T_lt = risk_sc - risk_lt`` and
    ``T_ft`` (paired), per trained procedure (``sc``, ``ft``, ``pre``) ``steps_*``,
    ``converged_*``, ``step_size_*`` (final adaptive step) and ``loss_*`` (final training
    loss); ``rank_lt`` (feature directions kept by the rank rule), ``pinv_risk_lt`` (the
    risk of the plain pseudo-inverse readout), ``drift_ft`` (largest Frobenius change of
    a conserved quantity ``D_l`` during fine-tuning).  ``solver`` (``"gd"`` or
    ``"whitened"``) replaces the solver of ``options``.  Same ``seed`` -> same numbers.
    Bad parameters raise ``ValueError`` naming the parameter and its range.
    Non-convergence is reported, not raised; divergence raises
    :class:`~featfate_sym.simulation.training.DivergenceError`.  ``covariance``,
    ``profile`` and ``source_tasks``: anisotropic inputs and ``k`` source tasks, see
    :func:`run_protocols` (``covariance`` and ``profile`` have length ``d``; for ``k > 1``
    the default protocols are scratch and linear transfer).  The number of source tasks
    may instead be the optional cell parameter ``k`` (integer in ``[1, d - 1]``).
    """
    settings = cell_settings(params)
    replicates = _integer("replicates", replicates, 1)
    seed = _integer("seed", seed, 0)
    options = EngineOptions() if options is None else options
    if solver is not None:
        options = replace(options, solver=solver)  # EngineOptions checks the name
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of float32, float64 (got {dtype!r})")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, TypeError, AssertionError, NotImplementedError) as err:
        # torch reports a missing backend by several exception types
        raise ValueError(f"device must be a torch device available here (got {device!r}): {err}") from None
    source_tasks = _integer("source_tasks", source_tasks, 1)
    if "source_tasks" in settings:
        if source_tasks != 1:
            raise ValueError("give the number of source tasks once: params['k'] or source_tasks, not both")
        source_tasks = settings.pop("source_tasks")
    if protocols is None and source_tasks > 1:
        from featfate_sym.protocols import defaults

        protocols = defaults(source_tasks)
    out = run_protocols(protocols, replicates=replicates, seed=seed, device=device, dtype=_DTYPES[dtype],
                        options=options, covariance=covariance, profile=profile, source_tasks=source_tasks,
                        **settings)
    return out.arrays()

"""Pretraining of a deep linear network with ``k`` outputs on ``k`` source tasks at once,
batched over replicates.

Model (SPEC section 5, "k features, many sources": multi-task pretraining of a shared
trunk).  Network ``f(x) = x^T W_1 ... W_L`` with ``W_l`` of shape ``(d_{l-1}, d_l)``,
``d_0 = d``, hidden widths ``m`` and a readout ``W_L`` of shape ``(m, k)``; end-to-end
matrix ``B = W_1 ... W_L`` (``d x k``, column ``j`` the predictor of source task ``j``).
Loss: the population source loss summed over the tasks,

    ``Loss(B) = tr((B - B_s)^T Sigma (B - B_s))``,

``B_s`` the ``d x k`` source teachers (:func:`featfate_sym.simulation.tasks.
make_multi_source_teachers`), ``Sigma = diag(lambda)`` (identity by default).  Its
gradient is ``G = 2 Sigma (B - B_s)`` and the layer gradients are ``W_{<l}^T G
W_{>l}^T`` (rank at most ``k``).  ``Sigma`` is positive definite, so ``B_s`` is the only
minimiser and ``Loss(B)`` is the excess loss, computed without cancellation.

Training: gradient descent from a small initialisation (``W_l = alpha Wbar_l``, entries
``N(0, 1/d_{l-1})`` for the hidden layers and ``N(0, 1)`` for the readout, as the
single-output engine; balanced up to ``O(alpha^2)``).  Step: ``eta = step_scale / H``
per replicate and step, with ``H`` the curvature bound of
:mod:`featfate_sym.simulation.training` (``2 lambda_max sum_l prod_{j != l} s_j^2 + |G|_F
max_l sum_{k != l} prod_{j != l,k} s_j``, ``s_j = ||W_j||_F``); its derivation bounds
operator norms by Frobenius norms and holds for a matrix output word for word.
Convergence criterion: a replicate has converged when its excess loss is at most
``tol`` (``EngineOptions.pretrain_tol``, 1e-12 in float64), checked every
``check_every`` steps; it is then frozen.  ``converged`` reports it; non-finite values or
an excess growing above twice its best value raise
:class:`~featfate_sym.simulation.training.DivergenceError`.  ``solver="whitened"``
descends ``|B - B_s|_F^2`` instead (the gradient preconditioned by ``Sigma^{-1}``: same
unique minimiser) to ``tol / max(1, lambda_max)``, and reports the loss of the original
problem, as the single-output engine does.

Features.  From small initialisation the trunk ``W_1 ... W_{L-1}`` learns the column
space of ``B_s`` (its ``k`` singular values grow to ``O(1)``, the others stay
``O(alpha)``), so the rank rule of :mod:`featfate_sym.simulation.readout` keeps the
``k`` learned directions and linear transfer is the least-squares fit of the target on
the features ``X Q`` (``Q`` an orthonormal basis of ``span B_s``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from featfate_sym.simulation import tasks
from featfate_sym.simulation.training import DescentResult, DivergenceError, _bound_masks, _hessian_bound
from featfate_sym.simulation.training import small_init as training_small_init

__all__ = ["MultiSourcePopulation", "population", "small_init", "end_to_end", "pretrain", "TrunkStart",
           "trunk_start", "fine_tune_from_trunk", "trunk_end_point"]


@dataclass(frozen=True)
class MultiSourcePopulation:
    """The population loss of ``k`` source tasks: teachers ``(R, d, k)`` and the
    covariance eigenvalues ``(d,)`` (``None``: the identity)."""

    teachers: torch.Tensor
    covariance: torch.Tensor | None = None

    @property
    def tasks(self) -> int:
        return int(self.teachers.shape[-1])


def population(teachers: torch.Tensor, covariance=None) -> MultiSourcePopulation:
    """The population source loss of the source teachers ``teachers`` (``(R, d, k)``)."""
    if teachers.dim() != 3:
        raise ValueError(f"teachers must have shape (R, d, k) (got {tuple(teachers.shape)})")
    lam = None if covariance is None else tasks.check_covariance(covariance, teachers.shape[1])
    return MultiSourcePopulation(teachers.to(torch.float64), lam)


def small_init(replicates: int, dim: int, depth: int, outputs: int, generator: torch.Generator, *,
               width: int | None = None, scale: float = 1e-5) -> list[torch.Tensor]:
    """Small initialisation of a ``k = outputs``-output network (float64, CPU): hidden
    layers ``alpha N(0, 1/d_{l-1})``, readout ``(m, k)`` with entries ``alpha N(0, 1)``
    (:func:`featfate_sym.simulation.training.small_init` with ``outputs``)."""
    if depth >= 2 and (dim if width is None else width) < outputs:
        raise ValueError(f"width must be an integer >= k = {outputs} (a k-output network needs k hidden "
                         f"directions; got width = {width})")
    return training_small_init(replicates, dim, depth, generator, width=width, scale=scale, outputs=outputs)


def _right_products(weights):
    right = [None] * len(weights)
    right[-1] = weights[-1]
    for l in range(len(weights) - 1, 0, -1):
        right[l - 1] = weights[l - 1] @ right[l]
    return right  # right[0] = B; right[l] = W_{l+1} ... W_L


def end_to_end(weights: list[torch.Tensor]) -> torch.Tensor:
    """``B = W_1 ... W_L`` per replicate, ``(R, d, k)``."""
    return _right_products(weights)[0]


def _sq_norms(weights):
    return torch.stack([(w * w).sum(dim=(-2, -1)) for w in weights])


def _descend(weights, teachers, metric, *, tol, max_steps, step_scale, check_every):
    """Gradient descent of ``tr((B - B_s)^T diag(metric) (B - B_s))`` in place."""
    depth = len(weights)
    replicates = teachers.shape[0]
    device, dtype = teachers.device, teachers.dtype
    top = metric.max().expand(replicates)
    masks = _bound_masks(depth, device)
    active = torch.ones(replicates, dtype=torch.bool, device=device)
    steps = torch.full((replicates,), max_steps, dtype=torch.int64, device=device)
    last_eta = torch.zeros(replicates, dtype=dtype, device=device)
    best = torch.full((replicates,), float("inf"), dtype=dtype, device=device)
    excess = torch.zeros(replicates, dtype=dtype, device=device)
    scale = metric.unsqueeze(-1)  # (d, 1), broadcast over the tasks
    # rounding level of the excess loss: below it, a "growing" excess is noise
    floor = 100 * torch.finfo(dtype).eps * (1 + (teachers * teachers * scale).sum((-2, -1)))
    for step in range(max_steps + 1):
        right = _right_products(weights)
        error = right[0] - teachers
        grad = 2.0 * scale * error
        if step % check_every == 0 or step == max_steps:
            excess = (error * error * scale).sum((-2, -1))
            bad = ~torch.isfinite(excess) | (active & (excess > 2.0 * best + tol + floor))
            if bool(bad.any()):
                r = int(torch.nonzero(bad)[0])
                raise DivergenceError(f"multi-output gradient descent diverged at step {step} (replicate {r}) "
                                      f"with step size eta = {float(last_eta[r]):.6g} (step_scale = "
                                      f"{step_scale}); excess loss {float(excess[r]):.6g}")
            best = torch.minimum(best, torch.where(active, excess, best))
            done = active & (excess <= tol)
            steps = torch.where(done, torch.full_like(steps, step), steps)
            active = active & ~done
            if step == max_steps or not bool(active.any()):
                break
        bound = _hessian_bound(_sq_norms(weights), grad.flatten(1).norm(dim=-1), top, masks)
        eta = torch.where(active, step_scale / bound, torch.zeros_like(bound))
        last_eta = torch.where(active, eta, last_eta)
        # all layer gradients from the weights of this step, then the updates
        left = grad
        updates = []
        for l in range(depth):
            if l == depth - 1:
                updates.append(left)
            else:
                updates.append(left @ right[l + 1].mT)
                left = weights[l].mT @ left
        for w, u in zip(weights, updates):
            w.sub_(eta.view(-1, 1, 1) * u)
    return steps, excess, last_eta, (steps < max_steps) | (excess <= tol)


def pretrain(
    source: MultiSourcePopulation,
    depth: int,
    generator: torch.Generator,
    options,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[list[torch.Tensor], DescentResult]:
    """Gradient descent of a ``k``-output network from small initialisation on the
    population loss of ``k`` source tasks (see the module docstring).  ``options``: an
    :class:`~featfate_sym.simulation.deep_linear.EngineOptions` (``width``,
    ``init_scale``, ``pretrain_tol``, ``max_steps``, ``step_scale``, ``check_every``,
    ``solver``).  Returns the weights (on ``device``) and the run; ``loss`` and
    ``excess`` are ``tr((B - B_s)^T Sigma (B - B_s))``."""
    opts = options.resolved(dtype)
    replicates, dim, outputs = source.teachers.shape
    weights = [w.to(device=device, dtype=dtype) for w in small_init(
        replicates, dim, depth, outputs, generator, width=opts.width, scale=opts.init_scale)]
    lam = torch.ones(dim, dtype=torch.float64) if source.covariance is None else source.covariance
    tol = opts.pretrain_tol
    metric = lam
    if opts.solver == "whitened":
        metric, tol = torch.ones_like(lam), tol / max(1.0, float(lam.max()))
    teachers = source.teachers.to(device=device, dtype=dtype)
    steps, _, eta, converged = _descend(weights, teachers, metric.to(device=device, dtype=dtype), tol=tol,
                                        max_steps=opts.max_steps, step_scale=opts.step_scale,
                                        check_every=opts.check_every)
    error = end_to_end([w.to(torch.float64).cpu() for w in weights]) - source.teachers
    excess = (error * error * lam.unsqueeze(-1)).sum((-2, -1))
    run = DescentResult(steps=steps.cpu(), loss=excess, excess=excess, step_size=eta.to(torch.float64).cpu(),
                        converged=converged.cpu() & (excess <= opts.pretrain_tol))
    return weights, run


# -- fine-tuning from rank-k features ---------------------------------------------------------------
# Protocol ("linear probe, then fine-tune").  The pretrained k-output network gives the trunk
# T = W_1 ... W_{L-1} (d x m, rank k: span B_s) and a k-output readout that predicts the
# source tasks, none of which is the target.  The one-output network that is fine-tuned has
# the pretrained trunk and the readout v of linear transfer on it: the least-squares readout
# on the kept features X T (rank rule of simulation.readout, lam = `ridge`), written in the
# trunk's coordinates as v = T_k^+ beta_lt (T_k: the kept singular directions), so that the
# network starts at beta_0 = T v = beta_lt.  Why this readout: it is the best one-output
# predictor the frozen features give on the target data (the start is linear transfer
# itself, so fine-tuning can only be judged against it, as in the paper's k = 1 comparison),
# it uses no information beyond the target set, and every other choice is arbitrary (a
# source column predicts a task at angle theta; a zero readout is a saddle of the loss).
# For k = 1 this is not the paper's fine-tuning, which keeps the pretrained readout and
# starts at beta_s: here the start is a beta_s, a the fitted coefficient.  Then all layers
# are trained by gradient descent on the target loss (deep_linear.fine_tune, unchanged).
#
# Theory (L = 2, trunk W_1 of rank k).  With T = U_k S_k V_k^T, F = W_1 V_k (d x k) and
# omega = V_k^T w: dW_1 = -g w^T, dw = -W_1^T g with g in the row space of X (P = X^+ X).
# (i) w stays in span V_k (W_1^T g does) and W_1 V_k^perp is constant, so beta = F omega;
# (ii) (I-P) F = N is constant: beta_ft = beta_sc + N omega_end (gamma < 1), the null-space
# part lies in (I-P) span B_s; (iii) F^T F - omega omega^T is conserved, so
# b = |beta_sc|^2 = omega^T M omega + |omega|^4, M = G_0^T G_0 - omega_0 omega_0^T, G = P F:
# for k = 1 a quadratic in omega^2 that fixes the end point (with omega_0 = pretrained
# readout and |F_0| = 1 it is the L = 2 root equation c^4 - a c^2 - b = 0 of
# ft.transferability_exact).  For k > 1 one equation does not fix k unknowns: the end point
# depends on the path.  Under the whitened loss |P beta - beta_sc|^2 (EngineOptions
# solver="whitened") the gradient is P F omega - beta_sc, which keeps G in
# V = span(beta_sc, G_0) (dimension <= k + 1): the flow is the (k+1) x k system
# dG = -(G omega - t) omega^T, domega = -G^T (G omega - t) in coordinates of V, integrated
# numerically by trunk_end_point.  Under plain gradient descent the row-space metric
# X^T X/n enters and there is no such small system (simulation only).


@dataclass(frozen=True)
class TrunkStart:
    """The one-output network fine-tuning starts from: ``weights`` (trunk + new readout
    ``(R, m)``), the start ``beta0 = T v`` (linear transfer's end point) and the number of
    kept feature directions ``rank``."""

    weights: list
    beta0: torch.Tensor
    rank: torch.Tensor


def trunk_start(pretrained: list[torch.Tensor], data, options, *, ridge: float = 0.0) -> TrunkStart:
    """The trunk of a ``k``-output pretrained network with the linear-transfer readout (see
    the protocol above).  ``pretrained``: ``[W_1, ..., W_L]`` with ``W_L`` of shape
    ``(R, m, k)``; ``data``: the target :class:`~featfate_sym.simulation.tasks.RegressionData`
    with its design; ``options``: an ``EngineOptions`` (its ``rank_tol``)."""
    from featfate_sym.simulation.readout import refit_readout

    if len(pretrained) < 2:
        raise ValueError(f"L must be an integer >= 2 for fine-tuning from a trunk (got L = {len(pretrained)})")
    if pretrained[-1].dim() != 3:
        raise ValueError(f"the pretrained readout must have shape (R, m, k) (got {tuple(pretrained[-1].shape)})")
    opts = options.resolved(torch.float64)
    trunk_layers = [w.to(torch.float64).cpu() for w in pretrained[:-1]]
    trunk = trunk_layers[0]
    for w in trunk_layers[1:]:
        trunk = trunk @ w
    fit = refit_readout(trunk, data, ridge, rank_tol=opts.rank_tol)
    u, svals, vh = torch.linalg.svd(trunk, full_matrices=False)
    readouts = []
    for r in range(trunk.shape[0]):
        keep = int(fit.rank[r])
        # v = V_k S_k^-1 U_k^T beta_lt: beta_lt lies in the kept span, so T v = beta_lt exactly
        coef = (u[r, :, :keep].mT @ fit.beta[r]) / svals[r, :keep]
        readouts.append(vh[r, :keep].mT @ coef)
    return TrunkStart([w.clone() for w in trunk_layers] + [torch.stack(readouts)], fit.beta, fit.rank)


def fine_tune_from_trunk(pretrained: list[torch.Tensor], data, options, *, ridge: float = 0.0,
                         device: str = "cpu", dtype: torch.dtype = torch.float64):
    """Fine-tuning from rank-``k`` features: :func:`trunk_start`, then all layers by gradient
    descent on the target loss (:func:`featfate_sym.simulation.deep_linear.fine_tune`).
    Returns ``(weights, run, start)``: the fine-tuned one-output weights, the
    :class:`~featfate_sym.simulation.training.DescentResult` and the :class:`TrunkStart`."""
    from featfate_sym.simulation.deep_linear import fine_tune

    start = trunk_start(pretrained, data, options, ridge=ridge)
    weights, run = fine_tune(start.weights, data, options, device=device, dtype=dtype)
    return weights, run, start


def trunk_end_point(trunk: torch.Tensor, readout: torch.Tensor, projector: torch.Tensor, beta_sc: torch.Tensor,
                    rank: int, *, t_max: float = 1e4, rtol: float = 1e-10) -> dict:
    """Predicted end point of whitened gradient flow of a two-layer network (one replicate).

    ``trunk`` ``W_1`` (``d x m``), ``readout`` ``w`` (``m``), ``projector`` ``P`` and
    ``beta_sc`` the target's minimum-norm solution, ``rank`` the trunk's kept directions
    ``k``.  Integrates the ``(k+1) x k`` system of the module's theory (``scipy
    solve_ivp``, LSODA) until the residual ``|G omega - t|`` is below ``1e-9 |t|``; raises
    ``RuntimeError`` otherwise.  Returns ``beta`` (the end point ``beta_sc + N omega``),
    ``omega`` (its readout coordinates), ``null`` (``N``), ``constraint`` (``omega^T M omega
    + |omega|^4 - b``, 0 by the conservation law), ``conserved`` (``M``), ``b`` and, for ``k = 1``, ``omega_closed`` (the
    positive root of the quadratic in ``omega^2``, with the sign of ``omega_0``).
    """
    import numpy as np
    from scipy.integrate import solve_ivp

    w1 = trunk.to(torch.float64).cpu().numpy()
    w = readout.to(torch.float64).cpu().numpy().reshape(-1)
    proj = projector.to(torch.float64).cpu().numpy()
    target = beta_sc.to(torch.float64).cpu().numpy()
    if isinstance(rank, bool) or int(rank) != rank or not 1 <= rank <= min(w1.shape):
        raise ValueError(f"rank must be an integer in [1, {min(w1.shape)}] (got {rank!r})")
    k = int(rank)
    _, _, vh = np.linalg.svd(w1, full_matrices=False)
    v = vh[:k].T  # m x k
    f0, omega0 = w1 @ v, v.T @ w
    null = f0 - proj @ f0
    g0 = proj @ f0
    basis, _ = np.linalg.qr(np.column_stack([target, g0]))  # d x (k+1), orthonormal
    gc, tc = basis.T @ g0, basis.T @ target
    if np.linalg.norm(basis @ gc - g0) > 1e-10 * (1 + np.linalg.norm(g0)):
        raise ArithmeticError("the row-space part of the trunk is not in span(beta_sc, G_0)")
    shape = gc.shape

    def rhs(_, z):
        g, om = z[:gc.size].reshape(shape), z[gc.size:]
        res = g @ om - tc
        return np.concatenate([(-np.outer(res, om)).ravel(), -g.T @ res])

    def converged(_, z):
        g, om = z[:gc.size].reshape(shape), z[gc.size:]
        return np.linalg.norm(g @ om - tc) - 1e-9 * np.linalg.norm(tc)

    converged.terminal = True
    sol = solve_ivp(rhs, (0.0, t_max), np.concatenate([gc.ravel(), omega0]), method="LSODA", rtol=rtol,
                    atol=1e-14, events=converged)
    if sol.status != 1:
        raise RuntimeError(f"the trunk flow did not converge by t = {t_max} ({sol.message})")
    omega = sol.y[gc.size:, -1]
    m_inv = gc.T @ gc - np.outer(omega0, omega0)
    b = float(target @ target)
    out = {"beta": target + null @ omega, "omega": omega, "null": null, "conserved": m_inv, "b": b,
           "constraint": float(omega @ m_inv @ omega + (omega @ omega) ** 2 - b)}
    if k == 1:
        q = float(m_inv[0, 0])
        x = 2 * b / (q + np.sqrt(q * q + 4 * b)) if q > 0 else (-q + np.sqrt(q * q + 4 * b)) / 2
        out["omega_closed"] = float(np.sign(omega0[0]) * np.sqrt(x))
    return out

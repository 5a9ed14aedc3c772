"""Gradient descent for single-output deep linear networks, batched over replicates.

Network (SPEC section 1): ``f(x) = x^T W_1 ... W_L``; ``W_l`` is ``(d_{l-1}, d_l)`` for
``l < L`` and the readout ``W_L`` a vector of length ``d_{L-1}``; the end-to-end vector
is ``beta = W_1 ... W_L``.  Weights are stored with the replicates on a leading axis:
``(R, d_{l-1}, d_l)`` and ``(R, d_{L-1})``.

Loss: ``(1/n)|y - X beta|^2`` (no 1/2, as in the paper's experiments), evaluated from the
sufficient statistics only, so a step costs ``O(L R d^2)`` whatever ``n`` (with ``n < d``
the engine passes the first layer in the ``n`` coordinates of the row space of ``X``,
:func:`featfate_sym.simulation.tasks.in_row_space`, so its part costs ``O(R n d)``).  With
``g = dLoss/dbeta = 2 (Sxx beta - Sxy)`` the layer gradients are rank one,

    ``G_l = (W_1 ... W_{l-1})^T g (W_{l+1} ... W_L)^T = a_l b_l^T``,

with ``a_1 = g``, ``a_{l+1} = W_l^T a_l`` (left products, ``L - 1`` transposed
matrix-vector products) and ``b_L = 1``, ``b_{l-1} = W_l b_l`` (right products, which
also give ``beta = b_0``).  A step is therefore ``2(L-1)`` matrix-vector products, one
with ``Sxx``, and ``L - 1`` rank-one updates; no matrix-matrix product is formed.

Step size (per replicate, every step): ``eta = step_scale / H`` where ``H`` bounds the
largest eigenvalue of the Hessian of the loss in weight space at the current weights:

    ``H = 2 lambda_max(Sxx) sum_l prod_{j != l} s_j^2 + |g| max_l sum_{k != l} prod_{j != l,k} s_j``

with ``s_j = ||W_j||_F``.  The first term bounds the Gauss-Newton part ``J^T (2 Sxx) J``
(``J`` maps weight perturbations to ``d beta = sum_l W_{<l} dW_l W_{>l}``, and operator
norms are bounded by Frobenius norms); the second bounds the part ``g . d^2 beta``, a
block matrix whose ``(l, k)`` block has norm at most ``|g| prod_{j != l,k} s_j``, by its
largest block-row sum.  For a balanced network with rank-one layers (small
initialisation, the regime of the paper) ``s_j = |beta|^(1/L)`` and the first term is
``2 lambda_max L |beta|^(2 - 2/L)``: the top eigenvalue of ``Sxx`` times the end-to-end
preconditioner ``|beta|^(2-2/L) (I + (L-1) P_beta)`` of the balanced flow, attained when
``beta`` lies along the top eigenvector.  ``step_scale = 1`` is the descent-lemma step
(the loss decreases whenever ``H`` bounds the curvature along the step); the linear
stability limit at a minimum is ``step_scale = 2``.  Near the origin (saddle escape) the
second term dominates and the step grows as the weights grow, so the plateau of small
initialisation is crossed in a number of steps logarithmic in ``1/alpha`` rather than
proportional to it.  The Frobenius norms are updated in ``O(d)`` per step from the
identity ``||W - eta a b^T||^2 = ||W||^2 - 2 eta a.(W b) + eta^2 |a|^2 |b|^2`` (``W_l b_l =
b_{l-1}`` is already computed) and recomputed exactly now and then.

Balance: a finite step breaks the conserved quantities by ``eta^2 (G_l^T G_l - G_{l+1}
G_{l+1}^T)`` per step (see :mod:`featfate_sym.simulation.monitors`); summed over a run
this is about ``eta`` times the loss decrease, so it is made almost entirely while the
loss is large.  Where the end point depends on the balance (fine-tuning: the null-space
part of ``beta`` scales with ``|beta|^((L-1)/L)`` only for a balanced network) the option
``drift_control = rho`` (the former fine-tuning control, kept for comparisons; the
end-point step rule below replaces it) scales the step by ``min(1, rho' / excess)``: the drift is cut by
about ``rho' (1 + log(E_0 / rho')) / E_0`` while the slow late phase, which sets the
number of steps, keeps the full step.  The level is ``rho' = rho max(1, |beta*|^2)``:
relative to the weights, the imbalance a step makes is about its loss decrease over
``L |beta|^2`` (``eta ~ 1 / (L |beta|^(2-2/L))``, ``|W_l|^2 ~ |beta|^(2/L)``), so a
solution of large norm (label noise near ``n = d``) tolerates a proportionally larger
excess, and its end point keeps the same relative accuracy without a step count that
grows with ``|beta*|^2``.  Measured with the level ``rho`` itself (step_scale = 1, d =
60, L = 2, theta = 0.4 pi, sigma = 0 and 1, 40 replicates): the mean of ``T_ft`` misses its gradient-flow value (the balanced
end point) by 0.017 / 0.019 with the plain adaptive step, 0.004 / 0.003 with ``rho =
0.1``, 0.0007 / 0.0005 with ``rho = 0.01`` (for 1.5-3x the steps) and 1e-4 with ``rho =
0.001`` (10-20x the steps); the error is proportional to the step, as the drift law says.

End-point step rule (``drift_budget``).  For all-layer fine-tuning the end point depends
on the layer imbalance ``Delta = tr D_1 = |W_1|^2 - |W_2|^2`` (``ft.transferability_gd``),
and the exact one-step law (``dln.conservation``; the ``eta``-linear terms cancel because
``tr(W_l^T G_l) = g . beta`` for every layer) changes it by

    ``eta_k^2 f_k``,  ``f_k = |G_1|^2 - |G_2|^2 = |g|^2 |b_1|^2 - |W_1^T g|^2 |b_2|^2``

(``b_2 = 1`` for ``L = 2``), which the loop meters exactly: ``drift_budget`` is the
per-replicate allowance ``B`` of the accumulated ``sum_k eta_k^2 |f_k|`` (the caller
derives it from an end-point accuracy, :func:`featfate_sym.simulation.deep_linear.
end_point_budget`).  The drift still to come is bounded by the energy identity: ``|f| <=
|G_1|^2 + |G_2|^2 <= |grad|^2`` and one step lowers the excess by ``eta |grad|^2`` (the
flow's ``d excess/dt = -|grad|^2``; the descent lemma gives ``eta |grad|^2 (1 - eta
H/2)``), so a schedule that takes the step ``eta(E)`` at excess ``E`` adds at most ``int_0^E
eta(E') dE'`` from excess ``E`` on.  Among the schedules ``eta = mu E^(-p)`` the number of
steps to spend a budget ``B`` from ``E_0``, ``E_0 / (K B p (1 - p))`` (with ``K = |grad|^2 /
excess`` constant and ``|f| = |grad|^2``), is smallest at ``p = 1/2``, whose future drift is ``2 mu sqrt(E)``.  Re-planned
at every step with the budget left, ``B_k = B - sum_{j<k} eta_j^2 |f_j|``, this is

    ``eta_k = min(step_scale / H, B_k / (2 excess_k + B_k H / 2), sqrt(B_k / |f_k|))``:

``B_k / (2 excess_k)`` is the plan's step, the term ``B_k H / 2`` the descent-lemma
correction (it lets the step reach the cap as the excess vanishes), the last term a
backstop that never lets one step overdraw the budget, so the metered drift stays below
``B`` exactly (reported as ``DescentResult.drift``).  The step grows like
``excess^(-1/2)`` and reaches the cap ``step_scale / H`` once ``excess_k <= B_k H (1 / (2
step_scale) - 1/4)``; from there the run is plain descent.  The step count is about ``4
E_0 / (K B)``, against ``(1 + ln(E_0 / rho')) E_0 / (K B)`` for the ``drift_control``
schedule below at the same drift.

Convergence: the loss above its least-squares minimum is
``Loss - Loss_min = (beta - beta*)^T Sxx (beta - beta*) = (beta - beta*) . g / 2``
(``beta*`` the minimum-norm minimiser), computed without cancellation; a replicate
converges when it is below ``tol`` and is then frozen (step size zero), so its result
does not depend on the other replicates of the batch.  Divergence (non-finite values, or
the excess loss growing above twice its best value plus ``tol`` and the rounding level) raises
:class:`DivergenceError` naming the step size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from featfate_sym.simulation.tasks import RegressionData

__all__ = [
    "DivergenceError",
    "DescentResult",
    "small_init",
    "right_products",
    "end_to_end",
    "layer_gradients",
    "gradient_descent",
    "matvec",
    "rmatvec",
]


class DivergenceError(ArithmeticError):
    """Gradient descent produced non-finite values or a growing loss."""


@dataclass
class DescentResult:
    """Per-replicate outcome of :func:`gradient_descent` (tensors of shape ``(R,)``).

    ``step_size`` is the step used at the last update of each replicate (the step is
    adaptive); ``loss`` the final training loss; ``excess`` the loss above the
    least-squares minimum; ``steps`` the number of updates made; ``drift`` the metered
    imbalance drift ``sum_k eta_k^2 |f_k|`` of the end-point step rule (``None`` when the
    run had no ``drift_budget``).
    """

    steps: torch.Tensor
    loss: torch.Tensor
    excess: torch.Tensor
    step_size: torch.Tensor
    converged: torch.Tensor
    drift: torch.Tensor | None = None

    @staticmethod
    def concatenate(runs: list["DescentResult"]) -> "DescentResult":
        """The results of consecutive blocks of replicates as one."""
        if len(runs) == 1:
            return runs[0]
        return DescentResult(**{f.name: None if getattr(runs[0], f.name) is None
                                else torch.cat([getattr(r, f.name) for r in runs]) for f in fields(DescentResult)})


def matvec(weight: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``W v`` per replicate, written as ``v^T W^T`` (a batched row-times-matrix product
    is about twice as fast as the batched matrix-times-column product on CPU BLAS)."""
    return (vector.unsqueeze(-2) @ weight.mT).squeeze(-2)


def rmatvec(weight: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``W^T v`` per replicate, as ``v^T W``."""
    return (vector.unsqueeze(-2) @ weight).squeeze(-2)


def small_init(
    replicates: int,
    dim: int,
    depth: int,
    generator: torch.Generator,
    *,
    width: int | None = None,
    scale: float = 1e-5,
    outputs: int | None = None,
) -> list[torch.Tensor]:
    """Small initialisation ``W_l = alpha Wbar_l`` (float64, CPU; the standard Gaussians
    are drawn in float32 and widened).

    ``Wbar_l`` has entries ``N(0, 1/d_{l-1})`` for the square (hidden) layers and
    ``N(0, 1)`` for the readout, as in the authors' runs (SPEC section 1); ``alpha =
    scale``.  ``width`` defaults to ``dim``.  ``outputs = k``: a ``k``-output readout of
    shape ``(m, k)`` (:mod:`featfate_sym.simulation.multi_output`); ``None``: one output,
    a vector.
    """
    if depth < 1:
        raise ValueError(f"L must be an integer >= 1 (got {depth})")
    width = dim if width is None else width
    if width < 1:
        raise ValueError(f"width must be an integer >= 1 (got {width})")
    if not scale > 0:
        raise ValueError(f"init scale must be > 0 (got {scale})")
    sizes = [dim] + [width] * (depth - 1)
    shapes = [(replicates, sizes[l], sizes[l + 1]) for l in range(depth - 1)]
    shapes.append((replicates, sizes[-1]) if outputs is None else (replicates, sizes[-1], outputs))
    weights = []
    for l, shape in enumerate(shapes):
        # drawn in float32 (a quarter of float64's cost on CPU, and the d x d draws dominate
        # a cell's sampling), then widened exactly: the entries are Gaussians rounded to 24
        # bits, which no end point can tell apart at scale alpha -> 0
        w = torch.randn(*shape, generator=generator, dtype=torch.float32).to(torch.float64)
        weights.append(w.mul_(scale / sizes[l] ** 0.5 if l < depth - 1 else scale))
    return weights


def right_products(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[beta, b_1, ..., b_{L-1}]``: ``b_l = W_{l+1} ... W_L`` (``b_{L-1} = W_L``)."""
    depth = len(weights)
    right = [None] * depth
    right[depth - 1] = weights[-1]
    for l in range(depth - 1, 0, -1):
        right[l - 1] = matvec(weights[l - 1], right[l])
    return right  # right[0] is beta; right[l] is b_l for l >= 1


def end_to_end(weights: list[torch.Tensor]) -> torch.Tensor:
    """``beta = W_1 ... W_L`` per replicate, by matrix-vector products from the right."""
    out = weights[-1]
    for w in reversed(weights[:-1]):
        out = matvec(w, out)
    return out


def layer_gradients(weights: list[torch.Tensor], data: RegressionData) -> list[torch.Tensor]:
    """The layer gradients ``G_l`` as dense tensors (for monitors and tests; the training
    loop never forms them)."""
    right = right_products(weights)
    beta = right[0]
    g = 2.0 * ((beta if data.sxx is None else rmatvec(data.sxx, beta)) - data.sxy)
    left = g
    grads = []
    for l, w in enumerate(weights):
        if l == len(weights) - 1:
            grads.append(left.clone())
        else:
            grads.append(left.unsqueeze(-1) * right[l + 1].unsqueeze(-2))
            left = rmatvec(w, left)
    return grads


def _bound_masks(depth: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for products over ``j != l`` (``(L, L)``) and over ``j != l, k`` with
    ``k != l`` (``(L, L, L)``), used by :func:`_hessian_bound`."""
    eye = torch.eye(depth, dtype=torch.bool, device=device)
    single = ~eye  # single[l, j]: j != l
    pair = single[:, None, :] & single[None, :, :]  # pair[l, k, j]: j != l and j != k
    pair = pair & single[:, :, None]  # and k != l (the block (l, l) is zero)
    return single, pair


def _hessian_bound(
    sq_norms: torch.Tensor, g_norm: torch.Tensor, top: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """The curvature bound ``H`` of the module docstring; ``sq_norms`` is ``(L, R)``."""
    single, pair = masks
    depth = sq_norms.shape[0]
    one = torch.ones((), dtype=sq_norms.dtype, device=sq_norms.device)
    gauss_newton = torch.where(single[:, :, None], sq_norms[None], one).prod(1).sum(0)
    if depth == 1:
        return 2.0 * top * gauss_newton
    norms = sq_norms.clamp_min(0).sqrt()
    blocks = torch.where(pair[:, :, :, None], norms[None, None], one).prod(2)  # (l, k, R)
    blocks = torch.where(single[:, :, None], blocks, torch.zeros((), dtype=blocks.dtype, device=blocks.device))
    cross = blocks.sum(1).amax(0)
    return 2.0 * top * gauss_newton + g_norm * cross


def gradient_descent(
    weights: list[torch.Tensor],
    data: RegressionData,
    *,
    tol: float,
    max_steps: int = 200_000,
    step_scale: float = 1.0,
    check_every: int = 10,
    step_size: float | None = None,
    drift_control: float | None = None,
    drift_budget: torch.Tensor | None = None,
    monitor=None,
    trainable: tuple[int, ...] | None = None,
    first_replicate: int = 0,
) -> DescentResult:
    """Train ``weights`` in place by gradient descent on the loss of ``data``.

    See the module docstring for the step-size rule, the convergence rule and the
    divergence check.  ``step_size`` replaces the adaptive step by a fixed one (the
    conventional protocol, for comparisons).  ``drift_control`` (a loss level ``rho``)
    multiplies the adaptive step by ``min(1, rho max(1, |beta*|^2) / excess)``: see "Balance" in the module
    docstring (the former fine-tuning control, kept for comparisons).  ``drift_budget``
    (shape ``(R,)``, > 0, ``inf`` for no limit) is the allowance ``B`` of the end-point step
    rule of the module docstring; it needs layers 1 and 2 trained and excludes
    ``drift_control`` and ``step_size``.  ``monitor``, if given, is called as ``monitor(eta, grads)`` before
    each update with the per-replicate step and the dense layer gradients (slow; for
    the conserved-quantity monitor and tests).  ``trainable`` (0-based layer indices,
    default all) updates only those layers; the others stay frozen, and the step keeps
    the all-layer curvature bound (an over-estimate when layers are frozen: stable).
    ``first_replicate``: the index of the first replicate here within a larger batch
    (descended in blocks), for the divergence message.
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0 (got {tol})")
    if max_steps < 0:
        raise ValueError(f"max_steps must be an integer >= 0 (got {max_steps})")
    if not 0 < step_scale < 2:
        raise ValueError(f"step_scale must be in (0, 2) (got {step_scale})")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 (got {step_size})")
    depth = len(weights)
    training = [True] * depth if trainable is None else [l in set(trainable) for l in range(depth)]
    if drift_budget is not None:
        if depth < 2 or not (training[0] and training[1]):
            raise ValueError("drift_budget needs L >= 2 with layers 1 and 2 trained (it meters tr D_1)")
        if drift_control is not None or step_size is not None:
            raise ValueError("drift_budget excludes drift_control and step_size (one step rule at a time)")
        drift_budget = torch.as_tensor(drift_budget, dtype=weights[-1].dtype).to(weights[-1].device)
        if drift_budget.shape != (weights[-1].shape[0],) or bool((torch.isnan(drift_budget) | (drift_budget <= 0)).any()):
            raise ValueError(f"drift_budget must be a tensor of shape (R,) = ({weights[-1].shape[0]},) with entries "
                             f"in (0, inf] (got shape {tuple(drift_budget.shape)})")
    ref = weights[-1]
    replicates = ref.shape[0]
    device, dtype = ref.device, ref.dtype
    sxx, sxy = data.sxx, data.sxy
    beta_star = data.minimiser
    top = data.top_eigenvalue

    active = torch.ones(replicates, dtype=torch.bool, device=device)
    steps = torch.full((replicates,), max_steps, dtype=torch.int64, device=device)
    eta = torch.zeros(replicates, dtype=dtype, device=device)
    last_eta = torch.zeros(replicates, dtype=dtype, device=device)
    best = torch.full((replicates,), float("inf"), dtype=dtype, device=device)
    excess = torch.zeros(replicates, dtype=dtype, device=device)
    sq_norms = torch.stack([(w * w).sum(dim=tuple(range(1, w.dim()))) for w in weights])
    refresh = 20 * check_every
    # rounding level of the excess loss: below it, a "growing" excess is noise
    noise_floor = 100 * torch.finfo(dtype).eps * (1 + data.yy.to(device=device, dtype=dtype))
    masks = _bound_masks(depth, device)
    if drift_control is not None:
        drift_level = drift_control * (beta_star * beta_star).sum(-1).clamp_min(1.0)
    if drift_budget is not None:
        spent = torch.zeros(replicates, dtype=dtype, device=device)
        unlimited = torch.isinf(drift_budget)

    for step in range(max_steps + 1):
        right = right_products(weights)
        beta = right[0]
        g = (beta if sxx is None else rmatvec(sxx, beta)) - sxy
        g = g + g  # 2 (Sxx beta - Sxy)

        if step % check_every == 0 or step == max_steps:
            excess = 0.5 * ((beta - beta_star) * g).sum(-1)
            bad = ~torch.isfinite(excess) | (active & (excess > 2.0 * best + tol + noise_floor))
            if bool(bad.any()):
                r = int(torch.nonzero(bad)[0])
                raise DivergenceError(
                    f"gradient descent diverged at step {step} (replicate {first_replicate + r}) with step size "
                    f"eta = {float(last_eta[r]):.6g} (step_scale = {step_scale}); "
                    f"excess loss {float(excess[r]):.6g}"
                )
            best = torch.minimum(best, torch.where(active, excess, best))
            done = active & (excess <= tol)
            steps = torch.where(done, torch.full_like(steps, step), steps)
            active = active & ~done
            if step == max_steps or not bool(active.any()):
                break
            if step % refresh == 0 and step > 0:
                sq_norms = torch.stack(
                    [(w * w).sum(dim=tuple(range(1, w.dim()))) for w in weights]
                )

        if step_size is None:
            bound = _hessian_bound(sq_norms, g.norm(dim=-1), top, masks)
            eta = torch.where(active, step_scale / bound, torch.zeros_like(bound))
            if drift_control is not None:
                now = 0.5 * ((beta - beta_star) * g).sum(-1)
                eta = eta * (drift_level / torch.maximum(now, drift_level))
            if drift_budget is not None:
                # |G_1|^2 - |G_2|^2 from the rank-one factors (b_2 = 1 for L = 2)
                second = rmatvec(weights[0], g)
                b2_sq = (right[2] * right[2]).sum(-1) if depth > 2 else torch.ones_like(eta)
                f = (g * g).sum(-1) * (right[1] * right[1]).sum(-1) - (second * second).sum(-1) * b2_sq
                left_budget = torch.where(unlimited, torch.ones_like(spent), (drift_budget - spent).clamp_min(0))
                now = (0.5 * ((beta - beta_star) * g).sum(-1)).clamp_min(0)
                fit = left_budget / (2 * now + 0.5 * left_budget * bound)
                backstop = torch.where(f.abs() > 0, (left_budget / f.abs().clamp_min(torch.finfo(dtype).tiny)).sqrt(),
                                       torch.full_like(f, float("inf")))
                eta = torch.where(unlimited, eta, torch.minimum(eta, torch.minimum(fit, backstop)))
                spent = spent + eta * eta * f.abs()
        else:
            eta = active.to(dtype) * step_size
        last_eta = torch.where(active, eta, last_eta)

        if monitor is not None:
            monitor(eta, layer_gradients(weights, data))

        # left products a_l and rank-one updates, all from the weights of this step
        left = g
        for l in range(depth):
            w = weights[l]
            wb = right[l]  # W_l b_l (b_L = 1, so W_L b_L = W_L)
            if not training[l]:  # frozen: only pass the gradient on to the next layer
                if l < depth - 1:
                    left = rmatvec(w, left)
                continue
            if l == depth - 1:
                a2 = (left * left).sum(-1)
                dot = (left * w).sum(-1)
                sq_norms[l] = sq_norms[l] - 2 * eta * dot + eta * eta * a2
                w.sub_(eta.unsqueeze(-1) * left)
            else:
                b = right[l + 1]
                # W_1^T g is already formed by the end-point step rule
                next_left = second if (l == 0 and drift_budget is not None) else rmatvec(w, left)
                a2 = (left * left).sum(-1)
                b2 = (b * b).sum(-1)
                dot = (left * wb).sum(-1)
                sq_norms[l] = sq_norms[l] - 2 * eta * dot + eta * eta * a2 * b2
                w.baddbmm_((eta.unsqueeze(-1) * left).unsqueeze(-1), b.unsqueeze(-2), alpha=-1.0)
                left = next_left

    loss = excess + data.min_loss
    return DescentResult(
        steps=steps.cpu(),
        loss=loss.to(torch.float64).cpu(),
        excess=excess.to(torch.float64).cpu(),
        step_size=last_eta.to(torch.float64).cpu(),
        converged=(steps < max_steps).cpu() | (excess <= tol).cpu(),
        drift=None if drift_budget is None else spent.to(torch.float64).cpu(),
    )

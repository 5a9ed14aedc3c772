"""Minibatch stochastic gradient descent for single-output deep linear networks,
batched over replicates.

Same network and weight layout as :mod:`featfate_sym.simulation.training`: ``f(x) =
x^T W_1 ... W_L``, ``W_l`` of shape ``(R, d_{l-1}, d_l)`` for ``l < L`` and the readout
``W_L`` of shape ``(R, d_{L-1})``, replicates on the leading axis.

Conventions (SPEC section 5): the loss of a minibatch ``B`` of rows of ``X`` is
``(1/|B|)|X_B beta - y_B|^2`` (no 1/2), every layer is updated ``W <- W - eta
dLoss_B/dW`` with a fixed step ``eta``.  With ``g = 2 X_B^T (X_B beta - y_B)/|B|`` the
layer gradients are rank one, ``G_l = (W_1...W_{l-1})^T g (W_{l+1}...W_L)^T``, formed by
matrix-vector products exactly as in the full-batch loop; the minibatch enters only
through ``X_B^T (X_B beta - y_B)``, two products with the raw design (``RegressionData``
keeps it when sampled with ``keep_design=True``).

Sampling: ``replacement=False`` (the default) draws, per replicate and per epoch, a
uniform random permutation of the ``n`` rows and cuts it into ``ceil(n/B)`` consecutive
batches (the last one holds the ``n mod B`` rows left, when there are any, and is
averaged over its own size); ``replacement=True`` draws each of the ``ceil(n/B)`` batches
of an epoch as ``B`` uniform row indices with replacement.  ``B = n`` without
replacement is full-batch gradient descent with the fixed step (the sum over the rows
does not depend on their order, up to rounding).  All draws come from the
``torch.Generator`` passed in, in a fixed order: the same seed gives the same numbers.

Divergence: after every epoch the full training loss ``(1/n)|X beta - y|^2`` is computed
from the residuals; a non-finite value, or a loss above ``blowup`` times
``max(initial loss, (1/n)|y|^2)``, raises
:class:`~featfate_sym.simulation.training.DivergenceError` naming the step and the batch
size.  (SGD's loss fluctuates, so the full-batch rule "twice its best value" would be
wrong here.)

The layer imbalance (``ft.transferability_sgd``): :func:`imbalance` is ``tr D_1 = |W_1|^2 -
|W_2|^2``, which any step changes by exactly ``eta^2 (|G_1|^2 - |G_2|^2)``;
:func:`gradient_descent_with_noise_drift` runs full-batch gradient descent and sums, along
it, the expected extra drift a minibatch of each sampling scheme would add (the first-order
prediction for the sampled data); :func:`sampling_factor` is the covariance factor of a
minibatch mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featfate_sym.simulation.tasks import RegressionData
from featfate_sym.simulation.training import DivergenceError, right_products, rmatvec

__all__ = ["SGDResult", "sgd", "training_loss", "balanced_at", "stationary_excess_risk", "apply_gradient",
           "imbalance", "sampling_factor", "NoiseDrift", "gradient_descent_with_noise_drift"]


@dataclass
class SGDResult:
    """Outcome of :func:`sgd`.

    ``loss``: the full training loss after every epoch, shape ``(epochs + 1, R)`` (row 0
    at the start); ``excess``: the last row minus the least-squares minimum, ``(R,)``;
    ``steps``: the number of minibatch updates made (the same for every replicate).
    """

    loss: torch.Tensor
    excess: torch.Tensor
    steps: int
    step_size: float
    batch_size: int
    #: ``record(weights)`` after every epoch, shape ``(epochs + 1, R)`` (row 0 at the start);
    #: ``None`` when no ``record`` was given
    recorded: torch.Tensor | None = None
    #: with ``tol``: whether each replicate's training loss ended at or below ``tol``
    converged: torch.Tensor | None = None


def training_loss(weights: list[torch.Tensor], data: RegressionData) -> torch.Tensor:
    """The full training loss ``(1/n)|X beta - y|^2`` per replicate: from the residuals
    when ``data`` keeps its design (accurate to rounding of the loss itself, down to an
    interpolating 0), else from the sufficient statistics ``beta^T Sxx beta - 2 beta.Sxy
    + (1/n)|y|^2`` (which loses the digits below the rounding level of ``(1/n)|y|^2``)."""
    beta = right_products(weights)[0]
    if data.design is not None and data.labels is not None:
        design = data.design.to(device=beta.device, dtype=beta.dtype)
        labels = data.labels.to(device=beta.device, dtype=beta.dtype)
        residual = (design @ beta.unsqueeze(-1)).squeeze(-1) - labels
        return (residual * residual).mean(-1)
    sxx_beta = beta if data.sxx is None else rmatvec(data.sxx, beta)
    return (beta * sxx_beta).sum(-1) - 2 * (beta * data.sxy).sum(-1) + data.yy


def apply_gradient(weights: list[torch.Tensor], right: list[torch.Tensor], g: torch.Tensor, step_size: float,
                   training: list[bool]) -> None:
    """One update ``W_l <- W_l - eta G_l`` of every trainable layer, in place, from the
    gradient ``g = dLoss/dbeta`` (``(R, d)``) and the right products ``right`` of
    :func:`right_products` taken before the update: ``G_l = (W_1...W_{l-1})^T g
    (W_{l+1}...W_L)^T`` by matrix-vector products."""
    depth = len(weights)
    left = g
    for l in range(depth):
        w = weights[l]
        if l == depth - 1:
            if training[l]:
                w.sub_(step_size * left)
            continue
        next_left = rmatvec(w, left)
        if training[l]:
            w.sub_(step_size * left.unsqueeze(-1) * right[l + 1].unsqueeze(-2))
        left = next_left


def _batches(n: int, batch_size: int, replicates: int, replacement: bool, generator) -> list[torch.Tensor]:
    """Row indices of one epoch's minibatches, each ``(R, size)``."""
    count = math.ceil(n / batch_size)
    if replacement:
        return [torch.randint(0, n, (replicates, batch_size), generator=generator) for _ in range(count)]
    order = torch.argsort(torch.rand(replicates, n, generator=generator, dtype=torch.float64), dim=-1)
    return [order[:, k * batch_size:(k + 1) * batch_size] for k in range(count)]


def _number(value, name, *, integer=False, positive=False, minimum=None):
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number (got {value!r})")
    if integer:
        if not float(value).is_integer() or (minimum is not None and value < minimum):
            raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
        return int(value)
    value = float(value)
    if not math.isfinite(value) or (positive and not value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return value


def sgd(
    weights: list[torch.Tensor],
    data: RegressionData,
    *,
    batch_size: int,
    epochs: int,
    step_size: float,
    generator: torch.Generator,
    replacement: bool = False,
    trainable: tuple[int, ...] | None = None,
    blowup: float = 1e8,
    record=None,
    tol: float | None = None,
) -> SGDResult:
    """Train ``weights`` in place by minibatch SGD on the data set of ``data``.

    ``batch_size`` ``B`` in ``[1, n]``; ``epochs`` passes (``ceil(n/B)`` updates each);
    fixed ``step_size`` ``eta > 0``; ``replacement``: see the module docstring;
    ``trainable`` (0-based layer indices, default all) as in
    :func:`~featfate_sym.simulation.training.gradient_descent`.  ``record``: an optional
    function of the weights returning one number per replicate (a tensor ``(R,)``, for
    instance the test risk), evaluated at the start and after every epoch.  ``tol``: when
    given, training stops after the first epoch at which every replicate's full training loss
    is at or below ``tol`` (``epochs`` is then the most that are run; in the interpolating
    regime the loss reaches 0 and the weights stop moving).  ``data`` must keep its
    design (``sample_regression(..., keep_design=True)``, the default).  Bad arguments
    raise ``ValueError`` naming the argument; divergence raises ``DivergenceError``.
    """
    if data.design is None or data.labels is None:
        raise ValueError("data must keep its design and labels for SGD (sample_regression(..., keep_design=True))")
    n = data.design.shape[-2]
    batch_size = _number(batch_size, "batch_size", integer=True, minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be in [1, n] = [1, {n}] (got {batch_size})")
    epochs = _number(epochs, "epochs", integer=True, minimum=0)
    step_size = _number(step_size, "step_size", positive=True)
    if not blowup > 1:
        raise ValueError(f"blowup must be > 1 (got {blowup!r})")
    if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0):
        raise ValueError(f"tol must be a number > 0 or None (got {tol!r})")
    depth = len(weights)
    training = [True] * depth if trainable is None else [l in set(trainable) for l in range(depth)]
    ref = weights[-1]
    dtype, device = ref.dtype, ref.device
    replicates = ref.shape[0]
    design = data.design.to(device=device, dtype=dtype)
    labels = data.labels.to(device=device, dtype=dtype)
    stats = RegressionData(
        sxx=None if data.sxx is None else data.sxx.to(device=device, dtype=dtype),
        sxy=data.sxy.to(device=device, dtype=dtype), yy=data.yy.to(device=device, dtype=dtype),
        minimiser=data.minimiser, min_loss=data.min_loss, top_eigenvalue=data.top_eigenvalue,
        n_samples=data.n_samples, design=design, labels=labels)
    history = [training_loss(weights, stats)]
    recorded = None if record is None else [record(weights).to(torch.float64).cpu()]
    limit = blowup * torch.maximum(history[0], stats.yy)
    rows = torch.arange(replicates, device=device).unsqueeze(-1)
    steps = 0
    for epoch in range(epochs):
        for index in _batches(n, batch_size, replicates, replacement, generator):
            index = index.to(device)
            xb = design[rows, index]  # (R, B, d)
            yb = labels[rows, index]  # (R, B)
            right = right_products(weights)
            residual = (xb @ right[0].unsqueeze(-1)).squeeze(-1) - yb
            g = (2.0 / index.shape[-1]) * (residual.unsqueeze(-2) @ xb).squeeze(-2)
            apply_gradient(weights, right, g, step_size, training)
            steps += 1
        loss = training_loss(weights, stats)
        history.append(loss)
        if recorded is not None:
            recorded.append(record(weights).to(torch.float64).cpu())
        bad = ~torch.isfinite(loss) | (loss > limit)
        if bool(bad.any()):
            r = int(torch.nonzero(bad)[0])
            raise DivergenceError(
                f"SGD diverged in epoch {epoch + 1} (replicate {r}) with step size eta = {step_size:.6g}, "
                f"batch size B = {batch_size}; training loss {float(loss[r]):.6g}"
            )
        if tol is not None and bool((loss <= tol).all()):
            break
    loss = torch.stack(history)
    excess = loss[-1].to(torch.float64).cpu() - data.min_loss.to(torch.float64).cpu()
    return SGDResult(loss=loss.to(torch.float64).cpu(), excess=excess, steps=steps, step_size=step_size,
                     batch_size=batch_size, recorded=None if recorded is None else torch.stack(recorded),
                     converged=None if tol is None else (loss[-1] <= tol).cpu())


def balanced_at(beta: torch.Tensor, depth: int, generator: torch.Generator, *, width: int | None = None) -> list[torch.Tensor]:
    """A balanced rank-one network (``D_l = 0``) with end-to-end vector ``beta`` (``(R, d)``):
    ``W_1 = s beta_hat u_1^T``, ``W_l = s u_{l-1} u_l^T``, ``W_L = s u_{L-1}``, ``s =
    |beta|^(1/L)``, random unit ``u_l`` of dimension ``width`` (default ``d``)."""
    replicates, dim = beta.shape
    width = dim if width is None else width
    norm = beta.norm(dim=-1, keepdim=True)
    scale = norm ** (1.0 / depth)
    units = [beta / norm]
    for _ in range(depth - 1):
        u = torch.randn(replicates, width, generator=generator, dtype=torch.float64)
        units.append(u / u.norm(dim=-1, keepdim=True))
    weights = [scale.unsqueeze(-1) * units[l].unsqueeze(-1) * units[l + 1].unsqueeze(-2) for l in range(depth - 1)]
    weights.append(scale * units[-1])
    return weights


def stationary_excess_risk(gamma: float, sigma: float, dim: int, eta: float, batch_size: int, *, depth: int = 1,
                           replicates: int, burn_in: int, epochs: int, seed: int, width: int | None = None):
    """Monte Carlo of the stationary excess test risk ``|beta - beta*|^2`` of constant-step
    minibatch SGD with replacement (the model of ``scratch.risk_sgd_stationary``).

    Per replicate: a unit teacher uniform on the sphere, ``n = round(gamma d)`` Gaussian rows,
    labels with noise ``sigma``; the network starts *at* the least-squares minimiser
    ``beta*`` (a balanced rank-one network for ``depth > 1``), runs ``burn_in`` epochs
    (``ceil(n/B)`` steps each) to reach the stationary law, then ``epochs`` more, and the
    excess risk is averaged over those epochs.  Returns an array ``(R,)`` of time averages,
    one per independent replicate (fresh data each): their mean and standard error are the
    estimate and its SE.  Needs ``gamma > 1`` (a unique minimiser)."""
    import numpy as np

    from featfate_sym.simulation import tasks
    from featfate_sym.simulation.training import end_to_end

    n = int(round(gamma * dim))
    if not n > dim:
        raise ValueError(f"gamma must be > 1 (n > d) for a unique minimiser (got n = {n}, d = {dim})")
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, dim, 0.0, gen)
    data = tasks.sample_regression(teachers.target, n, sigma, gen, keep_design=True)
    star = data.minimiser
    if depth == 1:
        weights = [star.clone()]
    else:
        weights = balanced_at(star, depth, gen, width=width)

    def excess(ws):
        diff = end_to_end(ws) - star
        return (diff * diff).sum(-1)

    sgd(weights, data, batch_size=batch_size, epochs=burn_in, step_size=eta, generator=gen, replacement=True)
    run = sgd(weights, data, batch_size=batch_size, epochs=epochs, step_size=eta, generator=gen,
              replacement=True, record=excess)
    return np.asarray(run.recorded[1:].mean(0))


# -- the layer imbalance and its minibatch drift (ft.transferability_sgd) ------------------------
def imbalance(weights: list[torch.Tensor]) -> torch.Tensor:
    """``tr D_1 = |W_1|_F^2 - |W_2|_F^2`` per replicate (``(R,)``; ``L >= 2``).  On the rank-one
    ansatz of fine-tuning (``W_1 = v u_1^T``, deeper scales ``varsigma``) it is ``Delta =
    |v|^2 - varsigma^2``.  A step with any gradient ``g = dloss/dbeta`` changes it by exactly
    ``eta^2 (|G_1|_F^2 - |G_2|_F^2)``: the linear terms ``<W_l, G_l> = g . beta`` are equal
    for every layer."""
    if len(weights) < 2:
        raise ValueError("imbalance needs a network of depth L >= 2")
    first, second = weights[0], weights[1]
    return (first * first).sum((-2, -1)) - (second * second).reshape(second.shape[0], -1).sum(-1)


def sampling_factor(n: int, batch_size: int, replacement: bool) -> float:
    """The per-step mean, over an epoch of :func:`sgd`, of the factor in ``Cov(minibatch mean
    gradient) = factor (M - gbar gbar^T)`` (``ft.transferability_sgd``, extras
    ``sampling_factor`` and ``without_replacement_factor``): ``1/B`` with replacement (every
    batch has ``B`` rows); without, ``(n - b)/(b (n - 1))`` for a batch of ``b`` rows (a
    uniform ``b``-subset, marginally), averaged over the ``ceil(n/B)`` batches of the epoch,
    whose last one has ``n mod B`` rows when ``B`` does not divide ``n``."""
    n = _number(n, "n", integer=True, minimum=1)
    batch_size = _number(batch_size, "batch_size", integer=True, minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be in [1, n] = [1, {n}] (got {batch_size})")
    if replacement:
        return 1.0 / batch_size
    if n == 1:
        return 0.0
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    return sum((n - b) / (b * (n - 1)) for b in sizes) / len(sizes)


@dataclass
class NoiseDrift:
    """Outcome of :func:`gradient_descent_with_noise_drift`: the imbalance ``tr D_1`` at the
    end of the full-batch run, the summed expected extra drift ``sum_k eta^2 E[noise_k]`` of
    minibatch SGD along it (one entry per sampling scheme asked for), the steps made and
    whether every replicate converged."""

    imbalance: torch.Tensor
    noise: dict
    steps: int
    converged: torch.Tensor


def gradient_descent_with_noise_drift(weights: list[torch.Tensor], data: RegressionData, *, step_size: float,
                                      schemes: tuple[tuple[int, bool], ...], tol: float,
                                      max_steps: int) -> NoiseDrift:
    """Full-batch gradient descent on ``(1/n)|X beta - y|^2`` (in place, residuals from the
    design) accumulating, at every step, the expected extra imbalance drift that minibatch
    sampling would add at the same weights: ``eta^2 factor [|b_1|^2 (tr M - |gbar|^2) -
    |b_2|^2 (tr(W_1^T M W_1) - |W_1^T gbar|^2)]`` with ``M = (4/n) sum_i r_i^2 x_i x_i^T``
    (from the residuals; no proportional-limit approximation), ``b_l = W_{l+1} ... W_L``,
    ``factor`` of :func:`sampling_factor` for each ``(B, replacement)`` in ``schemes``.
    Summed along the gradient-descent run this is the first-order (in the noise) prediction
    of ``E[Delta_SGD(end)] - Delta_GD(end)`` for the sampled data.  Stops when every
    replicate's loss is at or below ``tol``, or after ``max_steps`` (then ``converged`` is
    false where it is not)."""
    if data.design is None or data.labels is None:
        raise ValueError("data must keep its design and labels (sample_regression(..., keep_design=True))")
    if len(weights) < 2:
        raise ValueError("the imbalance drift needs a network of depth L >= 2")
    step_size = _number(step_size, "step_size", positive=True)
    max_steps = _number(max_steps, "max_steps", integer=True, minimum=1)
    if not tol > 0:
        raise ValueError(f"tol must be > 0 (got {tol!r})")
    design, labels = data.design.to(weights[0].dtype), data.labels.to(weights[0].dtype)
    n = design.shape[-2]
    factors = {scheme: sampling_factor(n, *scheme) for scheme in schemes}
    depth = len(weights)
    training = [True] * depth
    sums = {scheme: torch.zeros(design.shape[0], dtype=torch.float64) for scheme in schemes}
    row_sq = (design * design).sum(-1)  # |x_i|^2, (R, n)
    converged = torch.zeros(design.shape[0], dtype=torch.bool)
    steps = 0
    projected = None
    for steps in range(1, max_steps + 1):
        if projected is None or steps % 512 == 0:
            # rows x_i^T W_1, (R, n, d_1): formed afresh now and then, between times updated by
            # the rank-one change of W_1 (a d^2 product per step would dominate the cost)
            projected = design @ weights[0]
        right = right_products(weights)
        residual = (design @ right[0].unsqueeze(-1)).squeeze(-1) - labels  # (R, n)
        loss = (residual * residual).mean(-1)
        converged = loss <= tol
        if bool(converged.all()):
            steps -= 1
            break
        if not bool(torch.isfinite(loss).all()):
            raise DivergenceError(f"gradient descent diverged at step {steps} with step size eta = {step_size:.6g}")
        g = (2.0 / n) * (residual.unsqueeze(-2) @ design).squeeze(-2)  # (R, d)
        b1 = (right[1] * right[1]).reshape(right[1].shape[0], -1).sum(-1)
        b2 = torch.ones_like(b1) if depth == 2 else (right[2] * right[2]).reshape(right[2].shape[0], -1).sum(-1)
        tr_m = 4.0 * (residual * residual * row_sq).mean(-1)
        tr_wmw = 4.0 * (residual * residual * (projected * projected).sum(-1)).mean(-1)
        wg = rmatvec(weights[0], g)
        spread = b1 * (tr_m - (g * g).sum(-1)) - b2 * (tr_wmw - (wg * wg).sum(-1))
        for scheme, factor in factors.items():
            sums[scheme] += (step_size**2 * factor) * spread.to(torch.float64)
        # W_1 <- W_1 - eta g b_1^T, so X W_1 <- X W_1 - eta (X g) b_1^T
        projected = projected - step_size * (design @ g.unsqueeze(-1)) * right[1].unsqueeze(-2)
        apply_gradient(weights, right, g, step_size, training)
    return NoiseDrift(imbalance=imbalance(weights).to(torch.float64), noise=sums, steps=steps,
                      converged=converged)

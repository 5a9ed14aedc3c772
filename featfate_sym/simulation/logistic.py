"""Deep linear classifiers on Gaussian mixtures trained by full-batch gradient descent,
with the square loss and the logistic loss (issue 13, the network simulations).

Model (:mod:`featfate_sym.theory.classification`).  Labels ``y = +-1`` equiprobable,
inputs ``x = y mu + z``, ``z ~ N(0, I_d)``; source and target class means of norm ``m`` at
angle ``theta`` (:func:`featfate_sym.simulation.classification.class_means`).  The network
is ``f(x) = x^T W_1 ... W_L`` (hidden width ``h``, depth ``L >= 2``, the convention of
:mod:`featfate_sym.simulation.training`, whose :func:`small_init` it uses); its end-to-end
vector ``w = W_1 ... W_L`` has the exact test error ``Phi(-(w . mu_t)/|w|)`` on the target
mixture.  Losses, averaged over the ``n`` training pairs:

- square: ``(1/n) sum (f(x_i) - y_i)^2``;
- logistic: ``(1/n) sum log(1 + exp(-y_i f(x_i)))`` (``softplus``, stable for any margin).

Both depend on the weights only through ``w``, so with ``g = dLoss/dw`` the layer
gradients are rank one, ``G_l = (W_1..W_{l-1})^T g (W_{l+1}..W_L)^T``, computed with
matrix-vector products (as in :mod:`featfate_sym.simulation.training`).

Step size (per replicate, every step): ``eta = step_scale / H``, ``H`` the curvature
bound of :mod:`featfate_sym.simulation.training` with the loss Hessian in ``w`` bounded by

- square: ``2 lambda_max(X^T X / n)``;
- logistic: ``min(lambda_max(X^T X/n) max_i D_i, (1/n) sum_i D_i |x_i|^2)``, ``D_i =
  sigma(z_i) sigma(-z_i)`` at the margins ``z_i = y_i f(x_i)`` (``(1/n) X^T diag(D) X``
  is bounded by both its top eigenvalue bound and its trace).

On separable data the logistic gradient and curvature both decay like
``exp(-min_i z_i)``; the step ``step_scale / H`` then grows like ``1/loss`` (the
"normalised" step of Nacson et al., AISTATS 2019), which keeps the late phase from
crawling.  The ratio ``g / H`` does not depend on that common factor, so the logistic
terms are computed in the log domain (``log sigma(-z_i)`` minus its maximum): no
underflow even when the loss is ``1e-100``.

Stopping rule: a replicate stops (and is frozen) when ``|dLoss/dw| <= grad_tol``; on
separable logistic data that is reached only as ``w`` diverges, at a loss of about
``grad_tol`` (``grad_tol`` may be tiny, e.g. ``1e-40``: it is compared in the log domain).
``max_steps`` bounds the run; ``converged`` says which replicates met the rule.
Divergence: a loss that is not finite, or more than twice its best value plus a floor
(``1e-12 (1 + loss_0)`` for the square loss, which may reach 0; none for the logistic
loss), raises :class:`~featfate_sym.simulation.training.DivergenceError` naming the step.

Implicit bias.  From small initialisation the square-loss flow ends at the minimum-norm
least-squares vector ``X^+ y`` up to the initialisation left in the null space of ``X``,
``(I - P) W_1(0) W_2 ... W_L``, relatively ``O(init_scale)`` (the updates of ``W_1`` lie in
the row space of ``X``).  On separable
data the logistic flow of a deep linear network diverges in norm and converges in
direction to the hard-margin SVM direction ``argmax_{|w|=1} min_i y_i w.x_i`` (Soudry et
al., JMLR 2018, for ``L = 1``; Ji & Telgarsky, ICLR 2019, for deep linear networks); the
rate is only logarithmic in the loss: ``w = w_hat |w| + O(1)`` with ``|w| ~
log(1/loss)/margin``, so ``1 - cos = O(1/log^2(1/loss))`` (Soudry et al., for ``L = 1``).
:func:`max_margin_direction` computes that direction independently, from the SVM dual.
On non-separable data the logistic loss is strictly convex in ``w`` (``X^T X`` of full
rank) and GD ends at its unique finite minimiser.

Protocols (:func:`run_protocols`): scratch (small init, target data), linear transfer
(network pretrained on the *population* source loss -- square: the quadratic ``1 - 2 w.mu_s
+ w^T (I + mu_s mu_s^T) w``, minimiser ``mu_s/(1 + m^2)``; logistic: ``E softplus(-(w.mu_s
+ |w| g))`` by Gauss-Hermite quadrature, whose minimiser is also along ``mu_s`` by
rotation symmetry -- then only the readout ``W_L`` refitted on the target data with the
same loss, from its pretrained value, moving along the directions of the trained features
(:func:`feature_basis`)), fine-tuning (all layers from the pretrained network).  Population pretraining matches the theory's ``beta_s`` and adds no finite-source
noise.

Every random function takes an integer seed (NumPy for the data, ``torch.Generator`` for
the initialisation, both derived from it by ``numpy.random.SeedSequence``): same seed,
same numbers.  Computation in float64 on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import optimize

from featfate_sym.simulation.classification import check_flip, class_means, sample_mixture
from featfate_sym.simulation.training import (
    DivergenceError,
    end_to_end,
    right_products,
    rmatvec,
    small_init,
)

__all__ = [
    "LOSSES",
    "PROTOCOLS",
    "Trajectory",
    "MaxMargin",
    "ProtocolRun",
    "record_steps",
    "is_separable",
    "max_margin_direction",
    "logistic_minimiser",
    "descend",
    "pretrain_population",
    "feature_basis",
    "run_protocols",
    "simulate_max_margin_errors",
]

#: the training losses
LOSSES = ("square", "logistic")
#: the training protocols of :func:`run_protocols`
PROTOCOLS = ("scratch", "linear_transfer", "fine_tuning")
#: Gauss-Hermite nodes of the population logistic loss (exact for polynomials of degree 159;
#: the integrand is smooth, the quadrature error is below 1e-14 for margins up to 50)
_HERMITE_NODES = 80


# -- input checks -------------------------------------------------------------------------------
def _int_at_least(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low} (got {value!r})")
    return int(value)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a nonnegative integer (got {seed!r})")
    return int(seed)


def _loss_name(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)} (got {loss!r})")
    return loss


def record_steps(max_steps: int, points: int = 40) -> np.ndarray:
    """``0`` and about ``points`` logarithmically spaced steps in ``[1, max_steps]``."""
    max_steps = _int_at_least("max_steps", max_steps, 1)
    points = _int_at_least("points", points, 1)
    grid = np.unique(np.round(np.logspace(0, math.log10(max_steps), points)).astype(np.int64))
    return np.concatenate([[0], grid])


# -- separability and the max-margin direction --------------------------------------------------------
def is_separable(x: np.ndarray, y: np.ndarray, tol: float = 1e-9) -> bool:
    """Whether some ``w`` has ``y_i w.x_i > 0`` for all ``i`` (homogeneous separator).

    LP (``scipy.optimize.linprog``, HiGHS): maximise ``t`` subject to ``y_i w.x_i >= t``,
    ``-1 <= w_j <= 1``, ``t <= 1``; always feasible and bounded, and the data are separable
    iff ``t* > 0`` (decided as ``t* > tol``).  Raises ``ArithmeticError`` if the solver
    does not report an optimum.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n, dim = x.shape
    a = y[:, None] * x
    cost = np.zeros(dim + 1)
    cost[-1] = -1.0
    res = optimize.linprog(cost, A_ub=np.hstack([-a, np.ones((n, 1))]), b_ub=np.zeros(n),
                           bounds=[(-1.0, 1.0)] * dim + [(None, 1.0)], method="highs")
    if res.status != 0:
        raise ArithmeticError(f"separability LP failed: {res.message}")
    return bool(-res.fun > tol)


@dataclass
class MaxMargin:
    """The hard-margin SVM (no bias): ``w_hat = argmin |w|^2`` s.t. ``y_i w.x_i >= 1``;
    ``direction = w_hat/|w_hat|``, ``margin = 1/|w_hat|`` (the geometric margin),
    ``support`` the number of active constraints, ``gap`` the relative duality gap."""

    direction: np.ndarray
    margin: float
    support: int
    gap: float


def max_margin_direction(x: np.ndarray, y: np.ndarray, tol: float = 1e-10) -> MaxMargin:
    """The hard-margin SVM direction from its dual, ``max_a 1^T a - |A^T a|^2/2``, ``a >= 0``,
    ``A = diag(y) X`` (no bias, so no equality constraint), ``w = A^T a``.

    Two stages.  (1) One non-negative least-squares problem (:func:`_dual_by_nnls`, exact
    active-set termination; L-BFGS-B with the bounds ``a >= 0`` if it fails).  (2) Polish on its active set
    ``S`` (margins ``y_i w.x_i <= 1 + 1e-3``): ``a_S`` solves ``A_S A_S^T a_S = 1`` (least
    squares); if ``a_S >= 0`` and every margin of ``w = A_S^T a_S`` is ``>= 1 - 1e-9``, the KKT
    conditions hold (stationarity and complementary slackness by construction), and this
    ``w`` is returned.  Otherwise the stage-(1) ``w`` is rescaled to be feasible
    (``w / min_i y_i w.x_i``) and accepted only if the certified relative duality gap
    ``(|w|^2/2 - D(a)) / (|w|^2/2)`` is below ``max(tol, 1e-8)`` (it bounds
    ``|w - w_hat|^2 / |w|^2`` by twice itself); else ``ArithmeticError``.  ``gap`` in the
    result is that certified gap.  Raises ``ValueError`` on non-separable data.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not is_separable(x, y):
        raise ValueError("x, y are not linearly separable: no max-margin direction")
    a_mat = y[:, None] * x
    gram = a_mat @ a_mat.T

    def objective(a):
        ka = gram @ a
        return 0.5 * a @ ka - a.sum(), ka - 1.0

    a, message = _dual_by_nnls(a_mat)
    if a is None:
        res = optimize.minimize(objective, np.zeros(x.shape[0]), jac=True, method="L-BFGS-B",
                                bounds=[(0.0, None)] * x.shape[0],
                                options={"ftol": 1e-16, "gtol": tol, "maxiter": 100_000, "maxcor": 50})
        a, message = np.clip(res.x, 0.0, None), res.message
    w = a_mat.T @ a
    margins = a_mat @ w
    active = margins <= 1 + 1e-3
    if np.any(active):
        a_s = np.linalg.lstsq(gram[np.ix_(active, active)], np.ones(int(active.sum())), rcond=None)[0]
        w_s = a_mat[active].T @ a_s
        if np.all(a_s >= 0) and (a_mat @ w_s).min() >= 1 - 1e-9:
            a = np.zeros_like(a)
            a[active] = a_s
            w = w_s
            margins = a_mat @ w
    low = float(margins.min())
    if not low > 0:
        raise ArithmeticError(f"max-margin dual did not converge: min margin {low:.3g} ({message})")
    w_feasible = w / min(low, 1.0)
    primal = 0.5 * float(w_feasible @ w_feasible)
    dual = float(a.sum() - 0.5 * w @ w)
    gap = (primal - dual) / primal
    if gap > max(tol, 1e-8):
        raise ArithmeticError(f"max-margin dual did not converge: certified gap {gap:.3g} ({message})")
    norm = math.sqrt(2 * primal)
    return MaxMargin(direction=w_feasible / norm, margin=1 / norm,
                     support=int(np.sum(a > 1e-6 * a.max())), gap=float(max(gap, 0.0)))


def _dual_by_nnls(a_mat: np.ndarray):
    """The SVM dual optimum from one non-negative least-squares problem (Lawson-Hanson,
    ``scipy.optimize.nnls``, finite active-set termination): with ``a = s b``, ``1^T b = 1``,
    the dual value is ``s - s^2 |A^T b|^2/2``, maximal at ``s = 1/|A^T b|^2``, so the dual
    direction ``b`` minimises ``|A^T b|`` on the simplex; ``min_{a >= 0} |A^T a|^2 + (1^T a - 1)^2``
    has, along each ``b``, the value ``c/(1 + c)``, ``c = |A^T b|^2``, increasing in ``c``: the
    same minimiser.  Returns ``(a, message)``, ``a = None`` if NNLS fails (the caller then
    falls back on L-BFGS-B); the caller certifies the result either way."""
    n, dim = a_mat.shape
    system = np.vstack([a_mat.T, np.ones((1, n))])
    target = np.zeros(dim + 1)
    target[-1] = 1.0
    try:
        b, _ = optimize.nnls(system, target, maxiter=50 * n)
    except RuntimeError as exc:  # iteration limit
        return None, str(exc)
    total = b.sum()
    if not total > 0:
        return None, "NNLS returned zero"
    b = b / total
    c = float(np.sum((a_mat.T @ b) ** 2))
    if not c > 0:
        return None, "NNLS direction has |A^T b| = 0"
    return b / c, "NNLS"


def logistic_minimiser(x: np.ndarray, y: np.ndarray, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """The unique minimiser of the mean logistic loss in ``w`` on non-separable data of full
    column rank (strictly convex and coercive), by damped Newton iterations from ``w = 0``:
    ``w <- w - s H^{-1} g`` with ``s`` halved until the loss decreases by at least ``s g.H^{-1}g/4``
    (Armijo); raises ``ArithmeticError`` unless ``|g| <= tol`` within ``max_iter`` iterations."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.shape[0]
    a_mat = y[:, None] * x

    def loss(w):
        return np.logaddexp(0.0, -(a_mat @ w)).mean()

    w = np.zeros(x.shape[1])
    for _ in range(max_iter):
        z = a_mat @ w
        g = -(a_mat.T @ _sigmoid_np(-z)) / n
        if np.linalg.norm(g) <= tol:
            return w
        hess = (a_mat.T * (_sigmoid_np(z) * _sigmoid_np(-z))) @ a_mat / n
        step = np.linalg.solve(hess, g)
        decrease, s, now = float(g @ step), 1.0, loss(w)
        while loss(w - s * step) > now - 0.25 * s * decrease and s > 1e-12:
            s *= 0.5
        w = w - s * step
    raise ArithmeticError(f"logistic minimiser not found in {max_iter} Newton steps: gradient norm "
                          f"{np.linalg.norm(g):.3g} (separable data have no minimiser)")


def _sigmoid_np(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# -- loss terms ----------------------------------------------------------------------------------
@dataclass
class _Terms:
    """``g = exp(log_scale) g_unit``, curvature bound ``exp(log_scale) curv_unit``, loss."""

    g_unit: torch.Tensor
    curv_unit: torch.Tensor
    log_scale: torch.Tensor
    log_loss: torch.Tensor


class _Sample:
    """A batch of training sets ``x (R, n, d)``, ``y (R, n)`` and one loss."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, loss: str):
        self.x, self.y, self.loss = x, y, _loss_name(loss)
        n = x.shape[1]
        gram = x.mT @ x / n if x.shape[2] <= n else x @ x.mT / n  # same nonzero spectrum
        self.top = torch.linalg.eigvalsh(gram)[..., -1]
        self.row2 = (x * x).sum(-1)
        self.n = n

    def terms(self, beta: torch.Tensor) -> _Terms:
        out = (self.x @ beta.unsqueeze(-1)).squeeze(-1)  # f(x_i), (R, n)
        zero = torch.zeros_like(self.top)
        if self.loss == "square":
            r = out - self.y
            g = 2.0 * (r.unsqueeze(-2) @ self.x).squeeze(-2) / self.n
            return _Terms(g, 2.0 * self.top, zero, torch.log((r * r).mean(-1)))
        z = self.y * out
        log_s = torch.nn.functional.logsigmoid(-z)  # log sigma(-z_i)
        shift = log_s.max(-1).values
        q = torch.exp(log_s - shift.unsqueeze(-1))  # sigma(-z_i)/max
        g = -((self.y * q).unsqueeze(-2) @ self.x).squeeze(-2) / self.n
        dq = q * torch.sigmoid(z)  # D_i / max_j sigma(-z_j)
        curv = torch.minimum(self.top * dq.max(-1).values, (dq * self.row2).mean(-1))
        return _Terms(g, curv, shift, _log_mean_softplus(-z))


def _log_mean_softplus(u: torch.Tensor) -> torch.Tensor:
    """``log((1/n) sum_i softplus(u_i))`` without underflow: for ``u < -30``,
    ``softplus(u) = e^u (1 - e^u/2 + ...)``, so ``log softplus(u) = u + log1p(-e^u/2)`` to
    within ``e^{2u}/3 < 1e-26``; elsewhere the log of the softplus itself."""
    small = u < -30
    safe = torch.where(small, torch.zeros_like(u), u)
    log_sp = torch.where(small, u + torch.log1p(-0.5 * torch.exp(u)), torch.log(torch.nn.functional.softplus(safe)))
    return torch.logsumexp(log_sp, -1) - math.log(u.shape[-1])


class _Population:
    """The population source loss (mixture with class mean ``mu[r]``) of replicate ``r``."""

    def __init__(self, mu: torch.Tensor, loss: str):
        self.mu, self.loss = mu, _loss_name(loss)  # mu: (R, d), one class mean per replicate
        nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
        self.nodes = torch.tensor(nodes, dtype=torch.float64)
        self.weights = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)
        # E x x^T = I + mu mu^T: its top eigenvalue bounds both Hessians (times 2, times 1/4)
        scale = 2.0 if loss == "square" else 0.25
        self.curv = scale * (1 + (mu * mu).sum(-1))

    def terms(self, beta: torch.Tensor) -> _Terms:
        zero = torch.zeros_like(self.curv)
        bm = (beta * self.mu).sum(-1)  # (R,)
        if self.loss == "square":
            # E (y - w.x)^2 = 1 - 2 w.mu + |w|^2 + (w.mu)^2
            loss = 1 - 2 * bm + (beta * beta).sum(-1) + bm * bm
            g = 2.0 * (beta + (bm - 1).unsqueeze(-1) * self.mu)
            return _Terms(g, self.curv, zero, torch.log(loss))
        # y w.x = w.mu + |w| t, t ~ N(0, 1); E over t by Gauss-Hermite
        norm = beta.norm(dim=-1)
        z = bm.unsqueeze(-1) + norm.unsqueeze(-1) * self.nodes  # (R, K)
        s = torch.sigmoid(-z)
        loss = (torch.nn.functional.softplus(-z) * self.weights).sum(-1)
        # d/dw softplus(-(w.mu + |w| t)) = -sigma(-z) (mu + t w/|w|)
        e_s = (s * self.weights).sum(-1)
        e_st = (s * self.nodes * self.weights).sum(-1)
        g = -(e_s.unsqueeze(-1) * self.mu + (e_st / norm).unsqueeze(-1) * beta)
        return _Terms(g, self.curv, zero, torch.log(loss))


# -- gradient descent ------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """A run of :func:`descend` (``R`` replicates).

    ``steps`` the recorded steps ``(K,)``; ``error`` the target test error, ``cosine`` the
    cosine with ``reference`` (``None`` without one), ``log_loss`` the natural log of the
    training loss and ``norm`` ``|w|``, each ``(K, R)``.  ``beta`` the final end-to-end
    vectors ``(R, d)``; ``steps_taken`` and ``converged`` per replicate; ``grad_norm`` the
    final ``|dLoss/dw|`` (``log_grad_norm`` its log, finite when it underflows).
    """

    steps: np.ndarray
    error: np.ndarray
    cosine: np.ndarray | None
    log_loss: np.ndarray
    norm: np.ndarray
    beta: np.ndarray
    steps_taken: np.ndarray
    converged: np.ndarray
    log_grad_norm: np.ndarray
    weights: list = field(repr=False, default_factory=list)

    @property
    def final_error(self) -> np.ndarray:
        return self.error[-1]

    @property
    def grad_norm(self) -> np.ndarray:
        return np.exp(self.log_grad_norm)


def _curvature_bound(sq_norms: torch.Tensor, g_norm: torch.Tensor, curv: torch.Tensor) -> torch.Tensor:
    """``curv * sum_l prod_{j != l} s_j^2 + |g| max_l sum_{k != l} prod_{j != l,k} s_j``
    (``sq_norms`` ``(L, R)``; see :mod:`featfate_sym.simulation.training`)."""
    depth = sq_norms.shape[0]
    norms = sq_norms.clamp_min(0).sqrt()
    gn = torch.zeros_like(curv)
    cross = torch.zeros_like(curv)
    for l in range(depth):
        others = [j for j in range(depth) if j != l]
        gn = gn + torch.prod(sq_norms[others], 0) if others else gn + 1
        row = torch.zeros_like(curv)
        for k in others:
            rest = [j for j in others if j != k]
            row = row + (torch.prod(norms[rest], 0) if rest else 1.0)
        cross = torch.maximum(cross, row)
    return curv * gn + g_norm * cross


def _test_error(beta: torch.Tensor, mu_t: torch.Tensor) -> torch.Tensor:
    norm = beta.norm(dim=-1)
    if bool((norm == 0).any()):
        raise ArithmeticError("a zero end-to-end vector has no test error")
    return torch.special.ndtr(-(beta @ mu_t) / norm)


def descend(
    weights: list[torch.Tensor],
    problem,
    mu_t: torch.Tensor,
    *,
    grad_tol: float,
    max_steps: int,
    step_scale: float = 0.5,
    trainable: tuple[int, ...] | None = None,
    record: np.ndarray | None = None,
    reference: torch.Tensor | None = None,
    loss_floor: float = 0.0,
    readout_basis: torch.Tensor | None = None,
) -> Trajectory:
    """Train ``weights`` in place by full-batch gradient descent on ``problem``'s loss.

    Step ``eta = step_scale / H`` (module docstring; ``step_scale in (0, 2)``, 0.5 by
    default: half the descent-lemma step, because the bound is taken at the current point
    and the logistic curvature changes along a long step).  Stops a replicate when
    ``|dLoss/dw| <= grad_tol`` or after ``max_steps``.  ``record`` (sorted steps; default
    :func:`record_steps`) are the steps at which error, cosine with ``reference`` (``(R, d)``
    or ``(d,)``), loss and norm are stored (the final state is always stored last).
    ``trainable`` (0-based layers) trains only those layers, with the all-layer bound.
    ``loss_floor`` is the additive allowance of the divergence check.

    ``readout_basis`` (``(R, h, k)``, orthonormal columns, zero columns allowed), for a
    readout-only run (``trainable = (L - 1,)``): the readout update is projected on these
    directions (the trained features) and the stopping rule is on the projected readout
    gradient instead of ``|g|``.  Linear transfer: the end-to-end gradient need not vanish
    when only the readout moves, and along the frozen features' initialisation residual
    (curvature ``O(init_scale^2)``) plain GD would take ``O(init_scale^-2)`` steps to settle,
    drifting the optimum along the feature meanwhile; there the readout keeps its
    pretrained value, which contributes ``O(init_scale^2)`` to ``w``.
    """
    grad_tol = _positive("grad_tol", grad_tol)
    max_steps = _int_at_least("max_steps", max_steps, 1)
    mu_t = torch.as_tensor(mu_t, dtype=torch.float64)
    if not 0 < step_scale < 2:
        raise ValueError(f"step_scale must be in (0, 2) (got {step_scale!r})")
    depth = len(weights)
    training = [trainable is None or l in set(trainable) for l in range(depth)]
    record = record_steps(max_steps) if record is None else np.asarray(record, dtype=np.int64)
    record_set = {int(s) for s in record if s <= max_steps}
    replicates = weights[-1].shape[0]
    if reference is not None:
        reference = reference.expand(replicates, -1)
        reference = reference / reference.norm(dim=-1, keepdim=True)
    log_tol = math.log(grad_tol)
    log_floor = math.log(loss_floor) if loss_floor > 0 else -math.inf

    active = torch.ones(replicates, dtype=torch.bool)
    steps_taken = torch.full((replicates,), max_steps, dtype=torch.int64)
    best = torch.full((replicates,), math.inf, dtype=torch.float64)
    rows = {"step": [], "error": [], "cosine": [], "log_loss": [], "norm": []}

    def store(step, beta, terms):
        norm = beta.norm(dim=-1)
        rows["step"].append(step)
        rows["error"].append(_test_error(beta, mu_t).numpy().copy())
        rows["norm"].append(norm.numpy().copy())
        rows["log_loss"].append(terms.log_loss.numpy().copy())
        if reference is not None:
            rows["cosine"].append(((beta * reference).sum(-1) / norm).numpy().copy())

    last_eta = torch.zeros(replicates, dtype=torch.float64)
    for step in range(max_steps + 1):
        right = right_products(weights)
        beta = right[0]
        terms = problem.terms(beta)
        g_norm_unit = terms.g_unit.norm(dim=-1)
        if readout_basis is None:
            log_g = terms.log_scale + torch.log(g_norm_unit)
        else:
            readout_grad = terms.g_unit
            for w in weights[:-1]:
                readout_grad = rmatvec(w, readout_grad)
            projected = (readout_grad.unsqueeze(-2) @ readout_basis).squeeze(-2).norm(dim=-1)
            log_g = terms.log_scale + torch.log(projected)
        log_loss = terms.log_loss
        # divergence: non-finite, or the loss above twice its best plus the floor
        limit = torch.logaddexp(best + math.log(2.0), torch.full_like(best, log_floor))
        bad = ~torch.isfinite(log_loss) | ~torch.isfinite(terms.g_unit).all(-1) | (active & (log_loss > limit))
        if bool(bad.any()):
            r = int(torch.nonzero(bad)[0])
            raise DivergenceError(
                f"gradient descent diverged at step {step} (replicate {r}) with step size eta = "
                f"{float(last_eta[r]):.6g} (step_scale = {step_scale}); log loss {float(log_loss[r]):.6g}, "
                f"best {float(best[r]):.6g}")
        best = torch.where(active, torch.minimum(best, log_loss), best)
        done = active & (log_g <= log_tol)
        steps_taken = torch.where(done, torch.full_like(steps_taken, step), steps_taken)
        active = active & ~done
        final = step == max_steps or not bool(active.any())
        if step in record_set or final:
            store(step, beta, terms)
        if final:
            break
        sq_norms = torch.stack([(w * w).sum(dim=tuple(range(1, w.dim()))) for w in weights])
        # eta * G_l = step_scale * g_unit-built G_l / H_unit: the common scale cancels
        bound = _curvature_bound(sq_norms, g_norm_unit, terms.curv_unit)
        eta = torch.where(active, step_scale / bound, torch.zeros_like(bound))
        last_eta = torch.where(active, eta * torch.exp(-terms.log_scale), last_eta)
        left = terms.g_unit
        for l in range(depth):
            w = weights[l]
            nxt = rmatvec(w, left) if l < depth - 1 else None
            if training[l]:
                if l == depth - 1:
                    if readout_basis is not None:  # the readout moves along the features only
                        left = (((left.unsqueeze(-2) @ readout_basis) @ readout_basis.mT)).squeeze(-2)
                    w.sub_(eta.unsqueeze(-1) * left)
                else:
                    w.baddbmm_((eta.unsqueeze(-1) * left).unsqueeze(-1), right[l + 1].unsqueeze(-2), alpha=-1.0)
            left = nxt
    beta = end_to_end(weights)
    return Trajectory(
        steps=np.asarray(rows["step"], dtype=np.int64),
        error=np.stack(rows["error"]),
        cosine=np.stack(rows["cosine"]) if reference is not None else None,
        log_loss=np.stack(rows["log_loss"]),
        norm=np.stack(rows["norm"]),
        beta=beta.numpy().copy(),
        steps_taken=steps_taken.numpy(),
        converged=(steps_taken < max_steps).numpy() | (log_g <= log_tol).numpy(),
        log_grad_norm=log_g.numpy().copy(),
        weights=weights,
    )


# -- protocols -----------------------------------------------------------------------------------
def _seeds(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    data_seq, init_seq = np.random.SeedSequence(seed).spawn(2)
    gen = torch.Generator().manual_seed(int(init_seq.generate_state(1, dtype=np.uint64)[0] % (2**63)))
    return np.random.default_rng(data_seq), gen


def pretrain_population(
    mu_s: np.ndarray, loss: str, depth: int, width: int, generator: torch.Generator, *,
    init_scale: float = 1e-3, grad_tol: float = 1e-10, max_steps: int = 20_000,
) -> tuple[list[torch.Tensor], Trajectory]:
    """Networks pretrained by GD on the population source loss from small initialisation,
    one per row of ``mu_s`` (``(R, d)``; module docstring); raises ``ArithmeticError`` if a
    replicate does not meet ``|dLoss/dw| <= grad_tol`` within ``max_steps``."""
    mu = torch.as_tensor(np.asarray(mu_s, dtype=float))
    weights = small_init(mu.shape[0], mu.shape[1], depth, generator, width=width, scale=init_scale)
    traj = descend(weights, _Population(mu, loss), mu[0], grad_tol=grad_tol, max_steps=max_steps,
                   record=np.array([0]))
    if not bool(np.all(traj.converged)):
        raise ArithmeticError(f"population pretraining ({loss}) did not converge in {max_steps} steps")
    return weights, traj


def feature_basis(weights: list[torch.Tensor], rank_tol: float = 1e-2) -> torch.Tensor:
    """Orthonormal readout-space directions of the frozen features ``W_1 ... W_{L-1}``
    (``(R, h, h)``): right singular vectors with singular value above ``rank_tol`` times the
    largest, the others zeroed (after small-initialisation pretraining the product is
    rank one plus the initialisation residual, ``O(init_scale)``)."""
    features = weights[0]
    for w in weights[1:-1]:
        features = features @ w
    _, sv, vh = torch.linalg.svd(features, full_matrices=False)
    keep = sv > rank_tol * sv[..., :1]
    return vh.mT * keep.unsqueeze(-2)


@dataclass
class ProtocolRun:
    """Result of :func:`run_protocols`.

    ``scratch`` a :class:`Trajectory` over the ``R`` target sets; ``transfer[p]`` (``p`` in
    linear_transfer, fine_tuning) a :class:`Trajectory` over ``A R`` runs, angle-major
    (run ``a R + r`` is angle ``a`` on target set ``r``: every angle sees the same target
    sets, so differences are paired).  Cosines are with the max-margin direction when every
    target set is separable.  ``separable`` per target set; ``max_margin`` the
    :class:`MaxMargin` (``None`` where not separable) and ``max_margin_error`` its test
    error (``nan`` there).  ``pretrained`` the pretrained end-to-end vectors ``(A R, d)``.
    """

    loss: str
    angles: np.ndarray
    scratch: Trajectory | None
    transfer: dict[str, Trajectory]
    separable: np.ndarray
    max_margin: list
    max_margin_error: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pretrained: np.ndarray
    options: dict

    def final_errors(self, protocol: str) -> np.ndarray:
        """Test errors at the end: ``(R,)`` for scratch, ``(A, R)`` for the transfers."""
        if protocol == "scratch":
            return self.scratch.final_error
        return self.transfer[protocol].final_error.reshape(self.angles.size, -1)

    def transferability(self, protocol: str) -> np.ndarray:
        """Paired ``error_scratch - error_protocol`` per angle and target set, ``(A, R)``."""
        return self.final_errors("scratch")[None, :] - self.final_errors(protocol)


def _grad_tol(loss: str, separable: np.ndarray, grad_tol: float | None) -> float:
    if grad_tol is not None:
        return _positive("grad_tol", grad_tol)
    return SEPARABLE_GRAD_TOL if (loss == "logistic" and bool(np.all(separable))) else GRAD_TOL


#: default stopping tolerance on ``|dLoss/dw|`` (finite minimiser)
GRAD_TOL = 1e-10
#: default tolerance for logistic runs on separable data (a loss of about 1e-20)
SEPARABLE_GRAD_TOL = 1e-20
#: tolerance of the linear-transfer readout on its projected gradient
LT_GRAD_TOL = 1e-10
#: step budget of the linear-transfer readout: its one-dimensional problem converges in a
#: few thousand steps at most when it is non-separable (measured at d = 40-60); when all
#: y_i x_i . f share a sign the readout diverges and only its sign, fixed early, matters
LT_MAX_STEPS = 5000


def run_protocols(
    loss: str,
    n_samples: int,
    dim: int,
    angles,
    norm: float,
    replicates: int,
    seed: int,
    *,
    depth: int = 2,
    width: int | None = None,
    init_scale: float = 1e-3,
    protocols=PROTOCOLS,
    max_steps: int = 20_000,
    grad_tol: float | None = None,
    step_scale: float = 0.5,
    record_points: int = 30,
    flip: float = 0.0,
) -> ProtocolRun:
    """Scratch, linear transfer and fine-tuning of depth-``depth`` linear networks (width
    ``width``, default ``dim``) on ``replicates`` independent target sets of ``n_samples``
    pairs, class-mean norm ``norm``, source angle(s) ``angles`` (a number or a sequence in
    ``[0, pi]``), with ``loss``.  The target sets are shared by all protocols and angles.

    Stopping: ``|dLoss/dw| <= grad_tol``, default :data:`GRAD_TOL` (``1e-10``), and
    :data:`SEPARABLE_GRAD_TOL` (``1e-20``) for logistic runs when every target set is
    separable (the weights diverge: the run stops at a loss of about ``1e-20``); linear
    transfer uses :data:`LT_GRAD_TOL` (``1e-10``) on the projected readout gradient
    (:func:`feature_basis`; its one-dimensional problem is non-separable unless all
    ``y_i x_i . mu_s`` share a sign).  At most ``max_steps`` steps.  Errors are recorded at
    :func:`record_steps` ``(max_steps, record_points)``.  ``flip``: each target training
    label is flipped with probability ``flip`` (``0 <= flip < 1/2``; errors on the clean
    mixture; pretraining on the clean population).
    """
    loss = _loss_name(loss)
    n_samples = _int_at_least("n_samples", n_samples, 1)
    dim = _int_at_least("dim", dim, 2)
    replicates = _int_at_least("replicates", replicates, 1)
    depth = _int_at_least("depth", depth, 2)
    width = dim if width is None else _int_at_least("width", width, 1)
    init_scale = _positive("init_scale", init_scale)
    angles = np.atleast_1d(np.asarray(angles, dtype=float))
    if angles.ndim != 1 or angles.size == 0 or not np.all((angles >= 0) & (angles <= math.pi)):
        raise ValueError(f"angles must be numbers in [0, pi] (got {angles!r})")
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {sorted(unknown)[0]!r})")
    flip = check_flip(flip)
    rng, gen = _seeds(_seed(seed))
    means = [class_means(dim, norm, a) for a in angles]
    mu_t = means[0][1]
    xs, ys = zip(*(sample_mixture(n_samples, mu_t, rng, flip) for _ in range(replicates)))
    x_np, y_np = np.stack(xs), np.stack(ys)
    separable = np.array([is_separable(a, b) for a, b in zip(x_np, y_np)])
    mm = [max_margin_direction(a, b) if s else None for a, b, s in zip(x_np, y_np, separable)]
    mu_t_t = torch.tensor(mu_t)
    mm_error = np.array([float(_test_error(torch.tensor(v.direction)[None], mu_t_t)[0]) if v else np.nan
                         for v in mm])
    reference = torch.tensor(np.stack([v.direction for v in mm])) if all(separable) else None
    tol = _grad_tol(loss, separable, grad_tol)
    floor = 1e-12 * (1 + float((y_np**2).mean())) if loss == "square" else 0.0
    record = record_steps(max_steps, record_points)
    common = dict(max_steps=max_steps, step_scale=step_scale, record=record, loss_floor=floor)
    scratch = None
    if "scratch" in protocols:
        weights = small_init(replicates, dim, depth, gen, width=width, scale=init_scale)
        scratch = descend(weights, _Sample(torch.tensor(x_np), torch.tensor(y_np), loss), mu_t_t,
                          grad_tol=tol, reference=reference, **common)
    transfer = {}
    pre_beta = np.full((angles.size * replicates, dim), np.nan)
    if {"linear_transfer", "fine_tuning"} & set(protocols):
        count = angles.size
        mu_s = np.repeat(np.stack([ms for ms, _ in means]), replicates, axis=0)
        pre, _ = pretrain_population(mu_s, loss, depth, width, gen, init_scale=init_scale)
        pre_beta = end_to_end(pre).numpy().copy()
        sample = _Sample(torch.tensor(np.tile(x_np, (count, 1, 1))), torch.tensor(np.tile(y_np, (count, 1))), loss)
        ref = None if reference is None else reference.repeat(count, 1)
        if "linear_transfer" in protocols:
            weights = [w.clone() for w in pre]
            lt_common = dict(common, max_steps=min(max_steps, LT_MAX_STEPS))
            transfer["linear_transfer"] = descend(
                weights, sample, mu_t_t, grad_tol=LT_GRAD_TOL, trainable=(depth - 1,),
                readout_basis=feature_basis(weights), reference=ref, **lt_common)
        if "fine_tuning" in protocols:
            weights = [w.clone() for w in pre]
            transfer["fine_tuning"] = descend(weights, sample, mu_t_t, grad_tol=tol, reference=ref, **common)
    options = dict(depth=depth, width=width, init_scale=init_scale, max_steps=max_steps, grad_tol=tol,
                   step_scale=step_scale, n_samples=n_samples, dim=dim, norm=norm, seed=seed, flip=flip)
    return ProtocolRun(loss, angles, scratch, transfer, separable, mm, mm_error, x_np, y_np, pre_beta, options)


# -- the max-margin classifier on fresh target sets ------------------------------------------
def simulate_max_margin_errors(
    n_samples: int, dim: int, norm: float, replicates: int, seed: int, *, flip: float = 0.0,
) -> dict[str, np.ndarray]:
    """The hard-margin SVM (:func:`max_margin_direction`) on ``replicates`` independent
    target sets of ``n_samples`` pairs (class-mean norm ``norm``, labels flipped with
    probability ``flip``): per set, ``separable`` (LP) and the exact test error of the
    max-margin direction on the clean mixture (``nan`` where not separable).  Seeded."""
    n_samples = _int_at_least("n_samples", n_samples, 1)
    dim = _int_at_least("dim", dim, 2)
    replicates = _int_at_least("replicates", replicates, 1)
    flip = check_flip(flip)
    rng = np.random.default_rng(np.random.SeedSequence(_seed(seed)))
    mu_t = class_means(dim, norm, 0.0)[1]
    separable = np.zeros(replicates, dtype=bool)
    error = np.full(replicates, np.nan)
    for r in range(replicates):
        x, y = sample_mixture(n_samples, mu_t, rng, flip)
        if is_separable(x, y):
            separable[r] = True
            direction = max_margin_direction(x, y).direction
            error[r] = float(_exact_error(direction, mu_t))
    return {"separable": separable, "error": error}


def _exact_error(w: np.ndarray, mu_t: np.ndarray) -> float:
    """Exact test error ``Phi(-(w . mu_t)/|w|)`` (scipy's ``ndtr``)."""
    from scipy.special import ndtr

    return float(ndtr(-(w @ mu_t) / np.linalg.norm(w)))

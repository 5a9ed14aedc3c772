"""Data-centric distances against transferability: numerics of the comparison.

Model (SPEC section 1 and "Data-centric distances do not predict transfer"; paper v1
Thm 2.2, v2 appendix): both tasks draw ``x ~ N(0, I_d)`` and label it with
``y | x ~ N(beta . x, sigma^2)``; the source teacher ``beta_s`` is a unit vector and the
target teacher is ``beta_t = a (cos theta beta_s + sin theta beta_perp)``, a scale
``a > 0`` times a unit vector at angle ``theta``.  ``a = 1`` is the paper's family of
unit teachers (the registry's ``metrics.kl``, ``metrics.w2`` and ``lt.transferability``);
``theta = 0`` is the counterexample family ``beta_t = a beta_s``, inside the span of the
pretrained feature ``beta_s . x``.

Distances (computed numerically from the Gaussian definitions, in the three coordinates
that carry them: the plane of the teachers and the label; the other directions of ``x``
have identical laws under both tasks and drop out):

- KL of the joint laws = average over ``x`` of the KL of the conditional Gaussians
  (chain rule; the ``x`` marginals agree) ``= E_x[(f - g)^2] / (2 sigma^2)``, with the
  second moment taken against the covariance of ``x``;
- W2^2 (squared, as the registry's ``metrics.w2``) between the centred joint Gaussians
  by the Bures formula ``tr S_s + tr S_t - 2 tr (S_s^(1/2) S_t S_s^(1/2))^(1/2)``
  (Dowson & Landau 1982), square roots of symmetric positive semi-definite matrices
  taken by symmetric eigendecomposition.

Transferability for the scaled target, from the registry.  Both estimators are linear in
the labels: the min-norm scratch fit of ``y = a beta . x + eps`` is ``a`` times the fit of
``y / a = beta . x + eps / a``, and so is the ridge readout on frozen features.  Their
excess risks therefore scale exactly as ``R(a, sigma) = a^2 R(1, sigma / a)``, and
``T(gamma, theta, a, sigma, lam) = a^2 T_lt(gamma, theta, sigma / a, lam)`` with
``T_lt = lt.transferability`` (proportional limit, Thms 3.6-3.8).  For the counterexample
``theta = 0``, ``lam = 0``: ``R_lt = a^2 lt.risk(0, 0) = 0`` -- refitting the readout on
the feature ``beta_s . x`` recovers ``a beta_s`` exactly -- while KL ``= (a - 1)^2 /
(2 sigma^2)`` and W2 grow without bound in ``a``.

ReLU targets (SPEC section 3).  The same question for two-layer ReLU teachers
``f(x) = sum_k a_k relu(w_k . x)`` with ``y | x ~ N(f(x), sigma^2)``, computed exactly
from the registered ReLU moments (``relu.arccos_kernel``, ``relu.mean``), no sampling:

- KL of the joint laws ``= E_x[(f_s - f_t)^2] / (2 sigma^2)`` (chain rule, as above);
- W2^2 of the joint laws is bracketed: above by the synchronous coupling (same ``x``,
  same noise), ``E_x[(f_s - f_t)^2]``; below by the W2^2 of the label marginals (a
  projection is 1-Lipschitz), itself at least ``(m_s - m_t)^2 + (s_s - s_t)^2`` with the
  labels' means and standard deviations (Gelbrich's bound, valid for any laws);
- the linear-transfer limit is the part of ``f_t`` outside the span of the pretrained
  features, ``|P_perp f_t|^2`` (:mod:`featfate_sym.studies.relu_overlap`), here with the
  features an ideal pretraining recovers: the source teacher's own neurons.

The in-span family ``f_t = a f_s`` has ``|P_perp f_t|^2 = 0`` for every ``a`` while KL and
both W2 bounds grow as ``(a - 1)^2``; a target with a fraction of the source's neurons
replaced by fresh ones is nearer in KL and W2 yet has ``|P_perp f_t|^2 > 0``.

Nothing here prints or draws; :mod:`featfate_sym.plotting.distances` draws the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

import featfate_sym as ff

__all__ = [
    "DistanceGrid",
    "RankCorrelation",
    "TaskPair",
    "Task",
    "PAPER_GAMMAS",
    "bl_lower_bound",
    "PAPER_THETAS",
    "correlation_table",
    "counterexample_family",
    "kl_divergence",
    "lt_risk",
    "nearer_but_worse_pair",
    "rank_correlations",
    "ReluTargets",
    "relu_span_family",
    "relu_nearer_but_worse",
    "scale_angle_grid",
    "theta_gamma_grid",
    "transferability",
    "w2_squared",
]

#: the paper's grids (SPEC section 4): gamma in {0.1, ..., 2.0} without the scratch
#: peak gamma = 1 (T = +oo there when sigma > 0), theta/(pi/2) in {0.05, ..., 1.0}
PAPER_GAMMAS = np.array([g / 10 for g in range(1, 21) if g != 10])
PAPER_THETAS = np.arange(1, 21) * (np.pi / 2) / 20


# --- validation ------------------------------------------------------------------------
def _array(name: str, value, *, lower: float, lower_open: bool, upper: float = np.inf) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr) | (arr <= lower if lower_open else arr < lower) | (arr > upper)
    if np.any(bad):
        first = arr[bad].flat[0]
        side = ">" if lower_open else ">="
        raise ValueError(f"parameter {name} must be finite, {side} {lower:g} and <= {upper:g} (got {first!r})")
    return arr


def _theta(theta) -> np.ndarray:
    return _array("theta", theta, lower=0.0, lower_open=False, upper=np.pi)


def _scale(scale) -> np.ndarray:
    return _array("scale", scale, lower=0.0, lower_open=True)


# --- the reduced Gaussian model ----------------------------------------------------------
def _teachers(theta: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """beta_s = (1, 0) and beta_t = a (cos theta, sin theta) in the plane of the teachers,
    stacked on a trailing axis of length 2."""
    theta, scale = np.broadcast_arrays(theta, scale)
    source = np.stack([np.ones_like(theta), np.zeros_like(theta)], axis=-1)
    target = scale[..., None] * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    return source, target


def _joint_covariance(beta: np.ndarray, noise_var: np.ndarray) -> np.ndarray:
    """Covariance of (x_1, x_2, y) with x ~ N(0, I_2), y = beta . x + N(0, sigma^2)."""
    shape = beta.shape[:-1]
    cov = np.zeros(shape + (3, 3))
    cov[..., :2, :2] = np.eye(2)
    cov[..., :2, 2] = beta
    cov[..., 2, :2] = beta
    cov[..., 2, 2] = np.sum(beta**2, axis=-1) + noise_var
    return cov


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a stack of symmetric positive semi-definite matrices (eigh; the
    tiny negative eigenvalues of rounding are clipped to zero)."""
    values, vectors = np.linalg.eigh(matrix)
    root = np.sqrt(np.clip(values, 0.0, None))
    return (vectors * root[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def kl_divergence(theta, scale, noise_std) -> np.ndarray:
    """``KL(p_s || p_t)`` between the joint laws of ``(x, y)`` for the source task and the
    target ``beta_t = scale * (cos theta, sin theta)``: ``E_x[((beta_s - beta_t) . x)^2] /
    (2 sigma^2)`` (chain rule; the conditional laws are Gaussians of equal variance).

    Exact for the linear-Gaussian tasks at any ``d``; needs ``noise_std > 0``.
    """
    theta, scale = _theta(theta), _scale(scale)
    sigma = _array("noise_std", noise_std, lower=0.0, lower_open=True)
    source, target = _teachers(theta, scale)
    difference = source - target
    cov_x = np.eye(2)  # x ~ N(0, I): the second moment of (beta_s - beta_t) . x
    second_moment = np.einsum("...i,ij,...j->...", difference, cov_x, difference)
    return second_moment / (2.0 * sigma**2)


def w2_squared(theta, scale, noise_std) -> np.ndarray:
    """Squared Wasserstein-2 distance between the centred joint Gaussians of ``(x, y)``
    under the source task and the target ``beta_t = scale * (cos theta, sin theta)``
    (Bures formula, Dowson & Landau 1982), for ``noise_std >= 0``."""
    theta, scale = _theta(theta), _scale(scale)
    sigma = _array("noise_std", noise_std, lower=0.0, lower_open=False)
    source, target = _teachers(theta, scale)
    source, target, var = np.broadcast_arrays(source, target, (sigma**2)[..., None])
    cov_s = _joint_covariance(source, var[..., 0])
    cov_t = _joint_covariance(target, var[..., 0])
    root_s = _psd_sqrt(cov_s)
    middle = root_s @ cov_t @ root_s
    middle = (middle + np.swapaxes(middle, -1, -2)) / 2  # symmetric up to rounding
    fidelity = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)), axis=-1)
    value = np.trace(cov_s, axis1=-2, axis2=-1) + np.trace(cov_t, axis1=-2, axis2=-1) - 2.0 * fidelity
    return np.clip(value, 0.0, None)  # rounding can leave -1e-16 at equal tasks


def bl_lower_bound(theta, noise_std) -> np.ndarray:
    """Lower bound on Dudley's bounded-Lipschitz distance between the source and target
    joint laws, unit teachers at angle ``theta``: the registry's ``metrics.bl_lower``
    (the expectation gap of the admissible test function ``cos(omega e.z)/(1 + omega)``)
    maximised over the frequency ``omega > 0`` and direction angle ``phi in [0, pi/2]``.

    The maximum is found on a grid (``log omega`` in ``[-3, 3]``, 121 points; ``phi``,
    91 points) refined by bounded L-BFGS-B from the best grid point; the result is a
    valid lower bound whatever the optimiser's accuracy (it is the value at a point).
    The distance itself is at most 2, and at most ``W1 <= W2``.
    """
    from scipy import optimize

    theta = _theta(theta)
    sigma = _array("noise_std", noise_std, lower=0.0, lower_open=False)
    theta, sigma = np.broadcast_arrays(theta, sigma)
    bound = ff.get("metrics.bl_lower").numpy
    log_omega = np.linspace(-3.0, 3.0, 121)[:, None]
    phi = np.linspace(0.0, np.pi / 2, 91)[None, :]
    out = np.empty(theta.shape)
    for idx in np.ndindex(theta.shape):
        t, s = float(theta[idx]), float(sigma[idx])
        values = bound(t, s, np.exp(log_omega), phi)
        i, j = np.unravel_index(np.argmax(values), values.shape)

        def negative(v, t=t, s=s):
            return -float(bound(t, s, np.exp(v[0]), v[1]))

        best = optimize.minimize(negative, [log_omega[i, 0], phi[0, j]], method="L-BFGS-B",
                                 bounds=[(-6.0, 6.0), (0.0, np.pi / 2)])
        out[idx] = max(float(values[i, j]), -float(best.fun))
    return out


def transferability(gamma, theta, scale, noise_std, lam=0.0) -> np.ndarray:
    """``T = R_sc - R_lt`` for the target ``beta_t = scale * unit(theta)``:
    ``scale^2 * lt.transferability(gamma, theta, noise_std / scale, lam)`` (both
    estimators are linear in the labels; see the module docstring).  Proportional limit,
    min-norm scratch, ridge readout on the pretrained feature."""
    scale = _scale(scale)
    sigma = _array("noise_std", noise_std, lower=0.0, lower_open=False)
    gamma, theta, scale, sigma, lam = np.broadcast_arrays(
        np.asarray(gamma, dtype=float), _theta(theta), scale, sigma, np.asarray(lam, dtype=float)
    )
    value = ff.get("lt.transferability").evaluate(gamma=gamma, theta=theta, sigma=sigma / scale, lam=lam)
    return scale**2 * np.asarray(value, dtype=float)


def lt_risk(theta, scale, lam=0.0) -> np.ndarray:
    """Linear-transfer risk for the target ``scale * unit(theta)``: ``scale^2 *
    lt.risk(theta, lam)`` (proportional limit; independent of ``gamma`` and noise)."""
    scale = _scale(scale)
    theta, scale, lam = np.broadcast_arrays(_theta(theta), scale, np.asarray(lam, dtype=float))
    return scale**2 * np.asarray(ff.get("lt.risk").evaluate(theta=theta, lam=lam), dtype=float)


# --- grids -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DistanceGrid:
    """Tasks (flattened) with their distances from the source and their transferability.

    ``w2`` is the squared distance W2^2.
    """

    gamma: np.ndarray
    theta: np.ndarray
    scale: np.ndarray
    kl: np.ndarray
    w2: np.ndarray
    transfer: np.ndarray
    noise_std: float
    lam: float


def _grid(gamma, theta, scale, noise_std: float, lam: float) -> DistanceGrid:
    gamma, theta, scale = (np.ravel(a) for a in np.broadcast_arrays(gamma, theta, scale))
    return DistanceGrid(
        gamma=gamma,
        theta=theta,
        scale=scale,
        kl=kl_divergence(theta, scale, noise_std),
        w2=w2_squared(theta, scale, noise_std),
        transfer=transferability(gamma, theta, scale, noise_std, lam),
        noise_std=float(noise_std),
        lam=float(lam),
    )


def theta_gamma_grid(noise_std: float = 0.2, lam: float = 0.0, thetas=PAPER_THETAS, gammas=PAPER_GAMMAS) -> DistanceGrid:
    """Unit target teachers over the ``(theta, gamma)`` product (default: the paper's grid,
    without ``gamma = 1``).  ``gamma = 1`` with ``noise_std > 0`` is refused: T is infinite."""
    gammas = _array("gamma", gammas, lower=0.0, lower_open=True)
    if noise_std > 0 and np.any(gammas == 1.0):
        raise ValueError("parameter gamma must differ from 1 when noise_std > 0 (T = +oo on the scratch peak)")
    th, ga = np.meshgrid(_theta(thetas), gammas)
    return _grid(ga, th, 1.0, noise_std, lam)


def scale_angle_grid(gamma: float = 0.5, noise_std: float = 0.2, lam: float = 0.0, thetas=PAPER_THETAS,
                     scales=np.linspace(0.5, 2.0, 16)) -> DistanceGrid:
    """Targets ``scale * unit(theta)`` over the ``(theta, scale)`` product at one ``gamma``
    (the same sample size for every task)."""
    th, sc = np.meshgrid(_theta(thetas), _scale(scales))
    return _grid(float(gamma), th, sc, noise_std, lam)


def counterexample_family(gamma: float = 0.5, noise_std: float = 0.2, scales=np.linspace(1.0, 3.0, 41)) -> DistanceGrid:
    """``beta_t = a beta_s`` (``theta = 0``, ``lam = 0``): inside the pretrained feature span,
    so ``R_lt = 0`` for every ``a``, while KL and W2 grow without bound in ``a``."""
    return _grid(float(gamma), 0.0, _scale(scales), noise_std, 0.0)


# --- rank correlations -----------------------------------------------------------------
@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho and Kendall's tau-b (with two-sided p-values) between a distance and T.

    Were the distance to predict transfer, both would be near -1 (farther, worse)."""

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    n_tasks: int


def rank_correlations(distance, transfer) -> RankCorrelation:
    """Rank correlations between ``distance`` and ``transfer`` (same-length 1-D arrays of
    finite values, at least 3, neither constant), by ``scipy.stats``."""
    x, y = np.ravel(np.asarray(distance, dtype=float)), np.ravel(np.asarray(transfer, dtype=float))
    if x.size != y.size:
        raise ValueError(f"parameter transfer must have the length of distance ({x.size}), got {y.size}")
    if x.size < 3:
        raise ValueError(f"parameter distance needs at least 3 tasks (got {x.size})")
    for name, arr in (("distance", x), ("transfer", y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {name} must be finite everywhere")
        if np.all(arr == arr[0]):
            raise ValueError(f"parameter {name} must not be constant (no ranks to correlate)")
    rho = stats.spearmanr(x, y)
    tau = stats.kendalltau(x, y)
    return RankCorrelation(float(rho.statistic), float(rho.pvalue), float(tau.statistic), float(tau.pvalue), x.size)


def correlation_table(noise_std: float = 0.2, lam: float = 0.0, gamma: float = 0.5) -> list[tuple[str, RankCorrelation, RankCorrelation]]:
    """Rows ``(description, KL vs T, W2 vs T)`` over: the ``(theta, gamma)`` grid of unit
    teachers; one ``gamma`` of it (where the distances do order the tasks, rho = -1); the
    ``(theta, a)`` grid at one ``gamma``; the counterexample family ``a beta_s``."""
    rows = []
    full = theta_gamma_grid(noise_std, lam)
    rows.append((f"unit teachers, (theta, gamma) paper grid, {full.kl.size} tasks", full))
    one = theta_gamma_grid(noise_std, lam, gammas=[gamma])
    rows.append((f"unit teachers, theta only (gamma = {gamma:g})", one))
    scaled = scale_angle_grid(gamma, noise_std, lam)
    rows.append((f"a * unit(theta), a in [0.5, 2], gamma = {gamma:g}", scaled))
    family = counterexample_family(gamma, noise_std)
    rows.append((f"counterexample a beta_s, a in [1, 3], gamma = {gamma:g}", family))
    return [(label, rank_correlations(g.kl, g.transfer), rank_correlations(g.w2, g.transfer)) for label, g in rows]


# --- an explicit pair -------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """A target task ``beta_t = scale * unit(theta)`` learned from ``n = gamma d`` samples."""

    gamma: float
    theta: float
    scale: float
    kl: float
    w2: float
    transfer: float


@dataclass(frozen=True)
class TaskPair:
    """``nearer`` is closer to the source in both KL and W2 yet transfers worse."""

    nearer: Task
    farther: Task
    noise_std: float
    lam: float


def _task(gamma: float, theta: float, scale: float, noise_std: float, lam: float) -> Task:
    return Task(
        gamma=float(gamma),
        theta=float(theta),
        scale=float(scale),
        kl=float(kl_divergence(theta, scale, noise_std)),
        w2=float(w2_squared(theta, scale, noise_std)),
        transfer=float(transferability(gamma, theta, scale, noise_std, lam)),
    )


def nearer_but_worse_pair(gamma: float = 0.5, noise_std: float = 0.2, theta: float = np.pi / 6,
                          scale: float = 2.0) -> TaskPair:
    """Two targets at the same ``gamma`` and noise, linear transfer without ridge: a unit
    teacher at angle ``theta`` (near the source) and the in-span teacher ``scale * beta_s``
    (far from it).  The second is farther in KL and W2 but transfers better: its readout
    refit is exact (``R_lt = 0``) while the first pays ``sin^2 theta``.

    Raises ``ValueError`` if the chosen values do not give such a pair (for example
    ``theta`` so large that the unit teacher is the farther one).
    """
    _array("gamma", gamma, lower=0.0, lower_open=True)
    _array("noise_std", noise_std, lower=0.0, lower_open=True)
    near = _task(gamma, theta, 1.0, noise_std, 0.0)
    far = _task(gamma, 0.0, scale, noise_std, 0.0)
    if not (near.kl < far.kl and near.w2 < far.w2 and near.transfer < far.transfer):
        raise ValueError(
            f"parameters theta = {theta:g}, scale = {scale:g} at gamma = {gamma:g}, noise_std = {noise_std:g} "
            "do not give a nearer-but-worse pair"
        )
    return TaskPair(near, far, float(noise_std), 0.0)


# --- ReLU teachers ------------------------------------------------------------------------
@dataclass(frozen=True)
class ReluTargets:
    """Exact distances from a ReLU source task to ReLU target tasks (one entry per target).

    ``kl``: KL of the joint laws; ``w2_lower`` / ``w2_upper``: bounds on their W2^2;
    ``residual``: ``|P_perp f_t|^2`` outside the span of the source teacher's neurons
    (the large-``n`` linear-transfer risk above its estimation part); ``target_norm``:
    ``|f_t|^2``.
    """

    label: tuple[str, ...]
    kl: np.ndarray
    w2_lower: np.ndarray
    w2_upper: np.ndarray
    residual: np.ndarray
    target_norm: np.ndarray
    noise_std: float


def _relu_tasks(dim: int, width: int, replaced: float, seed: int) -> tuple[tuple, tuple]:
    """``(f, f with a fraction replaced of its neurons replaced)`` as ``(weights,
    readout)`` arrays, from :func:`featfate_sym.simulation.relu.make_relu_tasks` (unit
    neurons uniform on the sphere, readout ``1/sqrt(width)``; its ``replace`` variant)."""
    from featfate_sym.simulation.relu import make_relu_tasks

    tasks = make_relu_tasks(dim, width, replaced, seed=seed, replace=True)
    return tuple(
        (teacher.weights.cpu().numpy(), teacher.readout.cpu().numpy()) for teacher in (tasks.target, tasks.source)
    )


def _relu_distances(source, targets, noise_std: float, labels) -> ReluTargets:
    from featfate_sym.studies.relu_overlap import feature_overlap, relu_gram, target_norm

    mean = ff.get("relu.mean").numpy
    ws, a_s = source
    var = noise_std**2
    kl, lower, upper, residual, norms = [], [], [], [], []
    m_s = float(a_s @ mean(np.linalg.norm(ws, axis=1)))
    f2_s = target_norm(ws, a_s)
    for wt, a_t in targets:
        overlap = feature_overlap(ws, wt, a_t)
        f2_t = overlap.target_norm
        cross = float(a_s @ relu_gram(ws, wt) @ a_t)
        diff = max(f2_s + f2_t - 2 * cross, 0.0)  # E (f_s - f_t)^2
        m_t = float(a_t @ mean(np.linalg.norm(wt, axis=1)))
        sd_s, sd_t = np.sqrt(f2_s - m_s**2 + var), np.sqrt(f2_t - m_t**2 + var)
        kl.append(diff / (2 * var))
        upper.append(diff)
        lower.append((m_s - m_t) ** 2 + (sd_s - sd_t) ** 2)
        residual.append(max(overlap.residual, 0.0))
        norms.append(f2_t)
    arrays = (np.array(v) for v in (kl, lower, upper, residual, norms))
    return ReluTargets(tuple(labels), *arrays, float(noise_std))


def relu_span_family(dim: int = 50, teacher_width: int = 20, noise_std: float = 0.2,
                     scales=np.linspace(1.0, 3.0, 9), seed: int = 0) -> ReluTargets:
    """ReLU targets ``f_t = a f_s`` inside the span of the source's neurons: the
    linear-transfer residual is 0 for every ``a`` while KL and W2 grow as ``(a - 1)^2``."""
    _array("noise_std", noise_std, lower=0.0, lower_open=True)
    scales = _scale(scales).ravel()
    (ws, a_s), _ = _relu_tasks(dim, teacher_width, 0.0, seed)
    targets = [(ws, a * a_s) for a in scales]
    return _relu_distances((ws, a_s), targets, noise_std, [f"{a:g} f_s" for a in scales])


def relu_nearer_but_worse(dim: int = 50, teacher_width: int = 20, noise_std: float = 0.2,
                          replaced: float = 0.25, scale: float = 2.0, seed: int = 0) -> ReluTargets:
    """Two ReLU targets of one source: ``f_s`` with a fraction ``replaced`` of its neurons
    replaced by fresh ones (near), and ``scale f_s`` (far).  The near one is closer in KL
    and in W2 (its upper bound below the far one's lower bound) yet lies partly outside
    the span of the source's features, the far one not at all.

    Raises ``ValueError`` if the chosen values do not give such a pair.
    """
    _array("noise_std", noise_std, lower=0.0, lower_open=True)
    if not 0.0 < replaced <= 1.0:
        raise ValueError(f"parameter replaced must be in (0, 1] (got {replaced:g})")
    (ws, a_s), near = _relu_tasks(dim, teacher_width, replaced, seed)
    count = int(round(replaced * teacher_width))
    if count == 0:
        raise ValueError(f"parameter replaced must replace at least one of {teacher_width} neurons (got {replaced:g})")
    out = _relu_distances((ws, a_s), [near, (ws, scale * a_s)], noise_std,
                          [f"{count} of {teacher_width} neurons replaced", f"{scale:g} f_s"])
    near_w2, far_w2 = out.w2_upper[0], out.w2_lower[1]
    if not (out.kl[0] < out.kl[1] and near_w2 < far_w2 and out.residual[0] > out.residual[1]):
        raise ValueError(
            f"parameters replaced = {replaced:g}, scale = {scale:g} at noise_std = {noise_std:g} "
            "do not give a nearer-but-worse pair"
        )
    return out

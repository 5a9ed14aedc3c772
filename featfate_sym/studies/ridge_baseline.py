"""The regularised scratch baseline: ridge regression from scratch, tuned over a grid.

Answers the double-descent objection to the transferability ``T_lt = R_sc - R_lt``
(SPEC section 2, "Regularised scratch baseline"; Tahir, Ganguli & Rotskoff,
arXiv 2410.08194, the comparison against an optimally weight-decayed scratch model).
The minimum-norm scratch risk diverges at ``gamma = n/d = 1`` when ``sigma > 0``, which
makes linear transfer look useful there even for orthogonal tasks.  Against a scratch
model whose ridge strength is tuned per ``n`` the peak, and with it the anomalous band,
disappears.

Model (SPEC section 1): ``x ~ N(0, I_d)``, unit target teacher ``beta_t``, labels
``y = X beta_t + noise_std * eps``.  Ridge from scratch minimises
``(1/n)|y - X w|^2 + lam |w|^2``, so ``w(lam) = (X^T X / n + lam I)^{-1} X^T y / n``;
its risk is ``|w - beta_t|^2``.  With ``X^T X / n = V diag(e) V^T`` (one symmetric
eigendecomposition per replicate) the risk at every ``lam`` of a grid is
``sum_i (c_i / (e_i + lam) - b_i)^2`` with ``c = V^T X^T y / n``, ``b = V^T beta_t``, so
a whole grid costs one decomposition.  The same decomposition gives the minimum-norm
interpolator ``X^+ y`` (the ``lam -> 0`` limit, the small-initialisation gradient-flow
solution of paper Thm 3.5).

Tuning: the grid value of ``lam`` with the smallest *mean* risk over the replicates
(an oracle choice per ``n``, matching the closed form's ``lam* = sigma^2 d / n``, which
is the minimiser of the expected risk).  All grid points are evaluated on the same data,
so the differences between neighbouring ``lam`` are strongly correlated and the
selection bias of the minimum is small next to the replicate standard error.

Linear transfer on the same data (paper Thm 3.7): the pretrained network holds the
single feature ``z = beta_s . x`` (SPEC section 1, rank-one pretrained features);
the readout refits one coefficient by least squares, ``a = z^T y / z^T z``, and the
end-to-end vector is ``a beta_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["RidgeBaseline", "default_lam_grid", "simulate_ridge_baseline"]


@dataclass(frozen=True)
class RidgeBaseline:
    """Per-replicate risks of ridge from scratch and of linear transfer.

    ``lams``: the grid ``(K,)``; ``risks``: ``(R, K)`` ridge risks ``|w(lam) - beta_t|^2``;
    ``best_index`` / ``best_lam``: the grid point of smallest mean risk;
    ``best_risks``: ``(R,)`` the column at ``best_index``; ``min_norm_risks``: ``(R,)``
    risk of the minimum-norm interpolator; ``lt_risks``: ``(R,)`` linear-transfer risk.
    """

    lams: np.ndarray
    risks: np.ndarray
    min_norm_risks: np.ndarray
    lt_risks: np.ndarray
    n_samples: int
    dim: int

    @property
    def best_index(self) -> int:
        """Grid point of the smallest mean ridge risk over the replicates."""
        return int(np.argmin(self.risks.mean(axis=0)))

    @property
    def best_lam(self) -> float:
        return float(self.lams[self.best_index])

    @property
    def best_risks(self) -> np.ndarray:
        """``(R,)`` ridge risks at ``best_lam``."""
        return self.risks[:, self.best_index]

    @property
    def transferability_tuned(self) -> np.ndarray:
        """``T_lt^tuned = R_ridge_opt - R_lt`` per replicate."""
        return self.best_risks - self.lt_risks

    @property
    def transferability_min_norm(self) -> np.ndarray:
        """``T_lt = R_sc - R_lt`` against the minimum-norm scratch model, per replicate."""
        return self.min_norm_risks - self.lt_risks

    def dataset(self):
        """The labelled form (``xarray.Dataset``, dimensions ``replicate`` and ``lam``), with
        the variable names of the deep-linear simulations: ``risk_sc`` (min-norm),
        ``risk_lt``, ``T_lt``; and ``risk_ridge`` over the grid, ``risk_ridge_best`` and
        ``T_lt_tuned`` at the grid point of smallest mean risk (attribute ``best_lam``)."""
        import xarray as xr

        per_replicate = ("replicate",)
        return xr.Dataset(
            {
                "risk_ridge": (("replicate", "lam"), self.risks),
                "risk_sc": (per_replicate, self.min_norm_risks),
                "risk_lt": (per_replicate, self.lt_risks),
                "T_lt": (per_replicate, self.transferability_min_norm),
                "risk_ridge_best": (per_replicate, self.best_risks),
                "T_lt_tuned": (per_replicate, self.transferability_tuned),
            },
            coords={"lam": self.lams, "replicate": np.arange(self.risks.shape[0])},
            attrs={"n": np.int32(self.n_samples), "d": np.int32(self.dim), "best_lam": self.best_lam},
        )


def default_lam_grid(size: int = 81, low: float = 1e-3, high: float = 10.0) -> np.ndarray:
    """Log-spaced ridge grid; 81 points over four decades is a ratio of about 1.12."""
    if size < 2:
        raise ValueError(f"size must be an integer >= 2 (got {size})")
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high (got low={low}, high={high})")
    return np.geomspace(low, high, size)


def simulate_ridge_baseline(
    dim: int,
    gamma: float,
    noise_std: float,
    *,
    theta: float,
    lams: np.ndarray | None = None,
    replicates: int = 100,
    seed: int | np.random.Generator = 0,
) -> RidgeBaseline:
    """Seeded simulation of ridge from scratch over a ``lam`` grid, and linear transfer.

    ``n = round(gamma * dim)`` Gaussian samples per replicate; the teachers are unit
    vectors at angle ``theta`` (``beta_s`` uniform on the sphere, ``beta_t = cos(theta)
    beta_s + sin(theta) nu``, ``nu`` orthogonal to ``beta_s``).  Returns per-replicate
    risks; means and standard errors are the caller's.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (got {dim!r})")
    if not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number > 0 (got {gamma})")
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be a finite number >= 0 (got {noise_std})")
    if not (0 <= theta <= math.pi):
        raise ValueError(f"theta must be in [0, pi] (got {theta})")
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 2:
        raise ValueError(f"replicates must be an integer >= 2 (got {replicates!r})")
    lams = default_lam_grid() if lams is None else np.asarray(lams, dtype=np.float64).ravel()
    if lams.size == 0 or not np.all(np.isfinite(lams)) or not np.all(lams > 0):
        raise ValueError("lams must be a non-empty array of finite numbers > 0")
    n = max(1, int(round(gamma * dim)))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    source = rng.standard_normal((replicates, dim))
    source /= np.linalg.norm(source, axis=1, keepdims=True)
    nu = rng.standard_normal((replicates, dim))
    nu -= np.sum(nu * source, axis=1, keepdims=True) * source
    nu /= np.linalg.norm(nu, axis=1, keepdims=True)
    target = math.cos(theta) * source + math.sin(theta) * nu

    design = rng.standard_normal((replicates, n, dim))
    labels = np.einsum("rnd,rd->rn", design, target) + noise_std * rng.standard_normal((replicates, n))

    sxx = design.transpose(0, 2, 1) @ design / n
    sxy = np.einsum("rnd,rn->rd", design, labels) / n
    evals, evecs = np.linalg.eigh(sxx)
    c = np.einsum("rdk,rd->rk", evecs, sxy)
    b = np.einsum("rdk,rd->rk", evecs, target)
    # risk(lam) = sum_i (c_i / (e_i + lam) - b_i)^2; eigenvalues are >= 0 up to rounding,
    # and lam > 0 keeps the denominators positive.
    e = np.clip(evals, 0.0, None)
    resid = c[:, :, None] / (e[:, :, None] + lams[None, None, :]) - b[:, :, None]
    risks = np.sum(resid * resid, axis=1)

    # Minimum-norm interpolator: eigenvalues below the rounding level of the largest are
    # zero (numpy.linalg.matrix_rank's rule); there w has no component, so the error is b_i.
    cutoff = e[:, -1:] * max(n, dim) * np.finfo(np.float64).eps
    keep = e > cutoff
    coeff = np.where(keep, c / np.where(keep, e, 1.0), 0.0)
    min_norm = np.sum((coeff - b) ** 2, axis=1)

    z = np.einsum("rnd,rd->rn", design, source)
    a = np.sum(z * labels, axis=1) / np.sum(z * z, axis=1)
    lt_err = a[:, None] * source - target
    lt = np.sum(lt_err * lt_err, axis=1)

    return RidgeBaseline(
        lams=lams,
        risks=risks,
        min_norm_risks=min_norm,
        lt_risks=lt,
        n_samples=n,
        dim=dim,
    )


#: the table's rows: ``n/d`` values and the named angles of ``numerics/ridge_baseline_table.py``
TABLE_GAMMAS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TABLE_THETAS = (("pi/4", math.pi / 4), ("pi/2", math.pi / 2))


@dataclass(frozen=True)
class RidgeTableRow:
    """One (gamma, theta) cell of the theory-vs-simulation table of the tuned baseline.

    ``optimal_risk``: the closed form ``scratch.risk_optimal_ridge``; ``best_mean`` +-
    ``best_se``: the simulated grid-tuned ridge risk, mean +- standard error over the
    replicates, at the grid value ``best_lam``; ``closed_form_lam = sigma^2 d / n``
    (``sigma^2 / gamma``); ``tuned_theory``: ``T_lt^tuned = R_ridge_opt - R_lt``
    (``lt.risk`` at lam = 0), ``tuned_mean`` +- ``tuned_se`` its simulation (readout refit
    on the same data); ``min_norm_theory``: ``lt.transferability`` against minimum-norm
    scratch."""

    gamma: float
    theta_label: str
    theta: float
    optimal_risk: float
    best_mean: float
    best_se: float
    best_lam: float
    closed_form_lam: float
    tuned_theory: float
    tuned_mean: float
    tuned_se: float
    min_norm_theory: float

    @property
    def best_z(self) -> float:
        """``(simulated - theory) / SE`` of the tuned ridge risk."""
        return (self.best_mean - self.optimal_risk) / self.best_se

    @property
    def tuned_z(self) -> float:
        """``(simulated - theory) / SE`` of ``T_lt^tuned``."""
        return (self.tuned_mean - self.tuned_theory) / self.tuned_se


def ridge_baseline_table(dim: int, replicates: int, seed: int, *, noise_std: float = 0.2, gammas=TABLE_GAMMAS,
                         thetas=TABLE_THETAS) -> list[RidgeTableRow]:
    """The rows of ``numerics/ridge_baseline_table.py``, gamma-major: for each ``gamma``
    and each ``(label, theta)`` of ``thetas``, one :func:`simulate_ridge_baseline` run of
    ``replicates`` data sets, all drawn in turn from one generator seeded by ``seed``,
    beside the registry's closed forms."""
    import featfate_sym as ff

    optimal = ff.get("scratch.risk_optimal_ridge")
    lt_risk = ff.get("lt.risk")
    lt_t = ff.get("lt.transferability")
    rng = np.random.default_rng(seed)
    sqrt_r = math.sqrt(replicates)
    rows = []
    for g in gammas:
        r_opt = float(optimal.evaluate(gamma=g, sigma=noise_std))
        for label, theta in thetas:
            res = simulate_ridge_baseline(dim, g, noise_std, theta=theta, replicates=replicates, seed=rng)
            t_sim = res.transferability_tuned
            rows.append(RidgeTableRow(
                gamma=float(g), theta_label=label, theta=float(theta), optimal_risk=r_opt,
                best_mean=float(res.best_risks.mean()), best_se=float(res.best_risks.std(ddof=1) / sqrt_r),
                best_lam=res.best_lam, closed_form_lam=noise_std**2 / g,
                tuned_theory=float(r_opt - lt_risk.evaluate(theta=theta, lam=0.0)),
                tuned_mean=float(t_sim.mean()), tuned_se=float(t_sim.std(ddof=1) / sqrt_r),
                min_norm_theory=float(lt_t.evaluate(gamma=g, theta=theta, sigma=noise_std, lam=0.0)),
            ))
    return rows

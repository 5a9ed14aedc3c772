"""The max-margin classifier of Gaussian-mixture classification: the cited proportional-limit
fixed point (``clf.scratch.error_max_margin``, ``clf.separability_threshold``) against
independent numerics and simulation, and the logistic-loss direction limit of scratch and
fine-tuning.

What is checked:

- the closed-form partial moments ``E (q - G)_+^k`` against quadrature;
- the one-root reduction against a direct maximisation of ``kappa(alpha)`` over ``alpha``
  (the cited two-equation system solved without the derived stationarity);
- the threshold against a direct maximisation of ``(1 - alpha^2)/psi_2(-alpha m)``, and its
  ``m -> 0`` limit against Cover's count ``n = 2d``;
- separability measured by the LP on both sides of the threshold;
- the simulated hard-margin SVM error against the theory (Student t, Bonferroni over the
  cells, family-wise false-alarm rate ``FAMILY_ALPHA = 1e-3``);
- logistic-loss gradient descent, scratch and fine-tuning, converging in direction to the
  same max-margin classifier (``T_ft -> 0``).

The statistical tests are at fixed seeds (the ``seed`` fixture).  Finite size: the SVM error
at ``d = 100`` differs from the limit by less than its Monte Carlo SE at these cells
(measured: ``m = 1, gamma = 1``: 0.2949 +- 0.0056 at ``d = 100``, 0.2984 +- 0.0044 at
``d = 200``, theory 0.2983), so no allowance is added; the slow test extrapolates in ``1/d``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats as sps

import featfate_sym as ff
from featfate_sym import stats
from featfate_sym.simulation import classification as est
from featfate_sym.simulation import logistic as lg

from checks import FAMILY_ALPHA

MM = "clf.scratch.error_max_margin"
THRESHOLD = "clf.separability_threshold"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _psi(k: int, q: float) -> float:
    """``E (q - G)_+^k`` by quadrature (independent of the closed form)."""
    value, _ = integrate.quad(lambda t: (q - t) ** k * sps.norm.pdf(t), -np.inf, q, epsabs=1e-14, epsrel=1e-12)
    return value


def _kappa_at(alpha: float, gamma: float, m: float) -> float:
    """Largest kappa of the cited condition at cosine alpha: root of
    gamma psi_2(kappa - alpha m) = 1 - alpha^2 (psi_2 increasing), by brentq."""
    def f(kappa):
        return gamma * _psi(2, kappa - alpha * m) - (1 - alpha**2)
    # psi_2(-12) ~ 1e-35: f < 0 below; gamma psi_2(q) >= gamma q^2 > 1 above
    return optimize.brentq(f, alpha * m - 12.0, alpha * m + 2.0 / math.sqrt(gamma) + 1.0, xtol=1e-13)


def test_partial_moments_match_quadrature():
    from featfate_sym.theory import classification as clf
    import sympy as sp

    psi1, psi2 = clf._partial_moments(clf._QMM)
    f1 = sp.lambdify(clf._QMM, psi1, "mpmath")
    f2 = sp.lambdify(clf._QMM, psi2, "mpmath")
    for q in (-4.0, -1.3, 0.0, 0.7, 3.0):
        assert float(f1(q)) == pytest.approx(_psi(1, q), rel=1e-9, abs=1e-14)
        assert float(f2(q)) == pytest.approx(_psi(2, q), rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("gamma, m", [(0.5, 1.0), (1.0, 1.0), (2.0, 2.0), (0.3, 3.0)])
def test_max_margin_error_is_the_maximum_over_alpha(gamma, m):
    # the cited system solved directly: kappa(alpha) by brentq, maximised over alpha
    res = optimize.minimize_scalar(lambda a: -_kappa_at(a, gamma, m), bounds=(1e-9, 1 - 1e-9),
                                   method="bounded", options={"xatol": 1e-10})
    alpha, kappa = res.x, -res.fun
    assert kappa > 0  # these cells are separable
    want = sps.norm.cdf(-alpha * m)
    got = ff.get(MM).evaluate(gamma=gamma, m=m)
    # the maximiser is located to ~1e-5 (a flat maximum: the error is off by O(dalpha m phi))
    assert got == pytest.approx(want, abs=1e-5)
    # and the registered kappa* is the maximal margin
    extras = ff.get(MM).derivation.extras
    assert extras["kappa"] is not None


def test_max_margin_beats_least_squares_and_is_nan_beyond_the_threshold():
    mm, ls = ff.get(MM), ff.get("clf.scratch.error")
    for gamma in (0.5, 0.9, 1.1, 1.5):
        # the max-margin classifier has no interpolation peak and is better than min-norm LS
        # around it
        assert mm.evaluate(gamma=gamma, m=1.0) < ls.evaluate(gamma=gamma, m=1.0) - 0.01
    # far below, every point is a support vector and the SVM is the min-norm interpolator
    # (support-vector proliferation: Muthukumar et al., JMLR 2021; Hsu, Muthukumar & Xu,
    # AISTATS 2021); far above, least squares tends to the Bayes error and beats it
    assert mm.evaluate(gamma=0.02, m=1.0) == pytest.approx(ls.evaluate(gamma=0.02, m=1.0), abs=1e-6)
    assert mm.evaluate(gamma=3.0, m=1.0) > ls.evaluate(gamma=3.0, m=1.0) + 0.01
    gstar = ff.get(THRESHOLD).evaluate(m=1.0)
    assert math.isnan(mm.evaluate(gamma=1.01 * gstar, m=1.0))
    assert math.isfinite(mm.evaluate(gamma=0.99 * gstar, m=1.0))
    # error decreasing in gamma on the separable side, 1/2 as gamma -> 0
    values = mm.evaluate(gamma=np.array([1e-6, 0.1, 0.5, 1.0, 2.0, 3.0]), m=1.0)
    assert np.all(np.diff(values) < 0) and values[0] == pytest.approx(0.5, abs=1e-3)


def test_threshold_is_the_maximum_of_the_ratio_and_cover_at_small_m():
    th = ff.get(THRESHOLD)
    for m in (0.3, 1.0, 2.0):
        res = optimize.minimize_scalar(lambda a: -(1 - a**2) / _psi(2, -a * m), bounds=(0.0, 1.0),
                                       method="bounded", options={"xatol": 1e-10})
        assert th.evaluate(m=m) == pytest.approx(-res.fun, rel=1e-8)
    # m -> 0: Cover's function-counting threshold n = 2 d
    assert th.evaluate(m=1e-5) == pytest.approx(2.0, abs=1e-8)
    # and kappa* = 0 there: the max-margin error is defined just below and not just above
    assert math.isfinite(ff.get(MM).evaluate(gamma=0.999 * th.evaluate(m=2.0), m=2.0))


def test_separability_changes_across_the_threshold(seed):
    # LP separability of d = 60 mixtures at 0.7 and 1.4 gamma*(m = 1); the transition has
    # width O(d^-1/2): measured fractions 1.00 and 0.05 at d = 40 with factors 0.75 and 1.3.
    # Binomial: with true fractions >= 0.95 (<= 0.05), P(fewer than 20 of 24) < 1e-3.
    dim, reps, m = 60, 24, 1.0
    gstar = ff.get(THRESHOLD).evaluate(m=m)
    rng = np.random.default_rng(seed)
    mu = est.class_means(dim, m, 0.0)[1]
    fractions = []
    for factor in (0.7, 1.4):
        n = int(round(factor * gstar * dim))
        fractions.append(np.mean([lg.is_separable(*est.sample_mixture(n, mu, rng)) for _ in range(reps)]))
    assert fractions[0] >= 20 / 24 and fractions[1] <= 4 / 24, fractions


_CELLS = [(1.0, 1.0), (0.5, 2.0), (2.0, 1.0)]


def _svm_vs_theory(dim, reps, seed, cells=_CELLS):
    rows = []
    for i, (gamma, m) in enumerate(cells):
        n = int(round(gamma * dim))
        sim = lg.simulate_max_margin_errors(n, dim, m, reps, seed + 17 * i)
        assert sim["separable"].all()
        rows.append((gamma, m, ff.get(MM).evaluate(gamma=n / dim, m=m), stats.mean_se(sim["error"])))
    return rows


def test_svm_error_matches_the_max_margin_theory(seed):
    rows = _svm_vs_theory(dim=100, reps=12, seed=seed)
    for gamma, m, theory, measured in rows:
        cmp = stats.compare_mean(theory, measured, alpha=FAMILY_ALPHA, comparisons=len(rows))
        assert cmp.passed, (gamma, m, str(cmp))
        # power: near the interpolation peak the min-norm least-squares error lies outside
        # the acceptance interval (at gamma = 2, m = 1 the two classifiers' errors cross)
        if gamma <= 1:
            ls = ff.get("clf.scratch.error").evaluate(gamma=gamma, m=m)
            assert abs(ls - measured.mean) > cmp.half_width, (gamma, m, ls, str(cmp))


@pytest.mark.slow
def test_svm_error_extrapolated_in_one_over_d(seed):
    # absolute statement: the 1/d-extrapolated SVM error equals the theory (weighted least
    # squares over d = 50, 100, 200; z of the intercept, Bonferroni over the cells)
    from featfate_sym.simulation.classification import extrapolate_inverse_dim

    dims = (50, 100, 200)
    per_dim = {d: _svm_vs_theory(dim=d, reps=40, seed=seed + d) for d in dims}
    for c, (gamma, m) in enumerate(_CELLS):
        theory = ff.get(MM).evaluate(gamma=gamma, m=m)
        fit = extrapolate_inverse_dim(dims, [per_dim[d][c][3] for d in dims])
        crit = stats.t_critical(fit.df, FAMILY_ALPHA, len(_CELLS))
        assert abs(fit.mean - theory) <= crit * fit.se, (gamma, m, fit, theory)


def test_logistic_scratch_and_fine_tuning_share_the_max_margin_limit(seed):
    # separable data (gamma = 1/2 < gamma*(m = 2)): logistic GD from small initialisation and
    # from the pretrained network (theta = 3 pi/4: a bad start) both converge in direction to
    # the SVM solution (Soudry et al. 2018; Ji & Telgarsky 2019), so |T_ft| shrinks as
    # training goes on and both errors approach the SVM error.
    dim, n, reps = 30, 15, 3
    run = lg.run_protocols("logistic", n, dim, 3 * math.pi / 4, 2.0, reps, seed,
                           protocols=("scratch", "fine_tuning"), max_steps=20_000, record_points=40)
    assert run.separable.all()
    ft, sc = run.transfer["fine_tuning"], run.scratch
    # at the stop (loss ~1e-20) scratch is at cos 0.995-0.997 and fine-tuning, which starts
    # anti-aligned (error 0.92), at 0.95-0.98: the approach is logarithmic in the loss
    assert ft.cosine[-1].min() > 0.9 and sc.cosine[-1].min() > 0.99, (ft.cosine[-1], sc.cosine[-1])
    # the fine-tuned direction moves towards the SVM: its angle shrinks from the loss 1e-2 on
    late = ft.log_loss < math.log(1e-2)
    for r in range(reps):
        c = ft.cosine[late[:, r], r]
        assert 1 - c[-1] < 0.5 * (1 - c[0])
    # |T_ft| at the end is small beside the SVM-to-start gap (|err_ft(0) - err_svm|)
    t_end = np.abs(sc.final_error - ft.final_error)
    start_gap = np.abs(ft.error[0] - run.max_margin_error)
    assert np.all(t_end < 0.25 * start_gap + 0.01), (t_end, start_gap)
    # and both end errors are within the direction tolerance of the SVM's
    bound = 2.0 / math.sqrt(2 * math.pi) * np.sqrt(2 * (1 - np.minimum(ft.cosine[-1], sc.cosine[-1])))
    assert np.all(np.abs(ft.final_error - run.max_margin_error) <= bound + 1e-9)
    assert np.all(np.abs(sc.final_error - run.max_margin_error) <= bound + 1e-9)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="parameter m must be"):
        ff.get(MM).evaluate(gamma=0.5, m=7.0)
    with pytest.raises(ValueError, match="parameter gamma must be"):
        ff.get(MM).evaluate(gamma=0.0, m=1.0)
    with pytest.raises(ValueError, match="flip"):
        lg.simulate_max_margin_errors(10, 10, 1.0, 2, 0, flip=0.5)
    with pytest.raises(ValueError, match="n_samples"):
        lg.simulate_max_margin_errors(0, 10, 1.0, 2, 0)

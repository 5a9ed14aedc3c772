"""The time course of transfer (family ``time_course``): derived curves against independent
mpmath integrals of the Marchenko-Pastur density and their small-t series, their t -> 0 and
t -> oo limits, L = 1 transferability along gradient descent against simulation (a stated
Student-t test), and the sign of the finite-step fine-tuning map against the exact reduced
gradient-descent map."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from featfate_sym import learning_curves, registry, stats, transfer_curves
from featfate_sym.studies import finite_eta_phase, transfer_time

torch.set_num_threads(1)

KEYS = ("ft.risk_time", "ft.transferability_time", "lt.risk_time", "lt.transferability_time")


# -- independent references ------------------------------------------------------------
def _mp_expectation(f, gamma, dps=30):
    """``E f(x)`` under the MP law of ``Sxx = X^T X/n`` (``psi = d/n = 1/gamma``), written from
    the textbook density ``sqrt((x_+ - x)(x - x_-))/(2 pi psi x)`` and the atom ``(1 - gamma)_+``
    at zero (the value f(0) there); an mpmath integral in x, independent of the registered
    substitution in phi."""
    with mpmath.workdps(dps):
        g = mpmath.mpf(str(gamma))
        psi = 1 / g
        lo, hi = (1 - mpmath.sqrt(psi)) ** 2, (1 + mpmath.sqrt(psi)) ** 2
        density = lambda x: mpmath.sqrt((hi - x) * (x - lo)) / (2 * mpmath.pi * psi * x)  # noqa: E731
        cont = mpmath.quad(lambda x: f(x) * density(x), [lo, (lo + hi) / 2, hi])
        atom = max(mpmath.mpf(0), 1 - g) * f(mpmath.mpf(0))
        return +(cont + atom)


def _ft_risk_reference(gamma, theta, sigma, t):
    c = 2 * (1 - mpmath.cos(mpmath.mpf(str(theta))))
    g, s, tt = (mpmath.mpf(str(v)) for v in (gamma, sigma, t))

    def h(x):
        if x == 0:
            return c  # the null space keeps beta_s
        return c * mpmath.e ** (-4 * x * tt) + s**2 * (-mpmath.expm1(-2 * x * tt)) ** 2 / (g * x)

    return _mp_expectation(h, gamma)


POINTS = [(0.3, 0.4, 0.5, 0.05), (0.5, math.pi / 4, 0.0, 1.0), (0.8, 1.2, 1.0, 3.0), (2.0, 0.7, 0.5, 0.5),
          (1.5, math.pi / 2, 0.2, 10.0)]


# -- registry --------------------------------------------------------------------------
def test_entries_registered_in_their_family():
    for key in KEYS:
        result = registry.get(key)
        assert result.family == "time_course"
        assert result.title and result.regime and result.reference and "Conventions" in result.notes
    assert [p.name for p in registry.get("ft.risk_time").params] == ["gamma", "theta", "sigma", "t"]
    assert not registry.get("ft.risk_time").evaluable and registry.get("lt.risk_time").evaluable


def test_fine_tuning_integrand_from_dsolve():
    """The derived per-mode integrand equals the hand-written one (independent expectation)."""
    import sympy as sp

    from featfate_sym.symbols import gamma, sigma, t, theta

    ex = registry.get("ft.risk_time").extras
    x = next(s for s in ex["variance"].free_symbols if s.name == "x")
    hand = 2 * (1 - sp.cos(theta)) * sp.exp(-4 * x * t) + sigma**2 * (1 - sp.exp(-2 * x * t)) ** 2 / (gamma * x)
    assert sp.simplify(ex["integrand"] - hand) == 0
    assert sp.simplify(ex["at_zero"] - 2 * (1 - sp.cos(theta))) == 0
    factor = registry.get("ft.transferability_time").extras["factor"]
    assert sp.simplify(factor - (2 * sp.cos(theta) - 1)) == 0


# -- float64 against independent mpmath ----------------------------------------------------
@pytest.mark.parametrize("gamma, theta, sigma, t", POINTS)
def test_ft_risk_time_against_independent_integral(gamma, theta, sigma, t):
    want = _ft_risk_reference(gamma, theta, sigma, t)
    got = transfer_curves.ft_risk_time(gamma, theta, sigma, t)
    assert got == pytest.approx(float(want), rel=1e-9, abs=1e-13)
    # and the registered Integral by mpmath.quad (the module's own reference)
    assert float(transfer_curves.ft_risk_time_mp(gamma, theta, sigma, t, dps=25)) == pytest.approx(float(want), rel=1e-12)


@pytest.mark.parametrize("gamma, theta, sigma, t", POINTS)
def test_ft_transferability_time_against_independent_integral(gamma, theta, sigma, t):
    tt = mpmath.mpf(str(t))
    bracket = _mp_expectation(lambda x: mpmath.e ** (-4 * x * tt), gamma)
    want = (2 * math.cos(theta) - 1) * float(bracket)
    assert transfer_curves.ft_transferability_time(gamma, theta, t) == pytest.approx(want, rel=1e-9, abs=1e-13)
    assert float(transfer_curves.ft_transferability_time_mp(gamma, theta, t, dps=25)) == pytest.approx(want, rel=1e-12,
                                                                                                       abs=1e-15)
    # the noise cancels: R_sc - R_ft from the two separately compiled risks, at this sigma
    diff = learning_curves.risk_time(gamma, sigma, t) - transfer_curves.ft_risk_time(gamma, theta, sigma, t)
    assert diff == pytest.approx(want, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("gamma", [0.4, 2.5])
def test_small_time_series(gamma):
    """``T_ft(t) = (2 cos theta - 1) E exp(-4 x t) = (2 cos theta - 1)(1 - 4 m_1 t + 8 m_2 t^2 -
    (32/3) m_3 t^3 + O(t^4))`` with the MP moments of ``Sxx`` (atom included), ``psi = 1/gamma``:
    ``m_1 = 1``, ``m_2 = 1 + psi``, ``m_3 = 1 + 3 psi + psi^2``; the remainder is below
    ``(32/3) m_4 t^4`` with ``m_4 = 1 + 6 psi + 6 psi^2 + psi^3``."""
    theta, psi = 0.5, 1 / gamma
    m2, m3, m4 = 1 + psi, 1 + 3 * psi + psi**2, 1 + 6 * psi + 6 * psi**2 + psi**3
    for t in (1e-3, 3e-3):
        series = (2 * math.cos(theta) - 1) * (1 - 4 * t + 8 * m2 * t**2 - 32 / 3 * m3 * t**3)
        got = transfer_curves.ft_transferability_time(gamma, theta, t)
        assert abs(got - series) < 32 / 3 * m4 * t**4 + 1e-13


# -- limits ------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma, theta, sigma", [(0.3, 0.4, 0.5), (0.7, 1.3, 1.0), (1.8, 0.9, 0.3)])
def test_limits(gamma, theta, sigma):
    exact = registry.get("ft.transferability_exact").evaluate(gamma=gamma, theta=theta, sigma=sigma, L=1)
    scratch_end = registry.get("scratch.risk").evaluate(gamma=gamma, sigma=sigma)
    # t = 0: the pretrained risk 2(1 - cos theta); scratch starts at 1
    assert transfer_curves.ft_risk_time(gamma, theta, sigma, 0.0) == pytest.approx(2 * (1 - math.cos(theta)), rel=1e-10)
    assert transfer_curves.ft_transferability_time(gamma, theta, 0.0) == pytest.approx(2 * math.cos(theta) - 1, rel=1e-10)
    assert transfer_curves.lt_risk_time(theta, 0.0) == pytest.approx(2 * (1 - math.cos(theta)), rel=1e-12)
    assert transfer_curves.lt_transferability_time(gamma, theta, sigma, 0.0) == pytest.approx(2 * math.cos(theta) - 1,
                                                                                             rel=1e-10)
    # t -> oo: the end points of the registry (a large finite t and t = inf)
    for t in (400.0, math.inf):
        assert transfer_curves.ft_transferability_time(gamma, theta, t) == pytest.approx(exact, abs=1e-10)
        assert transfer_curves.ft_risk_time(gamma, theta, sigma, t) == pytest.approx(scratch_end - exact, rel=1e-7)
        assert transfer_curves.lt_risk_time(theta, t) == pytest.approx(math.sin(theta) ** 2, rel=1e-12)
        want = registry.get("lt.transferability").evaluate(gamma=gamma, theta=theta, sigma=sigma, lam=0.0)
        assert transfer_curves.lt_transferability_time(gamma, theta, sigma, t) == pytest.approx(want, rel=1e-7)


def test_gradient_descent_curves_tend_to_the_flow():
    """The discrete curves at ``t = eta k`` approach the flow linearly in ``eta``."""
    gamma, theta, t = 0.5, 0.6, 1.0
    flow_ft = transfer_curves.ft_transferability_time(gamma, theta, t)
    flow_lt = transfer_curves.lt_risk_time(theta, t)
    gaps = []
    for eta in (0.02, 0.01, 0.005):
        k = int(round(t / eta))
        gaps.append((transfer_curves.ft_transferability_gd(gamma, theta, k, eta) - flow_ft,
                     transfer_curves.lt_risk_gd(theta, k, eta) - flow_lt))
    gaps = np.array(gaps)
    assert np.all(gaps[:, 0] < 0)  # descent is ahead of the flow: T_ft falls from 2cos - 1 faster
    assert np.allclose(gaps[1] / gaps[0], 0.5, atol=0.03) and np.allclose(gaps[2] / gaps[1], 0.5, atol=0.03)
    # the readout recursion: a_k = cos + (1 - cos)(1 - 2 eta)^k, written out here
    a_k = math.cos(theta) + (1 - math.cos(theta)) * (1 - 2 * 0.01) ** 100
    assert transfer_curves.lt_risk_gd(theta, 100, 0.01) == pytest.approx(
        (a_k - math.cos(theta)) ** 2 + math.sin(theta) ** 2, rel=1e-13)


def test_time_to_transfer_equals_time_to_learn_at_L1():
    """Noiseless L = 1: fine-tuning covers each fraction of its way when scratch does, every theta."""
    gamma = 0.5
    t_learn = transfer_curves.theory_time_to_fraction(lambda t: learning_curves.risk_time(gamma, 0.0, t), 0.9)
    for theta in (math.pi / 8, math.pi / 3, math.pi / 2):
        t_ft = transfer_curves.theory_time_to_fraction(lambda t: transfer_curves.ft_risk_time(gamma, theta, 0.0, t), 0.9)
        assert t_ft == pytest.approx(t_learn, rel=1e-8)
    # the sampled version on an exponential: exact crossing log(10)/rate
    times = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, 4001)])
    assert transfer_curves.time_to_fraction(times, np.exp(-2.0 * times), 0.9, end=0.0) == pytest.approx(
        math.log(10) / 2, rel=1e-5)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="gamma"):
        transfer_curves.ft_risk_time(-1.0, 0.5, 0.1, 1.0)
    with pytest.raises(ValueError, match="theta"):
        transfer_curves.ft_transferability_time(0.5, 4.0, 1.0)
    with pytest.raises(ValueError, match="t "):
        transfer_curves.lt_risk_time(0.5, -1.0)
    with pytest.raises(ValueError, match="eta"):
        transfer_curves.lt_risk_gd(0.5, 10, 1.5)
    with pytest.raises(ValueError, match="dim"):
        transfer_time.simulate_transfer_curves(0.5, 0.5, 0.1, 1, depth=1, eta=0.01, steps=10, replicates=4, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        transfer_curves.time_to_fraction([0, 1], [1, 0], 1.5)


# -- simulation ---------------------------------------------------------------------------
def _agreement(dim, replicates, times, eta, seed, alpha=0.01):
    """Rows ``(protocol, t, theory, mean, se, z, allowance, passed)`` of paired ``T(t)`` at
    ``gamma = 0.5``, ``theta = pi/4``, ``sigma = 0.5`` against the L = 1 curves of gradient descent
    at the simulated step (the flow's discretisation, which the per-mode derivation covers).

    Test: per comparison ``|mean - theory| <= t_crit SE + allowance``; ``t_crit`` two-sided
    Student-t with ``R - 1`` degrees of freedom at ``alpha`` over the family (Bonferroni over
    protocols x times).  Allowance: the finite-size bias of ``E tr f(Sxx)/d`` against the MP
    integral is O(1/d) for a real Wishart matrix (its second moment is ``1 + 1/gamma + 1/n``) and
    ``|f| <= 1`` here, so ``1/d``; for linear transfer add its finite-``n`` excess at ``t = oo``,
    ``lt.risk_finite - lt.risk`` (the one-coefficient fit's ``(sigma^2 + sin^2)/(n - 2)``, which it
    approaches from 0)."""
    gamma, theta, sigma = 0.5, math.pi / 4, 0.5
    steps = [int(round(t / eta)) for t in times]
    run = transfer_time.simulate_transfer_curves(gamma, theta, sigma, dim, depth=1, eta=eta, steps=max(steps),
                                                 replicates=replicates, seed=seed, record=[0, *steps])
    n = int(round(gamma * dim))
    lt_excess = (registry.get("lt.risk_finite").evaluate(n=n, theta=theta, sigma=sigma)
                 - registry.get("lt.risk").evaluate(theta=theta, lam=0.0))
    crit = stats.t_critical(replicates - 1, alpha, 2 * len(times))
    rows = []
    for protocol in ("fine-tuning", "linear transfer"):
        diffs = run.transferability(protocol)
        for i, k in enumerate(steps, start=1):
            if protocol == "fine-tuning":
                theory = transfer_curves.ft_transferability_gd(gamma, theta, k, eta)
                allowance = 1.0 / dim
            else:
                theory = learning_curves.risk_gd(gamma, sigma, k, eta) - transfer_curves.lt_risk_gd(theta, k, eta)
                allowance = 1.0 / dim + lt_excess
            mean = float(diffs[i].mean())
            se = float(diffs[i].std(ddof=1) / math.sqrt(replicates))
            z = (mean - theory) / se
            rows.append((protocol, k * eta, theory, mean, se, z, allowance,
                         abs(mean - theory) <= crit * se + allowance))
    return rows


def test_L1_transferability_against_simulation():
    rows = _agreement(dim=200, replicates=16, times=(0.25, 1.0, 4.0), eta=0.01, seed=2024)
    assert all(r[-1] for r in rows), rows


@pytest.mark.slow
def test_L1_transferability_against_simulation_full():
    rows = _agreement(dim=500, replicates=40, times=(0.1, 0.3, 1.0, 3.0, 10.0), eta=0.01, seed=77)
    assert all(r[-1] for r in rows), rows


def test_linear_transfer_curve_does_not_depend_on_depth():
    """Frozen balanced unit features have W_<L W_<L^T = P_s: the readout's descent moves beta
    exactly as the L = 1 one-feature model on the same data."""
    kw = dict(eta=0.02, steps=150, replicates=3, seed=5)
    one = transfer_time.simulate_transfer_curves(0.5, 0.9, 0.3, 40, depth=1, **kw)
    three = transfer_time.simulate_transfer_curves(0.5, 0.9, 0.3, 40, depth=3, **kw)
    assert np.max(np.abs(one.risks["linear transfer"] - three.risks["linear transfer"])) < 1e-10
    # scratch does depend on depth (a plateau from small initialisation)
    assert np.max(np.abs(one.risks["scratch"] - three.risks["scratch"])) > 0.05


# -- the finite-step phase map --------------------------------------------------------------
@pytest.mark.parametrize("depth, sigma", [(2, 0.0), (2, 1.0), (3, 1.0)])
def test_finite_eta_sign_agrees_with_reduced_map(depth, sigma):
    """Where the first-order law is in its domain and ``|T_gd|`` exceeds the whole first-order
    shift ``|eta T_1|`` (and 0.02), a neglected term smaller than the first-order one cannot flip
    the sign: the exact reduced GD map must have the sign of ``T_gd``."""
    gammas = np.linspace(0.15, 0.85, 4)
    thetas = np.linspace(math.pi / 12, 5 * math.pi / 12, 4)
    m = finite_eta_phase.phase_map(gammas, thetas, depth, sigma)
    compared = 0
    for eta in (0.05, 0.2):
        first = m.transferability(eta)
        reduced = finite_eta_phase.reduced_points(gammas, thetas, depth, sigma, eta)
        away = m.in_domain(eta) & (np.abs(first) > np.maximum(0.02, eta * np.abs(m.t1))) & np.isfinite(reduced)
        assert np.all(np.sign(first[away]) == np.sign(reduced[away]))
        compared += int(away.sum())
    assert compared >= 12
    # the map's slope is the registered slope (one reduced-flow solve per point)
    assert m.t1[1, 2] == pytest.approx(learning_curves.transferability_gd_slope(gammas[1], thetas[2], sigma, depth),
                                       rel=1e-12)
    # eta = 0 is ft.transferability_exact
    assert m.transferability(0.0)[2, 1] == pytest.approx(registry.get("ft.transferability_exact").evaluate(
        gamma=gammas[2], theta=thetas[1], sigma=sigma, L=depth), rel=1e-12)

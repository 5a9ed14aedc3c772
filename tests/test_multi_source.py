"""Several source tasks: linear transfer onto rank-k pretrained features (family
``multi_source``): the symbolic results against hand-written expectations and explicit
matrices, the Monte Carlo of the estimators against the exact finite-n theory, the
optimal number of source tasks, bad input and the figures.

Statistical tests.  Every Monte Carlo comparison is a two-sided Student-t test of the mean
of independent replicates against the theory value, Bonferroni-corrected over its family,
at family-wise false-alarm rate ``FAMILY_ALPHA = 1e-3`` (``checks.bonferroni_t``).  The
theory values are the *exact* finite-size expectations (``lt.k.risk_finite`` holds at every
``n > k + 1``, ``scratch.risk_finite`` at every ``n, d``), so no finite-size allowance is
needed: the only error is the sampling error measured by the SE.  The cells keep
``n - k >= 10`` and ``|n - d| >= 20``, where the risks have finite variance (their second
moments need ``n > k + 3`` and ``|n - d| > 3``), so the t statistic is close to its law.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import featfate_sym as ff
from featfate_sym import stats
from featfate_sym.simulation.multi_source import (
    feature_basis,
    linear_transfer_estimate,
    min_norm_estimate,
    simulate_risks,
    source_teachers,
)
from featfate_sym.symbols import gamma, k, n, sigma, theta
from featfate_sym.theory.multi_source import explicit_captured, largest_positive_k, optimal_k

from checks import bonferroni_t, branch

CAPTURED = ff.get("lt.k.captured")
RISK_FINITE = ff.get("lt.k.risk_finite")
RISK = ff.get("lt.k.risk")
T_FINITE = ff.get("lt.k.transferability_finite")
T_LIMIT = ff.get("lt.k.transferability")
OPTIMAL = ff.get("lt.k.optimal")


# -- symbolic --------------------------------------------------------------------------------
def test_captured_matches_explicit_gram_matrices():
    """b^T G^-1 b from the explicit k x k matrices in c = cos(theta), s = sin(theta) (built
    here, not by the module), k = 1..5, equals the symbolic-k result; and the module's own
    explicit check (in S = sin^2, C = cos^2) agrees with the closed form."""
    c, s = sp.symbols("c s", positive=True)
    S, C = sp.symbols("S C", positive=True)
    for count in range(1, 6):
        gram = sp.Matrix(count, count, lambda i, j: c**2 + (s**2 if i == j else 0))
        b = sp.Matrix([c] * count)
        # b^T adj(G) b / det(G): polynomial entries, so cancel works on two polynomials (an
        # LU solve leaves nested fractions that sp.cancel takes minutes to clear at k = 5)
        numerator = sp.expand((b.T * gram.adjugate(method="berkowitz") * b)[0, 0])
        explicit = numerator / sp.expand(gram.det(method="berkowitz"))
        symbolic = CAPTURED.expr.subs(k, count).subs({sp.cos(theta): c, sp.sin(theta): s})
        assert sp.cancel(explicit - symbolic) == 0
        assert sp.cancel(explicit_captured(count) - (C * count) / (C * count + S)) == 0


def test_captured_against_numpy_projection():
    """|P beta_t|^2 of the span of actual source-teacher vectors (NumPy least squares), at k
    up to 50: an independent route to lt.k.captured."""
    rng = np.random.default_rng(3)
    for count in (1, 2, 5, 17, 50):
        for angle in (0.3, 1.0, 1.4):
            beta_t, sources = source_teachers(count + 3, count, angle, rng)
            coef, *_ = np.linalg.lstsq(sources, beta_t, rcond=None)
            projected = sources @ coef
            assert math.isclose(projected @ projected, CAPTURED.evaluate(theta=angle, k=count), rel_tol=1e-10)


def test_one_source_task_is_the_one_feature_result():
    """k = 1 of the convergent branch equals lt.risk_finite for a symbolic n (> 2)."""
    one = branch(RISK_FINITE.expr, n > k + 1).subs(k, 1)
    assert sp.simplify(one - ff.get("lt.risk_finite").expr) == 0
    assert sp.simplify(RISK.expr.subs(k, 1) - sp.sin(theta) ** 2) == 0


def test_risk_finite_is_the_inverse_wishart_formula():
    """The SPEC form |P_perp|^2 + (|P_perp|^2 + sigma^2) k/(n - k - 1), typed here as the
    independent expectation, with |P_perp|^2 = sin^2/(sin^2 + k cos^2)."""
    residual = sp.sin(theta) ** 2 / (sp.sin(theta) ** 2 + k * sp.cos(theta) ** 2)
    expected = residual + (residual + sigma**2) * k / (n - k - 1)
    got = branch(RISK_FINITE.expr, n > k + 1)
    assert sp.simplify(got - expected) == 0
    assert sp.simplify(RISK.expr - residual) == 0
    assert RISK_FINITE.evaluate(theta=0.4, sigma=0.3, k=5, n=6) == math.inf
    assert RISK_FINITE.evaluate(theta=0.0, sigma=0.0, k=5, n=3) == 0.0


def test_risk_decreases_then_increases_in_k():
    """Bias falls with k, variance grows: the compiled risk is unimodal in k on [1, n - 2]."""
    for angle, noise, size in ((0.7, 0.5, 40), (1.2, 1.0, 100), (0.3, 0.0, 30)):
        ks = np.arange(1, size - 1, dtype=float)
        r = RISK_FINITE.numpy(angle, noise, ks, float(size))
        steps = np.sign(np.diff(r))
        assert np.all(np.diff(steps[steps != 0]) >= 0), "more than one change of direction"


def test_optimal_root_is_the_minimiser_of_the_continuous_risk():
    """lt.k.optimal against a numerical minimisation of the SPEC formula over continuous k."""
    from scipy.optimize import minimize_scalar

    def risk(kc, angle, noise, size):
        r = math.sin(angle) ** 2 / (math.sin(angle) ** 2 + kc * math.cos(angle) ** 2)
        return r + (r + noise**2) * kc / (size - kc - 1)

    for angle, noise, size in ((math.pi / 4, 0.5, 20), (math.pi / 3, 1.0, 200), (1.2, 0.1, 50), (0.2, 0.0, 31)):
        found = minimize_scalar(risk, bounds=(1e-9, size - 1 - 1e-9), args=(angle, noise, size),
                                method="bounded", options={"xatol": 1e-10})
        value = OPTIMAL.evaluate(theta=angle, sigma=noise, n=size)
        # the bounded minimiser stops within xatol of the minimiser (the minimum is smooth)
        assert abs(found.x - value) < 1e-6 * max(1.0, value), (angle, noise, size, found.x, value)
    # no interior minimiser: the risk increases with k, 0 encoded
    assert OPTIMAL.evaluate(theta=1.5, sigma=1.0, n=10) == 0.0
    assert risk(1.0, 1.5, 1.0, 10) < risk(2.0, 1.5, 1.0, 10)


def test_optimal_is_a_root_of_the_quadratic_and_scales_like_sqrt_n():
    quadratic = OPTIMAL.extras["quadratic"]
    kc = sp.Symbol("k_c", positive=True)
    point = {theta: sp.Rational(7, 10), sigma: sp.Rational(1, 2), n: 60}
    root = branch(OPTIMAL.expr, OPTIMAL.expr.args[0][1]).subs(point)
    assert abs(sp.N(quadratic.subs(point).subs(kc, root), 40)) < 1e-30
    coefficient = OPTIMAL.extras["large_n_coefficient"]
    assert sp.simplify(coefficient - sp.Abs(sp.tan(theta)) / sigma) == 0
    big = 10**12
    ratio = OPTIMAL.evaluate(theta=0.7, sigma=0.5, n=big) / math.sqrt(big)
    assert math.isclose(ratio, math.tan(0.7) / 0.5, rel_tol=1e-4)


def test_optimal_k_is_floor_or_ceil_of_the_continuous_root():
    for angle in (math.pi / 6, math.pi / 4, math.pi / 3, 1.3):
        for noise in (0.0, 0.2, 0.5, 1.0, 2.0):
            for size in (5, 12, 40, 150):
                best = optimal_k(angle, noise, size)
                root = OPTIMAL.evaluate(theta=angle, sigma=noise, n=size)
                candidates = {min(max(v, 1), size - 2) for v in (math.floor(root), math.ceil(root))}
                assert best in candidates, (angle, noise, size, best, root)
                # and the integer argmin by brute force over the SPEC formula, typed here
                ks = np.arange(1, size - 1)
                r = np.sin(angle) ** 2 / (np.sin(angle) ** 2 + ks * np.cos(angle) ** 2)
                brute = ks[np.argmin(r + (r + noise**2) * ks / (size - ks - 1))]
                assert best == brute


def test_largest_positive_k():
    angle, noise, size, dim = math.pi / 3, 0.5, 50, 200
    top = largest_positive_k(angle, noise, size, dim)
    values = T_FINITE.numpy(angle, noise, np.arange(1, size - 1, dtype=float), float(size), float(dim))
    assert values[top - 1] > 0 and np.all(values[top:] <= 0)
    # orthogonal tasks, over-determined scratch without noise: transfer never helps
    assert largest_positive_k(math.pi / 2, 0.0, 60, 20) == 0


def test_transferability_is_scratch_minus_transfer():
    scratch = ff.get("scratch.risk_finite")
    for angle, noise, count, size, dim in ((0.5, 0.3, 3, 20, 50), (1.1, 1.0, 7, 80, 30), (0.9, 0.0, 2, 40, 40)):
        expected = (scratch.evaluate(n=size, d=dim, sigma=noise)
                    - RISK_FINITE.evaluate(theta=angle, sigma=noise, k=count, n=size))
        got = T_FINITE.evaluate(theta=angle, sigma=noise, k=count, n=size, d=dim)
        assert math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-14)
    assert T_FINITE.evaluate(theta=0.5, sigma=1.0, k=2, n=30, d=30) == math.inf
    assert T_FINITE.evaluate(theta=0.5, sigma=1.0, k=9, n=10, d=40) == -math.inf
    assert math.isnan(T_FINITE.evaluate(theta=0.5, sigma=1.0, k=9, n=10, d=10))  # k >= d: outside the model
    assert math.isnan(T_FINITE.evaluate(theta=0.5, sigma=1.0, k=29, n=30, d=31))  # both infinite
    # the proportional limit at k = 1 is lt.transferability at lam = 0
    lt = ff.get("lt.transferability")
    for g in (0.3, 0.8, 1.7):
        assert math.isclose(T_LIMIT.evaluate(gamma=g, theta=0.6, sigma=0.2, k=1),
                            lt.evaluate(gamma=g, theta=0.6, sigma=0.2, lam=0.0), rel_tol=1e-12)
    # and the finite form tends to it (n = gamma d, d -> oo at fixed k)
    g, dim = 0.5, 10**7
    assert math.isclose(T_FINITE.evaluate(theta=0.6, sigma=0.2, k=4, n=int(g * dim), d=dim),
                        T_LIMIT.evaluate(gamma=g, theta=0.6, sigma=0.2, k=4), rel_tol=1e-5)
    assert branch(T_LIMIT.expr, sp.Eq(gamma, 1) & (sigma > 0)) == sp.oo


# -- Monte Carlo -----------------------------------------------------------------------------
#: (k, n, d, theta, sigma): both sides of d, one to sixteen source tasks, with and without noise
MC_CELLS = (
    (1, 12, 40, math.pi / 4, 0.5),
    (4, 20, 40, math.pi / 3, 0.3),
    (8, 40, 80, math.pi / 4, 1.0),
    (16, 60, 100, 3 * math.pi / 8, 0.2),
    (3, 120, 60, math.pi / 3, 0.5),
    (2, 30, 60, math.pi / 6, 0.0),
)
REPLICATES = 3000


def test_monte_carlo_matches_the_exact_risk_and_transferability(seed, one_thread):
    """Risk of least squares on X Q and the paired transferability R_sc - R_lt against
    lt.k.risk_finite and lt.k.transferability_finite: 2 comparisons per cell, Bonferroni
    over all of them (exact theory, no allowance)."""
    comparisons = 2 * len(MC_CELLS)
    for i, (count, size, dim, angle, noise) in enumerate(MC_CELLS):
        sims = simulate_risks(size, dim, count, angle, noise, REPLICATES, seed=1000 * seed + i)
        risk = stats.compare(RISK_FINITE.evaluate(theta=angle, sigma=noise, k=count, n=size),
                             sims["linear_transfer"], alpha=1e-3, comparisons=comparisons)
        assert risk.passed, ("R_lt", count, size, dim, str(risk))
        transfer = stats.compare_mean(T_FINITE.evaluate(theta=angle, sigma=noise, k=count, n=size, d=dim),
                                      stats.paired_difference(sims["scratch"], sims["linear_transfer"]),
                                      alpha=1e-3, comparisons=comparisons)
        assert transfer.passed, ("T", count, size, dim, str(transfer))
        assert transfer.critical == pytest.approx(bonferroni_t(REPLICATES - 1, comparisons))


@pytest.mark.slow
def test_monte_carlo_at_d_1000(seed, one_thread):
    """The study's grid (featfate_sym.studies.optimal_k.MC_GRID, d up to 1000) at 4000
    replicates per cell: every row a t-test, Bonferroni over all rows (exact theory)."""
    from featfate_sym.studies.optimal_k import monte_carlo_rows

    rows = monte_carlo_rows(replicates=4000, seed=seed)
    for row in rows:
        critical = bonferroni_t(row.replicates - 1, len(rows))
        assert abs(row.z) <= critical, row


def test_optimal_k_against_monte_carlo(seed, one_thread):
    """At theta = pi/3, sigma = 0.5, n = 40 the risk has a clear minimum at optimal_k; the
    Monte Carlo mean there is below those at k = 1 and at 3 k_opt (one-sided Welch tests,
    Bonferroni over the two, family-wise rate 1e-3).  The theory gaps are about 150 and 45
    SE, so the test has power against an optimum off by a large factor (k = 1, or the top of
    the range); the exact integer optimum is checked against the theory curve's brute-force
    argmin in test_optimal_k_is_floor_or_ceil_of_the_continuous_root."""
    angle, noise, size, dim = math.pi / 3, 0.5, 40, 60
    best = optimal_k(angle, noise, size, dim)
    assert best == 10
    means = {}
    for j, count in enumerate((1, best, 3 * best)):
        sims = simulate_risks(size, dim, count, angle, noise, 1500, seed=5000 + 100 * seed + j,
                              methods=("linear_transfer",))
        means[count] = stats.mean_se(sims["linear_transfer"])
    critical = None
    for other in (1, 3 * best):
        diff = stats.welch(means[other], means[best])
        critical = stats.t_critical(diff.df, 1e-3, comparisons=2, two_sided=False)
        assert diff.mean > critical * diff.se, (other, diff)
    assert critical is not None


def test_same_seed_same_numbers():
    a = simulate_risks(15, 30, 3, 0.7, 0.4, 50, seed=11)
    b = simulate_risks(15, 30, 3, 0.7, 0.4, 50, seed=11)
    c = simulate_risks(15, 30, 3, 0.7, 0.4, 50, seed=12)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])


def test_estimators_on_a_hand_case():
    """Noiseless data inside the span: least squares on the features recovers beta_t; X^+ y
    with n > d recovers it too."""
    rng = np.random.default_rng(0)
    beta_t, sources = source_teachers(8, 3, 0.6, rng)
    x = rng.standard_normal((20, 8))
    basis = feature_basis(sources)
    in_span = basis @ (basis.T @ beta_t)
    np.testing.assert_allclose(linear_transfer_estimate(x, x @ in_span, basis), in_span, atol=1e-12)
    np.testing.assert_allclose(min_norm_estimate(x, x @ beta_t), beta_t, atol=1e-12)
    # the part of beta_t the features miss is |P_perp beta_t|^2 = lt.k.risk
    assert math.isclose(np.sum((in_span - beta_t) ** 2), RISK.evaluate(theta=0.6, k=3), rel_tol=1e-10)


# -- bad input -------------------------------------------------------------------------------
def test_bad_input_is_named():
    with pytest.raises(ValueError, match="parameter k must be"):
        RISK_FINITE.evaluate(theta=0.5, sigma=0.1, k=0, n=10)
    with pytest.raises(ValueError, match="parameter k must be"):
        RISK_FINITE.evaluate(theta=0.5, sigma=0.1, k=2.5, n=10)
    with pytest.raises(ValueError, match="parameter theta must be"):
        optimal_k(-0.1, 0.5, 10)
    with pytest.raises(ValueError, match="parameter sigma must be"):
        optimal_k(0.5, -1.0, 10)
    with pytest.raises(ValueError, match="parameter n must be >= 3"):
        optimal_k(0.5, 0.5, 2)
    with pytest.raises(ValueError, match="parameter n must be"):
        largest_positive_k(0.5, 0.5, 10.5, 20)
    with pytest.raises(ValueError, match="d must be >= k"):
        simulate_risks(10, 5, 5, 0.5, 0.1, 10, seed=0)
    with pytest.raises(ValueError, match="theta must be in"):
        simulate_risks(10, 20, 2, 4.0, 0.1, 10, seed=0)
    with pytest.raises(ValueError, match="sigma must be in"):
        simulate_risks(10, 20, 2, 0.5, -0.1, 10, seed=0)
    with pytest.raises(ValueError, match="n must be >= k"):
        simulate_risks(3, 20, 5, 0.5, 0.1, 10, seed=0)
    with pytest.raises(ValueError, match="seed must be"):
        simulate_risks(10, 20, 2, 0.5, 0.1, 10, seed=-1)
    with pytest.raises(ValueError, match="linearly dependent"):
        feature_basis(source_teachers(10, 3, 0.0, seed=0)[1])
    with pytest.raises(ValueError, match="count must be"):
        explicit_captured(0)


# -- figures -----------------------------------------------------------------------------------
def test_figures_quick(tmp_path, one_thread):
    from featfate_sym.studies.optimal_k import figures

    paths = figures(tmp_path, quick=True)
    assert {p.name for p in paths} == {"optimal_k_curves.png", "optimal_k_curves.pdf",
                                        "optimal_k_phase.png", "optimal_k_phase.pdf"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_table_rows_are_consistent(one_thread):
    from featfate_sym.studies.optimal_k import optimal_rows, monte_carlo_rows

    rows = monte_carlo_rows(grid=((2, 20, 40, 0.8, 0.3),), replicates=200, seed=1)
    assert [r.quantity for r in rows] == ["R_lt", "T"]
    assert all(r.replicates == 200 and r.se > 0 for r in rows)
    best = optimal_rows(thetas=(math.pi / 3,), sigmas=(0.5,), sizes=(40,), dim=60)
    assert best[0].k_opt == 10 and best[0].risk_opt < best[0].risk_one


def test_numerics_table_runs(capsys, one_thread, monkeypatch):
    """numerics/optimal_k_table.py at its smallest settings, in-process on a one-cell grid
    (the full grid is what the script prints; the rows' format is what is checked)."""
    import importlib.util
    from pathlib import Path

    from featfate_sym.studies import optimal_k as study

    path = Path(__file__).resolve().parents[1] / "numerics" / "optimal_k_table.py"
    spec = importlib.util.spec_from_file_location("numerics_optimal_k_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(study, "MC_GRID", ((2, 20, 40, math.pi / 4, 0.3),))
    assert module.main(["--replicates", "50", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| R_lt") or line.startswith("| T ")]
    assert len(rows) == 2 and "pi/4" in rows[0]
    assert any(line.startswith("| pi/3 | 0.5 | 50 | 200 |") for line in lines)

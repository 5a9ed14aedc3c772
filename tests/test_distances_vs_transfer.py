"""Data distances against transferability (featfate_sym.studies.distances_vs_transfer).

Independent expectations: the registry's symbolically derived ``metrics.kl`` and
``metrics.w2`` at ``a = 1``; the Gaussian KL formula and ``scipy.linalg.sqrtm`` on the
full ``d``-dimensional joint covariances; formulas typed from SPEC.md / the model
(``KL = (a - 1)^2/(2 sigma^2)`` for ``a beta_s``, the min-norm scratch risk with signal
norm ``a``); bounds of W2 (the label marginals, a coupling) that need no Bures formula.

The one statistical test (readout refit on the pretrained feature) is a two-sided z-test
of the mean replicate risk against its exact finite-n expectation, false-alarm rate 1e-3
(z = 3.29), fixed seed.
"""

import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

import featfate_sym as ff
from featfate_sym.studies import distances_vs_transfer as dvt

SCRIPT = Path(__file__).resolve().parents[1] / "numerics" / "distances_table.py"


# --- rank correlations ---------------------------------------------------------------------
def test_rank_correlations_hand_checked():
    # ranks (1, 2, 3, 4) vs (1, 3, 2, 4): sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8;
    # 6 pairs, one discordant (2 <-> 3): tau = (5 - 1)/6 = 2/3
    r = dvt.rank_correlations([0.1, 0.5, 2.0, 7.0], [10.0, 30.0, 20.0, 40.0])
    assert r.spearman == pytest.approx(0.8, abs=1e-12)
    assert r.kendall == pytest.approx(2 / 3, abs=1e-12)
    assert r.n_tasks == 4
    reverse = dvt.rank_correlations([1, 2, 3], [3.0, 2.0, -5.0])
    assert reverse.spearman == pytest.approx(-1.0) and reverse.kendall == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "distance, transfer, match",
    [([1, 2, 3], [1, 2], "transfer"), ([1, 2], [1, 2], "at least 3"), ([1, 1, 1], [1, 2, 3], "distance"),
     ([1, 2, 3], [1, np.inf, 3], "transfer")],
)
def test_rank_correlations_rejects_bad_input(distance, transfer, match):
    with pytest.raises(ValueError, match=match):
        dvt.rank_correlations(distance, transfer)


# --- distances ---------------------------------------------------------------------------
def test_unit_teachers_agree_with_the_registry():
    theta = np.linspace(0.0, np.pi, 13)
    for sigma in (0.05, 0.2, 1.0, 3.0):
        kl_reg = ff.get("metrics.kl").evaluate(theta=theta, sigma=np.full_like(theta, sigma))
        w2_reg = ff.get("metrics.w2").evaluate(theta=theta, sigma=np.full_like(theta, sigma))
        np.testing.assert_allclose(dvt.kl_divergence(theta, 1.0, sigma), kl_reg, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(dvt.w2_squared(theta, 1.0, sigma), w2_reg, rtol=0, atol=1e-12)


def _full_covariance(beta, sigma):
    d = beta.size
    cov = np.eye(d + 1)
    cov[:d, d] = cov[d, :d] = beta
    cov[d, d] = beta @ beta + sigma**2
    return cov


@pytest.mark.parametrize("theta, scale, sigma", [(0.0, 2.5, 0.3), (0.7, 0.4, 0.2), (2.0, 1.7, 1.1), (0.3, 6.0, 0.5)])
def test_distances_agree_with_full_dimensional_gaussians(theta, scale, sigma, seed):
    """Joint Gaussians of (x, y) in d = 5 with random orthonormal teacher directions:
    KL by the Gaussian formula, W2^2 by the Bures formula with scipy.linalg.sqrtm."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((5, 2)))
    beta_s = q[:, 0]
    beta_t = scale * (math.cos(theta) * q[:, 0] + math.sin(theta) * q[:, 1])
    cov_s, cov_t = _full_covariance(beta_s, sigma), _full_covariance(beta_t, sigma)
    k = cov_s.shape[0]
    kl = 0.5 * (np.trace(np.linalg.solve(cov_t, cov_s)) - k + np.linalg.slogdet(cov_t)[1] - np.linalg.slogdet(cov_s)[1])
    root = scipy.linalg.sqrtm(cov_s).real
    w2 = np.trace(cov_s) + np.trace(cov_t) - 2 * np.trace(scipy.linalg.sqrtm(root @ cov_t @ root).real)
    assert dvt.kl_divergence(theta, scale, sigma) == pytest.approx(kl, rel=1e-9)
    assert dvt.w2_squared(theta, scale, sigma) == pytest.approx(w2, rel=1e-8, abs=1e-12)


def test_counterexample_distances_grow_without_bound_while_lt_risk_stays_zero():
    sigma = 0.2
    scale = np.array([1.0, 1.5, 2.0, 4.0, 10.0, 100.0, 1e3])
    kl = dvt.kl_divergence(0.0, scale, sigma)
    w2 = dvt.w2_squared(0.0, scale, sigma)
    # KL: SPEC.md, |f - g|^2 / (2 sigma^2) with f - g = (1 - a) beta_s . x
    np.testing.assert_allclose(kl, (scale - 1) ** 2 / (2 * sigma**2), rtol=1e-12, atol=1e-15)
    # W2 between the joints >= W2 between the label marginals N(0, 1 + s^2), N(0, a^2 + s^2);
    # <= the cost of the coupling with the same x and the same noise, (a - 1)^2
    lower = (np.sqrt(scale**2 + sigma**2) - np.sqrt(1 + sigma**2)) ** 2
    assert np.all(w2 >= lower - 1e-12) and np.all(w2 <= (scale - 1) ** 2 + 1e-12)
    assert np.all(np.diff(kl) > 0) and np.all(np.diff(w2) > 0)
    assert kl[-1] > 1e7 and w2[-1] > 9e5  # unbounded: lower bound ~ (a - 1)^2
    # linear transfer at its minimum, and T = R_sc of the scaled target
    np.testing.assert_array_equal(dvt.lt_risk(0.0, scale, 0.0), 0.0)
    family = dvt.counterexample_family(0.5, sigma, scale)
    np.testing.assert_array_equal(family.transfer, dvt.transferability(0.5, 0.0, scale, sigma, 0.0))


def test_noiseless_counterexample_w2_is_rank_one_bures():
    """sigma = 0: the joints are rank-one Gaussians along (1, 1) and (1, a) in (x_1, y), and
    W2^2 = |u|^2 + |v|^2 - 2 |u . v| = (a - 1)^2 (worked by hand)."""
    scale = np.array([0.3, 1.0, 2.0, 7.0])
    np.testing.assert_allclose(dvt.w2_squared(0.0, scale, 0.0), (scale - 1) ** 2, atol=1e-7)


def test_scaled_transferability_is_the_scratch_risk_of_the_scaled_target():
    """theta = 0, lam = 0: T = R_sc for signal norm a, typed from the min-norm risk:
    a^2 (1 - gamma) + gamma sigma^2/(1 - gamma) below gamma = 1, sigma^2/(gamma - 1) above."""
    sigma = 0.3
    for gamma in (0.2, 0.5, 0.8, 1.3, 2.0):
        for a in (0.5, 1.0, 3.0):
            expected = a**2 * (1 - gamma) + gamma * sigma**2 / (1 - gamma) if gamma < 1 else sigma**2 / (gamma - 1)
            assert dvt.transferability(gamma, 0.0, a, sigma, 0.0) == pytest.approx(expected, rel=1e-12)
    # with an angle and ridge: the readout risk scales as a^2 (ridge is linear in y)
    theta, lam, a = 0.6, 0.3, 2.5
    c = a * math.cos(theta) / (1 + lam)  # ridge coefficient on the unit-variance feature
    expected_lt = (a * math.cos(theta) - c) ** 2 + (a * math.sin(theta)) ** 2
    assert dvt.lt_risk(theta, a, lam) == pytest.approx(expected_lt, rel=1e-12)


def test_readout_refit_recovers_the_scaled_teacher(seed):
    """Finite n: refitting the readout on the pretrained feature beta_s . x for the target
    a beta_s is exact without noise; with noise its risk is sigma^2 / sum z_i^2, mean
    sigma^2/(n - 2) (inverse chi-square), independent of a and -> 0 as n grows."""
    from featfate_sym.simulation.readout import refit_readout
    from featfate_sym.simulation.tasks import risk, sample_regression

    gen = torch.Generator().manual_seed(seed)
    replicates, dim, n, sigma = 400, 10, 40, 0.5
    beta_s = torch.randn(replicates, dim, generator=gen, dtype=torch.float64)
    beta_s = beta_s / beta_s.norm(dim=-1, keepdim=True)
    features = beta_s.unsqueeze(-1)  # the rank-one pretrained feature map (R, d, 1)
    for a in (2.0, 50.0):
        clean = sample_regression(a * beta_s, n, 0.0, gen)
        fit = refit_readout(features, clean, 0.0, rank_tol=0.5)
        assert float(risk(fit.beta, a * beta_s).max()) < 1e-20 * a**2
        noisy = sample_regression(a * beta_s, n, sigma, gen)
        values = risk(refit_readout(features, noisy, 0.0, rank_tol=0.5).beta, a * beta_s).numpy()
        se = values.std(ddof=1) / math.sqrt(replicates)
        assert abs(values.mean() - sigma**2 / (n - 2)) <= 3.29 * se


# --- grids and the pair -------------------------------------------------------------------
def test_grid_correlations():
    grid = dvt.theta_gamma_grid(0.2, 0.0)
    assert grid.kl.size == 19 * 20
    # at one gamma the distances do order unit teachers (T falls with theta, KL rises)
    for gamma in (0.3, 1.5):
        one = dvt.theta_gamma_grid(0.2, 0.0, gammas=[gamma])
        assert dvt.rank_correlations(one.kl, one.transfer).spearman == pytest.approx(-1.0)
    # across sample sizes they do not: some pair is nearer in KL and W2 yet transfers worse
    pooled = dvt.rank_correlations(grid.kl, grid.transfer)
    assert -0.95 < pooled.spearman < 0 and -0.95 < pooled.kendall < 0
    nearer = (grid.kl[:, None] < grid.kl[None, :]) & (grid.w2[:, None] < grid.w2[None, :])
    assert np.any(nearer & (grid.transfer[:, None] < grid.transfer[None, :]))
    # inside the feature span the correlation is perfect and of the wrong sign
    family = dvt.counterexample_family(0.5, 0.2)
    assert dvt.rank_correlations(family.kl, family.transfer).spearman == pytest.approx(1.0)
    assert dvt.rank_correlations(family.w2, family.transfer).kendall == pytest.approx(1.0)


def test_theta_gamma_grid_refuses_the_scratch_peak():
    with pytest.raises(ValueError, match="gamma"):
        dvt.theta_gamma_grid(0.2, 0.0, gammas=[0.5, 1.0])


@pytest.mark.parametrize("gamma, sigma", [(0.5, 0.2), (0.25, 0.1), (0.8, 0.5)])
def test_nearer_but_worse_pair_through_the_registry(gamma, sigma):
    pair = dvt.nearer_but_worse_pair(gamma, sigma)
    near, far = pair.nearer, pair.farther
    t = ff.get("lt.transferability")
    kl_near = ff.get("metrics.kl").evaluate(theta=near.theta, sigma=sigma)
    w2_near = ff.get("metrics.w2").evaluate(theta=near.theta, sigma=sigma)
    t_near = t.evaluate(gamma=gamma, theta=near.theta, sigma=sigma, lam=0.0)
    a = far.scale
    kl_far = (a - 1) ** 2 / (2 * sigma**2)
    w2_far_lower = (math.sqrt(a**2 + sigma**2) - math.sqrt(1 + sigma**2)) ** 2
    t_far = a**2 * t.evaluate(gamma=gamma, theta=0.0, sigma=sigma / a, lam=0.0)
    assert near.scale == 1.0 and far.theta == 0.0 and near.gamma == far.gamma == gamma
    assert kl_near < kl_far and w2_near < w2_far_lower and t_near < t_far
    assert near.kl == pytest.approx(kl_near) and near.w2 == pytest.approx(w2_near)
    assert near.transfer == pytest.approx(t_near) and far.transfer == pytest.approx(t_far)


def test_pair_refuses_values_that_do_not_give_one():
    with pytest.raises(ValueError, match="nearer-but-worse"):
        dvt.nearer_but_worse_pair(0.5, 0.2, theta=np.pi / 2, scale=1.1)


@pytest.mark.parametrize(
    "call, name",
    [(lambda: dvt.kl_divergence(0.3, 1.0, 0.0), "noise_std"), (lambda: dvt.w2_squared(-0.1, 1.0, 0.2), "theta"),
     (lambda: dvt.transferability(0.5, 0.2, 0.0, 0.2), "scale"), (lambda: dvt.w2_squared(0.1, 1.0, np.nan), "noise_std")],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=f"parameter {name}"):
        call()


# --- figure and script --------------------------------------------------------------------
def _assert_not_blank(png: Path, pdf: Path):
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.std() > 0.05  # not a uniform image
    assert np.mean(pixels.min(axis=-1) < 0.5) > 0.005  # some dark ink: lines, dots, text
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000


def test_figure_renders(tmp_path):
    from featfate_sym.plotting import distances, style

    with style.figure_style():
        fig = distances.distances(quick=True)
        png, pdf = style.save(fig, tmp_path, "distances", style.MIN_DPI)
    _assert_not_blank(png, pdf)
    assert len(fig.axes) == 4  # three panels and the gamma colour bar
    with pytest.raises(ValueError, match="sigma"):
        distances.distances(sigma=0.0)


# --- ReLU teachers ------------------------------------------------------------------------


def _relu(w, a, x):
    return np.maximum(x @ w.T, 0.0) @ a


def test_relu_span_family_is_inside_the_span_while_distances_grow(seed):
    """``f_t = a f_s``: the exact residual outside the source neurons' span is 0 (to
    rounding, relative to ``|f_t|^2``) for every ``a``, while KL grows as ``(a - 1)^2``.
    KL and the W2 bounds are checked against sampling (2e5 draws, seeded): the Monte
    Carlo ``E (f_s - f_t)^2`` has a relative standard error below 1%, so 5% is a > 5 sigma
    tolerance; the sorted-sample W2^2 of the label marginals, an estimate of a quantity
    between the two bounds, must fall between them (within the same tolerance)."""
    sigma = 0.3
    fam = dvt.relu_span_family(dim=12, teacher_width=6, noise_std=sigma, scales=[1.0, 1.5, 2.5], seed=seed)
    assert np.all(fam.residual <= 1e-12 * fam.target_norm)
    np.testing.assert_allclose(fam.kl[1:] / fam.kl[-1], np.array([0.5, 1.5]) ** 2 / 1.5**2, rtol=1e-12)
    assert fam.kl[0] == 0 and fam.w2_upper[0] == 0 and fam.w2_lower[0] < 1e-12
    assert np.all(np.diff(fam.w2_lower) > 0) and np.all(fam.w2_lower <= fam.w2_upper + 1e-15)

    from featfate_sym.simulation.relu import make_relu_tasks

    source = make_relu_tasks(12, 6, 0.0, seed=seed).target  # the family's f_s
    ws, a_s = source.weights.numpy(), source.readout.numpy()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200_000, 12))
    f = _relu(ws, a_s, x)
    for a, kl, lower, upper in zip([1.5, 2.5], fam.kl[1:], fam.w2_lower[1:], fam.w2_upper[1:]):
        mc = np.mean(((a - 1) * f) ** 2) / (2 * sigma**2)
        assert kl == pytest.approx(mc, rel=0.05)
        y_s = np.sort(f + sigma * rng.standard_normal(f.size))
        y_t = np.sort(a * f + sigma * rng.standard_normal(f.size))
        marginal = np.mean((y_s - y_t) ** 2)
        assert lower * 0.95 <= marginal <= upper * 1.05


def test_relu_nearer_but_worse_pair(seed):
    """Replacing a quarter of the source's neurons gives a target nearer in KL and W2
    (its W2 upper bound below the scaled target's lower bound) whose overlap with the
    source span is incomplete, ``|P_perp f_t|^2 > 0``; the scaled target's is 0."""
    pair = dvt.relu_nearer_but_worse(noise_std=0.2, seed=seed)
    assert pair.kl[0] < pair.kl[1] and pair.w2_upper[0] < pair.w2_lower[1]
    assert pair.residual[0] > 0.01 * pair.target_norm[0]
    assert pair.residual[1] <= 1e-12 * pair.target_norm[1]
    with pytest.raises(ValueError, match="replaced"):
        dvt.relu_nearer_but_worse(replaced=0.0)
    with pytest.raises(ValueError, match="nearer-but-worse"):
        dvt.relu_nearer_but_worse(scale=1.05)
    with pytest.raises(ValueError, match="noise_std"):
        dvt.relu_span_family(noise_std=0.0)


def test_script_prints_table_and_writes_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--out", str(tmp_path), "--quick"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Spearman" in out and "Kendall" in out and "nearer" in out
    assert "ReLU" in out and "neurons replaced" in out
    _assert_not_blank(tmp_path / "distances_vs_transfer.png", tmp_path / "distances_vs_transfer.pdf")


def test_script_bad_argument_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--sigma", "0"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exc.value.code == 2
    assert "sigma" in capsys.readouterr().err

"""The deep-linear engine on anisotropic inputs and with ``k`` source tasks.

What is checked: (a) without the new options the engine's numbers are those of the
isotropic pipeline built from its primitives (bit for bit); (b) scratch on anisotropic
data ends at ``X^+ y`` and its risk is the Sigma-weighted error; (c) one-layer
fine-tuning ends at ``beta_s + X^+ (y - X beta_s)``; (d) ``k``-output pretraining learns
``span B_s`` and linear transfer is the least-squares fit on ``X Q``; (e) the risk of
linear transfer on ``k`` features against the exact finite-``n`` expectation of a
``k``-variable least-squares fit (an independent result: the inverse-Wishart mean
``E (Z^T Z)^{-1} = C^{-1} / (n - k - 1)``); (f) the command line.

Statistical test (e): two-sided Student-t test of the replicate mean (independent
replicates, ``df = R - 1``) at a family-wise false-alarm rate ``FAMILY_ALPHA = 1e-3``,
Bonferroni over the points (:func:`featfate_sym.stats.compare`).  Seeds from the
``seed`` fixture.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import featfate_sym.simulate as simulate
from featfate_sym import spectra
from featfate_sym.simulation import multi_output, tasks
from featfate_sym.simulation.deep_linear import EngineOptions, fine_tune, pretrain, run_cell, run_protocols, \
    train_scratch
from featfate_sym.simulation.monitors import feature_map
from featfate_sym.simulation.readout import refit_readout
from featfate_sym.simulation.training import end_to_end
from featfate_sym.stats import compare

FAMILY_ALPHA = 1e-3
SOLVERS = ("gd", "whitened")


def _two_level(d, frac=0.5, r=4.0):
    return spectra.two_level(frac, r).eigenvalues(d)


def _replay_target(seed, replicates, d, n, sigma, lam, draw_teachers):
    """The documented draw order replayed by hand: teachers, then ``Z`` and the noise;
    ``X = Z diag(sqrt(lambda))``, ``y = X beta_t + sigma eps`` (NumPy float64)."""
    gen = torch.Generator().manual_seed(seed)
    teachers = draw_teachers(gen)
    z = torch.randn(replicates, n, d, generator=gen, dtype=torch.float64).numpy()
    eps = torch.randn(replicates, n, generator=gen, dtype=torch.float64).numpy()
    x = z * np.sqrt(lam)
    y = np.einsum("rnd,rd->rn", x, teachers.target.numpy()) + sigma * eps
    return teachers, x, y


# --- (a) the old numbers ------------------------------------------------------------------


def _isotropic_reference(seed, *, replicates, d, n, theta, sigma, depth):
    """The isotropic protocol from the engine's primitives in the documented draw order
    (teachers, target, pretraining init, scratch init): what ``run_cell`` computed before
    the new options existed."""
    opts = EngineOptions()
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_teachers(replicates, d, theta, gen)
    target = tasks.sample_regression(teachers.target, n, sigma, gen)
    pre, pre_run = pretrain(tasks.population_data(teachers.source), depth, gen, opts)
    sc, sc_run = train_scratch(target, depth, gen, opts)
    fit = refit_readout(feature_map(pre), target, 0.0, rank_tol=math.sqrt(opts.init_scale))
    ft, ft_run = fine_tune(pre, target, opts)
    out = {"risk_sc": tasks.risk(end_to_end(sc), teachers.target),
           "risk_lt": tasks.risk(fit.beta, teachers.target),
           "pinv_risk_lt": ((fit.beta_naive - teachers.target) ** 2).sum(-1),
           "risk_ft": tasks.risk(end_to_end(ft), teachers.target),
           "steps_sc": sc_run.steps, "steps_ft": ft_run.steps, "steps_pre": pre_run.steps}
    return {k: v.numpy() for k, v in out.items()}


def test_defaults_reproduce_the_isotropic_pipeline_bit_for_bit(seed):
    d, n, theta, sigma, depth = 16, 10, 0.6, 0.3, 2
    params = dict(gamma=n / d, theta=theta, sigma=sigma, lam=0.0, L=depth, d=d)
    ref = _isotropic_reference(seed, replicates=3, d=d, n=n, theta=theta, sigma=sigma, depth=depth)
    default = run_cell(params, replicates=3, seed=seed)
    explicit = run_cell(params, replicates=3, seed=seed, covariance=None, profile=None, source_tasks=1)
    for key, value in ref.items():
        np.testing.assert_array_equal(default[key], value, err_msg=key)
        np.testing.assert_array_equal(explicit[key], value, err_msg=key)


def test_unit_covariance_draws_the_isotropic_teachers_and_data(seed):
    """``covariance = 1`` takes the anisotropic code path (dense ``Sxx = I`` for the
    population, the profiled draw) yet draws the same teachers and design; the numbers
    agree to rounding (1e-9: the converged end points carry the same descent)."""
    d, n = 12, 8
    common = dict(replicates=3, dim=d, depth=2, n_samples=n, theta=0.7, noise_std=0.2, seed=seed)
    iso = run_protocols(**common)
    ones = run_protocols(**common, covariance=np.ones(d))
    uniform = run_protocols(**common, covariance=np.ones(d), profile=np.full(d, 1.0 / d))
    np.testing.assert_array_equal(ones.teachers.source.numpy(), iso.teachers.source.numpy())
    np.testing.assert_array_equal(ones.teachers.target.numpy(), iso.teachers.target.numpy())
    # the profile sqrt(1/d) rescales before the normalisation: equal to rounding
    np.testing.assert_allclose(uniform.teachers.target.numpy(), iso.teachers.target.numpy(), atol=1e-14)
    a, b = iso.arrays(), ones.arrays()
    for key in ("risk_sc", "risk_lt", "risk_ft"):
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-9, err_msg=key)


# --- (b) scratch on anisotropic data --------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_scratch_on_anisotropic_data_ends_at_the_pseudo_inverse(seed, solver):
    d, sigma, replicates = 20, 0.4, 3
    lam = _two_level(d)
    prof = spectra.profile(spectra.two_level(0.5, 4.0), d, "top", 0.3)
    for n in (12, 30):
        out = run_protocols(("scratch",), replicates=replicates, dim=d, depth=2, n_samples=n, theta=0.8,
                            noise_std=sigma, seed=seed, covariance=lam, profile=prof,
                            options=EngineOptions(solver=solver))
        teachers, x, y = _replay_target(seed, replicates, d, n, sigma, lam,
                                        lambda g: tasks.make_profiled_teachers(replicates, d, 0.8, g, prof))
        np.testing.assert_array_equal(out.teachers.target.numpy(), teachers.target.numpy())
        beta = out.beta("scratch").numpy()
        for r in range(replicates):
            pinv = np.linalg.pinv(x[r]) @ y[r]
            mu = np.linalg.eigvalsh(x[r].T @ x[r] / n)
            mu_min = mu[mu > 1e-10 * mu[-1]].min()
            # excess loss <= tol = 1e-9 bounds the row-space error by sqrt(tol / mu_min);
            # the null-space part of the init (alpha = 1e-5 times O(1) weights) adds 1e-4
            assert np.linalg.norm(beta[r] - pinv) <= 2 * math.sqrt(1e-9 / mu_min) + 1e-4
        direct = ((beta - teachers.target.numpy()) ** 2 * lam).sum(-1)
        np.testing.assert_allclose(out.arrays()["risk_sc"], direct, rtol=1e-12)
        assert out.arrays()["converged_sc"].all()


# --- (c) one-layer fine-tuning ---------------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_layer_fine_tuning_on_anisotropic_data(seed, solver):
    """L = 1: pretraining on the Sigma-weighted population loss ends at ``beta_s``;
    fine-tuning from it moves ``beta`` only in the row space of ``X``: the end point is
    ``beta_s + X^+ (y - X beta_s)``."""
    d, n, replicates, sigma = 20, 12, 3, 0.3
    lam = spectra.power_law(1.0, d).eigenvalues(d)
    opts = EngineOptions(solver=solver)
    gen = torch.Generator().manual_seed(seed)
    teachers = tasks.make_profiled_teachers(replicates, d, 1.0, gen, spectra.profile(
        spectra.power_law(1.0, d), d, "bottom", 0.5))
    target = tasks.sample_regression(teachers.target, n, sigma, gen, covariance=lam)
    pre, run = pretrain(tasks.population_data(teachers.source, lam), 1, gen, opts)
    assert run.converged.all()
    # Sigma-excess <= 1e-12: |beta - beta_s| <= sqrt(1e-12 / lambda_min)
    assert float((end_to_end(pre) - teachers.source).norm(dim=-1).max()) <= 2 * math.sqrt(1e-12 / lam.min())
    ft, ft_run = fine_tune(pre, target, opts)
    assert ft_run.converged.all()
    beta = end_to_end(ft).numpy()
    x, y, bs = target.design.numpy(), target.labels.numpy(), teachers.source.numpy()
    for r in range(replicates):
        expected = bs[r] + np.linalg.pinv(x[r]) @ (y[r] - x[r] @ bs[r])
        mu = np.linalg.eigvalsh(x[r].T @ x[r] / n)
        mu_min = mu[mu > 1e-10 * mu[-1]].min()
        # target excess <= 1e-9 (row space) plus the pretraining error (null space)
        bound = 2 * math.sqrt(1e-9 / mu_min) + 2 * math.sqrt(1e-12 / lam.min())
        assert np.linalg.norm(beta[r] - expected) <= bound


# --- (d) k-output pretraining and linear transfer --------------------------------------------


def test_multi_source_teachers_have_the_stated_geometry(seed):
    k, theta = 3, 0.7
    t = tasks.make_multi_source_teachers(4, 15, theta, k, torch.Generator().manual_seed(seed),
                                         spectra.profile(spectra.two_level(0.4, 3.0), 15, "top", 0.4))
    gram = t.source.mT @ t.source
    expected = math.cos(theta) ** 2 * torch.ones(k, k, dtype=torch.float64) + \
        math.sin(theta) ** 2 * torch.eye(k, dtype=torch.float64)
    np.testing.assert_allclose(gram.numpy(), expected.expand(4, k, k).numpy(), atol=1e-14)
    np.testing.assert_allclose((t.source * t.target.unsqueeze(-1)).sum(1).numpy(), math.cos(theta), atol=1e-14)
    # the energy profile: no weight outside the top 40 % of directions
    assert float(t.source[:, 6:].abs().max()) == 0.0 and float(t.target[:, 6:].abs().max()) == 0.0


@pytest.mark.parametrize("solver", SOLVERS)
def test_multi_output_features_span_the_sources_and_lt_is_least_squares(seed, solver):
    d, n, k, theta, sigma, replicates = 24, 18, 3, 0.6, 0.3, 3
    lam = _two_level(d)
    out = run_protocols(("linear_transfer",), replicates=replicates, dim=d, depth=2, n_samples=n, theta=theta,
                        noise_std=sigma, seed=seed, covariance=lam, source_tasks=k,
                        options=EngineOptions(solver=solver))
    arrays = out.arrays()
    assert arrays["converged_pre"].all() and (arrays["rank_lt"] == k).all()
    bs = out.teachers.source.numpy()
    np.testing.assert_allclose(multi_output.end_to_end(out.pretrained).numpy(), bs, atol=1e-5)
    fmap = feature_map(out.pretrained).numpy()
    teachers, x, y = _replay_target(seed, replicates, d, n, sigma, lam,
                                    lambda g: tasks.make_multi_source_teachers(replicates, d, theta, k, g))
    np.testing.assert_array_equal(out.teachers.source.numpy(), teachers.source.numpy())
    beta = out.beta("linear_transfer").numpy()
    for r in range(replicates):
        q, _ = np.linalg.qr(bs[r])
        u = np.linalg.svd(fmap[r], full_matrices=False)[0][:, :k]
        # sine of the largest principal angle between span(top-k features) and span B_s:
        # the pretraining error (|B - B_s| <= 1e-6 / sqrt(lambda_min) at excess 1e-12) and
        # the mixing with the O(alpha) residue directions, each over the k-th singular
        # value (~0.6): below 1e-5 (measured 1e-6 gd, 1e-8 whitened)
        assert np.linalg.norm(u - q @ (q.T @ u), 2) < 1e-5
        ols = q @ (np.linalg.pinv(x[r] @ q) @ y[r])
        # the same fit in a subspace tilted by < 1e-5, amplified by the conditioning of
        # X Q (n = 18 rows, k = 3 columns; a factor < 10): 1e-4 (measured 3e-7 gd)
        np.testing.assert_allclose(beta[r], ols, rtol=0, atol=1e-4 * max(1.0, np.linalg.norm(ols)))


def test_multi_source_refuses_fine_tuning_some_layers_and_bad_options():
    common = dict(replicates=2, dim=10, depth=2, n_samples=8, theta=0.5, noise_std=0.1)
    with pytest.raises(ValueError, match="fine-tuning some layers of a k-output network is not defined"):
        run_protocols(("scratch", "fine_tune[1]"), **common, source_tasks=2)
    with pytest.raises(ValueError, match="source_samples must be None"):
        run_protocols(("linear_transfer",), **common, source_tasks=2, source_samples=20)
    with pytest.raises(ValueError, match="source_tasks must be an integer k >= 1"):
        run_protocols(("scratch",), **common, source_tasks=0)
    with pytest.raises(ValueError, match="k must be <= d - 1"):
        run_protocols(("linear_transfer",), **common, source_tasks=10)
    with pytest.raises(ValueError, match="covariance must be the 10 eigenvalues"):
        run_protocols(("scratch",), **common, covariance=np.ones(9))
    with pytest.raises(ValueError, match="covariance eigenvalues must be finite and > 0"):
        run_protocols(("scratch",), **common, covariance=np.r_[np.ones(9), 0.0])
    with pytest.raises(ValueError, match="profile entries must sum to 1"):
        run_protocols(("scratch",), **common, profile=np.ones(10))
    with pytest.raises(ValueError, match="profile entries must be finite and >= 0"):
        run_protocols(("scratch",), **common, profile=np.r_[-0.1, 1.1, np.zeros(8)])
    with pytest.raises(ValueError, match="profile must be positive on at least 3 directions"):
        run_protocols(("linear_transfer",), **common, source_tasks=2, profile=np.r_[0.5, 0.5, np.zeros(8)])
    # run_cell defaults to scratch and linear transfer for k > 1; k may be a cell parameter
    params = dict(gamma=0.8, theta=0.5, sigma=0.1, lam=0.0, L=2, d=10)
    r = run_cell(params, replicates=2, seed=0, source_tasks=2)
    assert "risk_lt" in r and "risk_ft" not in r and (r["rank_lt"] == 2).all()
    same = run_cell({**params, "k": 2}, replicates=2, seed=0)
    np.testing.assert_array_equal(same["risk_lt"], r["risk_lt"])
    with pytest.raises(ValueError, match="parameter k must be integer in"):
        run_cell({**params, "k": 1.5}, replicates=2, seed=0)
    with pytest.raises(ValueError, match="k must be an integer in \\[1, d - 1\\]"):
        run_cell({**params, "k": 10}, replicates=2, seed=0)
    with pytest.raises(ValueError, match="params\\['k'\\] or source_tasks, not both"):
        run_cell({**params, "k": 2}, replicates=2, seed=0, source_tasks=3)


# --- (e) linear transfer on k features: exact finite-n expectation -----------------------------


def _lt_conditional_mean(teachers, lam, n, k, sigma):
    """``E[R_lt | teachers]`` for least squares of ``y`` on the ``k`` features ``Q^T x``
    (``Q`` an orthonormal basis of ``span B_s``), ``x ~ N(0, diag(lam))``: the best
    Sigma-error in the span, ``m = beta_t^T Sigma beta_t - b^T C^{-1} b`` (``C = Q^T Sigma
    Q``, ``b = Q^T Sigma beta_t``), plus ``(m + sigma^2) k / (n - k - 1)`` (the residual
    is Gaussian and independent of the features; ``E (Z^T Z)^{-1} = C^{-1}/(n - k - 1)``)."""
    out = []
    for bt, bs in zip(teachers.target.numpy(), teachers.source.numpy()):
        q, _ = np.linalg.qr(bs)
        c = q.T @ (lam[:, None] * q)
        b = q.T @ (lam * bt)
        m = bt @ (lam * bt) - b @ np.linalg.solve(c, b)
        out.append(m + (m + sigma**2) * k / (n - k - 1))
    return np.asarray(out)


#: (k, theta, sigma, spectrum): d = 60, n = 40, L = 2, 300 replicates
LT_K_POINTS = [(2, 0.5, 0.5, None), (3, 1.0, 0.0, None), (3, 0.7, 0.3, "two_level")]


def test_linear_transfer_on_k_features_matches_exact_expectation(seed):
    """Isotropic points: ``E R_lt = s + (s + sigma^2) k / (n - k - 1)`` with ``s = sin^2
    theta / (sin^2 theta + k cos^2 theta)``, the part of ``beta_t`` outside ``span B_s``.
    Anisotropic point: the mean of ``R_lt - E[R_lt | teachers]`` is 0."""
    d, n, replicates = 60, 40, 300
    for i, (k, theta, sigma, shape) in enumerate(LT_K_POINTS):
        lam = None if shape is None else _two_level(d, 0.3, 4.0)
        out = run_protocols(("linear_transfer",), replicates=replicates, dim=d, depth=2, n_samples=n,
                            theta=theta, noise_std=sigma, seed=seed + i, covariance=lam, source_tasks=k,
                            options=EngineOptions(solver="whitened"))
        arrays = out.arrays()
        assert arrays["converged_pre"].all() and (arrays["rank_lt"] == k).all()
        if lam is None:
            s2, c2 = math.sin(theta) ** 2, math.cos(theta) ** 2
            perp = s2 / (s2 + k * c2)
            expected, samples = perp + (perp + sigma**2) * k / (n - k - 1), arrays["risk_lt"]
        else:
            expected = 0.0
            samples = arrays["risk_lt"] - _lt_conditional_mean(out.teachers, lam, n, k, sigma)
        c = compare(expected, samples, alpha=FAMILY_ALPHA, comparisons=len(LT_K_POINTS))
        assert c.passed, (k, theta, sigma, shape, str(c))


# --- (f) the command line --------------------------------------------------------------------


BAD_SPECTRUM_ARGUMENTS = [
    (["--spectrum", "bogus"], "--spectrum must be one of"),
    (["--spectrum", "two_level:frac=1.5,r=4"], "frac must be in (0, 1)"),
    (["--spectrum", "two_level:frac=0.2"], "needs r=NUMBER"),
    (["--spectrum", "two_level:frac=__import__('os'),r=2"], "plain decimal"),
    (["--spectrum", "power_law:a=-1"], "a must be in [0, inf)"),
    (["--spectrum", "values:1,2,3", "--d", "10"], "exactly d = 10 eigenvalues"),
    (["--spectrum", "values:1,2,3", "--d", "3", "--gamma", "1"], "descending order"),
    (["--spectrum", "values:3,2,0", "--d", "3", "--gamma", "1"], "values must be finite and in (0, inf)"),
    (["--teachers", "middle"], "--teachers must be one of"),
    (["--teachers", "top:2"], "--teachers fraction must be in (0, 1]"),
    (["--k", "0"], "--k must be an integer >= 1"),
    (["--k", "2", "--L", "1"], "--k > 1 needs --L >= 2"),
    (["--spectrum", "two_level:frac=0.5,r=4", "--teachers", "top", "--d", "10"], "at least k + 1 = 2"),
]


@pytest.mark.parametrize("args, message", BAD_SPECTRUM_ARGUMENTS)
def test_cli_bad_spectrum_arguments_exit_2_with_one_line(args, message, capsys):
    assert simulate.main([*args, "--dry-run"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("simulate: error:")
    assert message in lines[0]


def test_cli_parsers():
    assert spectra.parse_spectrum("two_level:frac=0.2,r=4") == ("two_level", (0.2, 4.0))
    assert spectra.parse_spectrum("two_level: r=4 , frac=0.2") == ("two_level", (0.2, 4.0))
    assert spectra.parse_spectrum("power_law:a=1") == ("power_law", (1.0,))
    assert spectra.parse_spectrum("values:3,2,1e-1") == ("values", (3.0, 2.0, 0.1))
    assert spectra.parse_teachers("top:0.2") == ("top", 0.2)
    assert spectra.parse_teachers("bottom") == ("bottom", 0.1)
    lam, prof = spectra.spectrum_arrays(("two_level", (0.2, 4.0)), ("top", 0.1), 20)
    np.testing.assert_array_equal(lam, np.r_[np.full(4, 4.0), np.ones(16)])
    np.testing.assert_array_equal(prof, np.r_[np.full(2, 0.5), np.zeros(18)])
    assert spectra.spectrum_arrays(None, ("uniform", math.nan), 20) == (None, None)


def test_cli_tiny_anisotropic_multi_source_run(tmp_path, capsys):
    from featfate_sym.sweeps import open_sweep

    out = tmp_path / "sweep"
    status = simulate.main(["--spectrum", "two_level:frac=0.5,r=4", "--k", "2", "--d", "10", "--gamma", "0.8",
                            "--theta", "0.5", "--sigma", "0.1", "--lam", "0", "--L", "2", "--replicates", "2",
                            "--workers", "1", "--quiet", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    ds = open_sweep(out)
    assert "risk_lt" in ds and "risk_sc" in ds and "risk_ft" not in ds
    assert (ds["rank_lt"].values == 2).all() and ds["converged_pre"].values.all()
    assert "two_level:frac=0.5,r=4" in ds.attrs["command_line"]


def test_three_layer_multi_output_pretraining_with_a_larger_init(seed):
    """L = 3: the weaker source modes leave the small-init plateau after a time growing
    like 1 / init_scale, so the check uses init_scale = 1e-2 (a few hundred steps); the
    network still ends at ``B_s`` with a rank-k trunk (residue O(alpha^2) = 1e-4)."""
    k, d = 2, 12
    t = tasks.make_multi_source_teachers(3, d, 0.8, k, torch.Generator().manual_seed(seed))
    weights, run = multi_output.pretrain(multi_output.population(t.source, _two_level(d)), 3,
                                         torch.Generator().manual_seed(seed), EngineOptions(init_scale=1e-2))
    assert run.converged.all() and float(run.excess.max()) <= 1e-12
    svals = torch.linalg.svdvals(feature_map(weights))
    assert float((svals[:, k] / svals[:, 0]).max()) < 1e-3 < float((svals[:, k - 1] / svals[:, 0]).min())

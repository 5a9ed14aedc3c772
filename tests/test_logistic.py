"""Deep linear classifiers trained by gradient descent with the square and the logistic
loss (:mod:`featfate_sym.simulation.logistic`), and the classification phase study.

What is checked, each against an independent computation:

- square loss from small initialisation ends at the minimum-norm least-squares vector
  ``X^+ y`` (closed form, :func:`featfate_sym.simulation.classification.min_norm_classifier`),
  so its test error is the estimator's, replicate by replicate (paired): the estimator's
  Monte Carlo against ``clf.scratch.error`` is the statistical test of
  ``tests/test_classification.py``; here the network is tied to the estimator exactly;
- population pretraining ends at ``mu_s / (1 + m^2)`` (square; SPEC) and along ``mu_s``
  (logistic; rotation symmetry);
- logistic loss on separable data: the direction converges to the hard-margin SVM solution
  computed from its dual by :func:`max_margin_direction` (itself checked on a case solved by
  hand and against the LP separability check);
- logistic loss on non-separable data: GD ends at the unique minimiser found by damped Newton iterations;
- linear transfer's error depends on the angle through ``|cos theta|`` only, and equals
  the exact finite-``n`` error of the refitted feature (the closed-form estimator);
- bad input, seeds, and the figure at ``quick=True``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featfate_sym.simulation import classification as est
from featfate_sym.simulation import logistic as lg
from featfate_sym.simulation.training import DivergenceError


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batched products: threads only add overhead
    yield
    torch.set_num_threads(before)


def _cos(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# -- (a) square loss: the min-norm least-squares end point ------------------------------------
def test_square_loss_scratch_reaches_min_norm_least_squares(seed):
    dim, n, reps = 40, 20, 3  # gamma = 1/2
    run = lg.run_protocols("square", n, dim, 0.5, 1.0, reps, seed, protocols=("scratch",), max_steps=20_000,
                           init_scale=1e-6)
    traj = run.scratch
    assert traj.converged.all()
    pinv = np.stack([est.min_norm_classifier(x, y) for x, y in zip(run.x, run.y)])
    # the end point differs from X^+ y by the stopping tolerance (|g| <= 1e-10 with curvature
    # >= lambda_min(XX^T/n) ~ 0.1 here: |dw| <~ 1e-9) and the initialisation left in the null
    # space of X: the updates of W_1 lie in the row space, so (I - P) w = (I - P) W_1(0) W_2,
    # O(init_scale |W_2|) ~ 1e-6 (measured 6e-4 relative at init_scale = 1e-3)
    rel = np.linalg.norm(traj.beta - pinv, axis=-1) / np.linalg.norm(pinv, axis=-1)
    assert rel.max() < 1e-4, rel
    assert _cos(traj.beta, pinv).min() > 1 - 1e-8
    # paired: the network's error is the estimator's on the same target set (its error is
    # Lipschitz in the direction, |d err| <= |dw|/|w| * m / sqrt(2 pi))
    mu_t = est.class_means(dim, 1.0, 0.5)[1]
    np.testing.assert_allclose(traj.final_error, est.test_error(pinv, mu_t), atol=1e-4)
    # the run went somewhere: the error at the start (the random initialisation) differs
    assert np.abs(traj.error[0] - traj.final_error).max() > 1e-3


def test_population_pretraining_ends_at_the_source_discriminant(seed):
    dim, mv, angle = 12, 1.5, 1.0
    mu_s, _ = est.class_means(dim, mv, angle)
    gen = torch.Generator().manual_seed(seed)
    weights, traj = lg.pretrain_population(np.tile(mu_s, (2, 1)), "square", 3, dim, gen)
    beta = lg.end_to_end(weights).numpy()
    # SPEC: the population source minimiser mu_s / (1 + m^2); tolerance: |g| <= 1e-10 and
    # the Hessian 2 (I + mu mu^T) >= 2, plus O(init_scale^3) from depth 3
    np.testing.assert_allclose(beta, np.tile(mu_s / (1 + mv**2), (2, 1)), atol=1e-8)
    weights, _ = lg.pretrain_population(np.tile(mu_s, (2, 1)), "logistic", 2, dim, gen)
    beta = lg.end_to_end(weights).numpy()
    # logistic: along mu_s (rotation symmetry of the population loss about mu_s), of finite norm
    assert _cos(beta, mu_s[None]).min() > 1 - 1e-10
    assert 0.1 < np.linalg.norm(beta, axis=-1).min() < 100


# -- max-margin and separability ----------------------------------------------------------------
def test_max_margin_on_a_case_solved_by_hand():
    # x = (1, 0) with y = +1 and x = (0, 1) with y = -1: the hard-margin w (no bias) is
    # (1, -1) (both constraints active: w_1 = 1, -w_2 = 1), geometric margin 1/sqrt(2); a
    # third point (2, -1), y = +1, is inside the margin's far side and changes nothing
    x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])
    y = np.array([1.0, -1.0, 1.0])
    mm = lg.max_margin_direction(x, y)
    np.testing.assert_allclose(mm.direction, np.array([1.0, -1.0]) / math.sqrt(2), atol=1e-7)
    assert mm.margin == pytest.approx(1 / math.sqrt(2), rel=1e-7)
    assert mm.support == 2
    # a point on the wrong side of every separator: x and -x with the same label
    assert not lg.is_separable(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="separable"):
        lg.max_margin_direction(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([1.0, 1.0]))


def test_max_margin_matches_the_primal_qp(seed):
    """The dual solution against the primal ``min |w|^2/2`` s.t. ``y_i w.x_i >= 1`` solved by
    SLSQP (an independent method and formulation)."""
    from scipy import optimize

    rng = np.random.default_rng(seed)
    x, y = est.sample_mixture(12, est.class_means(8, 1.0, 0.0)[1], rng)
    mm = lg.max_margin_direction(x, y)
    a = y[:, None] * x
    start = 10 * a.mean(0) / (a.mean(0) @ a.mean(0))  # along the class mean estimate
    res = optimize.minimize(lambda w: 0.5 * w @ w, start, jac=lambda w: w, method="SLSQP",
                            constraints=[{"type": "ineq", "fun": lambda w: a @ w - 1, "jac": lambda w: a}],
                            options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success and (a @ res.x).min() > 1 - 1e-7
    # SLSQP's tolerance 1e-14 on the objective: the direction to about 1e-6
    np.testing.assert_allclose(mm.direction, res.x / np.linalg.norm(res.x), atol=1e-5)
    assert mm.margin == pytest.approx(1 / np.linalg.norm(res.x), rel=1e-6)
    assert mm.gap < 1e-8


def test_separability_follows_the_dimension_count(seed):
    rng = np.random.default_rng(seed)
    # n <= d points in general position are separable by a homogeneous hyperplane for any
    # labels (Cover 1965); n = 8 d pure-noise points with random labels almost never are
    # (the probability is 2^{1-n} sum_{k<d} C(n-1, k) = 1.7e-7 at d = 5, n = 40: a false
    # alarm rate of 5e-7 over the three draws)
    for _ in range(3):
        x = rng.standard_normal((10, 12))
        assert lg.is_separable(x, rng.choice([-1.0, 1.0], 10))
        x = rng.standard_normal((40, 5))
        assert not lg.is_separable(x, rng.choice([-1.0, 1.0], 40))


# -- (b) logistic loss, separable data: convergence in direction -------------------------------------
def test_logistic_converges_in_direction_to_max_margin(seed):
    dim, n, reps = 30, 15, 3
    run = lg.run_protocols("logistic", n, dim, 0.5, 1.0, reps, seed, protocols=("scratch",),
                           max_steps=20_000, record_points=40)
    assert run.separable.all()
    traj = run.scratch
    assert traj.converged.all()  # the loss reached ~1e-20 (|g| <= 1e-20)
    cos = traj.cosine
    # the norm diverges: grows by orders of magnitude after the loss falls below 1e-2
    late = traj.log_loss < math.log(1e-2)
    for r in range(reps):
        c = cos[late[:, r], r]
        norms = traj.norm[late[:, r], r]
        assert norms[-1] > 5 * norms[0]
        # the direction improves along the run: non-decreasing at the recorded steps (the
        # slack 1e-9 is rounding of the cosine), and the angle to the SVM direction shrinks
        # by at least half from loss 1e-2 to the end (the rate is logarithmic in the loss:
        # 1 - cos = O(1/log^2(1/loss)) in the late phase)
        assert np.all(np.diff(c) > -1e-9), c
        assert 1 - c[-1] < 0.5 * (1 - c[0])
    # at the end (loss ~1e-20), cos >= 0.99: the measured end value is 0.997-0.999 at this
    # size; the limit 1 is approached only logarithmically, so the bound is not tighter
    assert cos[-1].min() > 0.99, cos[-1]
    # the error of the direction limit is close to the end error (|d err| <= |dw| m/sqrt(2 pi))
    np.testing.assert_allclose(traj.final_error, run.max_margin_error, atol=0.03)


# -- (c) logistic loss, non-separable data: a finite minimiser -------------------------------------
def test_logistic_on_non_separable_data_reaches_the_minimiser(seed):
    dim, n, reps = 10, 120, 2  # gamma = 12, m = 1: far beyond the separability threshold
    run = lg.run_protocols("logistic", n, dim, 0.5, 1.0, reps, seed, protocols=("scratch",), max_steps=20_000)
    assert not run.separable.any()
    traj = run.scratch
    assert traj.converged.all()
    assert traj.grad_norm.max() <= 1e-10
    reference = np.stack([lg.logistic_minimiser(x, y) for x, y in zip(run.x, run.y)])
    # strictly convex: |w - w*| <= |g| / lambda_min(Hessian); lambda_min >= 0.01 here
    np.testing.assert_allclose(traj.beta, reference, atol=1e-7)
    assert np.isfinite(traj.norm).all() and traj.norm[-1].max() < 50


# -- linear transfer and fine-tuning ---------------------------------------------------------------
def test_linear_transfer_depends_on_abs_cos_and_matches_the_estimator(seed):
    dim, n, reps = 20, 30, 2
    angles = [0.4, math.pi - 0.4, 1.3]
    for loss in lg.LOSSES:
        run = lg.run_protocols(loss, n, dim, angles, 1.5, reps, seed, protocols=("linear_transfer",), max_steps=5000)
        errors = run.final_errors("linear_transfer")
        # theta and pi - theta: the same |cos theta|, the same error on each target set
        # (the readout's sign undoes the anti-aligned feature); tolerance: the O(1e-6)
        # initialisation residual of the features
        np.testing.assert_allclose(errors[0], errors[1], atol=1e-6)
        mu_t = est.class_means(dim, 1.5, 0.0)[1]
        for a, angle in enumerate(angles):
            mu_s = est.class_means(dim, 1.5, angle)[0]
            if loss == "square":
                # exactly the closed-form readout on the feature mu_s (estimator of
                # clf.lt.error_finite)
                exact = np.array([est.test_error(est.linear_transfer_classifier(x, y, mu_s), mu_t)
                                  for x, y in zip(run.x, run.y)])
                np.testing.assert_allclose(errors[a], exact, atol=1e-6)
            # any loss: w along +-mu_s with the readout's sign, so the error is Phi(-m |cos|)
            # or Phi(m |cos|)
            limit = est.test_error(mu_s, mu_t)
            assert np.all(np.isclose(errors[a], limit, atol=1e-6) | np.isclose(errors[a], 1 - limit, atol=1e-6))


def test_fine_tuning_beyond_the_threshold_is_scratch(seed):
    # gamma > 1, square loss: X has full column rank, the minimiser is unique and every
    # start ends there (the theory's clf.ft.transferability = 0 for gamma >= 1)
    run = lg.run_protocols("square", 60, 20, [0.5, 2.5], 1.0, 2, seed, max_steps=20_000)
    np.testing.assert_allclose(run.final_errors("fine_tuning"), np.tile(run.final_errors("scratch"), (2, 1)),
                               atol=1e-8)


# -- (d) bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(loss="hinge"), "loss"),
        (dict(n_samples=0), "n_samples"),
        (dict(dim=1), "dim"),
        (dict(angles=4.0), "angles"),
        (dict(replicates=0), "replicates"),
        (dict(seed=-1), "seed"),
        (dict(depth=1), "depth"),
        (dict(init_scale=0.0), "init_scale"),
        (dict(protocols=("ridge",)), "protocol"),
        (dict(grad_tol=-1.0), "grad_tol"),
        (dict(step_scale=2.5), "step_scale"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, name):
    args = dict(loss="square", n_samples=5, dim=4, angles=0.5, norm=1.0, replicates=1, seed=0)
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        lg.run_protocols(**args, **extra, max_steps=5)


def test_divergence_raises_naming_the_step():
    # a step far above the stability limit: the curvature bound replaced by a tiny one
    class Bad(lg._Sample):
        def terms(self, beta):
            t = super().terms(beta)
            t.curv_unit = t.curv_unit * 1e-4
            return t

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((1, 20, 6)))
    y = torch.tensor(np.sign(rng.standard_normal((1, 20))))
    weights = lg.small_init(1, 6, 2, torch.Generator().manual_seed(0), scale=0.5)
    with pytest.raises(DivergenceError, match="step size"):
        lg.descend(weights, Bad(x, y, "square"), torch.ones(6, dtype=torch.float64), grad_tol=1e-10, max_steps=2000, step_scale=1.9)


# -- (e) seeds -----------------------------------------------------------------------------------------------
def test_seeds_reproduce():
    def go(seed):
        run = lg.run_protocols("logistic", 8, 10, [0.3, 2.0], 1.0, 2, seed, max_steps=200)
        return np.concatenate([run.scratch.error.ravel(), run.transfer["fine_tuning"].error.ravel(),
                               run.transfer["linear_transfer"].beta.ravel()])

    a, b, c = go(3), go(3), go(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_record_steps_are_logarithmic():
    steps = lg.record_steps(10_000, 5)
    np.testing.assert_array_equal(steps, [0, 1, 10, 100, 1000, 10_000])
    with pytest.raises(ValueError, match="max_steps"):
        lg.record_steps(0)


# -- (f) the study ---------------------------------------------------------------------------------------------
def test_figures_quick(tmp_path):
    from featfate_sym.studies import classification_phase as study

    paths = study.figures(tmp_path, quick=True)
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    assert all(p.stat().st_size > 1000 for p in paths)
    assert "cos" in study.ANSWER


def test_theory_errors_come_from_the_registry():
    import featfate_sym as ff
    from featfate_sym.studies import classification_phase as study

    values = study.theory_errors(np.array([0.5, 2.0]), 1.0, 2.0)
    assert values["scratch"][1] == pytest.approx(ff.get("clf.scratch.error").evaluate(gamma=2.0, m=2.0), rel=1e-12)
    # fine-tuning at the simulated depth: the balanced-flow end point, not the c = 1 form
    assert values["fine_tuning"][0] == pytest.approx(
        ff.get("clf.ft.error_exact").evaluate(gamma=0.5, theta=1.0, m=2.0, L=study.DEPTH), rel=1e-12)
    assert values["fine_tuning"][0] != pytest.approx(ff.get("clf.ft.error").evaluate(gamma=0.5, theta=1.0, m=2.0))


def test_markdown_table_marks_degenerate_z():
    from featfate_sym import stats
    from featfate_sym.studies import classification_phase as study

    row = dict(m=1.0, gamma=0.5, theta=math.pi / 4, protocol="linear_transfer", theory=0.2399,
               mc=stats.MeanSE(0.2398, 0.0, 10, 9.0), z_mc=study._z(stats.MeanSE(0.2398, 0.0, 10, 9.0), 0.2399),
               deep_square=stats.MeanSE(0.25, 0.01, 10, 9.0), z_square=study._z(stats.MeanSE(0.25, 0.01, 10, 9.0), 0.24),
               deep_logistic=stats.MeanSE(0.24, 0.01, 10, 9.0), T_theory=0.1,
               T_square=stats.MeanSE(0.1, 0.01, 10, 9.0), T_logistic=stats.MeanSE(0.09, 0.01, 10, 9.0))
    text = study.markdown_table([row])
    line = text.splitlines()[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[6] == "-"  # degenerate SE: no z
    assert cells[8] == "1.00"  # (0.25 - 0.24) / 0.01
    assert len(cells) == 17
    assert cells[10] == "-" and cells[11] == "-"  # linear transfer has no max-margin limit
    scratch = dict(row, protocol="scratch", mm_theory=0.3, z_logistic_mm=study._z(stats.MeanSE(0.32, 0.01, 10, 9.0), 0.3),
                   max_margin=stats.MeanSE(0.31, 0.005, 10, 9.0), z_mm=2.0)
    cells = [c.strip() for c in study.markdown_table([scratch]).splitlines()[2].strip("|").split("|")]
    assert cells[10] == "0.3000" and cells[11] == "2.00" and cells[13] == "2.00"


def test_max_margin_theory_of_the_table():
    from featfate_sym.studies import classification_phase as study

    assert math.isnan(study.max_margin_theory(5.0, 1.0))  # beyond gamma*(1) = 3.70
    assert math.isnan(study.max_margin_theory(0.5, 8.0))  # beyond the result's m <= 6
    assert 0.25 < study.max_margin_theory(1.0, 1.0) < 0.35


# -- (e) absolute error of the deep network: extrapolation in 1/d ----------------------------------
def _deep_square_extrapolation(dims, reps, seed, cells):
    """Per cell ``(m, gamma, theta)``: the depth-2 square-loss network's final test errors
    (scratch, fine-tuning) at each ``d``, fitted by ``a + b/d`` (weighted least squares,
    :func:`featfate_sym.simulation.classification.extrapolate_inverse_dim`); rows
    ``(protocol, cell, theory, intercept MeanSE, z)``."""
    import featfate_sym as ff
    from featfate_sym import stats

    rows = []
    for c, (mv, g, th) in enumerate(cells):
        per = {"scratch": [], "fine_tuning": []}
        for d in dims:
            run = lg.run_protocols("square", int(round(g * d)), d, th, mv, reps, seed + 31 * c + d,
                                   protocols=("scratch", "fine_tuning"), max_steps=40_000)
            assert run.scratch.converged.all() and run.transfer["fine_tuning"].converged.all()
            per["scratch"].append(stats.mean_se(run.final_errors("scratch")))
            per["fine_tuning"].append(stats.mean_se(run.final_errors("fine_tuning")[0]))
        theory = {"scratch": ff.get("clf.scratch.error").evaluate(gamma=g, m=mv),
                  "fine_tuning": ff.get("clf.ft.error_exact").evaluate(gamma=g, theta=th, m=mv, L=2)}
        for protocol, estimates in per.items():
            fit = est.extrapolate_inverse_dim(dims, estimates)
            rows.append((protocol, (mv, g, th), theory[protocol], fit, (fit.mean - theory[protocol]) / fit.se))
    return rows


def _check_extrapolation(rows):
    from featfate_sym import stats

    from checks import FAMILY_ALPHA

    for protocol, cell, theory, fit, z in rows:
        critical = stats.t_critical(fit.df, FAMILY_ALPHA, len(rows))
        assert abs(z) <= critical, (protocol, cell, theory, fit, z, critical)


def test_deep_square_network_absolute_error_extrapolated(seed):
    # reduced default: one cell, d = 40 and 80, 12 target sets each.  Statement: the
    # depth-2 network's end-point error, extrapolated linearly in 1/d to d = oo, equals the
    # proportional-limit theory (clf.scratch.error; clf.ft.error_exact at L = 2): Student t of
    # the intercept (SE from the fit, df the smallest replicate df), Bonferroni over the
    # rows, family-wise false-alarm rate 1e-3.  With two dimensions the fit interpolates
    # (intercept 2 mean_80 - mean_40, SE sqrt(4 se_80^2 + se_40^2)): no residual to hide in.
    rows = _deep_square_extrapolation((40, 80), 12, seed, [(1.0, 0.5, 2.0)])
    _check_extrapolation(rows)
    # power: chance level (1/2, what a wrong sign or a failed fit would give) is rejected
    from featfate_sym import stats

    from checks import FAMILY_ALPHA

    for protocol, cell, theory, fit, z in rows:
        assert abs(fit.mean - 0.5) > stats.t_critical(fit.df, FAMILY_ALPHA, len(rows)) * fit.se, (protocol, fit)


@pytest.mark.slow
def test_deep_square_network_absolute_error_extrapolated_full(seed):
    # d = 50, 100, 200 (24 target sets each), four cells at m = 1, 2
    cells = [(1.0, 0.5, 2.0), (1.0, 2.0, math.pi / 4), (2.0, 0.5, math.pi / 4), (2.0, 0.5, 2.0)]
    rows = _deep_square_extrapolation((50, 100, 200), 24, seed, cells)
    for row in rows:
        print(row)
    _check_extrapolation(rows)

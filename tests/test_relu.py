"""Two-layer ReLU transfer: the arc-cosine kernel against SPEC.md and quadrature, the
exact feature overlap against sampling, and the transfer prediction against Torch.

Expected formulas are typed here, independently of the derivation: SPEC.md section 3
gives the unit-norm kernel ``(sqrt(1-u^2) + u (pi - arccos u)) / (2 pi)``; positive
homogeneity of the ReLU (``relu(r z) = r relu(z)``) scales it by ``r1 r2``; Stein's lemma
gives ``E[relu(w.x) v.x] = E[relu'(w.x)] w.v = w.v / 2``; symmetry of ``z ~ N(0,1)`` gives
``E[relu(z)^2] = E[z^2]/2`` and ``E[relu(z)] = E|z|/2 = 1/sqrt(2 pi)``.

Statistical tests:

- Monte Carlo overlap: two-sided z-tests of the in-sample and held-out mean squared
  residuals against the exact value, with a one-sided bracket built in (in-sample <= exact
  <= held-out in expectation); each at false-alarm 5e-4 (|z| <= 3.5), family-wise 1e-3.
  The ``O(rank / n_samples)`` biases (about 4e-4 relative here) are far below the
  standard errors (about 4e-3 relative).
- Linear transfer: deterministic lower bound ``R_lt >= |P_perp f_t|^2`` (no readout on
  frozen features beats the projection in population); upper allowance
  ``R_lt - overlap <= 3 overlap p / (n - p - 1)`` with ``p`` the features used: the
  mean excess risk of least squares with ``p`` regressors and residual variance
  ``overlap`` is ``overlap p / (n - p - 1)`` (Gaussian design; an approximation for
  ReLU features), and its relative spread is about ``sqrt(2/p)`` (0.2 at ``p = 48``), so
  3 times the mean is ten spreads away (false-alarm far below 1e-3).  Ordering across
  ``mu``: the overlap differences between the ``mu`` values (about 0.05 to 0.15) are many
  times the allowance.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from featfate_sym import registry
from featfate_sym.studies.relu_overlap import feature_overlap, overlap_monte_carlo, relu_gram, target_norm
from featfate_sym.simulation.relu import (
    MeanFieldStudent,
    TrainingOptions,
    arccos_gram,
    linear_transfer_relu,
    make_relu_tasks,
    population_risk,
    pretrain_student,
    sample_relu_data,
    simulate_relu_transfer,
)
from featfate_sym.symbols import r1, r2, rho

KEYS = ["relu.arccos_kernel", "relu.linear_cross", "relu.second_moment", "relu.mean"]


def spec_unit_kernel(u):
    return (sp.sqrt(1 - u**2) + u * (sp.pi - sp.acos(u))) / (2 * sp.pi)


# -- registry and symbolic checks ---------------------------------------------------------
def test_keys_registered_exact():
    for key in KEYS:
        r = registry.get(key)
        assert r.family == "relu"
        assert r.status.exact
    assert registry.get("relu.arccos_kernel").param_names == ("r1", "r2", "rho")


def test_kernel_matches_spec_unit_form_times_norms():
    got = registry.get("relu.arccos_kernel").expr
    assert sp.simplify(got - r1 * r2 * spec_unit_kernel(rho)) == 0


def test_kernel_derivative_is_finite_at_the_ends():
    slope = registry.get("relu.arccos_kernel").extras["d_angular_drho"]
    assert sp.simplify(slope - sp.diff(spec_unit_kernel(rho), rho)) == 0
    assert slope.subs(rho, 1) == sp.Rational(1, 2)
    assert slope.subs(rho, -1) == 0


def test_linear_cross_matches_stein():
    got = registry.get("relu.linear_cross").expr
    assert sp.simplify(got - r1 * r2 * rho / 2) == 0


def test_moments_match_symmetry():
    assert sp.simplify(registry.get("relu.second_moment").expr - r1**2 / 2) == 0
    assert sp.simplify(registry.get("relu.mean").expr - r1 / sp.sqrt(2 * sp.pi)) == 0


@pytest.mark.parametrize("u", ["-1", "-0.999999", "-0.3", "0", "0.5", "0.9999999999", "1"])
def test_kernel_against_polar_quadrature_50_digits(u):
    """The 2-D Gaussian integral by mpmath quadrature, split at the kinks of the ReLUs."""
    result = registry.get("relu.arccos_kernel")
    with mpmath.workdps(50):
        uu = mpmath.mpf(u)
        phi = mpmath.acos(uu)
        rr1, rr2 = mpmath.mpf(3) / 2, mpmath.mpf(2) / 7

        def angular(t):
            return max(mpmath.cos(t), 0) * max(mpmath.cos(t - phi), 0)

        pi = mpmath.pi
        kinks = [-pi / 2, pi / 2, phi - pi / 2, phi + pi / 2]
        cuts = sorted({-pi, pi} | {k for k in kinks if -pi < k < pi})
        ang = mpmath.quad(angular, cuts)
        radial = mpmath.quad(lambda r: r**3 * mpmath.exp(-r * r / 2), [0, mpmath.inf])
        expected = rr1 * rr2 * radial * ang / (2 * pi)
        got = result.evaluate_mp(50, r1=rr1, r2=rr2, rho=uu)
        assert abs(got - expected) < mpmath.mpf(10) ** -40
    assert abs(result.evaluate(r1=1.5, r2=2 / 7, rho=float(u)) - float(expected)) < 1e-13


def test_kernel_rejects_cosine_outside_range():
    with pytest.raises(ValueError, match="parameter rho must be"):
        registry.get("relu.arccos_kernel").evaluate(r1=1.0, r2=1.0, rho=1.5)


# -- the exact overlap ---------------------------------------------------------------------
def _feature_set(rng, teacher_w, n_aligned, n_random):
    """Some teacher directions (rescaled, perturbed) and some random ones, general norms."""
    d = teacher_w.shape[1]
    aligned = teacher_w[:n_aligned] + 0.05 * rng.standard_normal((n_aligned, d)) / np.sqrt(d)
    aligned *= rng.uniform(0.5, 2.0, (n_aligned, 1))
    random = rng.standard_normal((n_random, d)) * rng.uniform(0.3, 2.0, (n_random, 1)) / np.sqrt(d)
    return np.vstack([aligned, random])


def test_gram_against_sampling(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3, 6)) * rng.uniform(0.2, 3, (3, 1))
    x = rng.standard_normal((400_000, 6))
    phi = np.maximum(x @ a.T, 0)
    sample = phi.T @ phi / x.shape[0]
    se = (phi[:, :, None] * phi[:, None, :]).std(axis=0) / np.sqrt(x.shape[0])
    z = (sample - relu_gram(a, a)) / se
    # nine entries (six distinct), family-wise false alarm 1e-3: |z| <= 3.9
    assert np.all(np.abs(z) <= 3.9), z


def test_overlap_zero_when_target_in_span_and_full_when_orthogonal(seed):
    tasks = make_relu_tasks(12, 5, 0.0, seed=seed)
    w, a = tasks.target.weights.numpy(), tasks.target.readout.numpy()
    scaled = np.vstack([w * 2.5, np.random.default_rng(seed).standard_normal((4, 12))])
    out = feature_overlap(scaled, w, a)
    assert abs(out.residual) < 1e-12 * out.target_norm
    # target equals f_t itself: its projection on the span of its own neurons is exact
    assert out.target_norm == pytest.approx(target_norm(w, a), rel=1e-14)


def test_overlap_against_monte_carlo_regression(seed):
    rng = np.random.default_rng(seed)
    tasks = make_relu_tasks(15, 6, 0.0, seed=rng)
    w, a = tasks.target.weights.numpy(), tasks.target.readout.numpy()
    feats = _feature_set(rng, w, 3, 12)
    exact = feature_overlap(feats, w, a)
    assert exact.rank == feats.shape[0]
    mc = overlap_monte_carlo(feats, w, a, n_samples=200_000, seed=rng)
    z_in = (mc.in_sample - exact.residual) / mc.in_sample_se
    z_out = (mc.held_out - exact.residual) / mc.held_out_se
    assert abs(z_in) <= 3.5 and abs(z_out) <= 3.5, (exact.residual, mc)
    # not a vacuous check: the removed half of the target is far from zero
    assert exact.residual > 50 * mc.held_out_se


def test_overlap_bad_input():
    with pytest.raises(ValueError, match="rank_tol"):
        feature_overlap(np.ones((2, 3)), np.ones((1, 3)), np.ones(1), rank_tol=1.0)
    with pytest.raises(ValueError, match="teacher_readout"):
        feature_overlap(np.ones((2, 3)), np.ones((1, 3)), np.ones(2))
    with pytest.raises(ValueError, match="n_samples"):
        overlap_monte_carlo(np.ones((2, 3)), np.ones((1, 3)), np.ones(1), n_samples=3, seed=0)


# -- Torch pieces ------------------------------------------------------------------------------
def test_torch_kernel_matches_compiled_and_gradient_matches_finite_differences(seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(arccos_gram(a, b).detach().numpy(), relu_gram(a.detach().numpy(), b.detach().numpy()), rtol=1e-13)
    assert torch.autograd.gradcheck(arccos_gram, (a, b))
    # a neuron paired with itself (rho = 1), where acos and sqrt each have infinite slope
    assert torch.autograd.gradcheck(lambda w: arccos_gram(w, w), (a,))


def test_tasks_reproducible_and_variants(seed):
    t1 = make_relu_tasks(10, 8, 0.25, seed=seed)
    t2 = make_relu_tasks(10, 8, 0.25, seed=seed)
    assert torch.equal(t1.target.weights, t2.target.weights)
    assert t1.removed.size == 2 and t1.source.weights.shape == (6, 10)
    rep = make_relu_tasks(10, 8, 0.25, seed=seed, replace=True)
    assert rep.source.weights.shape == (8, 10)
    kept = np.setdiff1d(np.arange(8), rep.removed)
    assert torch.equal(rep.source.weights[kept], rep.target.weights[kept])
    assert not torch.allclose(rep.source.weights[rep.removed], rep.target.weights[rep.removed])
    x1, y1 = sample_relu_data(t1.target, 5, seed=3)
    x2, y2 = sample_relu_data(t1.target, 5, seed=3)
    assert torch.equal(y1, y2)
    with pytest.raises(ValueError, match="removed_fraction"):
        make_relu_tasks(10, 8, 1.5, seed=seed)
    with pytest.raises(ValueError, match="lr"):
        TrainingOptions(lr=0)


def test_population_risk_against_sampling(seed):
    tasks = make_relu_tasks(8, 3, 0.0, seed=seed)
    student = MeanFieldStudent.small_init(6, 8, init_scale=1.0, seed=seed)
    x, y = sample_relu_data(tasks.target, 400_000, seed=seed + 1)
    r2 = (student(x) - y) ** 2
    z = (float(r2.mean()) - float(population_risk(student, tasks.target))) / float(r2.std() / np.sqrt(r2.numel()))
    assert abs(z) <= 3.3  # false alarm 1e-3


# -- the transfer prediction -------------------------------------------------------------------
SMALL = dict(input_dim=20, teacher_width=8, student_width=48)
PRETRAIN = TrainingOptions(lr=1.0, max_steps=1500, tol=1e-6)


def _pretrained(mu, task_seed):
    tasks = make_relu_tasks(SMALL["input_dim"], SMALL["teacher_width"], mu, seed=task_seed)
    student = MeanFieldStudent.small_init(
        SMALL["student_width"], SMALL["input_dim"], init_scale=1e-3, seed=np.random.default_rng([task_seed, 2])
    )
    record = pretrain_student(student, tasks.source, PRETRAIN)
    return tasks, student, record


def test_overlap_bounded_by_source_risk_when_nothing_removed():
    # the pretrained student's own function lies in its feature span
    tasks, student, record = _pretrained(0.0, 0)
    ov = feature_overlap(student.weights.numpy(), tasks.target.weights.numpy(), tasks.target.readout.numpy())
    assert ov.residual <= record.final_loss * (1 + 1e-6) + 1e-12
    assert record.steps + record.rejected_steps > 0


def test_linear_transfer_tracks_exact_overlap_across_mu():
    mus = [0.25, 0.5, 0.75]
    n = 3000
    overlaps, risks = [], []
    for mu in mus:
        tasks, student, record = _pretrained(mu, 0)
        assert record.converged, record
        ov = feature_overlap(student.weights.numpy(), tasks.target.weights.numpy(), tasks.target.readout.numpy())
        x, y = sample_relu_data(tasks.target, n, seed=np.random.default_rng([0, 1]))
        lt, p = linear_transfer_relu(student, x, y)
        risk = float(population_risk(lt, tasks.target))
        assert risk >= ov.residual - 1e-10 * ov.target_norm
        assert risk - ov.residual <= 3 * ov.residual * p / (n - p - 1), (mu, risk, ov.residual, p)
        overlaps.append(ov.residual)
        risks.append(risk)
    assert np.all(np.diff(overlaps) > 0), overlaps
    assert stats.spearmanr(overlaps, risks).statistic == pytest.approx(1.0)


def test_linear_transfer_tracks_overlap_replace_variant():
    # source = target with half its neurons replaced by fresh ones
    out, _ = simulate_relu_transfer(
        **SMALL, removed_fraction=0.5, replace=True, n_samples=3000, procedures=("linear_transfer",),
        pretrain=PRETRAIN, seed=0,
    )
    # the source is fitted (the lt-vs-overlap comparison holds for any features, but the
    # scenario is the pretrained one)
    assert out.records["pretrain"].final_loss < 1e-4 * out.target_norm
    assert out.overlap > 0.02 * out.target_norm
    p, n = out.lt_rank, 3000
    assert out.overlap - 1e-10 <= out.risk_linear_transfer <= out.overlap * (1 + 3 * p / (n - p - 1))


def test_simulate_cell_records_everything():
    out, pre = simulate_relu_transfer(
        input_dim=8, teacher_width=3, student_width=12, removed_fraction=1 / 3, n_samples=60,
        pretrain=TrainingOptions(lr=1.0, max_steps=300, tol=1e-6),
        target_training=TrainingOptions(lr=1.0, max_steps=100, tol=1e-6), seed=1,
    )
    assert set(out.records) == {"pretrain", "scratch", "fine_tune"}
    assert out.settings["n_samples"] == 60 and out.settings["pretrain"]["lr"] == 1.0
    for r in (out.risk_linear_transfer, out.risk_scratch, out.risk_fine_tune):
        assert np.isfinite(r) and r >= 0
    assert out.risk_linear_transfer >= out.overlap - 1e-10
    again, _ = simulate_relu_transfer(
        input_dim=8, teacher_width=3, student_width=12, removed_fraction=1 / 3, n_samples=60,
        pretrain=TrainingOptions(lr=1.0, max_steps=300, tol=1e-6),
        target_training=TrainingOptions(lr=1.0, max_steps=100, tol=1e-6), seed=1,
    )
    assert again.risk_fine_tune == out.risk_fine_tune and again.risk_scratch == out.risk_scratch


@pytest.mark.slow
def test_transfer_at_default_scale():
    """d = 50, m* = 20, m = 200: R_lt tracks the overlap at n = 5000 across mu, and with
    little removed (mu = 0.1) fine-tuning beats scratch at n = 200.  One seed per cell:
    the allowance is the single-run one of the module docstring."""
    n_large = 5000
    overlaps, risks = [], []
    for mu in [0.1, 0.25, 0.5, 0.75]:
        out, pre = simulate_relu_transfer(
            removed_fraction=mu, n_samples=n_large, procedures=("linear_transfer",),
            pretrain=TrainingOptions(lr=1.0, max_steps=8000, tol=1e-6),
        )
        # fitted to 1e-4 of |f_t|^2 (the tail of the descent to tol = 1e-6 is slow)
        assert out.records["pretrain"].final_loss < 1e-4 * out.target_norm, out.records["pretrain"]
        p = out.lt_rank
        assert out.risk_linear_transfer >= out.overlap - 1e-10 * out.target_norm
        assert out.risk_linear_transfer - out.overlap <= 3 * out.overlap * p / (n_large - p - 1), (mu, out)
        overlaps.append(out.overlap)
        risks.append(out.risk_linear_transfer)
        if mu == 0.1:
            small, _ = simulate_relu_transfer(
                removed_fraction=mu, n_samples=200, pretrained=pre, procedures=("scratch", "fine_tune"),
                target_training=TrainingOptions(lr=1.0, max_steps=3000, tol=1e-6),
            )
            assert small.risk_fine_tune < small.risk_scratch, small
    assert np.all(np.diff(overlaps) > 0), overlaps
    assert stats.spearmanr(overlaps, risks).statistic == pytest.approx(1.0)


# -- properties ----------------------------------------------------------------------------------

@given(st.integers(0, 10_000))
def test_gram_is_positive_semidefinite_and_scales(case):
    rng = np.random.default_rng(case)
    w = rng.standard_normal((7, 4)) * rng.uniform(0.1, 5, (7, 1))
    g = relu_gram(w, w)
    assert np.linalg.eigvalsh(g).min() >= -1e-12 * np.abs(g).max()
    # positive homogeneity: scaling one neuron scales its row and column
    w2 = w.copy()
    w2[0] *= 3.0
    g2 = relu_gram(w2, w2)
    np.testing.assert_allclose(g2[0, 1:], 3.0 * g[0, 1:], rtol=1e-12)


@given(st.floats(-1, 1), st.floats(-1, 1))
def test_kernel_increasing_in_cosine(u, v):
    k = registry.get("relu.arccos_kernel").numpy
    lo, hi = min(u, v), max(u, v)
    assert k(1.0, 1.0, lo) <= k(1.0, 1.0, hi) + 1e-15
    assert k(1.0, 1.0, lo) >= 0.0

"""Gradient-flow structure of deep linear networks: derived results against independent checks.

Expected formulas are typed from SPEC.md section 2 ("Gradient-flow structure of deep
linear networks"); the registry derives them independently.  Numerical checks use
explicit networks in NumPy (one gradient-descent step, finite differences of the
layer-wise flow, integration of the flow with ``scipy.integrate.solve_ivp``) and
``mpmath.quad`` for the time to learn.  All randomness comes from the ``seed`` fixture.
"""

import mpmath
import numpy as np
import pytest
import scipy.special
import sympy as sp
from scipy.integrate import solve_ivp

from featfate_sym.registry import get
from featfate_sym.symbols import L, eta, mu, s, t, tau, u, u0

KEYS = ["dln.conservation", "dln.balanced_flow", "dln.mode_dynamics", "dln.time_to_learn"]


# -- numpy helpers: an explicit single-output deep linear network -------------------------------
def end_to_end(weights):
    out = weights[0]
    for w in weights[1:]:
        out = out @ w
    return out


def layer_gradients(weights, g):
    """``dLoss/dW_l = (W_1..W_{l-1})^T g (W_{l+1}..W_L)^T`` for ``g = dLoss/dbeta``."""
    grads = []
    for l in range(len(weights)):
        prefix = end_to_end(weights[:l]) if l else np.eye(weights[0].shape[0])
        suffix = end_to_end(weights[l + 1:]) if l + 1 < len(weights) else np.ones((1, 1))
        grads.append(prefix.T @ g @ suffix.T)
    return grads


def imbalance(weights, l):
    return weights[l].T @ weights[l] - weights[l + 1] @ weights[l + 1].T


def random_network(rng, depth, width):
    return [rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(depth - 1)] + [
        rng.standard_normal((width, 1))
    ]


def balanced_network(rng, beta, depth):
    """Balanced weights with end-to-end vector ``beta``: ``W_l = r u_{l-1} u_l^T``, ``W_L = r u_{L-1}``."""
    dim = beta.shape[0]
    norm = np.linalg.norm(beta)
    r = norm ** (1.0 / depth)
    units = [beta / norm] + [v / np.linalg.norm(v) for v in rng.standard_normal((depth - 1, dim, 1))]
    weights = [r * units[l] @ units[l + 1].T for l in range(depth - 1)] + [r * units[-1]]
    return weights


def quadratic_problem(rng, dim, n_samples):
    x = rng.standard_normal((n_samples, dim))
    y = rng.standard_normal((n_samples, 1))

    def grad(beta):  # loss (1/2n)|X beta - y|^2
        return x.T @ (x @ beta - y) / n_samples

    return x, y, grad


# -- registry hygiene for this family --------------------------------------------------------------
def test_keys_registered_with_family_status_and_parameters():
    for key in KEYS:
        r = get(key)
        assert r.family == "deep_linear"
        assert r.status.exact
        assert r.reference and r.steps
    assert get("dln.conservation").param_names == ("mu", "t")
    assert get("dln.balanced_flow").param_names == ("L",)
    assert get("dln.mode_dynamics").param_names == ("s", "u0", "t", "tau")
    assert get("dln.time_to_learn").param_names == ("s", "u0", "uf", "tau", "L")


# -- dln.conservation ------------------------------------------------------------------------------
def test_weight_decay_factor_is_spec_exponential():
    expected = sp.exp(-2 * mu * t)  # SPEC: D_l(t) = exp(-2 mu t) D_l(0)
    assert sp.simplify(get("dln.conservation").expr - expected) == 0


def test_conservation_identities_in_extras_are_zero_matrices():
    extras = get("dln.conservation").extras
    names = [k for k in extras if k != "gd_drift"]
    prefixes = ("flow_rate_", "weight_decay_residual_", "gd_first_order_", "gd_second_order_residual_")
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in names), prefix
    for name in names:
        m_ = extras[name]
        assert isinstance(m_, sp.MatrixBase) and m_.shape == (2, 2), name
        assert m_.is_zero_matrix, (name, m_)


def test_gd_drift_expression_matches_spec_on_explicit_matrices(seed):
    """``extras['gd_drift']`` evaluated on random integer matrices equals
    ``eta^2 (G_l^T G_l - G_{l+1} G_{l+1}^T)`` (SPEC) computed here in NumPy."""
    drift = get("dln.conservation").extras["gd_drift"]
    symbols = {m_.name: m_ for m_ in drift.atoms(sp.MatrixSymbol)}
    assert {"G_l", "G_{l+1}"} <= set(symbols)
    assert not any(name.startswith("W") for name in symbols), "the drift does not involve W"
    dims = {sym for m_ in symbols.values() for sym in m_.shape if isinstance(sym, sp.Symbol)}
    rng = np.random.default_rng(seed)
    gl, gn = rng.integers(-5, 6, (3, 3)), rng.integers(-5, 6, (3, 3))
    step = sp.Rational(3, 7)
    value = drift.subs({symbols["G_l"]: sp.Matrix(gl), symbols["G_{l+1}"]: sp.Matrix(gn)})
    value = value.subs({d_: 3 for d_ in dims}).subs(eta, step)
    value = sp.Matrix(value.as_explicit())
    expected = (gl.T @ gl - gn @ gn.T) * sp.Rational(9, 49)
    assert value == sp.Matrix(expected)


def _symbolic_network(depth, width):
    return [
        sp.Matrix(width, width if l < depth else 1, lambda i, j, l=l: sp.Symbol(f"v{l}_{i}{j}", real=True))
        for l in range(1, depth + 1)
    ]


@pytest.mark.parametrize("depth,width", [(4, 2), (3, 3)])
def test_conservation_independent_symbolic_check(depth, width):
    """Independently of the module: a generic loss of beta, gradients by sp.diff, and the
    rate of D_l along the flow (and along the flow with weight decay) by the chain rule."""
    weights = _symbolic_network(depth, width)
    beta = weights[0]
    for w in weights[1:]:
        beta = beta * w
    loss = sp.Function("h")(*beta)
    entries = [e for w in weights for e in w]
    grad = {e: sp.diff(loss, e) for e in entries}
    for l in range(depth - 1):
        d_l = weights[l].T * weights[l] - weights[l + 1] * weights[l + 1].T
        layer_entries = [e for w in weights[l:l + 2] for e in w]
        rate = sp.zeros(*d_l.shape)
        rate_decay = sp.zeros(*d_l.shape)
        for e in layer_entries:
            partial = d_l.diff(e)
            rate += partial * (-grad[e])
            rate_decay += partial * (-grad[e] - mu * e)
        assert rate.applyfunc(sp.expand).is_zero_matrix
        assert (rate_decay + 2 * mu * d_l).applyfunc(sp.expand).is_zero_matrix


def test_rate_along_flow_sees_non_conserved_quantities():
    """The module's derivative-along-the-flow is not trivially zero: ``W_1^T W_1`` alone
    changes, at the rate ``-(G_1^T W_1 + W_1^T G_1)``."""
    from featfate_sym.theory import deep_linear as dl

    weights = dl._symbolic_weights(2, 2)
    loss = sp.Function("h")(*(weights[0] * weights[1]))
    grads = [w.applyfunc(lambda e: sp.diff(loss, e)) for w in weights]
    rate = dl._rate_along(weights, [-g_ for g_ in grads], weights[0].T * weights[0])
    expected = -(grads[0].T * weights[0] + weights[0].T * grads[0])
    assert not rate.applyfunc(sp.expand).is_zero_matrix
    assert (rate - expected).applyfunc(sp.expand).is_zero_matrix


def test_gradient_descent_drift_numerically(seed):
    """One explicit GD step on a quadratic loss through beta: ``D_l(k+1) - D_l(k)`` equals
    ``eta^2 (G_l^T G_l - G_{l+1} G_{l+1}^T)`` to 1e-12 relative (SPEC), while the step
    itself changes the weights by O(eta)."""
    rng = np.random.default_rng(seed)
    depth, width, step = 4, 5, 0.01
    weights = random_network(rng, depth, width)
    x, y, grad = quadratic_problem(rng, width, 8)
    grads = layer_gradients(weights, grad(end_to_end(weights)))

    def loss(ws):
        return 0.5 * np.mean((x @ end_to_end(ws) - y) ** 2)

    h = 1e-6
    for l in range(depth):
        bumped_up = [w.copy() for w in weights]
        bumped_dn = [w.copy() for w in weights]
        bumped_up[l][0, 0] += h
        bumped_dn[l][0, 0] -= h
        fd = (loss(bumped_up) - loss(bumped_dn)) / (2 * h)
        # the analytic layer gradient against a central finite difference of the loss
        assert abs(fd - grads[l][0, 0]) <= 1e-7 * (1 + abs(fd))
    stepped = [w - step * gr for w, gr in zip(weights, grads)]
    for l in range(depth - 1):
        change = imbalance(stepped, l) - imbalance(weights, l)
        predicted = step**2 * (grads[l].T @ grads[l] - grads[l + 1] @ grads[l + 1].T)
        scale = np.max(np.abs(predicted))
        assert scale > 0
        assert np.max(np.abs(change - predicted)) <= 1e-12 * max(scale, np.max(np.abs(imbalance(weights, l))))
        # the first-order part of layer l alone is far bigger than the drift: it cancels
        # against layer l+1's, which is what the identity says
        first = step * (grads[l].T @ weights[l] + weights[l].T @ grads[l])
        assert np.max(np.abs(first)) > 1.5 * np.max(np.abs(change))


def _flatten(weights):
    return np.concatenate([w.ravel() for w in weights])


def _unflatten(vec, shapes):
    out, i = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(vec[i:i + size].reshape(shape))
        i += size
    return out


def test_weight_decay_flow_integrated_numerically(seed):
    """Integrate dW/dt = -G - mu W (solve_ivp, rtol 1e-11) and compare D_l(t) with
    ``result.evaluate(mu, t) * D_l(0)``."""
    rng = np.random.default_rng(seed)
    depth, width, decay, horizon = 3, 3, 0.3, 1.5
    weights = random_network(rng, depth, width)
    _, _, grad = quadratic_problem(rng, width, 6)
    shapes = [w.shape for w in weights]

    def rhs(_, vec):
        ws = _unflatten(vec, shapes)
        grads = layer_gradients(ws, grad(end_to_end(ws)))
        return _flatten([-gr - decay * w for gr, w in zip(grads, ws)])

    sol = solve_ivp(rhs, (0, horizon), _flatten(weights), rtol=1e-11, atol=1e-13, method="DOP853")
    final = _unflatten(sol.y[:, -1], shapes)
    factor = get("dln.conservation").evaluate(mu=decay, t=horizon)
    for l in range(depth - 1):
        start, end = imbalance(weights, l), imbalance(final, l)
        assert np.max(np.abs(end - factor * start)) <= 1e-8 * np.max(np.abs(start))
    # the weights themselves moved: the check is not trivially satisfied
    assert np.max(np.abs(final[0] - weights[0])) > 1e-2


# -- dln.balanced_flow -----------------------------------------------------------------------------
def test_null_space_exponent_is_spec_value():
    r = get("dln.balanced_flow")
    expected = (L - 1) / L  # SPEC: dlog|beta_N| / dlog|beta| = (L-1)/L
    assert sp.simplify(r.extras["null_space_exponent"] - expected) == 0
    assert sp.simplify(r.expr - expected) == 0
    assert r.evaluate(L=4) == pytest.approx(0.75, rel=1e-15)


def _vector_field_numeric(beta, g, depth):
    """Evaluate ``extras['vector_field']`` at numeric ``beta, g`` by substitution."""
    r = get("dln.balanced_flow")
    field = r.extras["vector_field"]
    mats = {m_.name: m_ for m_ in field.atoms(sp.MatrixSymbol)}
    scalars = {sym.name: sym for sym in field.free_symbols if isinstance(sym, sp.Symbol)}
    dim = beta.shape[0]
    subs = {mats["beta"]: sp.Matrix(beta), mats["g"]: sp.Matrix(g)}
    value = field.subs(subs)
    scalar_subs = {}
    for name, sym in scalars.items():
        if name == "L":
            scalar_subs[sym] = depth
        elif name == "d":
            scalar_subs[sym] = dim
        else:  # the norm of beta
            scalar_subs[sym] = sp.Float(np.linalg.norm(beta), 30)
    value = sp.Matrix(value.subs(scalar_subs).as_explicit())
    return np.array(value.evalf(20), dtype=float)


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_balanced_vector_field_against_layerwise_flow(seed, depth):
    """Random balanced weights: the finite difference of beta along the layer-wise flow
    ``dW_l/dt = -G_l`` equals the derived vector field and SPEC's formula."""
    rng = np.random.default_rng([seed, depth])
    dim = 4
    beta = rng.standard_normal((dim, 1))
    weights = balanced_network(rng, beta, depth)
    assert np.allclose(end_to_end(weights), beta, rtol=1e-13, atol=1e-13)
    for l in range(depth - 1):
        assert np.max(np.abs(imbalance(weights, l))) < 1e-12
    _, _, grad = quadratic_problem(rng, dim, 3)
    g = grad(beta)
    velocity = [-gr for gr in layer_gradients(weights, g)]
    h = 1e-5
    plus = end_to_end([w + h * v for w, v in zip(weights, velocity)])
    minus = end_to_end([w - h * v for w, v in zip(weights, velocity)])
    finite_difference = (plus - minus) / (2 * h)
    derived = _vector_field_numeric(beta, g, depth)
    norm = np.linalg.norm(beta)
    spec = -(norm ** (2 - 2 / depth)) * (g + (depth - 1) * beta @ beta.T @ g / norm**2)
    scale = np.max(np.abs(spec))
    assert np.max(np.abs(derived - spec)) <= 1e-12 * scale
    # central difference: error O(h^2 |d^3 beta|), about 1e-9 here
    assert np.max(np.abs(finite_difference - spec)) <= 1e-7 * scale


HORIZON = 60.0


def test_null_space_invariant_along_integrated_flow(seed):
    """Integrate the layer-wise flow of a balanced depth-3 network on an underdetermined
    least-squares problem (g in the row space of X); ``log|beta_N| - ((L-1)/L) log|beta|``
    stays constant while |beta| changes by a large factor."""
    rng = np.random.default_rng(seed)
    depth, dim, n_samples = 3, 5, 2
    x, y, grad = quadratic_problem(rng, dim, n_samples)
    beta0 = 1e-3 * rng.standard_normal((dim, 1))
    weights = balanced_network(rng, beta0, depth)
    shapes = [w.shape for w in weights]
    null = np.eye(dim) - np.linalg.pinv(x) @ x
    exponent = get("dln.balanced_flow").evaluate(L=depth)

    def rhs(_, vec):
        ws = _unflatten(vec, shapes)
        return _flatten([-gr for gr in layer_gradients(ws, grad(end_to_end(ws)))])

    sol = solve_ivp(rhs, (0, HORIZON), _flatten(weights), rtol=1e-11, atol=1e-16, method="DOP853",
                    t_eval=np.linspace(0, HORIZON, 9))
    invariants, norms = [], []
    for k in range(sol.y.shape[1]):
        beta = end_to_end(_unflatten(sol.y[:, k], shapes))
        norms.append(np.linalg.norm(beta))
        invariants.append(np.log(np.linalg.norm(null @ beta)) - exponent * np.log(norms[-1]))
    assert max(norms) / min(norms) > 2, "the flow must move |beta| for the check to mean anything"
    assert np.ptp(invariants) < 1e-7
    # the wrong exponent (the paper's c = 1 picture, |beta_N| fixed) fails the same check
    wrong = [np.log(np.linalg.norm(null @ end_to_end(_unflatten(sol.y[:, k], shapes))))
             for k in range(sol.y.shape[1])]
    assert np.ptp(wrong) > 1e-2


# -- dln.mode_dynamics -------------------------------------------------------------------------------
def test_mode_solution_is_spec_logistic():
    expected = s / (1 + (s / u0 - 1) * sp.exp(-2 * s * t / tau))  # SPEC, L = 2
    assert sp.simplify(get("dln.mode_dynamics").expr - expected) == 0


def test_mode_ode_is_spec_equation():
    rhs = get("dln.mode_dynamics").extras["ode_rhs"]
    expected = L * u ** (2 - sp.Rational(2) / L) * (s - u)  # SPEC: tau du/dt
    for depth in (1, 2, 3, 7):
        assert sp.simplify((rhs - expected).subs(L, depth)) == 0
    assert sp.simplify(sp.powsimp(rhs - expected, force=True)) == 0


def test_mode_solution_against_integrated_ode():
    r = get("dln.mode_dynamics")
    strength, start, const = 1.7, 1e-3, 0.8
    times = np.linspace(0, 6, 13)
    sol = solve_ivp(lambda _, v: 2 * v * (strength - v) / const, (0, 6), [start],
                    t_eval=times, rtol=1e-12, atol=1e-15, method="DOP853")
    got = r.evaluate(s=strength, u0=start, t=times, tau=const)
    np.testing.assert_allclose(got, sol.y[0], rtol=1e-8)
    assert r.evaluate(s=1.0, u0=0.5, t=1e5, tau=1e-3) == pytest.approx(1.0, rel=1e-15)


# -- dln.time_to_learn --------------------------------------------------------------------------
def _hyper_scipy(ap, bq, z):
    """``hyper((a, b), (c,), z)`` by scipy's hyp2f1.

    scipy takes its logarithmic branch near ``z = 1`` only when ``c - a - b`` is exactly an
    integer; printed parameters such as ``b = 2(L-1)/L``, ``c = 1 + 2(L-1)/L`` miss it by one
    rounding and the result is then wrong near ``z = 1`` (for instance
    ``2F1(1, 12/7; 19/7; 0.99888)`` gives -43.7 instead of 10.30).  ``b`` is snapped so
    that ``c - a - b`` is the integer exactly.
    """
    (a, b), (c,) = ap, bq
    a, b, c = (np.asarray(v, dtype=float) for v in (a, b, c))
    gap = c - a - b
    whole = np.round(gap)
    b = np.where(np.abs(gap - whole) < 1e-12, c - a - whole, b)
    return scipy.special.hyp2f1(a, b, c, z)


def _scipy_time(expr_result):
    """float64 evaluator with scipy's hyp2f1 for 'hyper' (what compiled.py needs for this key)."""
    hyp = _hyper_scipy

    f = sp.lambdify(expr_result.symbols, expr_result.expr, modules=[{"hyper": hyp}, "numpy"])

    def call(*args):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=float) for a in args])
        with np.errstate(all="ignore"):
            return f(*arrays)

    return call


def _quad_time(strength, start, stop, const, depth):
    """tau int du / (L u^p (s - u)), p = 2 - 2/L (SPEC's ODE), by mpmath quadrature."""
    p = 2 - mpmath.mpf(2) / depth
    return const * mpmath.quad(lambda v: 1 / (depth * v**p * (strength - v)), [start, stop])


def _spec_hypergeometric_time(strength, start, stop, const, depth):
    """SPEC: (tau/L)[F(uf) - F(u0)], F(u) = u^(1-p) 2F1(1, 1-p; 2-p; u/s) / (s (1-p))."""
    p = 2 - mpmath.mpf(2) / depth

    def big_f(v):
        return v ** (1 - p) * mpmath.hyp2f1(1, 1 - p, 2 - p, v / strength) / (strength * (1 - p))

    return const / depth * (big_f(stop) - big_f(start))


POINTS = [  # s, u0, uf, tau, L: below s, above s (decay), each depth branch
    ("1.3", "0.01", "1.0", "1.0", 1),
    ("1.3", "0.01", "1.0", "1.0", 2),
    ("1.3", "0.01", "1.0", "1.0", 3),
    ("2.0", "1e-4", "1.9", "0.5", 5),
    ("0.7", "0.3", "0.69", "3.0", 4),
    ("1.0", "3.0", "1.5", "1.0", 1),
    ("1.0", "3.0", "1.5", "1.0", 2),
    ("1.0", "3.0", "1.01", "2.0", 3),
    ("0.5", "40", "0.6", "1.0", 6),
]


@pytest.mark.parametrize("point", POINTS)
def test_time_to_learn_against_quadrature(point):
    r = get("dln.time_to_learn")
    values = dict(zip(r.param_names, point))
    with mpmath.workdps(30):
        derived = r.evaluate_mp(30, **values)
        args = [mpmath.mpf(v) for v in point[:4]] + [point[4]]
        reference = _quad_time(*args)
        assert abs(derived - reference) <= mpmath.mpf("1e-20") * abs(reference)
        if args[1] < args[0] and point[4] != 2:  # SPEC's hypergeometric form, below s
            assert abs(derived - _spec_hypergeometric_time(*args)) <= mpmath.mpf("1e-20") * abs(reference)
    fast = float(_scipy_time(r)(*[float(v) for v in point]))
    assert fast == pytest.approx(float(reference), rel=1e-11)


def test_time_to_learn_spec_special_cases():
    r = get("dln.time_to_learn")
    strength, start, stop, const = 1.3, 0.01, 1.0, 0.7
    # L = 1: t = tau [-log(1 - uf/s) + log(1 - u0/s)]
    one = const * (-np.log1p(-stop / strength) + np.log1p(-start / strength))
    # L = 2: invert the logistic, t = (tau/(2 s)) log((s/u0 - 1)/(s/uf - 1))
    two = const / (2 * strength) * np.log((strength / start - 1) / (strength / stop - 1))
    with mpmath.workdps(30):
        got_one = r.evaluate_mp(30, s=strength, u0=start, uf=stop, tau=const, L=1)
        got_two = r.evaluate_mp(30, s=strength, u0=start, uf=stop, tau=const, L=2)
    assert float(got_one) == pytest.approx(one, rel=1e-13)
    assert float(got_two) == pytest.approx(two, rel=1e-13)


def test_time_to_learn_unreachable_is_infinite():
    r = get("dln.time_to_learn")
    with mpmath.workdps(20):
        assert mpmath.isinf(r.evaluate_mp(20, s=1, u0=0.1, uf=1.5, tau=1, L=3))  # beyond s
        assert mpmath.isinf(r.evaluate_mp(20, s=1, u0=0.5, uf=0.2, tau=1, L=3))  # backwards
        assert mpmath.isinf(r.evaluate_mp(20, s=1, u0=0.5, uf=1, tau=1, L=2))  # s itself
        assert r.evaluate_mp(20, s=1, u0=0.5, uf=0.5, tau=1, L=2) == 0


@pytest.mark.parametrize("depth,stop", [(3, 0.9), (4, 0.5)])
def test_time_to_learn_reaches_uf_along_integrated_ode(depth, stop):
    """Integrate SPEC's ODE for the derived time: u lands on uf."""
    r = get("dln.time_to_learn")
    strength, start, const = 1.0, 1e-3, 1.5
    with mpmath.workdps(30):
        horizon = float(r.evaluate_mp(30, s=strength, u0=start, uf=stop, tau=const, L=depth))
    p = 2 - 2 / depth
    sol = solve_ivp(lambda _, v: depth * v**p * (strength - v) / const, (0, horizon), [start],
                    rtol=1e-12, atol=1e-15, method="DOP853")
    assert sol.y[0, -1] == pytest.approx(stop, rel=1e-8)


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_plateau_grows_like_power_of_initial_strength(depth):
    """SPEC: for L >= 3 the time grows like u0^(-(L-2)/L).  Its coefficient, from the
    leading term tau/(L s u^p) of the integrand near 0, is tau/((L-2) s)."""
    r = get("dln.time_to_learn")
    strength, stop, const = 1.3, 1.0, 0.9
    q = (depth - 2) / depth
    with mpmath.workdps(40):
        ratios = []
        for start in ("1e-12", "1e-18", "1e-24"):
            time = r.evaluate_mp(40, s=strength, u0=start, uf=stop, tau=const, L=depth)
            ratios.append(time * mpmath.mpf(start) ** q * (depth - 2) * strength / const)
    # corrections are O(u0^q) relative (the next term of the integral is a constant)
    for start_exp, ratio in zip((12, 18, 24), ratios):
        assert abs(ratio - 1) < 100 * 10.0 ** (-start_exp * q)
    assert abs(ratios[-1] - 1) < abs(ratios[0] - 1)


def test_plateau_grows_like_log_at_depth_two():
    """SPEC: at L = 2 the time grows like log(1/u0) (coefficient tau/(2 s))."""
    r = get("dln.time_to_learn")
    strength, stop, const = 1.3, 1.0, 0.9
    with mpmath.workdps(40):
        times = [r.evaluate_mp(40, s=strength, u0=f"1e-{k}", uf=stop, tau=const, L=2) for k in (10, 20, 30)]
    slope = (times[2] - times[1]) / (mpmath.log(mpmath.mpf("1e20")) - mpmath.log(mpmath.mpf("1e10")))
    assert abs(slope - const / (2 * strength)) < 1e-15
    slope_early = (times[1] - times[0]) / mpmath.log(mpmath.mpf("1e10"))
    assert abs(slope_early - const / (2 * strength)) < 1e-9


def test_time_to_learn_scipy_float64_matches_mpmath(seed):
    """The float64 evaluator built with scipy's hyp2f1 agrees with 50-digit mpmath across
    decades of s, u0, uf, tau and several depths (tolerance 1e-11 relative)."""
    r = get("dln.time_to_learn")
    fast = _scipy_time(r)
    rng = np.random.default_rng(seed)
    for depth in (1, 2, 3, 4, 7):
        for _ in range(15):
            strength, const = 10 ** rng.uniform(-3, 2), 10 ** rng.uniform(-3, 2)
            a, b = np.sort(rng.uniform(0.001, 0.999, 2))
            if rng.uniform() < 0.5:
                start, stop = a * strength, b * strength  # grow towards s
            else:
                start, stop = strength / a, strength / b  # decay towards s
            got = float(fast(strength, start, stop, const, depth))
            with mpmath.workdps(50):
                ref = r.mpmath(*[mpmath.mpf(v) for v in (strength, start, stop, const, depth)])
            assert got == pytest.approx(float(ref), rel=1e-11), (depth, strength, start, stop)
